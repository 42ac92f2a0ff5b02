"""Bound v3's rows for a fleet of the twin: knapsack rows per pool-hour and per-job busy-time caps.

Bound v2 (:mod:`superfactory.policy.hindsight_fleet`) caps each pool-hour by whole gangs of the *gcd* of the job
sizes and lets every job be busy with two gangs from its submit hour to the end. Its optimum fills the cheap
sites' holes (a few thousand GPUs) with 256-GPU pieces of 4,096/8,192-GPU gangs, and with phantom busy hours
of small jobs, hour after hour. v3 adds two row families, each a limit every schedule of the twin obeys.

**(a) Knapsack rows** (:func:`knap_rows`). For a pool of ``C`` GPUs and a job size ``S``, let ``W_S`` be the
node-rounded gang sizes of the jobs of at least ``S`` GPUs lawful there and ``knap(C, W_S)`` the largest sum of
multiples of sizes in ``W_S`` that is ``<= C`` (:func:`knap_gpus`). At any instant the nodes held by jobs of
``>= S`` GPUs are whole gangs of those jobs (a migrating job's second gang is one too), all inside the pool's
``C`` GPUs, so their held GPUs are such a sum, ``<= knap(C, W_S)``; their busy GPUs (held and live) are at most
that and at most the live GPUs ``C - D(t)``. So busy_S(t) <= min(knap(C, W_S), C - D(t)) at every instant, and
the hourly mean of busy_S (what the LP's ``x`` of those classes is) is at most the hourly mean of the min,
computed from the same down spells as ``usable_gpus_per_hour``. (``knap(C - D(t), W_S)`` would be wrong: a gang
holding a failed node is still held whole.) ``D(t)`` is the same in every schedule (hindsight_fleet's proof).

**(b) Busy-time caps** (:func:`hold_caps`). A job's busy GPU-seconds are at most its held gang's GPUs times the
seconds it holds nodes, plus the second gang during migrations. :func:`superfactory.policy.gang_hold.hold_cap`
derives from ``sim/fleet.py`` and ``sim/hotswap.py`` that a job with ``F`` failure interruptions and ``D``
drains or hot swaps holds nodes at most ``base + F per_failure + D per_drain`` seconds (work at the slowest
speed a placement can give, a restart per start, checkpoint stalls, detection and the work rolled back per
failure, the final checkpoint and a restart per drain), with no ``Migrate``, no modelled WAN and no outage.
A ``Migrate`` (``sim/migration.py``) reserves the destination gang at the decision, drains the source (the
final checkpoint, ``b + w``, nothing lost), transfers the checkpoint (``T`` seconds, ``models/wan.transfer_s``:
the direct link, a two-hop path or the 100 Gb/s default, so never slower than the narrowest link or the
default), releases the source on arrival and restarts (``restart_s``) on the destination; a destination that
lost a node requeues the job, which is that node's failure (charged as one). A source node failing before the
arrival interrupts the job; the reservation is freed only at its requeue, after detection (``_requeue``), so
the destination is held at most ``b + w + T + d``. So a migration adds at most ``2 (b + w + T) + d + r``
gang-seconds (source and reserved destination through drain and transfer, the reservation's detection, one
more start), stretched by the same checkpoint-stall factor: ``per_migration``. Within the window a job holds nodes
at most ``horizon - submit`` seconds, and ``min(a, b + x) <= min(a, b) + x``, so

    busy GPU-h of job j <= gang_j x [min(horizon - submit_j, base_j) + F_j per_failure_j + D_j per_drain_j
                                      + M_j per_migration_j] / 3600.

``F_j`` etc. are unknown per job, but every failure (``NodeFailed``) interrupts at most one job (a node is
held by one job at a time; a draw on a down node is discarded), and an outage at most every job on its site
(at most the site's GPUs over the smallest gang). The failure stream is the same in every schedule
(hindsight_fleet's proof), so ``sum_j F_j <= F`` for every schedule. Drains and migrations are a schedule's
own: the bound holds for every schedule with at most ``D`` drains (``Preempt``, planned stops, ``SwapNodes``;
planned stops come at a rate per running GPU-hour, so their count is the schedule's too)
and ``M`` migrations, the budgets the caller states (the benchmark: the larger of its two runs' counts). The
LP (``hindsight_bound(..., interruptions=(F, D, M))``) attributes the events to job classes as it likes, so the
worst attribution is covered. The class's work (its backlog supply) is the sum of its jobs' caps, plus the
events it is given, made available from its first arrival (a relaxation: an event adds work only after the
job's submission).

Assumptions, stated (as gang_hold's): no modelled WAN (a scenario ``wan:`` section: a WAN restore may roll back
further; real-2023 has none), exact gangs (the bench checks ``exact_gangs``), and a factory outage interrupts
its jobs with the per-failure terms (counted by :func:`failure_budget`; not checked against the twin, and
real-2023 has no outages).

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from superfactory.domain.events import Event, EventKind
from superfactory.domain.factory import Factory, WanLink
from superfactory.domain.job import TrainingJob
from superfactory.models.wan import DEFAULT_WAN_GBPS
from superfactory.policy.gang_hold import hold_cap
from superfactory.policy.hindsight import HindsightInstance, HindsightJob, KnapRow
from superfactory.policy.hindsight_fleet import (
    HOUR_S,
    Pool,
    capped_live_gpus_per_hour,
    fleet_pools,
    held_gpus,
    lawful_pools,
)

FloatArray = npt.NDArray[np.float64]


def knap_gpus(capacity: int, sizes: Iterable[int]) -> int:
    """The largest sum of non-negative multiples of ``sizes`` that is ``<= capacity`` (0 when none fits)."""
    units = sorted({int(u) for u in sizes if 0 < u <= capacity})
    if not units or capacity <= 0:
        return 0
    g = math.gcd(*units)
    cap = capacity // g
    reach = np.zeros(cap + 1, dtype=bool)
    reach[0] = True
    for u in (x // g for x in units):  # unbounded knapsack reachability on multiples of the gcd
        for start in range(u):
            idx = np.arange(start, cap + 1, u)
            reach[idx] = np.logical_or.accumulate(reach[idx])
    return int(g * np.flatnonzero(reach).max())


def knap_rows(factories: Sequence[Factory], jobs: Iterable[TrainingJob], spells: Sequence[Sequence[tuple[int, int,
              int]]], hours: int) -> list[KnapRow]:
    """Row family (a): for every pool and every job size ``S`` lawful there, (pool, S, hourly mean of
    min(knap(C, gangs of jobs >= S), C - D(t))). A row is kept only where it is tighter than what already
    implies it: the pool's usable capacity (v2's g x floor(C / g) for the smallest size) or the row of the next
    smaller size (which covers more classes; knap only falls as S grows)."""
    pools = fleet_pools(factories)
    sizes: list[dict[int, int]] = [{} for _ in pools]  # job GPUs -> held GPUs, per pool
    for j in jobs:
        for p in lawful_pools(j, pools, factories):
            sizes[p][j.gpus] = held_gpus(j, pools[p])
    out: list[KnapRow] = []
    for p, pl in enumerate(pools):
        held = list(sizes[p].values())
        prev = math.gcd(*held) * (pl.gpus // math.gcd(*held)) if held else pl.gpus  # v2's top (usable capacity)
        for s in sorted(sizes[p]):
            top = knap_gpus(pl.gpus, [h for g, h in sizes[p].items() if g >= s])
            if top < prev:
                out.append((p, s, capped_live_gpus_per_hour(pl.gpus, top, spells[pl.factory], hours)))
                prev = top
    return out


def worst_transfer_s(links: Iterable[WanLink], size_bytes: float) -> int:
    """Seconds the slowest route the twin can use takes for ``size_bytes`` (narrowest link or the default)."""
    gbps = min([lk.bandwidth_gbps for lk in links] + [DEFAULT_WAN_GBPS])
    return math.ceil(size_bytes * 8 / (gbps * 1e9))


def per_migration_s(job: TrainingJob, links: Iterable[WanLink]) -> float:
    """Gang-seconds of holding one ``Migrate`` can add to ``job`` (module docstring (b))."""
    ck, rec = job.checkpoint, job.recovery
    period = max(ck.interval_s, ck.blocking_s + 1)
    stretch = 1.0 / (1.0 - ck.blocking_s / period)
    return stretch * (2 * (ck.blocking_s + ck.async_write_s + worst_transfer_s(links, ck.size_bytes))
                      + rec.detect_s + rec.restart_s)


def failure_budget(events: Iterable[Event], factories: Sequence[Factory], jobs: Iterable[TrainingJob]) -> int:
    """Interruptions the failure stream can cause: one per ``NodeFailed``, and per ``FactoryLost`` at most the
    site's GPUs over the smallest gang (schedule-independent: the same in every run on the seed)."""
    smallest = min((j.gpus for j in jobs), default=1)
    gpus = {f.id: sum(f.gpus_of(a) for a in f.accelerators) for f in factories}
    n = 0
    for e in events:
        if e.kind is EventKind.NODE_FAILED:
            n += 1
        elif e.kind is EventKind.FACTORY_LOST:
            n += max(1, gpus.get(e.factory, 0) // max(1, smallest))
    return n


def schedule_moves(events: Iterable[Event]) -> tuple[int, int]:
    """(drains, migrations) of one run: ``JobPreempted`` + ``JobPlannedStop`` + ``JobHotSwapped``, and
    ``JobMigrated``."""
    drains = migrations = 0
    for e in events:
        if e.kind in (EventKind.JOB_PREEMPTED, EventKind.JOB_PLANNED_STOP, EventKind.JOB_HOT_SWAPPED):
            drains += 1
        elif e.kind is EventKind.JOB_MIGRATED:
            migrations += 1
    return drains, migrations


def hold_caps(factories: Sequence[Factory], jobs: Iterable[TrainingJob], horizon_s: int,
              usd_per_gpu_h: FloatArray, capacity_gpus: FloatArray, links: Iterable[WanLink]
              ) -> HindsightInstance:
    """The v3 instance: each job's work is its busy GPU-hour cap without interruptions, gang x
    min(horizon - submit, base) / 3600, and ``per_event_gpu_h`` what one failure, drain or migration adds
    (module docstring (b)). Pass it to ``hindsight_bound`` with ``interruptions=(F, D, M)``."""
    pools: list[Pool] = fleet_pools(factories)
    links = list(links)
    out = []
    for j in jobs:
        ok = lawful_pools(j, pools, factories)
        if not ok or j.submit_s >= horizon_s:
            continue
        gang = max(held_gpus(j, pools[p]) for p in ok)
        cap = hold_cap(j)
        base_s = min(float(horizon_s - j.submit_s), cap.base_s)
        per = (gang * cap.per_failure_s / HOUR_S, gang * cap.per_drain_s / HOUR_S,
               gang * per_migration_s(j, links) / HOUR_S)
        out.append(HindsightJob(j.gpus, gang * base_s / HOUR_S, j.submit_s // HOUR_S, ok, per))
    return HindsightInstance(capacity_gpus, usd_per_gpu_h, tuple(out))
