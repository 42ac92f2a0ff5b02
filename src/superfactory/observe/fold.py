"""Run metrics as a fold over domain events: the same code serves the twin, a reloaded record and the live plane.

:func:`fold_metrics` reads nothing but a sequence of :class:`~superfactory.domain.events.Event` (schema version
:data:`~superfactory.domain.events.EVENT_SCHEMA_VERSION`) plus the declared jobs (for their GPU counts) and the
end of the window. Definitions are those of :mod:`superfactory.observe.summary`; each comes from:

- productive time: a job's ``JobCompleted`` value, else its last ``JobProgress`` reading (0 if it never started);
- wall time since first start: from its first ``JobPlaced`` to its ``JobCompleted`` (or the window's end);
- time holding nodes: from each ``JobPlaced`` to the next ``JobPreempted``, ``JobInterrupted``,
  ``JobPlannedStop`` or ``JobCompleted`` (or the window's end); ``failure_ettr`` = productive / holding
  (what failures and restarts leave of the time a job holds nodes), ``policy_wait_share`` = the share of wall time
  since first start a job spent *not* holding nodes (paused, or waiting to be placed again), both GPU-weighted;
  ``*_job_mean`` are the unweighted means over started jobs;
- interruptions, planned stops, preemptions, migrations, node failures, checkpoints: counts of their events;
- work lost: ``JobInterrupted`` values; recovery time: ``Metered recovery_s`` of the job;
- energy, cost, carbon, GPU utilisation: ``Metered`` per factory-hour (``facility_mwh``, ``usd``, ``tco2``,
  ``busy_gpu_s`` / ``gpu_s``).

Events that are not facts about the fleet (``ShadowAction``, ``Action*`` outcomes) are ignored here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from superfactory.domain.events import Event, EventKind
from superfactory.domain.job import TrainingJob
from superfactory.domain.units import HOUR_S

#: the summary keys :func:`fold_metrics` computes
FOLDED_KEYS = (
    "jobs", "jobs_completed", "interruptions", "planned_interruptions", "interruptions_by_cause", "node_failures",
    "preemptions", "migrations", "ettr", "gpu_utilization", "energy_mwh", "power_cost_usd", "carbon_tco2",
    "training_throughput", "usd_per_productive_gpu_hour", "gpu_hours_lost_to_failures", "checkpoints",
    "failure_ettr", "policy_wait_share", "failure_ettr_job_mean", "policy_wait_share_job_mean",
)
_RELEASES = (EventKind.JOB_PREEMPTED, EventKind.JOB_INTERRUPTED, EventKind.JOB_PLANNED_STOP, EventKind.JOB_COMPLETED)


def fold_metrics(events: Iterable[Event], jobs: Iterable[TrainingJob], end_s: int) -> dict[str, Any]:
    """The summary metrics of a run (:data:`FOLDED_KEYS`) from its events alone."""
    gpus = {j.id: j.gpus for j in jobs}
    first: dict[str, int] = {}
    done: dict[str, int] = {}
    progress: dict[str, float] = {}
    lost: dict[str, float] = {}
    recovery: dict[str, float] = {}
    by_cause: dict[str, int] = {}
    metered: dict[str, float] = {}
    held_since: dict[str, int] = {}  # jobs holding nodes now: since when
    held: dict[str, float] = {}  # seconds holding nodes, closed spells
    count = dict.fromkeys((EventKind.JOB_PLANNED_STOP, EventKind.JOB_PREEMPTED, EventKind.JOB_MIGRATED,
                           EventKind.NODE_FAILED, EventKind.CHECKPOINT_COMMITTED), 0)
    for e in events:
        k = e.kind
        if k in _RELEASES and e.job in held_since:
            held[e.job] = held.get(e.job, 0.0) + e.time_s - held_since.pop(e.job)
        if k is EventKind.METERED:
            if e.job:
                recovery[e.job] = recovery.get(e.job, 0.0) + e.value
            else:
                metered[e.cause] = metered.get(e.cause, 0.0) + e.value
        elif k is EventKind.JOB_PLACED:
            first.setdefault(e.job, e.time_s)
            held_since.setdefault(e.job, e.time_s)
        elif k is EventKind.JOB_COMPLETED:
            done[e.job] = e.time_s
            progress[e.job] = e.value
        elif k is EventKind.JOB_PROGRESS:
            progress[e.job] = e.value
        elif k is EventKind.JOB_INTERRUPTED:
            lost[e.job] = lost.get(e.job, 0.0) + e.value
            by_cause[e.cause] = by_cause.get(e.cause, 0) + 1
        elif k in count:
            count[k] += 1
    productive_gpu_s = sum(p * gpus[j] for j, p in progress.items())
    wall_gpu_s = sum((done.get(j, end_s) - t) * gpus[j] for j, t in first.items())
    lost_gpu_s = sum(v * gpus[j] for j, v in lost.items()) + sum(v * gpus[j] for j, v in recovery.items())
    for j, t in held_since.items():
        held[j] = held.get(j, 0.0) + max(0, end_s - t)
    wall = {j: done.get(j, end_s) - t for j, t in first.items()}
    holding_gpu_s = sum(held.get(j, 0.0) * gpus[j] for j in first)
    share = {j: 1.0 - held.get(j, 0.0) / w for j, w in wall.items() if w > 0}
    fettr = {j: progress.get(j, 0.0) / held[j] for j in first if held.get(j, 0.0) > 0}
    productive_gpu_h = productive_gpu_s / HOUR_S
    cost = metered.get("usd", 0.0)
    capacity = metered.get("gpu_s", 0.0)
    return {
        "jobs": len(gpus),
        "jobs_completed": len(done),
        "interruptions": sum(by_cause.values()),
        "planned_interruptions": count[EventKind.JOB_PLANNED_STOP],
        "interruptions_by_cause": dict(sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0]))),
        "node_failures": count[EventKind.NODE_FAILED],
        "preemptions": count[EventKind.JOB_PREEMPTED],
        "migrations": count[EventKind.JOB_MIGRATED],
        "ettr": productive_gpu_s / wall_gpu_s if wall_gpu_s else 0.0,
        "gpu_utilization": metered.get("busy_gpu_s", 0.0) / capacity if capacity else 0.0,
        "energy_mwh": metered.get("facility_mwh", 0.0),
        "power_cost_usd": cost,
        "carbon_tco2": metered.get("tco2", 0.0),
        "training_throughput": productive_gpu_h,
        "usd_per_productive_gpu_hour": cost / productive_gpu_h if productive_gpu_h else 0.0,
        "gpu_hours_lost_to_failures": lost_gpu_s / HOUR_S,
        "checkpoints": count[EventKind.CHECKPOINT_COMMITTED],
        "failure_ettr": productive_gpu_s / holding_gpu_s if holding_gpu_s else 0.0,
        "policy_wait_share": 1.0 - holding_gpu_s / wall_gpu_s if wall_gpu_s else 0.0,
        "failure_ettr_job_mean": sum(fettr.values()) / len(fettr) if fettr else 0.0,
        "policy_wait_share_job_mean": sum(share.values()) / len(share) if share else 0.0,
    }
