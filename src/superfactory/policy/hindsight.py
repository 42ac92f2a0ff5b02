"""A perfect-hindsight bound on the power cost of a training schedule, and the exact hourly model it relaxes.

The instance (:class:`HindsightInstance`) is the fleet and workload on an hourly grid with the *true* prices:
``pools`` (one per factory x accelerator) with a GPU capacity per hour and a cost per busy GPU-hour per hour
(the extra facility power of a training GPU over an idle one x PUE x the realised price, plus carbon at its
price if wanted); ``jobs`` with their GPUs, work (GPU-hours), submit hour and the pools they may lawfully use.

Exact model (:func:`exact_schedule`, a MILP, tiny instances only): in every hour a job runs whole (all its GPUs)
in one pool or not at all, never before its submit hour and never beyond its work; pools never exceed their
capacity; at least ``target_gpu_h`` GPU-hours are delivered; minimise the cost of the busy GPU-hours. Moves are
free and there are no failures, so any schedule a policy can carry out (in the twin, on this grid) is a
feasible point of this model or costs more.

Bound (:func:`hindsight_bound`, an LP solved to proven optimality by HiGHS): the exact model with the whole-job
rule relaxed and jobs aggregated into *classes* (the set of pools they may use), with work flowing through a
backlog per class: the work of a class done by hour ``h`` is at most the work that has arrived by ``h``, and its
GPUs busy in hour ``h`` at most the GPUs of its jobs arrived by then. Its size is classes x pools x hours (a
year of five factories fits in memory). With ``aggregate=False`` every job is its own class (the job-level LP):
on unit jobs (1 GPU, whole hours) that LP is a bipartite b-matching, totally unimodular, so it equals the exact
optimum. Every relaxation only drops constraints, so

    aggregated bound <= job-level LP <= exact optimum <= cost of any feasible schedule.

What "the same throughput" means is the caller's choice of delivery targets, each a row of both models:
``target_gpu_h`` is a total over all pools, or GPU-hours per pool *group* (e.g. per accelerator type, since a
GB200-hour is not an H100-hour); ``hourly_gpus`` adds, per group, busy GPUs to hold in *every* hour. With only
totals the bound may shift work in time (idle a scarcity hour, run the work later in spare capacity); with hourly
rows it may only change *where* work runs (the benchmark's ``saving_captured``). Holding more rows can only raise
the bound, and a schedule that meets the targets is still a feasible point of the exact model.

The capacity is the caller's: :mod:`superfactory.policy.hindsight_fleet` gives, for a fleet of the twin, the
GPUs any schedule can have busy in each pool-hour on the same fleet and seed (nodes down, whole gangs), which is
tighter than the nameplate and keeps every statement above (each schedule of the twin is still a feasible point).
In the exact model a job holds one gang; in the twin a migrating job briefly holds two (source and destination),
which ``gangs_held`` lets the bound's class rates allow.

Move costs are not modelled: a move is free in the bound. With busy GPU-hours as the throughput a move's own
restart and double holding count as delivered work, so a valid charge needs the target split into useful and
overhead hours, and it could charge at most what every schedule pays for a GPU entering a pool (a restart,
5 minutes). That is small next to the hourly price spreads the bound exploits: on real-2023, charging 5 minutes
(resp. a whole hour) of busy GPU time for every GPU entering a pool raises the where-only bound by 0.13-0.39 %
(resp. 1.4-4.3 %) a month (``geo_economics_bench.py``'s ``move_sensitivity``; docs/geo.md).

Pure: no I/O; HiGHS is the only solver (silent, single-threaded).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt

from superfactory.policy.relaxation import new_highs

FloatArray = npt.NDArray[np.float64]


def _set_matrix(lp: highspy.HighsLp, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64],
                vals: FloatArray, n_cols: int) -> None:
    """Column-wise matrix from (row, col, value) triples (no duplicates)."""
    order = np.lexsort((rows, cols))
    start = np.zeros(n_cols + 1, dtype=np.int32)
    np.cumsum(np.bincount(cols, minlength=n_cols), out=start[1:])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = rows[order].astype(np.int32)
    lp.a_matrix_.value_ = vals[order].astype(np.float64)


@dataclass(frozen=True, slots=True)
class HindsightJob:
    """A job on the hourly grid: ``gpus`` at once, ``work_gpu_h`` GPU-hours in all, from hour ``submit_h``,
    in any of ``pools`` (indices into the instance's pools)."""

    gpus: int
    work_gpu_h: float
    submit_h: int
    pools: tuple[int, ...]
    #: GPU-hours one failure interruption, one drain and one migration can add to this job's busy time
    #: (bound v3's slack terms; used only with ``interruptions``)
    per_event_gpu_h: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class HindsightInstance:
    """``capacity_gpus[p, h]`` GPUs of pool ``p`` usable in hour ``h``; ``usd_per_gpu_h[p, h]`` the cost of one
    busy GPU-hour there and then (true prices); ``jobs``."""

    capacity_gpus: FloatArray
    usd_per_gpu_h: FloatArray
    jobs: tuple[HindsightJob, ...]

    def __post_init__(self) -> None:
        if self.capacity_gpus.shape != self.usd_per_gpu_h.shape or self.capacity_gpus.ndim != 2:
            raise ValueError("capacity_gpus and usd_per_gpu_h must both be (pools, hours)")
        n_pools = self.capacity_gpus.shape[0]
        for j in self.jobs:
            if j.gpus <= 0 or j.work_gpu_h < 0 or j.submit_h < 0:
                raise ValueError(f"bad job {j}: gpus > 0, work >= 0 and submit_h >= 0 required")
            if any(not 0 <= p < n_pools for p in j.pools):
                raise ValueError(f"job {j} names a pool outside 0..{n_pools - 1}")

    @property
    def hours(self) -> int:
        return int(self.capacity_gpus.shape[1])

    def max_gpu_h(self) -> float:
        """The most GPU-hours any schedule can deliver is at most this (total work of jobs that arrive)."""
        return float(sum(j.work_gpu_h for j in self.jobs if j.submit_h < self.hours and j.pools))


@dataclass(frozen=True, slots=True)
class HindsightResult:
    """``cost_usd`` of the busy GPU-hours (``None`` when ``target_gpu_h`` cannot be delivered), the GPU-hours
    delivered, the GPU-hours per (pool, hour) and the solver's status."""

    cost_usd: float | None
    delivered_gpu_h: float
    gpu_h: FloatArray
    status: str


def _solve(h: highspy.Highs, n_pools: int, hours: int, var_ph: npt.NDArray[np.int64], n_x: int
           ) -> HindsightResult:
    h.run()
    st = h.getModelStatus()
    if st != highspy.HighsModelStatus.kOptimal:
        return HindsightResult(None, 0.0, np.zeros((n_pools, hours)), h.modelStatusToString(st))
    x = np.asarray(h.getSolution().col_value, dtype=np.float64)[:n_x]
    grid = np.zeros(n_pools * hours)
    np.add.at(grid, var_ph, x)
    return HindsightResult(float(h.getInfo().objective_function_value), float(x.sum()),
                           grid.reshape(n_pools, hours), "optimal")


Target = float | Sequence[tuple[Sequence[int], float]]
#: (pool, smallest job size S, busy GPUs per hour): the jobs of >= S GPUs have at most that many busy there
KnapRow = tuple[int, int, FloatArray]
HourlyTarget = Sequence[tuple[Sequence[int], FloatArray]]


def _targets(target_gpu_h: Target, n_pools: int) -> list[tuple[tuple[int, ...], float]]:
    """``target_gpu_h`` as (pools, GPU-hours) groups: a bare number is one group of every pool."""
    if isinstance(target_gpu_h, int | float):
        return [(tuple(range(n_pools)), float(target_gpu_h))]
    return [(tuple(sorted(set(g))), float(t)) for g, t in target_gpu_h]


def _target_triples(xp: npt.NDArray[np.int64], xh: npt.NDArray[np.int64], coef: FloatArray, row0: int,
                    groups: list[tuple[tuple[int, ...], float]], hourly: HourlyTarget, hours: int
                    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray, FloatArray]:
    """(rows, cols, values, right-hand sides) of the delivery rows: one per group (every hour), then one per
    hourly group and hour; column ``k`` (pool ``xp[k]``, hour ``xh[k]``) delivers ``coef[k]`` GPU-hours."""
    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    vals: list[FloatArray] = []
    rhs: list[float] = []
    for pools, t in groups:
        k = np.flatnonzero(np.isin(xp, pools))
        rows.append(np.full(k.size, row0 + len(rhs), dtype=np.int64))
        cols.append(k)
        vals.append(coef[k])
        rhs.append(t)
    for hpools, per_h in hourly:
        need = np.asarray(per_h, dtype=np.float64)
        if need.shape != (hours,):
            raise ValueError(f"an hourly target needs {hours} values, not {need.shape}")
        k = np.flatnonzero(np.isin(xp, tuple(hpools)))
        rows.append(row0 + len(rhs) + xh[k])
        cols.append(k)
        vals.append(coef[k])
        rhs.extend(need.tolist())
    cat = np.concatenate
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    return cat(rows).astype(np.int64), cat(cols).astype(np.int64), cat(vals), np.asarray(rhs)


def hindsight_bound(inst: HindsightInstance, target_gpu_h: Target, aggregate: bool = True,
                    time_limit_s: float | None = None, hourly_gpus: HourlyTarget = (),
                    gangs_held: float = 1.0, knap_rows: Sequence[KnapRow] = (),
                    interruptions: tuple[float, float, float] | None = None) -> HindsightResult:
    """The least cost of delivering ``target_gpu_h`` busy GPU-hours with hindsight (LP, see module docstring).

    ``target_gpu_h``: at least that many GPU-hours over all pools, or a sequence of (pools, GPU-hours), each
    delivered in those pools (e.g. per accelerator type: a GB200-hour is not an H100-hour). ``hourly_gpus``:
    (pools, busy GPUs per hour) rows that also hold in every hour (the *where-only* bound: the same busy GPUs
    per hour as a given schedule, placed at the cheapest lawful sites). ``gangs_held``: how many of its gangs one
    job may have busy at once (the class rate rows; 2 for the twin, where a migration holds both ends).

    Bound v3 (``superfactory.policy.hindsight_fleet`` proves both row families for the twin): ``knap_rows``,
    (pool, S, cap per hour) rows ``sum of x over classes of jobs with >= S GPUs in that pool-hour <= cap``
    (classes are then also split by job size); ``interruptions`` = (failures, drains, migrations) budgets: a
    job's ``work_gpu_h`` is then its busy GPU-hour cap without interruptions, and the LP attributes at most
    that many events to classes, each adding the class's largest ``per_event_gpu_h`` to its work."""
    n_pools, hours = inst.capacity_gpus.shape
    groups = _targets(target_gpu_h, n_pools)
    classes: dict[object, list[HindsightJob]] = defaultdict(list)
    for k, j in enumerate(inst.jobs):
        if j.submit_h < hours and j.pools and j.work_gpu_h > 0:
            key = tuple(sorted(set(j.pools))) if aggregate else k
            classes[(key, j.gpus) if knap_rows else key].append(j)
    # variables: x[c, p, h] for h >= first arrival of c (GPU-hours), then backlog b[c, h] (GPU-hours)
    x_class: list[npt.NDArray[np.int64]] = []
    x_pool: list[npt.NDArray[np.int64]] = []
    x_hour: list[npt.NDArray[np.int64]] = []
    cls = list(classes.values())
    arrive = np.zeros((len(cls), hours))  # work arriving per class and hour
    rate = np.zeros((len(cls), hours))  # GPUs of the class's jobs arrived by hour h (at most their work)
    for c, jobs in enumerate(cls):
        for j in jobs:
            arrive[c, j.submit_h] += j.work_gpu_h
            # with interruptions a job's busy GPU-hours may exceed work_gpu_h (its cap before them)
            rate[c, j.submit_h:] += (gangs_held * j.gpus if interruptions is not None
                                     else min(gangs_held * j.gpus, j.work_gpu_h))
        first = min(j.submit_h for j in jobs)
        for p in sorted({p for j in jobs for p in j.pools}):
            span = np.arange(first, hours, dtype=np.int64)
            x_class.append(np.full(span.size, c, dtype=np.int64))
            x_pool.append(np.full(span.size, p, dtype=np.int64))
            x_hour.append(span)
    empty = np.zeros(0, dtype=np.int64)
    xc, xp, xh = (np.concatenate(a) if a else empty for a in (x_class, x_pool, x_hour))
    n_x, n_c = xc.size, len(cls)
    n_b = n_c * hours
    # rows: [pool capacity (P*H)] [class rate (C*H)] [backlog balance (C*H), equality] [delivery targets]
    r_cap = xp * hours + xh
    r_rate = n_pools * hours + xc * hours + xh
    r_bal = n_pools * hours + n_c * hours + xc * hours + xh
    row0 = n_pools * hours + 2 * n_c * hours
    t_rows, t_cols, t_vals, t_rhs = _target_triples(xp, xh, np.ones(n_x), row0, groups, hourly_gpus, hours)
    b_ix = np.arange(n_b)
    b_h = b_ix % hours
    # balance of (c, h): b[c, h] - b[c, h-1] + sum_p x[c, p, h] = arrive[c, h]
    rows = np.concatenate([r_cap, r_rate, r_bal, t_rows,
                           n_pools * hours + n_c * hours + b_ix,
                           n_pools * hours + n_c * hours + b_ix[b_h > 0]])
    cols = np.concatenate([np.arange(n_x)] * 3 + [t_cols, n_x + b_ix, n_x + b_ix[b_h > 0] - 1])
    vals = np.concatenate([np.ones(3 * n_x), t_vals, np.ones(n_b), -np.ones(int((b_h > 0).sum()))])
    n_rows = row0 + t_rhs.size
    inf = highspy.kHighsInf
    upper_extra: list[float] = []
    lower_extra: list[float] = []
    n_e = 0
    if knap_rows:  # v3 (a): jobs of >= S GPUs in pool p, hour h
        size = np.array([jobs[0].gpus for jobs in cls], dtype=np.int64)
        kr: list[npt.NDArray[np.int64]] = []
        kc: list[npt.NDArray[np.int64]] = []
        for r, (p, smallest, cap) in enumerate(knap_rows):
            sel = np.flatnonzero((xp == p) & (size[xc] >= smallest))
            kr.append(n_rows + r * hours + xh[sel])
            kc.append(sel)
            upper_extra.extend(np.asarray(cap, dtype=np.float64).tolist())
        rows = np.concatenate([rows, *kr])
        cols = np.concatenate([cols, *kc])
        vals = np.concatenate([vals, np.ones(sum(a.size for a in kc))])
        n_rows += len(knap_rows) * hours
        lower_extra.extend([-inf] * (len(knap_rows) * hours))
    if interruptions is not None:  # v3 (b): events attributed to classes add to their work at first arrival
        n_e = 3 * n_c
        e_ix = n_x + n_b + np.arange(n_e)
        first_h = np.array([min(j.submit_h for j in jobs) for jobs in cls], dtype=np.int64)
        per = np.array([[max(j.per_event_gpu_h[kind] for j in jobs) for kind in range(3)] for jobs in cls])
        bal = n_pools * hours + n_c * hours + np.repeat(np.arange(n_c), 3) * hours + np.repeat(first_h, 3)
        budget = n_rows + np.tile(np.arange(3), n_c)
        rows = np.concatenate([rows, bal, budget])
        cols = np.concatenate([cols, e_ix, e_ix])
        vals = np.concatenate([vals, -per.ravel(), np.ones(n_e)])
        n_rows += 3
        lower_extra.extend([-inf] * 3)
        upper_extra.extend(float(x) for x in interruptions)
    lp = highspy.HighsLp()
    lp.num_col_ = n_x + n_b + n_e
    lp.num_row_ = n_rows
    lp.col_cost_ = np.concatenate([inst.usd_per_gpu_h[xp, xh], np.zeros(n_b + n_e)])
    lp.col_lower_ = np.zeros(n_x + n_b + n_e)
    lp.col_upper_ = np.full(n_x + n_b + n_e, highspy.kHighsInf)
    lp.row_lower_ = np.concatenate([np.full(n_pools * hours + n_c * hours, -inf), arrive.ravel(), t_rhs,
                                    lower_extra])
    lp.row_upper_ = np.concatenate([inst.capacity_gpus.ravel(), rate.ravel(), arrive.ravel(),
                                    np.full(t_rhs.size, inf), upper_extra])
    _set_matrix(lp, rows, cols, vals, n_x + n_b + n_e)
    h = new_highs(time_limit_s)
    h.passModel(lp)
    return _solve(h, n_pools, hours, xp * hours + xh, n_x)


def exact_schedule(inst: HindsightInstance, target_gpu_h: Target, time_limit_s: float | None = 60.0,
                   hourly_gpus: HourlyTarget = ()) -> HindsightResult:
    """The exact hourly optimum (MILP: whole jobs, one pool per job and hour); tiny instances only. Targets as
    :func:`hindsight_bound`."""
    n_pools, hours = inst.capacity_gpus.shape
    groups = _targets(target_gpu_h, n_pools)
    jx: list[int] = []
    px: list[int] = []
    hx: list[int] = []
    for k, j in enumerate(inst.jobs):
        if j.work_gpu_h <= 0:
            continue
        for p in sorted(set(j.pools)):
            for hh in range(j.submit_h, hours):
                jx.append(k)
                px.append(p)
                hx.append(hh)
    zj, zp, zh = (np.asarray(a, dtype=np.int64) for a in (jx, px, hx))
    g = np.array([inst.jobs[k].gpus for k in jx], dtype=np.float64)
    n_z, n_j = zj.size, len(inst.jobs)
    # rows: [pool capacity P*H] [one pool per job-hour J*H] [work per job J] [delivery targets]
    row0 = n_pools * hours + n_j * hours + n_j
    t_rows, t_cols, t_vals, t_rhs = _target_triples(zp, zh, g, row0, groups, hourly_gpus, hours)
    rows = np.concatenate([zp * hours + zh, n_pools * hours + zj * hours + zh,
                           n_pools * hours + n_j * hours + zj, t_rows])
    cols = np.concatenate([np.arange(n_z)] * 3 + [t_cols])
    vals = np.concatenate([g, np.ones(n_z), g, t_vals])
    n_rows = row0 + t_rhs.size
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_ = n_z
    lp.num_row_ = n_rows
    lp.col_cost_ = g * inst.usd_per_gpu_h[zp, zh] if n_z else np.zeros(0)
    lp.col_lower_ = np.zeros(n_z)
    lp.col_upper_ = np.ones(n_z)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n_z
    lp.row_lower_ = np.concatenate([np.full(row0, -inf), t_rhs])
    lp.row_upper_ = np.concatenate([inst.capacity_gpus.ravel(), np.ones(n_j * hours),
                                    [j.work_gpu_h for j in inst.jobs], np.full(t_rhs.size, inf)])
    _set_matrix(lp, rows, cols, vals, n_z)
    h = new_highs(time_limit_s)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.passModel(lp)
    res = _solve(h, n_pools, hours, zp * hours + zh, n_z)
    if res.cost_usd is None:
        return res
    # gpu_h and delivered from z x gpus
    z = np.asarray(h.getSolution().col_value, dtype=np.float64)
    grid = np.zeros(n_pools * hours)
    np.add.at(grid, zp * hours + zh, np.round(z) * g)
    return HindsightResult(res.cost_usd, float(grid.sum()), grid.reshape(n_pools, hours), res.status)


def schedule_cost(inst: HindsightInstance, run: npt.NDArray[np.int64]) -> tuple[float, float]:
    """(cost USD, GPU-hours) of a schedule ``run[j, h]`` = pool job ``j`` runs in during hour ``h`` (-1 = none);
    raises ``ValueError`` if it breaks a rule of the exact model (capacity, submit hour, lawful pools, work)."""
    n_pools, hours = inst.capacity_gpus.shape
    use = np.zeros((n_pools, hours))
    cost = 0.0
    for k, j in enumerate(inst.jobs):
        hrs = np.flatnonzero(run[k] >= 0)
        if hrs.size and (hrs.min() < j.submit_h or any(int(run[k, hh]) not in j.pools for hh in hrs)):
            raise ValueError(f"job {k} runs before its submit hour or outside its pools")
        if hrs.size * j.gpus > j.work_gpu_h + 1e-9:
            raise ValueError(f"job {k} runs beyond its work")
        for hh in hrs:
            use[run[k, hh], hh] += j.gpus
            cost += j.gpus * float(inst.usd_per_gpu_h[run[k, hh], hh])
    if (use > inst.capacity_gpus + 1e-9).any():
        raise ValueError("a pool is over capacity")
    return cost, float(use.sum())
