"""Queue waits of a run, from its events (pure): what the gang goals are judged on.

A job's *wait* is from its submission to its first placement (``JobPlaced``). A job submitted within the horizon
and never placed has waited at least ``end_s - submit_s``: its wait is *censored* there and counted at that
value (so a starving gang is never hidden by being left out). Jobs submitted after ``end_s`` are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from superfactory.domain.events import Event, EventKind
from superfactory.domain.job import TrainingJob


@dataclass(frozen=True, slots=True)
class Wait:
    """One job's wait to its first start; ``censored``: never started before the horizon."""

    job_id: str
    gpus: int
    priority: int
    wait_s: float
    censored: bool


def first_start_waits(events: Iterable[Event], jobs: Sequence[TrainingJob], end_s: int) -> list[Wait]:
    """:class:`Wait` of every job submitted before ``end_s`` (module docstring)."""
    first: dict[str, int] = {}
    for e in events:
        if e.kind is EventKind.JOB_PLACED and e.job not in first:
            first[e.job] = e.time_s
    out: list[Wait] = []
    for j in jobs:
        if j.submit_s >= end_s:
            continue
        t = first.get(j.id)
        censored = t is None
        out.append(Wait(j.id, j.gpus, j.priority, float((end_s if t is None else t) - j.submit_s), censored))
    return out


def mean_wait_s(waits: Sequence[Wait]) -> float:
    """Mean wait (censored waits counted at their lower bound); 0 for no jobs."""
    return sum(w.wait_s for w in waits) / len(waits) if waits else 0.0


def top_priority(waits: Sequence[Wait]) -> list[Wait]:
    """Waits of the highest-priority class present."""
    if not waits:
        return []
    p = max(w.priority for w in waits)
    return [w for w in waits if w.priority == p]


def largest_gangs(waits: Sequence[Wait]) -> list[Wait]:
    """Waits of the largest gang size present."""
    if not waits:
        return []
    g = max(w.gpus for w in waits)
    return [w for w in waits if w.gpus == g]
