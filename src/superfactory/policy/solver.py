"""The placement optimiser: the :func:`solve` pipeline over an assignment problem, solved with HiGHS (highspy).

Problem and plan types live in :mod:`superfactory.policy.assignment` (:class:`AssignmentProblem`: jobs each take
exactly one column, columns use capacitated resource rows, a wait column per job keeps every instance feasible;
:class:`Assignment`: the solved plan). This module is the public entry point: it holds the constructive stages
(LP-guided rounding, greedy) and :func:`solve`, and re-exports the names callers use from the stage modules
(``from superfactory.policy import solver as S``; ``S.AssignmentProblem``, ``S.PersistentLP``, ``S.improve`` …).

Pipeline (:func:`solve`), each stage keeping the best feasible plan found so far:

1. **LP relaxation** (:mod:`.relaxation`, dual simplex). Its optimum is a lower bound on every integer plan
   (``lp_bound``). With a :class:`PersistentLP` the model is kept between cycles and re-solved from the
   previous basis after cost, capacity and job-set changes (a warm start).
2. **LP-guided rounding** (:func:`round_lp`, here): jobs the LP assigns integrally keep their column (together
   they always fit); the fractional ones, most confident first, take their LP-heaviest column that still fits,
   else the next cheapest that fits, else wait.
3. **Repair** (:func:`improve`, :mod:`.local_search`): shift and ejection moves for the jobs whose column has a
   positive LP reduced cost; every accepted move lowers the cost strictly, so the repair never worsens the
   rounding.
4. **Neighbourhood MILPs** (:func:`neighbourhood_search`, :mod:`.neighbourhood`, large-neighbourhood search):
   pairs of bins that share jobs are re-solved exactly, started from the current plan; the stage stops at
   ``target_gap`` or when HiGHS's own run-time counters have spent the budget.
5. **Greedy fallback** (:func:`greedy`, here): if the LP fails or runs out of time, jobs in order of regret
   (second-cheapest minus cheapest cost) take their cheapest fitting column.

The gap reported is ``(objective - lp_bound) / |lp_bound|``; it bounds the distance to the true optimum.
The module is pure: no I/O, no clock. The only time source is HiGHS's own ``time_limit`` option and run-time
counter; without a budget (the default stages are bounded by neighbourhood counts) results are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from superfactory.policy.assignment import EPS, Assignment, AssignmentProblem, FloatArray, IntArray, wait_cols
from superfactory.policy.local_search import improve
from superfactory.policy.neighbourhood import neighbourhood_search, restricted_milp
from superfactory.policy.relaxation import LpSolution, PersistentLP, highs_model, lp_relaxation, solve_lp

__all__ = [
    "Assignment", "AssignmentProblem", "FloatArray", "IntArray", "LpSolution", "PersistentLP", "greedy", "improve",
    "lp_relaxation", "neighbourhood_search", "regret_greedy", "restricted_milp", "round_lp", "solve", "solve_lp",
]

_model = highs_model  # the tests and the benchmark build the HiGHS model of a problem through this name


class _Capacity:
    """Remaining capacity bookkeeping for the integer heuristics."""

    __slots__ = ("left", "p")

    def __init__(self, p: AssignmentProblem) -> None:
        self.p = p
        self.left = p.row_cap.astype(np.float64).copy()

    def fits(self, c: int) -> bool:
        rows = self.p.col_rows[c]
        m = rows >= 0
        return bool((self.p.col_use[c][m] <= self.left[rows[m]] + EPS).all())

    def take(self, c: int, sign: float = 1.0) -> None:
        rows = self.p.col_rows[c]
        m = rows >= 0
        np.subtract.at(self.left, rows[m], sign * self.p.col_use[c][m])


#: problems with at most this many columns are rounded on plain Python values (:func:`_round_small`)
SMALL_COLS = 256


def round_lp(p: AssignmentProblem, x: FloatArray) -> IntArray:
    """LP-guided rounding (stage 2 of the module docstring; no repair, see :func:`improve`)."""
    if p.n_cols <= SMALL_COLS:
        return _round_small(p, x)
    return _round_arrays(p, x)


def _round_arrays(p: AssignmentProblem, x: FloatArray) -> IntArray:
    """:func:`round_lp` on the problem's arrays."""
    n = p.n_jobs
    wait = wait_cols(p)
    cap = _Capacity(p)
    col_job = p.col_job()
    best_x = np.zeros(n)
    np.maximum.at(best_x, col_job, x)
    choice = np.full(n, -1, dtype=np.int64)
    # jobs the LP assigns integrally keep their column: their use is at most the LP's, so together they fit
    whole = np.flatnonzero(x > 1 - EPS)
    choice[col_job[whole]] = whole
    cap.left -= p.usage(np.where(choice >= 0, choice, wait))
    # the fractional ones by confidence
    frac = np.flatnonzero(choice < 0)
    for j in frac[np.argsort(-best_x[frac], kind="stable")].tolist():
        lo, hi = int(p.job_ptr[j]), int(p.job_ptr[j + 1])
        xs = x[lo:hi]
        order = np.lexsort((p.col_cost[lo:hi], -np.round(xs, 6)))
        for o in order.tolist():
            c = lo + o
            if xs[o] <= EPS and p.col_cost[c] > p.col_cost[wait[j]]:
                break  # beyond the LP's support, nothing cheaper than waiting remains in this order
            if cap.fits(c):
                choice[j] = c
                cap.take(c)
                break
        if choice[j] < 0:
            choice[j] = wait[j]
    return choice


