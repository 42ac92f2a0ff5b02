"""Exact re-solves of parts of a plan with HiGHS MILPs (stage 4 of the solver pipeline).

:func:`neighbourhood_search` (large-neighbourhood search): for pairs of bins that share jobs, the jobs now in
either bin plus the waiting jobs that could use them are re-solved exactly (HiGHS MILP over their columns in
those two bins, their current and wait columns; everything else fixed), started from the current plan. Each
sub-MILP has a few hundred binaries and closes most of the remaining packing loss; the stage stops at
``target_gap`` or when HiGHS's own run-time counters have spent the budget.

:func:`restricted_milp` (one MILP over each job's LP support, two next-cheapest, current and wait columns) is
kept for comparison; on 1k x 20 instances it is slower and erratic, see ``docs/geo_solver.md``.

Contract: both start from a feasible plan and return a feasible one that costs no more (``restricted_milp``:
a strictly cheaper one or ``None``). Pure: no I/O, no clock; the only time source is HiGHS's ``time_limit``
option and run-time counter, so results under a binding budget depend on machine speed.
"""

from __future__ import annotations

import highspy
import numpy as np

from superfactory.policy.assignment import EPS, AssignmentProblem, FloatArray, IntArray, argmax_per_job, wait_cols
from superfactory.policy.relaxation import highs_model, new_highs


def restricted_milp(p: AssignmentProblem, x: FloatArray, start: IntArray, time_limit_s: float,
                    extra: int = 2) -> IntArray | None:
    """Solve the integer problem over a restricted column set, starting from ``start``.

    Kept columns per job: its LP support (``x > 0``), its ``extra`` cheapest other columns, its current and
    wait columns, and the column of ``start``. Returns the best plan HiGHS found within the time limit, or
    ``None`` if it found none better than ``start``.
    """
    keep = x > EPS
    keep[start] = True
    keep[p.current[p.current >= 0]] = True
    keep[wait_cols(p)] = True
    col_job = p.col_job()
    # the `extra` cheapest columns of each job: rank columns by cost within their job
    order = np.lexsort((p.col_cost, col_job))
    rank = np.empty(p.n_cols, dtype=np.int64)
    rank[order] = np.arange(p.n_cols) - p.job_ptr[col_job[order]]
    keep |= rank < extra
    cols = np.flatnonzero(keep)
    sub = _subproblem(p, cols)
    h = new_highs(time_limit_s)
    h.setOptionValue("mip_rel_gap", 1e-5)
    lp = highs_model(sub)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * sub.n_cols
    h.passModel(lp)
    pos = np.searchsorted(cols, start)
    sol = highspy.HighsSolution()
    v = np.zeros(sub.n_cols)
    v[pos] = 1.0
    sol.col_value = v.tolist()
    sol.value_valid = True
    h.setSolution(sol)
    h.run()
    info = h.getInfo()
    if info.primal_solution_status != 2:  # kSolutionStatusFeasible
        return None
    xv = np.asarray(h.getSolution().col_value, dtype=np.float64)
    sub_choice = argmax_per_job(sub, xv)
    choice = cols[sub_choice]
    if not p.is_feasible(choice) or p.objective(choice) > p.objective(start) - EPS:
        return None
    return choice


def _subproblem(p: AssignmentProblem, cols: IntArray) -> AssignmentProblem:
    col_job = p.col_job()[cols]
    ptr = np.zeros(p.n_jobs + 1, dtype=np.int64)
    np.cumsum(np.bincount(col_job, minlength=p.n_jobs), out=ptr[1:])
    cur = np.full(p.n_jobs, -1, dtype=np.int64)
    has = p.current >= 0
    cur[has] = np.searchsorted(cols, p.current[has])
    return AssignmentProblem(ptr, p.col_bin[cols], p.col_cost[cols], p.col_rows[cols], p.col_use[cols],
                             p.row_cap, p.job_keys, cur)


