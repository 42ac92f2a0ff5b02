"""Bound v4: the job-level, time-indexed hindsight relaxation with continuity (a job stays where it runs unless an
event lets it start again).

Bounds v2/v3 (:mod:`superfactory.policy.hindsight`) aggregate jobs into classes, so every hour the LP re-chooses
which jobs sit where, for free. v4 keeps every job and every hour and charges each (re)start to an event the twin
really has. Variables, for job ``j`` (gang ``g_j`` GPUs), lawful pool ``s`` and hour ``t >= submit_j``:

- ``x[j,s,t]`` in [0, 1]: the hourly mean of job ``j``'s busy GPUs in pool ``s`` over ``g_j``;
- ``u[j,s,t] >= 0``: its up-variation there, ``x[j,s,t] - x[j,s,t-1] <= u`` (``x`` is 0 before the submit hour);
- ``w[j,t]`` in [0, 1]: the part of hour ``t`` the job holds a second gang (a migration's reserved destination);
- ``eF[j], eD[j], eM[j] >= 0``: the failures, drains and migrations attributed to the job; ``r[j] >= 0``: its
  share of the up-variation repairs can cause while a gang holds a failed node.

Rows, each proven for every schedule of the twin (``sim/fleet.py``, ``sim/migration.py``, ``sim/hotswap.py``,
``sim/factorystate.py``) with exact gangs (``hindsight_fleet.oversized_placements``), no modelled WAN and no
inference replicas (nodes reserved outside jobs count as busy but belong to no job; real-2023 has neither):

1. **Capacity** (per pool-hour): ``sum_j g_j x <= usable GPUs``, and v3's knapsack rows for jobs of >= S GPUs
   (:mod:`superfactory.policy.hindsight_holds` proves both; busy GPUs of ``j`` are at most its held gang).
2. **Throughput**: the caller's delivery rows on ``g_j x`` (per accelerator type, in every hour: the where-only
   bound), exactly as v2/v3 (``hindsight._target_triples``).
3. **One gang** (per job-hour): ``sum_s x[j,s,t] <= 1 + w[j,t]``. A job holds one gang, except from a
   ``Migrate`` decision (``dest.hold``) to the arrival (source released) or to the requeue that frees the
   reservation: at most ``b + w + T + d`` seconds (drain, the slowest transfer, detection), ``hold_h`` per
   migration. Busy <= held, and two gangs never share a pool (a move to the same factory is refused).
   **Double holding**: ``sum_t w[j,t] <= hold_h_j eM[j]`` (hourly means of the double-hold indicator).
4. **Continuity**: ``x[j,s,t] - x[j,s,t-1] <= u[j,s,t]`` and ``sum_{s,t} u[j,s,t] <= 1 + eF + eD + eM + r``.
   *Proof.* Let ``y(τ)`` be job ``j``'s busy GPUs in pool ``s`` over ``g_j`` (piecewise constant, 0 before its
   submission and at the window start: each window of the benchmark starts empty). For hourly means,
   ``(x_t - x_{t-1})^+ <= mean over θ in [0,1) of (y(t+θ) - y(t-1+θ))^+`` <= the mean of y's upward jumps in
   ``(t-1+θ, t+θ]``; summed over ``t`` the intervals tile the line, so ``sum_t (x_t - x_{t-1})^+`` is at most
   the total of y's upward jumps. y rises only when (``factorystate``: ``hold``, ``set_down(False)``,
   ``set_up(True)``, ``reserve``):
   - the job is placed (``Place`` → ``hold``): its first start, or a start after a requeue. Every requeue
     (``_requeue``) follows an interruption by a ``NodeFailed`` on a node the job holds (one job per failure:
     a node is held by one job) or by an outage (``factory_outage``), a drain (``Preempt``, planned stop), or a
     migration's arrival on a destination that lost a node or went down (that node's failure or the outage);
     so the starts after the first are at most ``eF + eD`` (failure budget as v3's: failures plus, per outage,
     the site's GPUs over the smallest gang);
   - a ``Migrate`` holds the destination: one jump per migration (``eM``);
   - a ``SwapNodes`` replaces down nodes by live ones: at most 1 per hot swap, counted with drains (``eD``);
   - a held node is repaired (``set_down(False)``): ``node GPUs / g_j``, or a factory comes back up with held
     nodes (``set_up(True)``): at most 1 per job there. These go to the shared pool ``sum_j r[j] <= R``,
     ``R = sum over repairs of node GPUs / smallest gang + per restore the site's GPUs / smallest gang``
     (:func:`repair_units`; schedule-independent, like the failures).
   Dropping a gang (release, drain, node down) only lowers y and is free.
5. **Busy-time cap** (per job): ``sum_{s,t} g_j x <= base_j + eF pf_j + eD pd_j + eM pm_j`` GPU-hours, v3's
   cap (``hindsight_holds.hold_caps``) with the events the job itself was given, not a class's worst.
6. **Budgets**: ``sum_j eF <= F`` (the failure stream is the same in every schedule), ``sum_j eD <= D``,
   ``sum_j eM <= M`` (the schedule's own: the bound holds for every schedule with at most D drains and M
   migrations, as v3), ``sum_j r <= R``.

Every schedule of the twin gives a feasible point (its own x, u = the positive parts, events as they happened),
so the LP optimum is at most its busy cost: the bound holds. Aggregating v4's ``x`` by class gives a feasible
point of v3 (same capacity, knapsack and delivery rows; class rate <= 2 gangs, when a gang is the job's GPUs
as on real-2023; each job's work within its cap, each event within the class's largest term), so v3 <= v4.
:func:`job_level_exact` is the same model with whole-hour binaries and integer events (tiny instances only):
v4 <= it.

Windows: the model is per window; the benchmark solves it per month window (each month's twin run starts
empty). Splitting a run into shorter windows with a free start per job in each window and each window's own
budgets is also a relaxation (a schedule restricted to a window is feasible there), and the sum of the
windows' optima is then a bound on the run.

Pure: no I/O; HiGHS is the solver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt

from superfactory.policy.hindsight import (
    HindsightInstance,
    HourlyTarget,
    KnapRow,
    Target,
    _set_matrix,
    _target_triples,
    _targets,
)
from superfactory.policy.relaxation import new_highs

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class EventBudget:
    """Events a schedule may have in the window: ``failures`` (interruptions the failure stream can cause),
    ``drains`` (preemptions, planned stops, hot swaps), ``migrations``, and ``repair_units`` (row 4's ``R``)."""

    failures: float = 0.0
    drains: float = 0.0
    migrations: float = 0.0
    repair_units: float = 0.0


@dataclass(frozen=True, slots=True)
class JobLevelResult:
    """As :class:`~superfactory.policy.hindsight.HindsightResult`, plus ``slice_gpu_h[p, h]``: the busy GPU-hours
    the optimum runs as *slices* of gangs (0.02 < x < 0.98: part of a gang for the whole hour, or a gang for
    part of it), the relaxation's remaining freedom; ``slice_share`` per pool."""

    cost_usd: float | None
    delivered_gpu_h: float
    gpu_h: FloatArray
    status: str
    slice_gpu_h: FloatArray

    @property
    def slice_share(self) -> FloatArray:
        tot = self.gpu_h.sum(axis=1)
        return np.where(tot > 0, self.slice_gpu_h.sum(axis=1) / np.maximum(tot, 1e-12), 0.0)


@dataclass(frozen=True, slots=True)
class _Index:
    """Column and row layout of one job-level model."""

    xj: IntArray  # job of each x column
    xs: IntArray  # pool
    xt: IntArray  # hour
    prev: IntArray  # the x column of the same job and pool one hour earlier, -1 at the submit hour
    wj: IntArray  # job of each w column (job-hours)
    wt: IntArray  # hour of each w column
    xw: IntArray  # the w column of each x column's job-hour


def _index(inst: HindsightInstance) -> _Index:
    hours = inst.hours
    xj: list[IntArray] = []
    xs: list[IntArray] = []
    xt: list[IntArray] = []
    prev: list[IntArray] = []
    wj: list[IntArray] = []
    wt: list[IntArray] = []
    xw: list[IntArray] = []
    n_x = n_w = 0
    for k, j in enumerate(inst.jobs):
        span = np.arange(j.submit_h, hours, dtype=np.int64)
        if span.size == 0 or not j.pools:
            continue
        for s in sorted(set(j.pools)):
            xj.append(np.full(span.size, k, dtype=np.int64))
            xs.append(np.full(span.size, s, dtype=np.int64))
            xt.append(span)
            p = np.arange(n_x - 1, n_x - 1 + span.size, dtype=np.int64)
            p[0] = -1
            prev.append(p)
            xw.append(n_w + np.arange(span.size, dtype=np.int64))
            n_x += span.size
        wj.append(np.full(span.size, k, dtype=np.int64))
        wt.append(span)
        n_w += span.size
    def cat(a: list[IntArray]) -> IntArray:
        return np.concatenate(a) if a else np.zeros(0, dtype=np.int64)

    return _Index(cat(xj), cat(xs), cat(xt), cat(prev), cat(wj), cat(wt), cat(xw))


def _build(inst: HindsightInstance, gangs: Sequence[float], target: Target, hourly: HourlyTarget,
           knap_rows: Sequence[KnapRow], budget: EventBudget, hold_h: Sequence[float]
           ) -> tuple[highspy.HighsLp, _Index, int]:
    n_pools, hours = inst.capacity_gpus.shape
    n_j = len(inst.jobs)
    if len(gangs) != n_j or len(hold_h) != n_j:
        raise ValueError("gangs and hold_h need one value per job")
    ix = _index(inst)
    g = np.asarray(gangs, dtype=np.float64)
    n_x, n_w = ix.xj.size, ix.wj.size
    # columns: x [n_x] | u [n_x] | w [n_w] | eF, eD, eM [3 n_j] | r [n_j]
    c_u, c_w, c_e = n_x, 2 * n_x, 2 * n_x + n_w
    c_r = c_e + 3 * n_j
    n_cols = c_r + n_j
    gx = g[ix.xj]
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    lo: list[FloatArray] = []
    up: list[FloatArray] = []
    inf = highspy.kHighsInf
    n_rows = 0

    def add(r: IntArray, c: IntArray, v: FloatArray | float) -> None:
        rows.append(np.asarray(r, dtype=np.int64))
        cols.append(np.asarray(c, dtype=np.int64))
        vals.append(np.broadcast_to(np.asarray(v, dtype=np.float64), np.shape(c)).copy())

    def block(n: int, lower: FloatArray | float, upper: FloatArray | float) -> int:
        nonlocal n_rows
        r0 = n_rows
        lo.append(np.broadcast_to(np.asarray(lower, dtype=np.float64), (n,)).copy())
        up.append(np.broadcast_to(np.asarray(upper, dtype=np.float64), (n,)).copy())
        n_rows += n
        return r0

    kx = np.arange(n_x, dtype=np.int64)
    # 1. capacity per pool-hour, then knapsack rows
    r0 = block(n_pools * hours, -inf, inst.capacity_gpus.ravel())
    add(r0 + ix.xs * hours + ix.xt, kx, gx)
    size = np.array([j.gpus for j in inst.jobs], dtype=np.int64)
    for p, smallest, cap in knap_rows:
        r0 = block(hours, -inf, np.asarray(cap, dtype=np.float64))
        sel = np.flatnonzero((ix.xs == p) & (size[ix.xj] >= smallest))
        add(r0 + ix.xt[sel], sel, gx[sel])
    # 2. delivery targets
    t_rows, t_cols, t_vals, t_rhs = _target_triples(ix.xs, ix.xt, gx, 0, _targets(target, n_pools), hourly, hours)
    r0 = block(t_rhs.size, t_rhs, inf)
    add(r0 + t_rows, t_cols, t_vals)
    # 3. one gang per job-hour (+ the double hold), and the double hold per job
    r0 = block(n_w, -inf, 1.0)
    add(r0 + ix.xw, kx, 1.0)
    add(r0 + np.arange(n_w), c_w + np.arange(n_w), -1.0)
    r0 = block(n_j, -inf, 0.0)
    add(r0 + ix.wj, c_w + np.arange(n_w), 1.0)
    add(r0 + np.arange(n_j), c_e + 3 * np.arange(n_j) + 2, -np.asarray(hold_h, dtype=np.float64))
    # 4. continuity: x - x_prev - u <= 0, and the starts per job
    r0 = block(n_x, -inf, 0.0)
    add(r0 + kx, kx, 1.0)
    has = ix.prev >= 0
    add(r0 + kx[has], ix.prev[has], -1.0)
    add(r0 + kx, c_u + kx, -1.0)
    r0 = block(n_j, -inf, 1.0)
    add(r0 + ix.xj, c_u + kx, 1.0)
    jj = np.arange(n_j, dtype=np.int64)
    for kind in range(3):
        add(r0 + jj, c_e + 3 * jj + kind, -1.0)
    add(r0 + jj, c_r + jj, -1.0)
    # 5. busy-time cap per job
    base = np.array([j.work_gpu_h for j in inst.jobs], dtype=np.float64)
    r0 = block(n_j, -inf, base)
    add(r0 + ix.xj, kx, gx)
    for kind in range(3):
        add(r0 + jj, c_e + 3 * jj + kind, -np.array([j.per_event_gpu_h[kind] for j in inst.jobs]))
    # 6. budgets
    r0 = block(4, -inf, np.array([budget.failures, budget.drains, budget.migrations, budget.repair_units]))
    for kind in range(3):
        add(np.full(n_j, r0 + kind), c_e + 3 * jj + kind, 1.0)
    add(np.full(n_j, r0 + 3), c_r + jj, 1.0)

    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_rows
    cost = np.zeros(n_cols)
    cost[:n_x] = gx * inst.usd_per_gpu_h[ix.xs, ix.xt]
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n_cols)
    upper = np.full(n_cols, inf)
    upper[:n_x] = 1.0
    upper[c_w:c_e] = 1.0
    lp.col_upper_ = upper
    lp.row_lower_ = np.concatenate(lo) if lo else np.zeros(0)
    lp.row_upper_ = np.concatenate(up) if up else np.zeros(0)
    _set_matrix(lp, np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), n_cols)
    return lp, ix, n_cols


