"""The run summary: the headline numbers of a twin run, as a flat JSON-able dict.

Definitions (all over the simulated window):
- ``interruptions``: unexpected job interruptions (a failed component under a running job, or a factory
  outage); ``planned_interruptions``: planned stops (maintenance), which checkpoint first and lose no work.
- ``ettr``: effective training time ratio, GPU-hour weighted over training jobs that started:
  sum(productive time x GPUs) / sum(wall time since first start x GPUs). Productive time is work retained
  (work lost to interruptions is not productive).
- ``gpu_utilization``: GPU-seconds allocated to jobs / GPU-seconds in the fleet.
- ``energy_mwh``: facility energy (IT energy x PUE); ``power_cost_usd``: energy x hourly market price;
  ``carbon_tco2``: energy x hourly grid intensity.
- ``gpu_hours_lost_to_failures``: GPUs x (work lost + detection + restart time) over interruptions.
- ``training_throughput``: productive GPU-hours; ``usd_per_productive_gpu_hour``: power cost / that.
- ``capital_cost_usd``, ``total_cost_usd``, ``total_usd_per_productive_gpu_hour`` / ``_pflop_hour``,
  ``cost_by_factory``, ``signal_sources`` ...: the run's total cost of ownership (:mod:`.tco`).
"""

from __future__ import annotations

from typing import Any

from superfactory.domain.events import EventKind
from superfactory.domain.units import DAY_S, HOUR_S
from superfactory.observe.tco import cost_summary
from superfactory.sim.jobstate import JobRuntime
from superfactory.sim.twin import TwinResult


def job_wall_s(jr: JobRuntime, end_s: int) -> int:
    """Wall time since the job first started (0 if it never started)."""
    if jr.first_start_s < 0:
        return 0
    return (jr.completed_s if jr.completed_s >= 0 else end_s) - jr.first_start_s


def job_ettr(jr: JobRuntime, end_s: int) -> float | None:
    wall = job_wall_s(jr, end_s)
    return jr.progress_s / wall if wall > 0 else None


def summarize(result: TwinResult) -> dict[str, Any]:
    """The summary dict of a run (keys documented in the module docstring and README)."""
    sc = result.scenario
    end = sc.duration_s
    productive_gpu_s = sum(j.progress_s * j.job.gpus for j in result.jobs)
    wall_gpu_s = sum(job_wall_s(j, end) * j.job.gpus for j in result.jobs)
    by_cause: dict[str, int] = {}
    for j in result.jobs:
        for cause, n in j.interruptions_by_cause.items():
            by_cause[cause] = by_cause.get(cause, 0) + n
    energy = sum(h.facility_energy_mwh for h in result.hours)
    cost = sum(h.cost_usd for h in result.hours)
    carbon = sum(h.carbon_t for h in result.hours)
    busy = sum(result.factory_busy_gpu_s.values())
    total = sum(result.factory_gpu_s.values())
    lost_gpu_s = sum((j.lost_work_s + j.recovery_s) * j.job.gpus for j in result.jobs)
    productive_gpu_h = productive_gpu_s / HOUR_S
    migrations = sum(1 for e in result.events if e.kind is EventKind.JOB_MIGRATED)
    wall = max(result.wall_seconds, 1e-9)
    # inference_* keys (slo_attainment, idle_share, ...) only when the scenario serves inference: see
    # sim/inference.py for their definitions
    inference = result.inference.summary() if result.inference is not None else {}
    return {
        "scenario": sc.name,
        "policy": result.policy,
        "seed": result.seed,
        "seeds": dict(sc.seeds),  # effective seed of every random component (scenario/seeds.py)
        "pinned_seeds": sorted(sc.pinned_seeds),
        "warnings": list(sc.warnings),
        "simulated_days": end / DAY_S,
        "factories": len(sc.factories),
        "gpus": sum(f.gpus for f in sc.factories),
        "jobs": len(result.jobs),
        "jobs_completed": sum(1 for j in result.jobs if j.completed_s >= 0),
        "interruptions": sum(j.interruptions for j in result.jobs),
        "planned_interruptions": sum(j.planned_stops for j in result.jobs),
        "interruptions_by_cause": dict(sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0]))),
        "node_failures": sum(1 for e in result.events if e.kind is EventKind.NODE_FAILED),
        "preemptions": sum(j.preemptions for j in result.jobs),
        "migrations": migrations,
        "ettr": productive_gpu_s / wall_gpu_s if wall_gpu_s else 0.0,
        "gpu_utilization": busy / total if total else 0.0,
        "energy_mwh": energy,
        "power_cost_usd": cost,
        "carbon_tco2": carbon,
        "training_throughput": productive_gpu_h,
        "usd_per_productive_gpu_hour": cost / productive_gpu_h if productive_gpu_h else 0.0,
        "gpu_hours_lost_to_failures": lost_gpu_s / HOUR_S,
        "checkpoints": sum(j.checkpoints for j in result.jobs),
        "decisions": result.decisions,
        "events": len(result.events),
        "kernel_events": result.kernel_events,
        "wall_seconds": result.wall_seconds,
        "events_per_second": result.kernel_events / wall,
        "simulated_seconds_per_wall_second": end / wall,
        **inference,
        **cost_summary(result),  # capital, total $ per productive GPU-h / PFLOP-h by factory (observe/tco.py)
    }