def _round_small(p: AssignmentProblem, x: FloatArray) -> IntArray:
    """:func:`_round_arrays`'s plan, on plain Python values: the same comparisons on the same floats, and the
    capacity left per row made by the same additions and subtractions in the same order (``np.add.at`` and
    ``np.subtract.at`` apply their entries one by one, in order), without numpy's per-call cost, which is most
    of a geo full solve's rounding (1-10 jobs, ~12-40 columns; issue 12). Equal to it (tested)."""
    n = p.n_jobs
    ptr = p.job_ptr.tolist()
    cost = p.col_cost.tolist()
    rows_of = p.col_rows.tolist()
    use_of = p.col_use.tolist()
    xl = x.tolist()
    xr = np.round(x, 6).tolist()  # numpy's rounding, element by element as on the slices
    wait = _wait_small(ptr, cost, rows_of) if not np.isnan(p.col_cost).any() else wait_cols(p).tolist()
    choice = [-1] * n
    best_x = [0.0] * n
    hi_x = 1 - EPS
    for j in range(n):
        b = 0.0
        for c in range(ptr[j], ptr[j + 1]):
            v = xl[c]
            b = max(b, v)  # (np.maximum.at from 0.0; equal values compare equal in the sort)
            if v > hi_x:
                choice[j] = c  # (the last such column, as numpy's assignment with repeated indices)
        best_x[j] = b
    use = [0.0] * p.row_cap.size
    for j in range(n):
        c = choice[j] if choice[j] >= 0 else wait[j]
        for r, u in zip(rows_of[c], use_of[c], strict=True):
            if r >= 0:
                use[r] += u
    left = [cap - u for cap, u in zip(p.row_cap.astype(np.float64).tolist(), use, strict=True)]
    frac = [j for j in range(n) if choice[j] < 0]
    frac.sort(key=lambda j: -best_x[j])  # stable, as argsort(kind="stable")
    for j in frac:
        lo, hi = ptr[j], ptr[j + 1]
        wait_cost = cost[wait[j]]
        for c in sorted(range(lo, hi), key=lambda c: (-xr[c], cost[c])):  # np.lexsort: stable, by index
            if xl[c] <= EPS and cost[c] > wait_cost:
                break  # beyond the LP's support, nothing cheaper than waiting remains in this order
            rows, uses = rows_of[c], use_of[c]
            if all(u <= left[r] + EPS for r, u in zip(rows, uses, strict=True) if r >= 0):
                choice[j] = c
                for r, u in zip(rows, uses, strict=True):
                    if r >= 0:
                        left[r] -= 1.0 * u
                break
        if choice[j] < 0:
            choice[j] = wait[j]
    return np.array(choice, dtype=np.int64)


def _wait_small(ptr: list[int], cost: list[float], rows_of: list[list[int]]) -> list[int]:
    """:func:`~superfactory.policy.assignment.wait_cols` on plain values (costs without NaN): per job, its
    cheapest column that uses no row, the lowest index among equal costs."""
    out: list[int] = []
    for j in range(len(ptr) - 1):
        best = -1
        for c in range(ptr[j], ptr[j + 1]):
            if (best < 0 or cost[c] < cost[best]) and all(r < 0 for r in rows_of[c]):
                best = c
        if best < 0:
            raise ValueError(f"job {j} has no wait column (bin -1, no resources)")
        out.append(best)
    return out