def _run(h: highspy.Highs, inst: HindsightInstance, ix: _Index, gangs: Sequence[float]) -> JobLevelResult:
    n_pools, hours = inst.capacity_gpus.shape
    h.run()
    st = h.getModelStatus()
    if st != highspy.HighsModelStatus.kOptimal:
        none = np.zeros((n_pools, hours))
        return JobLevelResult(None, 0.0, none, h.modelStatusToString(st), none)
    x = np.asarray(h.getSolution().col_value, dtype=np.float64)[:ix.xj.size]
    busy = x * np.asarray(gangs, dtype=np.float64)[ix.xj]
    cell = ix.xs * hours + ix.xt
    grid = np.zeros(n_pools * hours)
    np.add.at(grid, cell, busy)
    sliced = np.zeros(n_pools * hours)
    np.add.at(sliced, cell, np.where((x > 0.02) & (x < 0.98), busy, 0.0))
    return JobLevelResult(float(h.getInfo().objective_function_value), float(busy.sum()),
                          grid.reshape(n_pools, hours), "optimal", sliced.reshape(n_pools, hours))


def job_level_bound(inst: HindsightInstance, gangs: Sequence[float], target: Target, hourly_gpus: HourlyTarget = (),
                    knap_rows: Sequence[KnapRow] = (), budget: EventBudget = EventBudget(),
                    hold_h: Sequence[float] | None = None, time_limit_s: float | None = None,
                    solver: str = "choose") -> JobLevelResult:
    """Bound v4 (module docstring): the least busy cost of delivering ``target`` (and ``hourly_gpus``) with
    hindsight, every job continuous between the events ``budget`` allows. ``inst``'s jobs carry each job's
    busy-time cap without events (``work_gpu_h``, GPU-hours) and ``per_event_gpu_h``; ``gangs`` the GPUs a
    job's gang holds (its busy GPUs per unit of ``x``); ``hold_h`` the hours one migration may hold a second
    gang (default 0). ``solver``: HiGHS's ``simplex``, ``ipm`` or ``choose``."""
    lp, ix, _ = _build(inst, gangs, target, hourly_gpus, knap_rows, budget,
                       hold_h if hold_h is not None else [0.0] * len(inst.jobs))
    h = new_highs(time_limit_s)
    h.setOptionValue("solver", solver)
    h.passModel(lp)
    return _run(h, inst, ix, gangs)


