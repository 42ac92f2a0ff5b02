"""The mesh config an agent hands to a job: the job's own namespace on the fleet's checkpoint targets.

A job's checkpoints live under ``job-<id>`` on every target, so a job restored at another site finds them by
name. Targets come from the agent's config (its own site's and other sites' storage); the sovereignty classes
of the job are checked against each target's jurisdiction by the mesh at save time (refused and audited, as
in the twin), and :func:`lawful_targets` drops uncleared targets up front so a lawful spread is still met.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["StorageTarget", "job_mesh_dict", "lawful_targets", "write_job_mesh_config"]


@dataclass(frozen=True, slots=True)
class StorageTarget:
    """One checkpoint target a site offers: a directory (or fsspec URL) in a region and jurisdiction."""

    name: str
    url: str
    region: str
    jurisdiction: str
    site: str = ""


def lawful_targets(targets: list[StorageTarget], sovereignty: dict[str, list[str]],
                   classes: tuple[str, ...]) -> list[StorageTarget]:
    """Targets whose jurisdiction is cleared for every class in ``classes`` (an unknown class clears none)."""
    out = []
    for t in targets:
        if all(t.jurisdiction in sovereignty.get(c, ()) for c in classes):
            out.append(t)
    return out


def job_mesh_dict(job_id: str, targets: list[StorageTarget], keyring_path: Path, *,
                  sovereignty: dict[str, list[str]] | None = None, fsync: bool = True,
                  data_classes: dict[str, Any] | None = None, audit_log: Path | None = None) -> dict[str, Any]:
    """The mesh config mapping of one job (one ``nvme`` tier over ``targets``; critical = RS 4+2 by default).

    With fewer than six targets or three regions the ``critical`` class is sized down to what the targets
    allow (k=2, m=1 over three targets at least), so a small local fleet still commits with redundancy.
    """
    regions = {t.region for t in targets}
    classes = dict(data_classes or {})
    if "critical" not in classes and (len(targets) < 6 or len(regions) < 3):
        n = len(targets)
        if n >= 3:
            classes["critical"] = {"scheme": "rs", "k": 2, "m": 1, "quorum": 2, "timeout_s": 30,
                                   "min_targets": 3, "min_regions": min(3, len(regions))}
        else:
            classes["critical"] = {"scheme": "none", "k": 1, "m": 0, "quorum": 1, "min_targets": 1,
                                   "min_regions": 1}
    return {
        "name": f"job-{job_id}",
        "chunk_bytes": 65536,
        "fsync": fsync,
        "audit_log": str(audit_log) if audit_log is not None else None,
        "keyring": {"path": str(keyring_path)},
        "tiers": [{"name": "nvme", "kind": "local_nvme"}],
        "targets": [{"name": t.name, "url": t.url, "region": t.region, "jurisdiction": t.jurisdiction,
                     "tier": "nvme"} for t in targets],
        "sovereignty": dict(sovereignty or {}),
        "data_classes": classes,
    }


def write_job_mesh_config(path: Path, mapping: dict[str, Any]) -> Path:
    """Write the config YAML (atomically) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(mapping, sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return path
