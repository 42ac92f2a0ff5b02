"""Fixtures for the mesh tests: six directory targets over three EU regions (plus optional extras)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from superfactory.mesh import CheckpointMesh, config_from_dict

REGIONS = ("eu-west", "eu-central", "eu-north")


def mesh_dict(**overrides: Any) -> dict[str, Any]:
    """A config mapping: tier ``nvme`` with six EU targets t0..t5 spread over three regions."""
    raw: dict[str, Any] = {
        "name": "test",
        "chunk_bytes": 1024,
        "fsync": False,  # tests assert outcomes, not durability timing; the fsync path is covered separately
        "keyring": {"path": "keys/keyring.json"},
        "audit_log": "audit.jsonl",
        "tiers": [{"name": "nvme", "kind": "local_nvme"}],
        "targets": [
            {
                "name": f"t{i}",
                "url": f"sites/t{i}",
                "region": REGIONS[i % 3],
                "jurisdiction": "EU",
                "tier": "nvme",
            }
            for i in range(6)
        ],
        "sovereignty": {"EU_PERSONAL": ["EU"]},
    }
    raw.update(overrides)
    return raw


@pytest.fixture
def make_mesh(tmp_path: Path) -> Callable[..., CheckpointMesh]:
    """Build a mesh rooted in ``tmp_path``; keyword arguments override config keys."""

    def build(**overrides: Any) -> CheckpointMesh:
        return CheckpointMesh(config_from_dict(mesh_dict(**overrides), tmp_path))

    return build


@pytest.fixture
def mesh(make_mesh: Callable[..., CheckpointMesh]) -> CheckpointMesh:
    """The default six-target critical mesh."""
    return make_mesh()


def frag_path(mesh: CheckpointMesh, checkpoint_id: str, index: int) -> Path:
    """Path of fragment ``index`` (on whichever target holds it in the first tier)."""
    from superfactory.mesh.catalog import fragment_name

    manifest, _, _ = mesh.catalog.load(checkpoint_id, mesh.keys)
    target = manifest.fragments[index].locations[0]
    root = Path(mesh.config.target(target).url)
    return root / mesh.catalog.path(checkpoint_id, fragment_name(index))
