"""Keys: wrong key detected, rotation keeps old checkpoints, shredding makes them unrecoverable."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from superfactory.mesh import (
    CheckpointMesh,
    KeyDestroyedError,
    KeyringError,
    LocalKeyring,
    WrongKeyError,
)

DATA = os.urandom(9000)


def test_wrong_key_under_the_same_id_is_detected(mesh: CheckpointMesh) -> None:
    mesh.save(DATA, step=1)
    path = mesh.config.keyring_path
    ring = json.loads(path.read_text())
    ring["keys"][0]["material_b64"] = "A" * 43 + "="  # a different 32-byte key under the same id
    path.write_text(json.dumps(ring))
    with pytest.raises(WrongKeyError, match="does not unwrap"):
        mesh.restore()


def test_a_different_keyring_does_not_know_the_key(make_mesh: Callable[..., CheckpointMesh]) -> None:
    make_mesh().save(DATA, step=1)
    other = make_mesh(keyring={"path": "other/keyring.json"})
    with pytest.raises(KeyringError, match="not in keyring"):
        other.restore()


def test_rotation_keeps_old_checkpoints_restorable(mesh: CheckpointMesh) -> None:
    old = mesh.save(DATA, step=1)
    new_id = mesh.rotate_keys().key_id
    newer = mesh.save(DATA[::-1], step=2)
    assert newer.kek_id == new_id != old.kek_id
    assert mesh.restore(step=1).tobytes() == DATA
    assert mesh.restore(step=2).tobytes() == DATA[::-1]


def test_rotation_happens_automatically_after_the_interval(make_mesh: Callable[..., CheckpointMesh]) -> None:
    mesh = make_mesh(keyring={"path": "keys/keyring.json", "rotation_interval_s": 1e-9})
    first = mesh.save(DATA, step=1)
    second = mesh.save(DATA, step=2)
    assert first.kek_id != second.kek_id
    assert any(e.kind == "key_rotated" for e in second.audit_events)
    assert mesh.restore(step=1).tobytes() == DATA


def test_rewrap_then_shred_old_key_keeps_checkpoints(mesh: CheckpointMesh) -> None:
    old = mesh.save(DATA, step=1)
    report = mesh.rotate_keys(rewrap=True)
    new_id = report.key_id
    assert report.rewrapped == (old.checkpoint_id,) and report.complete
    mesh.shred_key(old.kek_id)
    assert mesh.restore(step=1).tobytes() == DATA
    assert mesh.list()[0].kek_id == new_id


def test_shredding_a_key_makes_its_checkpoints_unrecoverable(mesh: CheckpointMesh) -> None:
    doomed = mesh.save(DATA, step=1)
    mesh.rotate_keys()
    kept = mesh.save(DATA[::-1], step=2)
    affected = mesh.shred_key(doomed.kek_id).unrecoverable
    assert affected == (doomed.checkpoint_id,)
    with pytest.raises(KeyDestroyedError, match="crypto-shredded"):
        mesh.restore(step=1)
    assert mesh.restore().manifest.checkpoint_id == kept.checkpoint_id
    assert "material" not in json.dumps(
        [
            k
            for k in json.loads(mesh.config.keyring_path.read_text())["keys"]
            if k["id"] == doomed.kek_id and k["material_b64"]
        ]
    )
    kinds = [e["kind"] for e in mesh.audit.read()]
    assert "key_destroyed" in kinds


def test_latest_restore_skips_a_shredded_checkpoint(mesh: CheckpointMesh) -> None:
    mesh.save(DATA, step=1)
    mesh.rotate_keys()
    newest = mesh.save(DATA[::-1], step=2)
    mesh.shred_key(newest.kek_id)
    restored = mesh.restore()
    assert restored.tobytes() == DATA and restored.manifest.step == 1
    assert restored.skipped and "crypto-shredded" in restored.skipped[0]


def test_keyring_file_is_private_and_loose_permissions_are_refused(mesh: CheckpointMesh) -> None:
    mesh.save(DATA, step=1)
    path = mesh.config.keyring_path
    assert (path.stat().st_mode & 0o777) == 0o600
    path.chmod(0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        mesh.restore()


def test_keyring_lists_keys_without_material(tmp_path: os.PathLike[str]) -> None:
    ring = LocalKeyring(os.path.join(tmp_path, "k.json"))
    first, _ = ring.current_key_id()
    second = ring.rotate()
    infos = ring.keys()
    assert [k.key_id for k in infos] == [first, second]
    assert [k.current for k in infos] == [False, True]
