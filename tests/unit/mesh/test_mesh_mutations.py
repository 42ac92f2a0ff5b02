"""Property: whatever one or two targets do to their files, the mesh never returns the wrong checkpoint.

A mesh with three checkpoints (steps 10, 20, 30; RS 4+2 over six targets, one fragment of each checkpoint per
target) is copied, then up to two targets get any sequence of on-disk mutations — delete, bit-flip, truncate,
append, replace with another checkpoint's file, forge a manifest with recomputed checksums, add stray entries,
delete a whole checkpoint directory. With four intact targets every checkpoint is still recoverable, so the
strong property is checked: every ``restore`` returns exactly the asked step's bytes (and "newest" is step 30),
``ls`` lists exactly the three checkpoints, ``verify`` calls a manifest or fragment copy "ok" exactly when its
bytes are the original ones, and ``gc`` deletes nothing but what it was asked to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import mesh_dict
from superfactory.mesh import CheckpointMesh, MeshError, config_from_dict

STEPS = (10, 20, 30)
CHUNK = 256
PAYLOADS = {
    s: np.random.default_rng(s).integers(0, 256, 4 * CHUNK * 2 + 37 * s, dtype=np.uint8).tobytes() for s in STEPS
}
FORGEABLE = ("step", "payload_bytes", "kek_id", "checkpoint_id", "created_at_unix_s", "wrapped_key_b64", "k")
STRAY_NAMES = ("junk", "step-xyz", "step--0000000005-abcd1234", ".hidden", "step-000000000040-deadbeef", "MANIFEST")


def _config(root: Path) -> Any:
    return config_from_dict(mesh_dict(chunk_bytes=CHUNK, audit_log=None), root)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, str]]:
    """Three committed checkpoints on six directory targets, saved once for every example."""
    root = tmp_path_factory.mktemp("mesh-template")
    mesh = CheckpointMesh(_config(root))
    ids = {s: mesh.save(PAYLOADS[s], step=s).checkpoint_id for s in STEPS}
    return root, ids


def _ckpt_dir(root: Path, target: int, cid: str) -> Path:
    return root / "sites" / f"t{target}" / "test" / cid


def _frag(root: Path, target: int, cid: str) -> Path | None:
    d = _ckpt_dir(root, target, cid)
    frags = sorted(d.glob("frag-*.bin")) if d.is_dir() else []
    return frags[0] if frags else None


def _forge(raw: bytes, field: str, other_id: str) -> bytes | None:
    """A manifest with one field changed and its sha256 recomputed; the HMAC cannot be recomputed. None when an
    earlier mutation in the same example already left ``raw`` unparseable (there is nothing left to forge)."""
    body, _, trailer = raw.rpartition(b"\n")
    try:
        d = json.loads(body)
        mac = json.loads(trailer)["hmac"]
        d[field] = {
            "step": lambda: d["step"] + 10,
            "payload_bytes": lambda: d["payload_bytes"] + 1,
            "kek_id": lambda: "kek-forged",
            "checkpoint_id": lambda: other_id,
            "created_at_unix_s": lambda: d["created_at_unix_s"] + 1e6,
            "wrapped_key_b64": lambda: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "k": lambda: 2,
        }[field]()
    except (ValueError, TypeError, KeyError):  # not JSON (ValueError covers decode errors), not a dict, no field
        return None
    new_body = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    new_trailer = {"hmac": mac, "sha256": hashlib.sha256(new_body).hexdigest()}
    return new_body + b"\n" + json.dumps(new_trailer, sort_keys=True, separators=(",", ":")).encode()


mutation = st.tuples(
    st.sampled_from(("delete", "flip", "truncate", "append", "replace", "forge", "stray", "delete_dir")),
    st.sampled_from(range(len(STEPS))),  # which checkpoint
    st.sampled_from(("MANIFEST", "frag", "INTENT")),  # which file of it
    st.integers(0, 2**16),  # position, field, other checkpoint, stray name …
)
plan = st.dictionaries(st.sampled_from(range(6)), st.lists(mutation, min_size=1, max_size=4), min_size=1, max_size=2)


def _apply(root: Path, ids: dict[int, str], target: int, op: tuple[str, int, str, int]) -> None:
    kind, which, name, n = op
    cid = ids[STEPS[which]]
    other = ids[STEPS[(which + 1 + n % 2) % 3]]
    path = _frag(root, target, cid) if name == "frag" else _ckpt_dir(root, target, cid) / name
    if kind == "stray":
        stray = STRAY_NAMES[n % len(STRAY_NAMES)]
        base = _ckpt_dir(root, target, cid) if n % 3 == 0 else root / "sites" / f"t{target}" / "test"
        base.mkdir(parents=True, exist_ok=True)
        if (base / stray).exists():
            return
        if n % 2:
            (base / stray).mkdir()
            src = _ckpt_dir(root, target, other) / "MANIFEST"  # a transplanted manifest inside a stray dir
            if src.exists():
                shutil.copy(src, base / stray / "MANIFEST")
        else:
            (base / stray).write_bytes(os.urandom(n % 50))
        return
    if kind == "delete_dir":
        shutil.rmtree(_ckpt_dir(root, target, cid), ignore_errors=True)
        return
    if path is None or not path.is_file():
        return
    raw = path.read_bytes()
    if kind == "delete":
        path.unlink()
    elif kind == "flip" and raw:
        pos = n % len(raw)
        path.write_bytes(raw[:pos] + bytes([raw[pos] ^ (1 << (n % 8))]) + raw[pos + 1 :])
    elif kind == "truncate" and raw:
        path.write_bytes(raw[: n % len(raw)])
    elif kind == "append":
        path.write_bytes(raw + bytes([n % 256]) * (1 + n % 7))
    elif kind == "replace":
        src = (_frag(root, target, other) if name == "frag" else _ckpt_dir(root, target, other) / name) or path
        if src.is_file():
            path.write_bytes(src.read_bytes())
    elif kind == "forge" and name == "MANIFEST":
        forged = _forge(raw, FORGEABLE[n % len(FORGEABLE)], other)
        if forged is not None:
            path.write_bytes(forged)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=plan)
def test_mutating_up_to_two_targets_never_yields_the_wrong_checkpoint(
    template: tuple[Path, dict[int, str]], mutations: dict[int, list[tuple[str, int, str, int]]]
) -> None:
    source, ids = template
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mesh"
        shutil.copytree(source, root)
        for target, ops in mutations.items():
            for op in ops:
                _apply(root, ids, target, op)
        mesh = CheckpointMesh(_config(root))

        for s in STEPS:
            restored = mesh.restore(step=s)
            assert restored.manifest.step == s and restored.manifest.checkpoint_id == ids[s]
            assert restored.tobytes() == PAYLOADS[s]
        newest = mesh.restore()
        assert newest.manifest.step == 30 and newest.tobytes() == PAYLOADS[30]
        assert [(i.step, i.checkpoint_id) for i in mesh.list()] == [(s, ids[s]) for s in STEPS]
        mesh.list(include_incomplete=True)  # lists damaged strays without failing

        for s in STEPS:
            report = mesh.verify(step=s)
            assert report.restorable
            for t in range(6):
                original = _ckpt_dir(source, t, ids[s]) / "MANIFEST"
                now = _ckpt_dir(root, t, ids[s]) / "MANIFEST"
                intact = now.is_file() and now.read_bytes() == original.read_bytes()
                assert (report.manifests.get(f"t{t}") == "ok") == intact, (s, t, report.manifests)
            for check in report.fragments:
                t = int(check.target[1:])
                original_frag = _frag(source, t, ids[s])
                assert original_frag is not None
                now_frag = _ckpt_dir(root, t, ids[s]) / original_frag.name
                intact = now_frag.is_file() and now_frag.read_bytes() == original_frag.read_bytes()
                assert (check.status == "ok") == intact, (s, t, check)

        deleted = mesh.gc(keep=2, incomplete_grace_s=0.0).deleted
        assert ids[20] not in deleted and ids[30] not in deleted
        assert ids[10] in deleted
        assert [i.step for i in mesh.list()] == [20, 30]
        for s in (20, 30):
            assert mesh.restore(step=s).tobytes() == PAYLOADS[s]


heavy_plan = st.dictionaries(
    st.sampled_from(range(6)), st.lists(mutation, min_size=1, max_size=3), min_size=3, max_size=6
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=heavy_plan)
def test_mutating_three_to_six_targets_gives_the_right_bytes_or_a_clear_error(
    template: tuple[Path, dict[int, str]], mutations: dict[int, list[tuple[str, int, str, int]]]
) -> None:
    """Beyond what RS(4+2) can survive: still never other bytes, never a crash, gc never deletes a checkpoint
    that restores."""
    source, ids = template
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mesh"
        shutil.copytree(source, root)
        for target, ops in mutations.items():
            for op in ops:
                _apply(root, ids, target, op)
        mesh = CheckpointMesh(_config(root))
        good = []
        for s in STEPS:
            try:
                restored = mesh.restore(step=s)
            except MeshError:
                continue
            assert restored.manifest.step == s and restored.tobytes() == PAYLOADS[s]
            good.append(s)
        try:
            newest = mesh.restore()
            assert newest.tobytes() == PAYLOADS[newest.manifest.step]
        except MeshError:
            pass
        assert {i.step for i in mesh.list()} <= set(STEPS)
        mesh.list(include_incomplete=True)
        for s in STEPS:
            with contextlib.suppress(MeshError):
                mesh.verify(step=s)
        with contextlib.suppress(MeshError):
            mesh.gc(keep=3, incomplete_grace_s=0.0)
        for s in good:  # a checkpoint that restored before gc still restores after it
            assert mesh.restore(step=s).tobytes() == PAYLOADS[s]
