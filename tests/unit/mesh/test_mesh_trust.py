"""What one bad target, a rollback, a paused save or a bad argument can do: never the wrong checkpoint.

Rollback of every manifest (detected), rewrap with a target offline then shred (reported / refused, never
stranded), gc racing a paused save (its data survives or it fails — never a false commit), fencing tokens in
the commit ledger, a copy failing for a key reason (the next copy is used), and forged copies (audited).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import mesh_dict
from superfactory.cli.ckpt import app
from superfactory.mesh import (
    CheckpointMesh,
    CheckpointNotFoundError,
    IncompleteCheckpointError,
    LeaseLostError,
    LocalBackend,
    RollbackError,
    StaleFencingTokenError,
    StrandingError,
    config_from_dict,
)
from superfactory.mesh.catalog import MANIFEST

DATA = {s: bytes([s % 251]) * (3000 + s) for s in (10, 20, 30)}


def _manifest(mesh: CheckpointMesh, target: str, cid: str) -> Path:
    return Path(mesh.config.target(target).url) / mesh.catalog.path(cid, MANIFEST)


def _save_three(mesh: CheckpointMesh) -> dict[int, str]:
    return {s: mesh.save(DATA[s], step=s).checkpoint_id for s in (10, 20, 30)}


@contextmanager
def _offline(mesh: CheckpointMesh, target: str) -> Iterator[None]:
    """Take a directory target offline the way an unmounted share looks: its path is not a directory."""
    root = Path(mesh.config.target(target).url)
    away = root.with_name(root.name + ".away")
    root.rename(away)
    root.write_bytes(b"")
    try:
        yield
    finally:
        root.unlink()
        away.rename(root)


# -- rollback ------------------------------------------------------------------------------------------------
def test_rollback_of_every_manifest_is_detected(mesh: CheckpointMesh) -> None:
    ids = _save_three(mesh)
    for t in mesh.config.targets:  # every copy of step 30's manifest replaced by step 20's (authentic) one
        _manifest(mesh, t.name, ids[30]).write_bytes(_manifest(mesh, t.name, ids[20]).read_bytes())
    with pytest.raises(RollbackError, match="step 30"):
        mesh.restore()
    assert mesh.rollback_problem() is not None
    with pytest.raises(RollbackError):
        mesh.gc(keep=1)
    assert mesh.restore(step=20).tobytes() == DATA[20]  # an older step, asked for explicitly, is fine
    assert [i.step for i in mesh.list()] == [10, 20]
    kinds = {e["kind"] for e in mesh.audit.read()}
    assert "manifest_rejected" in kinds  # the transplanted copies were audited as inconsistent


def test_rollback_by_deleting_the_newest_checkpoint_is_detected(mesh: CheckpointMesh) -> None:
    ids = _save_three(mesh)
    for t in mesh.config.targets:
        shutil.rmtree(Path(t.url) / mesh.catalog.ckpt_dir(ids[30]))
    with pytest.raises(RollbackError, match="rollback detected"):
        mesh.restore()
    with pytest.raises(RollbackError):
        mesh.restore(step=30)


def test_shredding_the_newest_on_purpose_is_not_a_rollback(mesh: CheckpointMesh) -> None:
    ids = _save_three(mesh)
    mesh.shred_checkpoint(ids[30])
    restored = mesh.restore()
    assert restored.manifest.step == 20 and restored.tobytes() == DATA[20]
    record = mesh.keys.commit_record("test")
    assert record is not None and record.checkpoint_id == ids[20]


def test_commit_record_is_monotonic_and_authenticated(mesh: CheckpointMesh) -> None:
    ids = _save_three(mesh)
    mesh.save(b"older step, later", step=15)
    record = mesh.keys.commit_record("test")
    assert record is not None and (record.step, record.checkpoint_id, record.sequence) == (30, ids[30], 4)
    assert mesh.restore().manifest.step == 30
    ring = mesh.config.keyring_path
    ring.write_text(ring.read_text().replace('"step": 30', '"step": 9'))
    with pytest.raises(Exception, match="fails authentication"):
        mesh.keys.commit_record("test")


# -- a copy failing for any reason falls through to the next -------------------------------------------------
def _forge(path: Path, old: bytes, new: bytes) -> None:
    """Edit a manifest body and recompute its sha256 (what anyone can do; the HMAC needs the key)."""
    body, _, trailer = path.read_bytes().rpartition(b"\n")
    forged = body.replace(old, new)
    assert forged != body
    new_trailer = {"hmac": json.loads(trailer)["hmac"], "sha256": hashlib.sha256(forged).hexdigest()}
    path.write_bytes(forged + b"\n" + json.dumps(new_trailer, sort_keys=True, separators=(",", ":")).encode())


@pytest.mark.parametrize("kek", [b"kek-unknown", b"kek-destroyed"])
def test_copy_failing_for_a_key_reason_does_not_block_the_restore(mesh: CheckpointMesh, kek: bytes) -> None:
    ids = _save_three(mesh)
    key_id = mesh.list()[0].kek_id
    if kek == b"kek-destroyed":  # a real, destroyed key: the copy fails with KeyDestroyedError
        mesh.rotate_keys(rewrap=True)
        mesh.keys.destroy(key_id)
        kek = mesh.rotate_keys().key_id.encode()
        mesh.keys.destroy(kek.decode())
    current = mesh.list()[0].kek_id.encode()
    _forge(_manifest(mesh, "t0", ids[20]), b'"kek_id":"' + current, b'"kek_id":"' + kek)
    assert mesh.restore(step=20).tobytes() == DATA[20]  # the fastest copy fails; the next one is used
    assert mesh.restore().tobytes() == DATA[30]
    report = mesh.verify(step=20)
    assert report.manifests["t0"] in ("key_unknown", "key_destroyed") and report.restorable
    assert [i.step for i in mesh.list()] == [10, 20, 30]


def test_verify_reports_a_forged_copy_and_audits_it(mesh: CheckpointMesh) -> None:
    ids = _save_three(mesh)
    _forge(_manifest(mesh, "t3", ids[10]), b'"step":10', b'"step":30')
    assert [i.step for i in mesh.list()] == [10, 20, 30]
    report = mesh.verify(step=10)
    assert report.manifests["t3"] == "forged" and "HMAC" in " ".join(report.manifest_problems)
    rejected = [e for e in mesh.audit.read() if e["kind"] == "manifest_rejected"]
    assert any(e["target"] == "t3" and e["status"] == "forged" for e in rejected)
    assert mesh.verify(step=10, repair=True).repaired == ("manifest on t3",)
    assert mesh.verify(step=10).healthy


# -- rewrap with a target offline, then shred ----------------------------------------------------------------
def test_rewrap_with_a_target_offline_reports_it_and_shred_never_strands(
    mesh: CheckpointMesh, tmp_path: Path
) -> None:
    ids = _save_three(mesh)
    old_key = mesh.list()[0].kek_id
    with _offline(mesh, "t2"):
        report = mesh.rotate_keys(rewrap=True)
        assert not report.complete and set(report.rewrapped) == set(ids.values())
        assert sum("on t2" in f for f in report.failed_copies) == 3
        with pytest.raises(StrandingError, match="t2"):
            mesh.shred_key(old_key)  # refused: t2 cannot be checked
        assert not any(k.destroyed for k in mesh.keys.keys())  # noqa: SIM118
        config = tmp_path / "mesh.yaml"  # the same mesh through the CLI: exit 1, every copy listed
        config.write_text(yaml.safe_dump(mesh_dict()))
        result = CliRunner().invoke(app, ["rotate-keys", "-c", str(config), "--rewrap"])
        assert result.exit_code == 1 and result.stderr.count(" on t2") == 3
        result = CliRunner().invoke(app, ["shred", "-c", str(config), "--key", old_key, "--yes"])
        assert result.exit_code == 2 and "refusing to destroy" in result.stderr
    shred = mesh.shred_key(old_key)  # t2 is back: its stale copies are rewritten first
    assert shred.unrecoverable == ()
    assert sorted(shred.rewritten_copies) == sorted(f"{cid} on t2" for cid in ids.values())
    for s, cid in ids.items():
        assert mesh.restore(step=s).tobytes() == DATA[s]
        assert mesh.verify(checkpoint_id=cid).healthy


def test_forced_shred_with_a_target_offline_leaves_stale_copies_that_are_skipped(mesh: CheckpointMesh) -> None:
    ids = _save_three(mesh)
    old_key = mesh.list()[0].kek_id
    with _offline(mesh, "t0"):  # t0 is the fastest: its stale copy is the first one tried
        mesh.rotate_keys(rewrap=True)
        assert mesh.shred_key(old_key, force=True).unrecoverable == ()
    for s in ids:
        assert mesh.restore(step=s).tobytes() == DATA[s]
    report = mesh.verify(step=30)
    assert report.manifests["t0"] == "key_destroyed" and report.restorable
    mesh.verify(step=30, repair=True)
    assert mesh.verify(step=30).healthy


# -- gc racing a paused save ---------------------------------------------------------------------------------
class _PausedManifest(LocalBackend):
    """A target on which the save pauses right before writing its MANIFEST (fragments already durable)."""

    def __init__(self, root: str, fsync: bool = True) -> None:
        super().__init__(root, fsync)
        self.reached = threading.Event()
        self.resume = threading.Event()

    def put_atomic(self, path: str, data: bytes) -> None:
        if path.endswith("/" + MANIFEST) and not self.resume.is_set():
            self.reached.set()
            self.resume.wait(30)
        super().put_atomic(path, data)


def _paused_mesh(tmp_path: Path, **overrides: object) -> tuple[CheckpointMesh, _PausedManifest]:
    config = config_from_dict(mesh_dict(**overrides), tmp_path)
    paused = _PausedManifest(config.target("t0").url, fsync=False)
    return CheckpointMesh(config, backends={"t0": paused}), paused


def _run_save(mesh: CheckpointMesh, step: int) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(mesh.save(DATA[step], step=step))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_gc_keeps_a_paused_save_that_holds_its_lease(tmp_path: Path) -> None:
    mesh, paused = _paused_mesh(tmp_path)
    paused.resume.set()
    mesh.save(DATA[10], step=10)
    paused.resume.clear()
    thread, outcome = _run_save(mesh, 20)
    assert paused.reached.wait(30)
    report = mesh.gc(keep=1, incomplete_grace_s=0.0)  # the shortest grace: only the lease protects the save
    assert report.deleted == () and len(report.kept_in_flight) == 1
    with pytest.raises(IncompleteCheckpointError):
        mesh.restore(checkpoint_id=report.kept_in_flight[0])
    paused.resume.set()
    thread.join(30)
    assert getattr(outcome[0], "committed", False)
    assert mesh.restore().tobytes() == DATA[20]


def test_a_save_paused_past_its_lease_fails_instead_of_committing(tmp_path: Path) -> None:
    mesh, paused = _paused_mesh(tmp_path, lease_s=0.2)
    thread, outcome = _run_save(mesh, 20)
    assert paused.reached.wait(30)
    threading.Event().wait(0.5)  # the paused save's lease expires
    report = mesh.gc(keep=1, incomplete_grace_s=3600.0)
    assert len(report.deleted) == 1 and "expired" in " ".join(report.notes)
    paused.resume.set()
    thread.join(30)
    assert isinstance(outcome[0], LeaseLostError)  # never a false commit
    assert mesh.list(include_incomplete=True) == []
    with pytest.raises(CheckpointNotFoundError):
        mesh.restore(step=20)


# -- fencing tokens in the commit ledger ----------------------------------------------------------------------
def test_a_stale_fencing_token_is_refused_by_the_ledger(make_mesh: Callable[..., CheckpointMesh]) -> None:
    mesh = make_mesh()
    mesh.save(DATA[10], step=10, fencing_token=7)
    record = mesh.keys.commit_record("test")
    assert record is not None and record.fencing_token == 7
    other_site = make_mesh()  # same keyring (the ledger), no FENCE objects written on the targets
    with pytest.raises(StaleFencingTokenError, match="fencing token 6 is older"):
        other_site.save(DATA[20], step=20, fencing_token=6)
    assert [i.step for i in mesh.list(include_incomplete=True)] == [10]
    assert mesh.save(DATA[20], step=20, fencing_token=7).committed
    assert mesh.fence() == 7
