"""Sovereignty, spread, quorum, tiers, async saves, sizes, listing, gc and the fsspec backend."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REGIONS, mesh_dict
from superfactory.mesh import (
    CheckpointMesh,
    CheckpointNotFoundError,
    FsspecBackend,
    IncompleteCheckpointError,
    LocalBackend,
    MeshConfigError,
    PlacementError,
    QuorumError,
    SovereigntyError,
    config_from_dict,
)
from superfactory.mesh.backend import FragmentSink

DATA = os.urandom(20000)


def _targets(n: int, jurisdiction: str, tier: str = "nvme", prefix: str = "t") -> list[dict[str, str]]:
    return [
        {
            "name": f"{prefix}{i}",
            "url": f"sites/{prefix}{i}",
            "region": REGIONS[i % 3],
            "jurisdiction": jurisdiction,
            "tier": tier,
        }
        for i in range(n)
    ]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.suffix != ".jsonl" and "keys" not in p.parts]


def test_sovereignty_refusal_fails_before_writing_and_is_audited(
    make_mesh: Callable[..., CheckpointMesh],
    tmp_path: Path,
) -> None:
    mesh = make_mesh(targets=_targets(4, "EU") + _targets(2, "US", prefix="us"))
    with pytest.raises(SovereigntyError, match="EU_PERSONAL") as info:
        mesh.save(DATA, step=1, sovereignty=["EU_PERSONAL"])
    assert "Nothing was written" in str(info.value)
    assert _files(tmp_path / "sites") == [] if (tmp_path / "sites").exists() else True
    refusals = [e for e in mesh.audit.read() if e["kind"] == "sovereignty_refusal"]
    assert sorted(e["target"] for e in refusals) == ["us0", "us1"]
    assert all(e["jurisdiction"] == "US" for e in refusals)
    # without the class, the US targets are fine
    assert mesh.save(DATA, step=1).committed


def test_fragments_only_go_to_cleared_targets(make_mesh: Callable[..., CheckpointMesh]) -> None:
    mesh = make_mesh(targets=_targets(6, "EU") + _targets(3, "US", prefix="us"))
    receipt = mesh.save(DATA, step=1, sovereignty=["EU_PERSONAL"])
    assert {f.target for f in receipt.fragments} == {f"t{i}" for i in range(6)}
    assert len([e for e in receipt.audit_events if e.kind == "sovereignty_refusal"]) == 3


def test_unknown_sovereignty_class_fails_closed(mesh: CheckpointMesh) -> None:
    with pytest.raises(SovereigntyError, match="fail closed"):
        mesh.save(DATA, step=1, sovereignty=["MEDICAL_US"])


def test_region_spread_is_enforced(make_mesh: Callable[..., CheckpointMesh]) -> None:
    targets = [dict(t, region="eu-west") for t in _targets(6, "EU")]
    with pytest.raises(PlacementError, match="3 regions"):
        make_mesh(targets=targets).save(DATA, step=1)


def test_placement_interleaves_regions(mesh: CheckpointMesh) -> None:
    receipt = mesh.save(DATA, step=1)
    regions = [mesh.config.target(f.target).region for f in sorted(receipt.fragments, key=lambda f: f.index)]
    assert regions == list(REGIONS) * 2


def test_recomputable_and_ephemeral_classes(mesh: CheckpointMesh) -> None:
    rec = mesh.save(DATA, step=1, data_class="recomputable")
    assert len({f.target for f in rec.fragments}) == 1 and len(rec.fragments) == 5
    eph = mesh.save(DATA, step=2, data_class="ephemeral")
    assert len(eph.fragments) == 1
    assert mesh.restore(step=1).tobytes() == DATA
    assert mesh.restore(step=2).tobytes() == DATA


class _FailingBackend(LocalBackend):
    def open_write(self, path: str) -> FragmentSink:
        if "frag-" in path:
            raise OSError("disk on fire")
        return super().open_write(path)


class _HangingSink(FragmentSink):
    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def write(self, data: Any) -> None:
        self.release.wait(30)

    def commit(self) -> None:
        raise OSError("never durable")

    def abort(self) -> None:
        return None


class _HangingBackend(LocalBackend):
    release = threading.Event()

    def open_write(self, path: str) -> FragmentSink:
        if "frag-" in path:
            return _HangingSink(self.release)
        return super().open_write(path)


def _mesh_with(tmp_path: Path, broken: dict[str, type[LocalBackend]], **overrides: Any) -> CheckpointMesh:
    config = config_from_dict(mesh_dict(**overrides), tmp_path)
    backends = {name: cls(config.target(name).url, fsync=False) for name, cls in broken.items()}
    return CheckpointMesh(config, backends=backends)


def test_two_failed_targets_still_commit_at_quorum(tmp_path: Path) -> None:
    mesh = _mesh_with(tmp_path, {"t1": _FailingBackend, "t4": _FailingBackend})
    receipt = mesh.save(DATA, step=1)
    assert receipt.committed and receipt.durable_fragments == 4
    assert {f.target for f in receipt.fragments if not f.durable} == {"t1", "t4"}
    assert mesh.restore().tobytes() == DATA


def test_three_failed_targets_raise_and_leave_nothing_visible(tmp_path: Path) -> None:
    mesh = _mesh_with(tmp_path, dict.fromkeys(("t0", "t2", "t5"), _FailingBackend))
    with pytest.raises(QuorumError, match="not committed"):
        mesh.save(DATA, step=1)
    assert mesh.list(include_incomplete=True) == []
    with pytest.raises(CheckpointNotFoundError):
        mesh.restore()


def test_a_hung_target_is_abandoned_after_the_timeout(tmp_path: Path) -> None:
    overrides = {
        "data_classes": {"critical": {"k": 4, "m": 2, "quorum": 4, "timeout_s": 0.5, "min_regions": 3}}
    }
    mesh = _mesh_with(tmp_path, {"t3": _HangingBackend}, **overrides)
    try:
        receipt = mesh.save(DATA * 10, step=1)
    finally:
        _HangingBackend.release.set()
    assert receipt.committed and receipt.durable_fragments == 5
    assert mesh.restore().tobytes() == DATA * 10


def test_tiers_mix_fragments_and_fall_back(make_mesh: Callable[..., CheckpointMesh], tmp_path: Path) -> None:
    mesh = make_mesh(
        tiers=[
            {"name": "nvme", "kind": "local_nvme", "interval_steps": 1},
            {"name": "obj", "kind": "object_store", "interval_steps": 10},
        ],
        targets=_targets(6, "EU") + _targets(6, "EU", tier="obj", prefix="o"),
    )
    assert mesh.due_tiers(5) == ("nvme",)
    assert mesh.due_tiers(10) == ("nvme", "obj")
    receipt = mesh.save(DATA, step=10)
    assert receipt.tiers == ("nvme", "obj") and len(receipt.fragments) == 12
    assert mesh.save_if_due(DATA, step=5) is not None
    # lose three fast fragments and three slow ones, different indices: only mixing tiers rebuilds it
    for i in (0, 1, 2):
        shutil.rmtree(tmp_path / "sites" / f"t{i}")
    for i in (3, 4, 5):
        shutil.rmtree(tmp_path / "sites" / f"o{i}")
    restored = mesh.restore(step=10)
    assert restored.tobytes() == DATA and restored.decoded_stripes == 0


def test_async_save_returns_after_snapshot_and_reports_commit(mesh: CheckpointMesh) -> None:
    buf = np.frombuffer(bytearray(DATA), dtype=np.uint8)
    handle = mesh.save_async(buf, step=3)
    buf[:] = 0  # the caller may scribble right away: the save works from its snapshot
    receipt = handle.result(timeout=60)
    assert receipt.committed and handle.done()
    assert mesh.restore(step=3).tobytes() == DATA
    mesh.close()


def test_async_save_error_surfaces_in_result(tmp_path: Path) -> None:
    mesh = _mesh_with(tmp_path, dict.fromkeys(("t0", "t2", "t5"), _FailingBackend))
    with pytest.raises(QuorumError):
        mesh.save_async(DATA, step=1).result(timeout=60)
    mesh.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.one_of(st.sampled_from([0, 1, 4095, 4096, 4097, 8192 + 3]), st.integers(0, 30000)),
    segments=st.integers(1, 4),
)
def test_any_size_and_segmentation_roundtrips(mesh: CheckpointMesh, size: int, segments: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    cuts = sorted(np.random.default_rng(size + 1).integers(0, size + 1, segments - 1).tolist())
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    receipt = mesh.save(parts, step=size)
    assert receipt.payload_bytes == size
    assert mesh.restore(checkpoint_id=receipt.checkpoint_id).tobytes() == data


def test_list_gc_and_incomplete(mesh: CheckpointMesh, tmp_path: Path) -> None:
    ids = [mesh.save(DATA, step=s).checkpoint_id for s in (1, 2, 3, 4)]
    assert [i.step for i in mesh.list()] == [1, 2, 3, 4]
    # an interrupted save: fragments but no manifest
    stray = tmp_path / "sites" / "t0" / "test" / "step-000000000009-deadbeef"
    stray.mkdir(parents=True)
    (stray / "frag-0000.bin").write_bytes(b"partial")
    assert [i.step for i in mesh.list()] == [1, 2, 3, 4]
    incomplete = [i for i in mesh.list(include_incomplete=True) if i.state == "incomplete"]
    assert [i.checkpoint_id for i in incomplete] == ["step-000000000009-deadbeef"]
    with pytest.raises(IncompleteCheckpointError, match="never committed"):
        mesh.restore(checkpoint_id="step-000000000009-deadbeef")
    deleted = mesh.gc(keep=2, incomplete_grace_s=0.0).deleted
    assert set(deleted) == {ids[0], ids[1], "step-000000000009-deadbeef"}
    assert [i.step for i in mesh.list(include_incomplete=True)] == [3, 4]
    assert mesh.restore().tobytes() == DATA


def test_shred_checkpoint_removes_it_everywhere(mesh: CheckpointMesh) -> None:
    keep = mesh.save(DATA, step=1)
    gone = mesh.save(DATA, step=2)
    mesh.shred_checkpoint(gone.checkpoint_id)
    assert [i.checkpoint_id for i in mesh.list(include_incomplete=True)] == [keep.checkpoint_id]


def test_fsspec_memory_backend_roundtrip(tmp_path: Path) -> None:
    raw = mesh_dict(
        targets=[
            {
                "name": f"m{i}",
                "url": f"memory://sfmesh-{tmp_path.name}/m{i}",
                "region": REGIONS[i % 3],
                "jurisdiction": "EU",
                "tier": "nvme",
            }
            for i in range(6)
        ]
    )
    mesh = CheckpointMesh(config_from_dict(raw, tmp_path))
    assert isinstance(mesh.catalog.backends["m0"], FsspecBackend)
    receipt = mesh.save(DATA, step=1)
    mesh.catalog.backends["m2"].delete(receipt.fragments[2].path)
    assert mesh.restore().tobytes() == DATA
    assert mesh.verify(step=1, repair=True).repaired == ("fragment 2 on m2",)


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(MeshConfigError, match=r"tiers\.0\.interval_steps"):
        config_from_dict(mesh_dict(tiers=[{"name": "nvme", "interval_steps": 0}]), tmp_path)
    with pytest.raises(MeshConfigError, match="unknown tier"):
        config_from_dict(mesh_dict(tiers=[{"name": "pfs"}]), tmp_path)
    with pytest.raises(MeshConfigError, match="quorum"):
        config_from_dict(mesh_dict(data_classes={"critical": {"k": 4, "m": 2, "quorum": 7}}), tmp_path)


def test_fsync_path_is_durable_and_leaves_no_temp_files(
    make_mesh: Callable[..., CheckpointMesh], tmp_path: Path
) -> None:
    mesh = make_mesh(fsync=True)
    start = time.monotonic()
    mesh.save(DATA, step=1)
    assert time.monotonic() >= start
    assert not list((tmp_path / "sites").rglob("*.tmp-*"))
    assert mesh.restore().tobytes() == DATA
