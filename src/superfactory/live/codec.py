"""Domain values <-> JSON documents for the store (factories, links, compiled jobs).

Encoding walks the dataclass fields, so a field added to a domain type is stored without touching this module;
round trips are exact (``decode_factory(encode_factory(f)) == f``; floats survive JSON unchanged), which is what
lets the live scheduler hand policies the very same :class:`~superfactory.domain.factory.Factory` values the
twin does (a test compares whole snapshots). Systems are stored by catalog name and looked up again; frozensets
are stored as sorted lists; nested spec dataclasses as objects.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from superfactory.domain.accelerator import SYSTEMS
from superfactory.domain.factory import Cluster, Factory, WanLink
from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob

_JOB_OWN_COLUMNS = ("id", "submit_s", "priority")  # kept in their own store columns


def _plain(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.init and f.name not in skip}


def _flat(obj: Any) -> dict[str, Any]:
    """Every field of a dataclass whose fields are plain values (what ``asdict`` gives, without its copying)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def encode_factory(f: Factory) -> dict[str, Any]:
    d = _plain(f)
    d["clearances"] = sorted(f.clearances)
    d["clusters"] = [{**_plain(c), "system": c.system.name} for c in f.clusters]
    return d


def decode_factory(d: dict[str, Any]) -> Factory:
    kw = dict(d)
    kw["clusters"] = tuple(Cluster(**{**c, "system": SYSTEMS[c["system"]]}) for c in d["clusters"])
    kw["clearances"] = frozenset(d["clearances"])
    return Factory(**kw)


def encode_link(lk: WanLink) -> dict[str, Any]:
    return _plain(lk)


def encode_job(j: TrainingJob) -> dict[str, Any]:
    """The compiled job minus its id, submit time and priority (those live in their own columns)."""
    d = _plain(j, _JOB_OWN_COLUMNS)
    d["checkpoint"] = _flat(j.checkpoint)  # flat dataclasses of numbers: asdict's deep copy costs 4x more
    d["recovery"] = _flat(j.recovery)
    d["sovereignty"] = sorted(j.sovereignty)
    return d


def decode_job(job_id: str, d: dict[str, Any], submit_s: int, priority: int) -> TrainingJob:
    kw = dict(d)
    kw["checkpoint"] = CheckpointSpec(**d["checkpoint"])
    kw["recovery"] = RecoverySpec(**d["recovery"])
    kw["sovereignty"] = frozenset(d["sovereignty"])
    return TrainingJob(id=job_id, submit_s=submit_s, priority=priority, **kw)
