"""Helpers to write small scenario YAML documents in tests (importable as a plain module)."""

from __future__ import annotations

from typing import Any

import yaml


def factory(fid: str, market: str = "PJM", nodes: int = 16, system: str = "dgx-h100",
            clearances: tuple[str, ...] = ("US",), **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": fid, "region": "r", "market": market, "clearances": list(clearances),
        "power_cap": "50MW", "cooling_capacity": "50MW", "pue": 1.2,
        "systems": [{"system": system, "nodes": nodes}],
    }
    d.update(extra)
    return d


def job(jid: str, gpus: int = 64, work: str = "2d", accelerator: str = "H100-SXM", **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"id": jid, "accelerator": accelerator, "gpus": gpus, "work": work}
    d.update(extra)
    return d


def scenario(factories: list[dict[str, Any]], jobs: list[dict[str, Any]], duration: str = "5d",
             **extra: Any) -> str:
    d: dict[str, Any] = {"name": "t", "duration": duration, "seed": 1, "factories": factories, "jobs": jobs}
    d.update(extra)
    return yaml.safe_dump(d, sort_keys=False)


def first_placed(events: Any) -> dict[str, int]:
    """Each job's first placement time (s) in a run's event log (``JOB_PLACED`` events)."""
    from superfactory.domain.events import EventKind

    first: dict[str, int] = {}
    for e in events:
        if e.kind is EventKind.JOB_PLACED:
            first.setdefault(e.job, e.time_s)
    return first