def job_level_exact(inst: HindsightInstance, gangs: Sequence[float], target: Target, hourly_gpus: HourlyTarget = (),
                    knap_rows: Sequence[KnapRow] = (), budget: EventBudget = EventBudget(),
                    hold_h: Sequence[float] | None = None, time_limit_s: float | None = 60.0) -> JobLevelResult:
    """The same model with whole-hour binaries (a job runs a whole hour, whole, or not) and integer event
    counts: a MILP for tiny instances; :func:`job_level_bound` is its LP relaxation, so never above it."""
    lp, ix, n_cols = _build(inst, gangs, target, hourly_gpus, knap_rows, budget,
                            hold_h if hold_h is not None else [0.0] * len(inst.jobs))
    n_x, n_w, n_j = ix.xj.size, ix.wj.size, len(inst.jobs)
    kinds = [highspy.HighsVarType.kContinuous] * n_cols
    c_e = 2 * n_x + n_w
    for c in [*range(n_x), *range(c_e, c_e + 3 * n_j)]:
        kinds[c] = highspy.HighsVarType.kInteger
    lp.integrality_ = kinds
    h = new_highs(time_limit_s)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.passModel(lp)
    return _run(h, inst, ix, gangs)


def repair_units(repairs: Sequence[tuple[int, int]], restores: Sequence[int], smallest_gang: Sequence[int]) -> float:
    """Row 4's ``R``: the up-variation repairs and factory restores can add to held gangs. ``repairs``:
    (pool, node GPUs) per ``NodeRepaired``; ``restores``: the site GPUs per ``FactoryRestored``;
    ``smallest_gang[p]``: the smallest gang lawful in pool ``p`` (one job's ``y`` rises by at most
    node GPUs / its gang per repair)."""
    small = min(smallest_gang, default=1)
    return float(sum(min(1.0, gpus / max(1, smallest_gang[p])) for p, gpus in repairs)
                 + sum(max(1, site // max(1, small)) for site in restores))
