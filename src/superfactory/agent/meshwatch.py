"""What an agent sees of its jobs' checkpoint replication, read from the checkpoint targets themselves.

The mesh writes a save as files under ``<target>/job-<id>/<checkpoint id>/`` on every target it places
fragments on (``mesh/``): first an ``INTENT`` (``{"checkpoint_id", "step", "at_unix_s"}``), then each fragment as
``frag-NNNN.bin.tmp-<random>`` renamed to ``frag-NNNN.bin`` once durable, and the ``MANIFEST`` (the commit
marker) as soon as the replica quorum is met. So, without any hook in the job process:

- :func:`mesh_status` — now: the fragment uploads in flight (temporary fragment files) towards each site's
  storage (the **sync queue** per destination site), the age of the oldest save that has an ``INTENT`` but no
  ``MANIFEST`` on any target (the **quorum wait**; saves begun before the job's current incarnation started are
  ignored: their process is gone), and the sites none of whose storage can be reached (**unreachable**).
- :func:`checkpoint_facts` — of one committed checkpoint: its save duration (as the job measured it), the time
  from its ``INTENT`` to its first ``MANIFEST`` (**quorum_s**), and the durable fragment bytes on each site's
  storage (**replicated_bytes**, what crossed the link to that site).

Only targets that are local paths (or ``file://`` URLs) are read; object-store targets are skipped (their
in-flight multipart uploads are not visible as files). Every filesystem error is treated as "not there".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from superfactory.agent.meshconf import StorageTarget

__all__ = ["checkpoint_facts", "local_root", "mesh_status"]

INTENT = "INTENT"
MANIFEST = "MANIFEST"


def local_root(url: str) -> Path | None:
    """The directory of a target URL, or None for a remote (object store) URL."""
    if url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    return None if "://" in url else Path(url)


def _ckpt_dirs(root: Path, job_id: str, since_unix_s: float) -> list[os.DirEntry[str]]:
    """Checkpoint directories of ``job_id`` under ``root`` changed since ``since_unix_s``."""
    try:
        with os.scandir(root / f"job-{job_id}") as it:
            return [d for d in it if d.is_dir() and d.stat().st_mtime >= since_unix_s - 1.0]
    except OSError:
        return []


def _intent_at(path: Path) -> float | None:
    try:
        return float(json.loads(path.read_bytes())["at_unix_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mesh_status(targets: Iterable[StorageTarget], jobs: Mapping[str, float], now_unix_s: float) -> dict[str, Any]:
    """``{"sync_queue": {site: uploads in flight}, "quorum_wait_s": s, "unreachable": [site]}`` for the jobs
    ``jobs`` (job id -> unix time its current incarnation started). Every site with a readable target appears in
    ``sync_queue`` (0 when nothing is in flight)."""
    queue: dict[str, int] = {}
    reachable: dict[str, bool] = {}
    waiting: dict[tuple[str, str], float] = {}  # (job, checkpoint id) -> INTENT time, while no MANIFEST is seen
    committed: set[tuple[str, str]] = set()
    for tg in targets:
        root = local_root(tg.url)
        if root is None:
            continue
        site = tg.site or tg.name
        ok = root.is_dir()
        reachable[site] = reachable.get(site, False) or ok
        if not ok:
            continue
        queue.setdefault(site, 0)
        for job_id, since in jobs.items():
            for d in _ckpt_dirs(root, job_id, since):
                key = (job_id, d.name)
                try:
                    names = os.listdir(d.path)
                except OSError:
                    continue
                queue[site] += sum(1 for n in names if n.startswith("frag-") and ".tmp-" in n)
                if MANIFEST in names:
                    committed.add(key)
                elif INTENT in names and key not in waiting:
                    at = _intent_at(Path(d.path) / INTENT)
                    if at is not None and at >= since:
                        waiting[key] = at
    ages = [now_unix_s - at for key, at in waiting.items() if key not in committed]
    return {"sync_queue": queue, "quorum_wait_s": max([0.0, *ages]),
            "unreachable": sorted(s for s, ok in reachable.items() if not ok)}


def checkpoint_facts(targets: Iterable[StorageTarget], job_id: str, checkpoint_id: str,
                     save_s: float | None) -> dict[str, Any]:
    """``{"duration_s", "quorum_s", "replicated_bytes": {site: bytes}}`` of a committed checkpoint (a field
    that cannot be read is None, or absent from ``replicated_bytes``)."""
    per_site: dict[str, float] = {}
    intent: float | None = None
    manifest: float | None = None
    for tg in targets:
        root = local_root(tg.url)
        if root is None:
            continue
        folder = root / f"job-{job_id}" / checkpoint_id
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        site = tg.site or tg.name
        for e in entries:
            try:
                if e.name.startswith("frag-") and e.name.endswith(".bin"):
                    per_site[site] = per_site.get(site, 0.0) + e.stat().st_size
                elif e.name == MANIFEST:
                    mtime = e.stat().st_mtime
                    manifest = mtime if manifest is None else min(manifest, mtime)
                elif e.name == INTENT and intent is None:
                    intent = _intent_at(Path(e.path))
            except OSError:
                continue
    quorum_s = max(0.0, manifest - intent) if manifest is not None and intent is not None else None
    return {"duration_s": None if save_s is None else max(0.0, float(save_s)), "quorum_s": quorum_s,
            "replicated_bytes": per_site}
