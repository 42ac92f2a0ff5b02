"""The mesh's fencing-token check: a superseded process cannot commit over its successor's checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from superfactory.mesh import CheckpointMesh, CheckpointNotFoundError, StaleFencingTokenError, config_from_dict


def _mesh(tmp_path: Path) -> CheckpointMesh:
    raw = {
        "name": "job-a",
        "chunk_bytes": 1024,
        "fsync": False,
        "keyring": {"path": "keys/keyring.json"},
        "audit_log": "audit.jsonl",
        "tiers": [{"name": "nvme", "kind": "local_nvme"}],
        "targets": [{"name": f"t{i}", "url": f"sites/t{i}", "region": f"r{i % 3}", "jurisdiction": "US",
                     "tier": "nvme"} for i in range(6)],
    }
    return CheckpointMesh(config_from_dict(raw, tmp_path))


def test_save_with_stale_token_is_refused_before_writing(tmp_path: Path) -> None:
    mesh = _mesh(tmp_path)
    assert mesh.fence() is None
    mesh.save(b"old owner", 10, fencing_token=1)
    assert mesh.raise_fence(2) == 6
    with pytest.raises(StaleFencingTokenError, match="fencing token 1 is older than the mesh's fence 2"):
        mesh.save(b"zombie", 20, fencing_token=1)
    assert [c.step for c in mesh.list(include_incomplete=True)] == [10]  # nothing of the zombie's on disk
    assert bytes(mesh.restore().data) == b"old owner"
    mesh.save(b"successor", 20, fencing_token=2)
    restored = mesh.restore()
    assert bytes(restored.data) == b"successor" and restored.manifest.metadata["fencing_token"] == 2
    with pytest.raises(StaleFencingTokenError):
        mesh.raise_fence(1)  # a stale process cannot lower the fence either
    assert mesh.fence() == 2
    events = [line for line in (tmp_path / "audit.jsonl").read_text().splitlines() if "save_fenced" in line]
    assert len(events) == 1


def test_fence_raised_during_a_save_refuses_its_commit(tmp_path: Path) -> None:
    """The zombie passed the first check, then its successor raised the fence while it was still writing."""
    zombie, successor = _mesh(tmp_path), _mesh(tmp_path)
    zombie.raise_fence(1)
    raised = []

    def successor_takes_over(_bytes: int) -> None:
        if not raised:
            raised.append(successor.raise_fence(2))

    with pytest.raises(StaleFencingTokenError, match="at commit"):
        zombie.save(b"x" * 50_000, 30, fencing_token=1, progress=successor_takes_over)
    assert raised == [6]
    with pytest.raises(CheckpointNotFoundError):
        successor.restore()
    assert successor.list(include_incomplete=True) == []  # the refused save cleaned up after itself