def regret_greedy(costs: Sequence[Sequence[float]], place: Callable[[int, int], bool]) -> list[int]:
    """The regret-ordered greedy over any bookkeeping of capacity (the one implementation :func:`greedy` and
    geo's placement of pending work between full solves both use).

    ``costs[j]`` are job ``j``'s column costs; jobs choose in order of regret (second-cheapest minus cheapest
    cost, largest first, ties by index), each trying its columns from the cheapest (ties by index) and taking
    the first for which ``place(j, k)`` returns True (``place`` checks the rows, takes the capacity when it
    fits, and must accept a job's wait column). Returns the chosen column index per job, -1 where ``place``
    accepted none.
    """
    regret = []
    for c in costs:
        s = sorted(c)
        regret.append(s[1] - s[0] if len(s) > 1 else 0.0)
    choice = [-1] * len(costs)
    for j in sorted(range(len(costs)), key=lambda j: -regret[j]):
        cj = costs[j]
        for k in sorted(range(len(cj)), key=cj.__getitem__):
            if place(j, k):
                choice[j] = k
                break
    return choice


def greedy(p: AssignmentProblem) -> IntArray:
    """Regret-ordered greedy (:func:`regret_greedy`): the job that loses most by missing its cheapest column
    chooses first, and takes its cheapest column that fits the rows."""
    wait = wait_cols(p).tolist()
    cap = _Capacity(p)
    ptr = p.job_ptr.tolist()
    costs = [p.col_cost[ptr[j]:ptr[j + 1]].tolist() for j in range(p.n_jobs)]

    def place(j: int, k: int) -> bool:
        c = ptr[j] + k
        if c == wait[j] or cap.fits(c):
            cap.take(c)
            return True
        return False

    local = regret_greedy(costs, place)
    return np.array([ptr[j] + k for j, k in enumerate(local)], dtype=np.int64)


def solve(p: AssignmentProblem, milp_time_limit_s: float = 1.0, persistent: PersistentLP | None = None,
          use_milp: bool = True, *, lp_time_limit_s: float | None = None, target_gap: float = 1e-4,
          max_neighbourhoods: int | None = None) -> Assignment:
    """Run the pipeline of the module docstring.

    ``lp_time_limit_s`` bounds the LP (HiGHS option); if the LP does not finish the plan comes from
    :func:`greedy` (method ``"greedy"``, no bound). ``milp_time_limit_s`` is the HiGHS run-time budget of
    the neighbourhood MILPs (stage 4, skipped when ``use_milp`` is false or the budget is 0). The policy layer
    has no clock: callers that need a wall-clock budget for the whole cycle measure it outside
    (``benchmarks/geo_solver_bench.py``). ``Assignment.stages`` records the objective after each stage.
    """
    if p.n_jobs == 0:
        return Assignment(np.empty(0, dtype=np.int64), 0.0, 0.0, "empty")
    res = persistent.solve_full(p, lp_time_limit_s) if persistent is not None \
        else lp_relaxation(p, lp_time_limit_s)
    if res is None:
        choice = greedy(p)
        obj = p.objective(choice)
        return Assignment(choice, obj, float("-inf"), "greedy", (("greedy", obj),))
    bound = res.objective
    choice = round_lp(p, res.x)
    stages = [("rounding", p.objective(choice))]
    integral = bool(np.all((res.x < EPS) | (res.x > 1 - EPS)))
    if integral and abs(stages[0][1] - bound) <= 1e-9 * max(1.0, abs(bound)):
        return Assignment(choice, stages[0][1], bound, "lp-integral", tuple(stages))
    choice = improve(p, choice, res.reduced_cost)
    stages.append(("repair", p.objective(choice)))
    method = "repair"
    if use_milp and milp_time_limit_s > 0:
        before = stages[-1][1]
        choice = neighbourhood_search(p, choice, milp_time_limit_s, bound, target_gap, max_neighbourhoods)
        stages.append(("lns", p.objective(choice)))
        if stages[-1][1] < before:
            method = "lns"
    return Assignment(choice, stages[-1][1], bound, method, tuple(stages))
