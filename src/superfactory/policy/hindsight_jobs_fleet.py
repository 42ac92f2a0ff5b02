"""Bound v4's inputs for a fleet of the twin: the jobs' caps and gangs, the double-hold hours and the budgets.

:mod:`superfactory.policy.hindsight_jobs` states and proves the model; this module reads its figures from the
fleet, the jobs and a run's schedule-independent events (failures, repairs, outages), with the same per-job terms
as bound v3 (:func:`superfactory.policy.hindsight_holds.hold_caps`).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from superfactory.domain.events import Event, EventKind
from superfactory.domain.factory import Factory, WanLink
from superfactory.domain.job import TrainingJob
from superfactory.policy.hindsight import HindsightInstance
from superfactory.policy.hindsight_fleet import HOUR_S, fleet_pools, held_gpus, lawful_pools
from superfactory.policy.hindsight_holds import failure_budget, hold_caps, schedule_moves, worst_transfer_s
from superfactory.policy.hindsight_jobs import EventBudget, repair_units

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class JobLevelInputs:
    """``inst`` (v3's instance: caps and per-event GPU-hours), ``gangs`` and ``hold_h`` per job of it."""

    inst: HindsightInstance
    gangs: tuple[float, ...]
    hold_h: tuple[float, ...]


def double_hold_s(job: TrainingJob, links: Iterable[WanLink]) -> float:
    """Seconds one ``Migrate`` can hold the destination gang while the source is still held or until the
    reservation is freed: drain (blocking + write), the slowest transfer, and the detection of a source failure
    before arrival (``sim/migration.py``, ``sim/fleet.py:_requeue``)."""
    ck = job.checkpoint
    return float(ck.blocking_s + ck.async_write_s + worst_transfer_s(links, ck.size_bytes) + job.recovery.detect_s)


def job_level_inputs(factories: Sequence[Factory], jobs: Iterable[TrainingJob], horizon_s: int,
                     usd_per_gpu_h: FloatArray, capacity_gpus: FloatArray, links: Iterable[WanLink]
                     ) -> JobLevelInputs:
    """v3's instance (:func:`hold_caps`, the same jobs in the same order), each job's gang (the most GPUs it
    holds in a lawful pool) and its double-hold hours per migration."""
    jobs = list(jobs)
    links = list(links)
    inst = hold_caps(factories, jobs, horizon_s, usd_per_gpu_h, capacity_gpus, links)
    pools = fleet_pools(factories)
    kept = [j for j in jobs if lawful_pools(j, pools, factories) and j.submit_s < horizon_s]
    gangs = tuple(float(max(held_gpus(j, pools[p]) for p in lawful_pools(j, pools, factories))) for j in kept)
    hold_h = tuple(double_hold_s(j, links) / HOUR_S for j in kept)
    if len(kept) != len(inst.jobs):  # pragma: no cover - hold_caps keeps the same jobs
        raise ValueError("job lists disagree")
    return JobLevelInputs(inst, gangs, hold_h)


def event_budget(events: Sequence[Event], runs_moves: Iterable[Sequence[Event]], factories: Sequence[Factory],
                 jobs: Iterable[TrainingJob]) -> EventBudget:
    """The budgets of row 6: failures (``failure_budget``: one per ``NodeFailed``, per outage the site's GPUs over
    the smallest gang) and repair units (:func:`repair_units`) from ``events`` (schedule-independent), drains and
    migrations the largest counts among the runs' event lists ``runs_moves``."""
    jobs = list(jobs)
    pools = fleet_pools(factories)
    small = [min((held_gpus(j, pl) for j in jobs if p in lawful_pools(j, pools, factories)), default=pl.gpus)
             for p, pl in enumerate(pools)]
    fx = {f.id: i for i, f in enumerate(factories)}
    pool_of_node: dict[tuple[int, int], tuple[int, int]] = {}
    for i, f in enumerate(factories):
        for c in f.clusters:
            p = next(k for k, pl in enumerate(pools) if pl.factory == i and pl.accelerator == c.accelerator)
            for n in range(c.node_offset, c.node_end):
                pool_of_node[(i, n)] = (p, c.system.gpus_per_node)
    repairs = [pool_of_node[(fx[e.factory], e.node)] for e in events
               if e.kind is EventKind.NODE_REPAIRED and (fx.get(e.factory, -1), e.node) in pool_of_node]
    site = {f.id: sum(f.gpus_of(a) for a in f.accelerators) for f in factories}
    restores = [site[e.factory] for e in events if e.kind is EventKind.FACTORY_RESTORED and e.factory in site]
    moves = [schedule_moves(ev) for ev in runs_moves]
    return EventBudget(float(failure_budget(events, factories, jobs)), float(max((d for d, _ in moves), default=0)),
                       float(max((m for _, m in moves), default=0)), repair_units(repairs, restores, small))
