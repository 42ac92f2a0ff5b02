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
- ``ettr`` split in two (:mod:`.fold`): ``failure_ettr`` = productive time / time holding nodes (what failures,
  checkpoints and restarts leave), ``policy_wait_share`` = share of a started job's wall time spent *not*
  holding nodes (paused, or waiting to be placed again), both GPU-weighted, and ``*_job_mean`` unweighted over
  started jobs; per job: :func:`job_ettr_split`. ``ettr`` ~= ``failure_ettr`` x (1 - ``policy_wait_share``).
- ``shadow`` (only with shadow policies): per shadow policy its decisions, actions by kind, the actions the
  acting policy also took (``agreed``) and ``agreement`` = agreed / actions (``--shadow`` in the CLI).
- Every metric above is a fold over the run's domain events (:func:`superfactory.observe.fold.fold_metrics`), so a
  summary recomputed from a reloaded ``events.parquet`` (:func:`summary_from_events`) equals this one.
- ``capital_cost_usd``, ``total_cost_usd``, ``total_usd_per_productive_gpu_hour`` / ``_pflop_hour``,
  ``cost_by_factory``, ``signal_sources`` ...: the run's total cost of ownership (:mod:`.tco`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from superfactory.domain.events import Event, EventKind
from superfactory.domain.units import DAY_S
from superfactory.observe.fold import fold_metrics
from superfactory.observe.record import JobRecord, RunRecord
from superfactory.observe.tco import cost_summary
from superfactory.scenario.model import Scenario


def job_wall_s(jr: JobRecord, end_s: int) -> int:
    """Wall time since the job first started (0 if it never started)."""
    if jr.first_start_s < 0:
        return 0
    return (jr.completed_s if jr.completed_s >= 0 else end_s) - jr.first_start_s


def job_ettr(jr: JobRecord, end_s: int) -> float | None:
    wall = job_wall_s(jr, end_s)
    return jr.progress_s / wall if wall > 0 else None


@dataclass(frozen=True, slots=True)
class JobEttr:
    """One started job's ETTR and its split: ``failure_ettr`` = productive / holding nodes, ``policy_wait_share``
    = 1 - holding / wall since first start (the same rules as :func:`~superfactory.observe.fold.fold_metrics`)."""

    job: str
    gpus: int
    ettr: float
    failure_ettr: float
    policy_wait_share: float


_RELEASES = (EventKind.JOB_PREEMPTED, EventKind.JOB_INTERRUPTED, EventKind.JOB_PLANNED_STOP, EventKind.JOB_COMPLETED)


def job_ettr_split(result: RunRecord) -> list[JobEttr]:
    """Per started job (in job order): ETTR, failure-ETTR and policy-wait share, from the run's events."""
    end = result.scenario.duration_s
    since: dict[str, int] = {}
    held: dict[str, float] = {}
    for e in result.events:
        if e.kind is EventKind.JOB_PLACED:
            since.setdefault(e.job, e.time_s)
        elif e.kind in _RELEASES and e.job in since:
            held[e.job] = held.get(e.job, 0.0) + e.time_s - since.pop(e.job)
    for j, t in since.items():
        held[j] = held.get(j, 0.0) + max(0, end - t)
    out = []
    for jr in result.jobs:
        wall = job_wall_s(jr, end)
        if wall <= 0:
            continue
        h = held.get(jr.job.id, 0.0)
        out.append(JobEttr(jr.job.id, jr.job.gpus, jr.progress_s / wall, jr.progress_s / h if h > 0 else 0.0,
                           1.0 - h / wall))
    return out


def summarize(result: RunRecord) -> dict[str, Any]:
    """The summary dict of a run (keys documented in the module docstring and README)."""
    sc = result.scenario
    end = sc.duration_s
    folded = fold_metrics(result.events, sc.jobs, end)  # every metric from the events (observe/fold.py)
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
        **folded,
        "decisions": result.decisions,
        "events": len(result.events),
        "kernel_events": result.kernel_events,
        "wall_seconds": result.wall_seconds,
        "events_per_second": result.kernel_events / wall,
        "simulated_seconds_per_wall_second": end / wall,
        **inference,
        **({"shadow": shadow_summary(result)} if result.shadow else {}),
        **cost_summary(result),  # capital, total $ per productive GPU-h / PFLOP-h by factory (observe/tco.py)
    }


def shadow_summary(result: RunRecord) -> dict[str, dict[str, Any]]:
    """Per shadow policy: decisions, actions (by kind), how many the acting policy also took, agreement."""
    return {name: {"role": st.role, "decisions": st.decisions, "actions": st.actions, "agreed": st.agreed,
                   "acting_actions": st.acting_actions, "agreement": st.agreement, "by_kind": dict(st.by_kind),
                   "waiting_sum": st.waiting}
            for name, st in result.shadow.items()}


def summary_from_events(events: Sequence[Event], scenario: Scenario) -> dict[str, Any]:
    """The event-derived part of a run's summary (:data:`~superfactory.observe.fold.FOLDED_KEYS`), e.g. from a
    reloaded ``events.parquet`` (:func:`superfactory.observe.tables.read_events`) and the run's scenario."""
    return fold_metrics(events, scenario.jobs, scenario.duration_s)