def _bin_pairs(p: AssignmentProblem) -> list[tuple[int, int]]:
    """Pairs of bins that share at least one job, most shared jobs first (ties by index: deterministic)."""
    bins = np.unique(p.col_bin[p.col_bin >= 0])
    if bins.size < 2:
        return [(int(b), int(b)) for b in bins]
    inc = np.zeros((p.n_jobs, bins.size), dtype=np.float64)
    real = p.col_bin >= 0
    inc[p.col_job()[real], np.searchsorted(bins, p.col_bin[real])] = 1.0
    shared = inc.T @ inc
    iu, ju = np.triu_indices(bins.size, k=1)
    w = shared[iu, ju]
    order = np.lexsort((ju, iu, -w))
    return [(int(bins[iu[o]]), int(bins[ju[o]])) for o in order.tolist() if w[o] > 0]


def _neighbourhood_milp(p: AssignmentProblem, choice: IntArray, bins: tuple[int, int], wait: IntArray,
                        time_limit_s: float) -> tuple[IntArray, float]:
    """Re-solve exactly the jobs now in ``bins`` and the waiting jobs that could use them, all else fixed.

    Returns ``(plan, HiGHS run time)``; the plan is ``choice`` unless HiGHS found a strictly cheaper one.
    """
    col_job = p.col_job()
    in_nb = (p.col_bin == bins[0]) | (p.col_bin == bins[1])
    can = np.zeros(p.n_jobs, dtype=bool)
    can[col_job[in_nb]] = True
    free = in_nb[choice] | (can & (p.col_bin[choice] < 0))
    jobs = np.flatnonzero(free)
    if jobs.size == 0:
        return choice, 0.0
    keep = in_nb & free[col_job]
    keep[choice[jobs]] = True
    keep[wait[jobs]] = True
    cols = np.flatnonzero(keep)
    fixed = choice.copy()
    fixed[jobs] = wait[jobs]  # wait columns use nothing: usage of the fixed jobs only
    local = np.full(p.n_jobs, -1, dtype=np.int64)
    local[jobs] = np.arange(jobs.size)
    ptr = np.zeros(jobs.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(local[col_job[cols]], minlength=jobs.size), out=ptr[1:])
    sub = AssignmentProblem(ptr, p.col_bin[cols], p.col_cost[cols], p.col_rows[cols], p.col_use[cols],
                            p.row_cap - p.usage(fixed), p.job_keys[jobs], np.full(jobs.size, -1, dtype=np.int64))
    h = new_highs(time_limit_s)
    h.setOptionValue("mip_rel_gap", 1e-7)
    lp = highs_model(sub)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * sub.n_cols
    h.passModel(lp)
    start = np.zeros(sub.n_cols)
    start[np.searchsorted(cols, choice[jobs])] = 1.0
    sol = highspy.HighsSolution()
    sol.col_value = start.tolist()
    sol.value_valid = True
    h.setSolution(sol)
    h.run()
    spent = float(h.getRunTime())
    if h.getInfo().primal_solution_status != 2:  # kSolutionStatusFeasible
        return choice, spent
    new = choice.copy()
    new[jobs] = cols[argmax_per_job(sub, np.asarray(h.getSolution().col_value, dtype=np.float64))]
    if p.is_feasible(new) and p.objective(new) < p.objective(choice) - 1e-9 * max(1.0, abs(p.objective(choice))):
        return new, spent
    return choice, spent


def neighbourhood_search(p: AssignmentProblem, choice: IntArray, time_limit_s: float, lp_bound: float,
                         target_gap: float = 1e-4, max_neighbourhoods: int | None = None) -> IntArray:
    """Large-neighbourhood search over pairs of bins (see the module docstring).

    Contract: from a feasible ``choice`` returns a feasible plan that costs no more. Stops when the gap to
    ``lp_bound`` is at most ``target_gap``, after one sweep over the bin pairs that share jobs (or
    ``max_neighbourhoods`` of them), or when the sub-MILPs' HiGHS run times add up to ``time_limit_s``.
    """
    wait = wait_cols(p)
    pairs = _bin_pairs(p)
    if max_neighbourhoods is not None:
        pairs = pairs[:max_neighbourhoods]
    spent = 0.0
    goal = lp_bound + target_gap * max(abs(lp_bound), 1e-9)
    for pair in pairs:
        left = time_limit_s - spent
        if left <= 0 or p.objective(choice) <= goal:
            break
        choice, used = _neighbourhood_milp(p, choice, pair, wait, left)
        spent += used
    return choice
