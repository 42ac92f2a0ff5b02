"""A fleet's hindsight instance: pools, lawful jobs and the GPUs a pool can have busy in each hour.

:mod:`superfactory.policy.hindsight` bounds the cost of any schedule over pools with a GPU capacity per hour.
With the *nameplate* capacity the bound may fill a pool to its last GPU, which no schedule of the twin can do.
:func:`usable_gpus_per_hour` gives the tighter capacity every schedule of the twin obeys on the same fleet (same
scenario, same seed), and :func:`fleet_instance` builds the instance the benchmark and the tests share.

Why the usable capacity is a valid capacity (proof sketch). At any instant the twin's busy GPUs of a pool
(``FactoryRuntime.busy_gpus``: GPUs of nodes that are held by a job and not down) are

1. at most the live GPUs, ``C - D(t)`` (``C`` nameplate, ``D(t)`` GPUs of nodes down at ``t``, and all of them
   while the factory is lost), and
2. at most the held GPUs, a sum of whole gangs: a job holds ``ceil(gpus / gpus_per_node)`` nodes, so each gang
   is a multiple of ``g``, the gcd of the node-rounded gang sizes of every job that may use the pool. Held GPUs
   never exceed ``C``, so they are at most ``g * floor(C / g)``.

So busy(t) <= min(C - D(t), g * floor(C / g)) at every instant, and the hourly mean of busy GPUs (what the
bound's capacity row limits) is at most the hourly mean of that minimum. ``D(t)`` is the same in every schedule
on the same seed: node failures come from one Poisson stream per factory with its own random generator
(``sim/failures.py``), thinned only by which nodes are already down, repairs take the cause's fixed time, and
factory outages are scenario events; none of it depends on what runs where. (The benchmark checks this on its
two runs: their failure events are identical.) A schedule of the twin that meets the bound's throughput targets
is therefore still a feasible point of the bound with the usable capacity, and the bound stays a bound.

Throughput is counted in gang GPUs. The twin lets a policy hand a job *more* nodes than its gang needs (it
only refuses fewer); such extra GPUs draw power and add no throughput, so a schedule that does it has the same
throughput as the one that holds only the gang and costs more: the bound, below the latter, is below it too. The
targets must therefore be gang GPUs: :func:`oversized_placements` finds placements with more GPUs than the gang
(the benchmark requires none, so its runs' busy GPUs are gang GPUs).

A migrating job holds its source and its reserved destination at once (``sim/migration.py``), so in the twin one
job can have up to two gangs busy: :data:`GANGS_HELD` is what the bound's per-class GPU rate allows. A job's
busy GPU-hours have no a-priori limit either (failures, slow placements), so the instance lets every job be busy
with both gangs from its submit hour to the end (:func:`fleet_instance`: a vacuous, valid work limit).
Bound v3 (:mod:`superfactory.policy.hindsight_holds`) replaces it with per-job busy-time caps and adds knapsack
rows per pool-hour.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from superfactory.domain.events import Event, EventKind
from superfactory.domain.factory import Factory
from superfactory.domain.job import TrainingJob
from superfactory.policy.feasibility import sovereignty_refusal
from superfactory.policy.hindsight import HindsightInstance, HindsightJob

FloatArray = npt.NDArray[np.float64]
HOUR_S = 3600
#: gangs one job can hold at once in the twin (a migration holds source and destination)
GANGS_HELD = 2.0


@dataclass(frozen=True, slots=True)
class Pool:
    """One factory x accelerator: ``extra_w_per_gpu`` is the facility power a busy GPU draws over an idle one
    (training minus idle node power, per GPU, x PUE); ``gpus`` its nameplate GPUs."""

    factory: int
    accelerator: str
    extra_w_per_gpu: float
    gpus: int
    gpus_per_node: int


def fleet_pools(factories: Sequence[Factory]) -> list[Pool]:
    """The pools of a fleet, factory by factory (the first cluster's system gives the power figures)."""
    out = []
    for i, f in enumerate(factories):
        for acc in sorted(f.accelerators):
            s = f.clusters_of(acc)[0].system
            extra_w = (s.training_power_per_node_w - s.idle_power_per_node_w) / s.gpus_per_node * f.pue
            out.append(Pool(i, acc, extra_w, f.gpus_of(acc), s.gpus_per_node))
    return out


def lawful_pools(job: TrainingJob, pools: Sequence[Pool], factories: Sequence[Factory]) -> tuple[int, ...]:
    """Pools ``job`` may run in: its accelerator, room for its gang, its data cleared there."""
    return tuple(p for p, pl in enumerate(pools)
                 if pl.accelerator == job.accelerator and pl.gpus >= job.gpus
                 and sovereignty_refusal(job, factories[pl.factory]) is None)


def held_gpus(job: TrainingJob, pool: Pool) -> int:
    """GPUs of the nodes ``job``'s gang holds in ``pool`` (whole nodes)."""
    return pool.gpus_per_node * -(-job.gpus // pool.gpus_per_node)


def gang_granularity(jobs: Iterable[TrainingJob], pools: Sequence[Pool], factories: Sequence[Factory]
                     ) -> list[int]:
    """Per pool, the gcd of the held GPUs of every job that may use it (its node size when none may)."""
    g = [0] * len(pools)
    for j in jobs:
        for p in lawful_pools(j, pools, factories):
            g[p] = math.gcd(g[p], held_gpus(j, pools[p]))
    return [x or pl.gpus_per_node for x, pl in zip(g, pools, strict=True)]


def down_spells(events: Iterable[Event], factories: Sequence[Factory], horizon_s: int
                ) -> list[list[tuple[int, int, int]]]:
    """Per factory, ``(start_s, end_s, gpus)`` spells of GPUs out of service: a failed node until its repair
    (``NodeFailed`` / ``NodeRepaired``), the whole factory while lost (``FactoryLost`` / ``FactoryRestored``);
    spells still open at the end run to ``horizon_s``."""
    fx = {f.id: i for i, f in enumerate(factories)}
    node_gpus = [np.concatenate([np.full(c.node_end - c.node_offset, c.system.gpus_per_node) for c in f.clusters])
                 for f in factories]
    spells: list[list[tuple[int, int, int]]] = [[] for _ in factories]
    failed: dict[tuple[int, int], int] = {}
    lost: dict[int, int] = {}
    for e in events:
        i = fx.get(e.factory, -1)
        if e.kind is EventKind.NODE_FAILED:
            failed.setdefault((i, e.node), e.time_s)
        elif e.kind is EventKind.NODE_REPAIRED and (i, e.node) in failed:
            spells[i].append((failed.pop((i, e.node)), e.time_s, int(node_gpus[i][e.node])))
        elif e.kind is EventKind.FACTORY_LOST:
            lost.setdefault(i, e.time_s)
        elif e.kind is EventKind.FACTORY_RESTORED and i in lost:
            spells[i].append((lost.pop(i), e.time_s, int(node_gpus[i].sum())))
    for (i, node), t in failed.items():
        spells[i].append((t, horizon_s, int(node_gpus[i][node])))
    for i, t in lost.items():
        spells[i].append((t, horizon_s, int(node_gpus[i].sum())))
    return spells


def usable_gpus_per_hour(gpus: int, granularity: int, spells: Sequence[tuple[int, int, int]], hours: int
                         ) -> FloatArray:
    """Hourly mean of min(``gpus`` - GPUs down, ``granularity`` x floor(``gpus`` / ``granularity``)), at least
    0: the most GPUs any schedule can have busy in the pool in each hour (module docstring)."""
    if gpus < 0 or granularity <= 0:
        raise ValueError("gpus >= 0 and granularity > 0 required")
    return capped_live_gpus_per_hour(gpus, granularity * (gpus // granularity), spells, hours)


def capped_live_gpus_per_hour(gpus: int, top: int, spells: Sequence[tuple[int, int, int]], hours: int
                              ) -> FloatArray:
    """Hourly mean of min(``gpus`` - GPUs down, ``top``), at least 0 (``spells`` as :func:`down_spells`)."""
    # piecewise-constant D(t): +gpus at a spell's start, -gpus at its end
    steps: dict[int, int] = {}
    for a, b, n in spells:
        if b > a:
            steps[a] = steps.get(a, 0) + n
            steps[b] = steps.get(b, 0) - n
    out = np.zeros(hours)
    t0, down = 0, 0
    for t in [*sorted(steps), hours * HOUR_S]:
        t = min(t, hours * HOUR_S)
        level = max(0.0, min(float(gpus - down), float(top)))
        a = t0
        while a < t:
            h = a // HOUR_S
            b = min(t, (h + 1) * HOUR_S)
            out[h] += level * (b - a)
            a = b
        t0 = max(t0, t)
        down += steps.get(t, 0)
    return out / HOUR_S


def oversized_placements(events: Iterable[Event], jobs: Iterable[TrainingJob], factories: Sequence[Factory]
                         ) -> list[str]:
    """Ids of jobs placed on more GPUs than their node-rounded gang (``JobPlaced``'s value is the GPUs
    granted; arrivals of migrations report the gang)."""
    pools = {(factories[pl.factory].id, pl.accelerator): pl for pl in fleet_pools(factories)}
    by_id = {j.id: j for j in jobs}
    out = []
    for e in events:
        if e.kind is EventKind.JOB_PLACED and e.job in by_id:
            j = by_id[e.job]
            pl = pools.get((e.factory, j.accelerator))
            if pl is not None and e.value > held_gpus(j, pl):
                out.append(e.job)
    return out


def fleet_instance(factories: Sequence[Factory], jobs: Iterable[TrainingJob], horizon_s: int,
                   usd_per_gpu_h: FloatArray, capacity_gpus: FloatArray | None = None,
                   work_per_gpu_h: float | None = None) -> HindsightInstance:
    """The hindsight instance of a fleet over ``horizon_s``: one pool per :func:`fleet_pools` entry with
    ``capacity_gpus`` (default: nameplate in every hour) and ``usd_per_gpu_h``, and every job submitted within
    the horizon with its lawful pools. A job's work is ``work_per_gpu_h`` busy GPU-hours per GPU-hour of its
    productive work when given (the older, heuristic limit), else the vacuous valid one: both gangs
    (:data:`GANGS_HELD`) busy from its submit hour to the end."""
    pools = fleet_pools(factories)
    hours = horizon_s // HOUR_S
    if capacity_gpus is None:
        capacity_gpus = np.array([[pl.gpus] * hours for pl in pools], dtype=np.float64)
    out = []
    for j in jobs:
        ok = lawful_pools(j, pools, factories)
        if ok and j.submit_s < horizon_s:
            h0 = j.submit_s // HOUR_S
            work = (work_per_gpu_h * j.gpus * j.work_s / HOUR_S if work_per_gpu_h is not None
                    else GANGS_HELD * j.gpus * (hours - h0))
            out.append(HindsightJob(j.gpus, work, h0, ok))
    return HindsightInstance(capacity_gpus, usd_per_gpu_h, tuple(out))
