"""The placement optimiser: a multi-resource assignment problem solved with HiGHS (highspy).

Problem (:class:`AssignmentProblem`): ``n`` jobs, each must take exactly one of its *columns*. A column is
"job ``j`` in bin ``b``" with a cost and up to ``R`` resource uses (e.g. GPUs of an accelerator pool, facility
power of a factory); a column with bin ``-1`` uses nothing and stands for *wait / pause*, so every instance is
feasible. Resource rows have capacities. Minimise total cost.

Pipeline (:func:`solve`), each stage keeping the best feasible plan found so far:

1. **LP relaxation** (dual simplex). Its optimum is a lower bound on every integer plan (``lp_bound``). With a
   :class:`PersistentLP` the model is kept between cycles and re-solved from the previous basis after cost,
   capacity and job-set changes (a warm start).
2. **LP-guided rounding**: jobs the LP already assigns integrally keep their column; the others, most
   confident first, take their LP-heaviest column that still fits, else the next cheapest that fits, else
   wait. A repair pass then moves jobs to cheaper columns while capacity allows.
3. **Restricted MILP**: the integer problem over each job's LP support, its two next-cheapest columns, its
   current column and its wait column, started from the rounded plan and stopped at ``time_limit_s``.
4. **Greedy fallback** (:func:`greedy`): if the LP fails or the time budget is gone, jobs in order of
   regret (second-cheapest minus cheapest cost) take their cheapest fitting column.

The gap reported is ``(objective - lp_bound) / |lp_bound|``; it bounds the distance to the true optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_EPS = 1e-7


@dataclass(frozen=True, slots=True)
class AssignmentProblem:
    """Jobs x columns with resource rows (see module docstring).

    Attributes:
        job_ptr: ``(n+1,)``; the columns of job ``j`` are ``job_ptr[j]:job_ptr[j+1]``.
        col_bin: ``(K,)`` bin of each column, ``-1`` for the wait column.
        col_cost: ``(K,)`` cost of each column.
        col_rows: ``(K, R)`` resource rows a column uses, ``-1`` for none.
        col_use: ``(K, R)`` amount used on those rows (>= 0).
        row_cap: ``(rows,)`` capacity of each resource row.
        job_keys: ``(n,)`` stable integer identity of each job (for warm starts across cycles).
        current: ``(n,)`` column index of the job's current placement, or -1.
    """

    job_ptr: IntArray
    col_bin: IntArray
    col_cost: FloatArray
    col_rows: IntArray
    col_use: FloatArray
    row_cap: FloatArray
    job_keys: IntArray
    current: IntArray

    @property
    def n_jobs(self) -> int:
        return int(self.job_ptr.size - 1)

    @property
    def n_cols(self) -> int:
        return int(self.col_bin.size)

    def col_job(self) -> IntArray:
        """``(K,)`` job of every column."""
        return np.repeat(np.arange(self.n_jobs, dtype=np.int64), np.diff(self.job_ptr))

    def objective(self, choice: IntArray) -> float:
        return float(self.col_cost[choice].sum())

    def usage(self, choice: IntArray) -> FloatArray:
        """Resource use per row of a plan (``choice[j]`` = column of job ``j``)."""
        use = np.zeros(self.row_cap.size)
        rows = self.col_rows[choice]
        amt = self.col_use[choice]
        m = rows >= 0
        np.add.at(use, rows[m], amt[m])
        return use

    def is_feasible(self, choice: IntArray, tol: float = 1e-6) -> bool:
        """Each job takes one of its own columns and no resource row is over capacity."""
        if choice.size != self.n_jobs:
            return False
        own = (choice >= self.job_ptr[:-1]) & (choice < self.job_ptr[1:])
        slack = tol * np.maximum(1.0, self.row_cap)
        return bool(own.all() and (self.usage(choice) <= self.row_cap + slack).all())


@dataclass(frozen=True, slots=True)
class Assignment:
    """A solved plan.

    Attributes:
        choice: ``(n,)`` chosen column per job.
        objective: its total cost.
        lp_bound: LP relaxation optimum (a lower bound), or ``-inf`` when no LP was solved.
        method: the stage that produced ``choice``: ``"lp-integral"``, ``"rounding"``, ``"milp"`` or
            ``"greedy"``.
    """

    choice: IntArray
    objective: float
    lp_bound: float
    method: str

    @property
    def gap(self) -> float:
        """Relative gap to the LP bound (``inf`` without a bound)."""
        if not np.isfinite(self.lp_bound):
            return float("inf")
        return (self.objective - self.lp_bound) / max(abs(self.lp_bound), 1e-9)


# == LP model ===============================================================================================
def _model(p: AssignmentProblem) -> highspy.HighsLp:
    """Columns = the problem's columns; rows = one equality per job, then the resource rows."""
    n, k = p.n_jobs, p.n_cols
    has = p.col_rows >= 0
    nnz_col = 1 + has.sum(axis=1)
    start = np.zeros(k + 1, dtype=np.int32)
    np.cumsum(nnz_col, out=start[1:])
    index = np.empty(int(start[-1]), dtype=np.int32)
    value = np.empty(int(start[-1]), dtype=np.float64)
    index[start[:-1]] = p.col_job()
    value[start[:-1]] = 1.0
    # resource entries follow each column's job entry, in column-major order of (col, r)
    pos = start[:-1, None] + np.cumsum(has, axis=1)
    index[pos[has]] = (n + p.col_rows[has]).astype(np.int32)
    value[pos[has]] = p.col_use[has]
    lp = highspy.HighsLp()
    lp.num_col_ = k
    lp.num_row_ = n + p.row_cap.size
    lp.col_cost_ = p.col_cost.astype(np.float64)
    lp.col_lower_ = np.zeros(k)
    lp.col_upper_ = np.ones(k)
    lp.row_lower_ = np.concatenate([np.ones(n), np.full(p.row_cap.size, -highspy.kHighsInf)])
    lp.row_upper_ = np.concatenate([np.ones(n), p.row_cap.astype(np.float64)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    return lp


def _primal(h: highspy.Highs) -> tuple[FloatArray, float]:
    x = np.asarray(h.getSolution().col_value, dtype=np.float64)
    return x, float(h.getInfo().objective_function_value)


def _highs(time_limit_s: float | None = None) -> highspy.Highs:
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.silent()
    h.setOptionValue("threads", 1)  # deterministic, and the twin runs many policies side by side
    if time_limit_s is not None:
        h.setOptionValue("time_limit", max(0.01, float(time_limit_s)))
    return h


def solve_lp(p: AssignmentProblem) -> tuple[FloatArray, float] | None:
    """Solve the LP relaxation from scratch: ``(x, objective)``, or ``None`` if HiGHS did not reach
    optimality."""
    h = _highs()
    h.setOptionValue("solver", "simplex")
    h.passModel(_model(p))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return _primal(h)


class PersistentLP:
    """An LP kept between cycles and warm-started from the previous basis.

    :meth:`solve` maps the previous optimal basis onto the new problem by column identity (job key, bin) and
    row identity (job key; resource row index), so arrivals, departures, price and capacity changes all start
    from a nearly optimal basis. A change of resource-row count starts cold.
    """

    def __init__(self) -> None:
        self._col_keys: IntArray | None = None
        self._row_keys: IntArray | None = None
        self._col_status: IntArray | None = None
        self._row_status: IntArray | None = None
        self._n_res = -1
        self.warm_solves = 0
        self.last_iterations = 0

    @staticmethod
    def _keys(p: AssignmentProblem) -> tuple[IntArray, IntArray]:
        span = int(p.col_bin.max(initial=0)) + 2
        col_keys = p.job_keys[p.col_job()] * span + (p.col_bin + 1)
        return col_keys, p.job_keys.astype(np.int64)

    def solve(self, p: AssignmentProblem) -> tuple[FloatArray, float] | None:
        h = _highs()
        h.setOptionValue("solver", "simplex")
        h.passModel(_model(p))
        col_keys, job_keys = self._keys(p)
        if self._col_keys is not None and self._n_res == p.row_cap.size:
            assert self._col_status is not None and self._row_status is not None
            assert self._row_keys is not None
            col_st = _remap(self._col_keys, self._col_status, col_keys, default=0)
            job_st = _remap(self._row_keys, self._row_status[: self._row_keys.size], job_keys, default=1)
            res_st = self._row_status[self._row_keys.size:]
            basis = highspy.HighsBasis()
            statuses = list(highspy.HighsBasisStatus.__members__.values())
            basis.col_status = [statuses[s] for s in col_st.tolist()]
            basis.row_status = [statuses[s] for s in np.concatenate([job_st, res_st]).tolist()]
            basis.valid = True
            basis.alien = True  # may be rank-deficient after arrivals: let HiGHS repair it
            h.setBasis(basis)
            self.warm_solves += 1
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            self._col_keys = None
            return None
        b = h.getBasis()
        self._col_keys, self._row_keys, self._n_res = col_keys, job_keys, p.row_cap.size
        self._col_status = np.fromiter((int(s) for s in b.col_status), dtype=np.int64, count=p.n_cols)
        self._row_status = np.fromiter((int(s) for s in b.row_status), dtype=np.int64)
        self.last_iterations = int(h.getInfo().simplex_iteration_count)
        return _primal(h)


def _remap(old_keys: IntArray, old_vals: IntArray, new_keys: IntArray, default: int) -> IntArray:
    order = np.argsort(old_keys, kind="stable")
    sk = old_keys[order]
    pos = np.searchsorted(sk, new_keys)
    pos_c = np.minimum(pos, max(sk.size - 1, 0))
    out = np.full(new_keys.size, default, dtype=np.int64)
    if sk.size == 0:
        return out
    hit = (pos < sk.size) & (sk[pos_c] == new_keys)
    out[hit] = old_vals[order][pos_c[hit]]
    return out


# == integer stages =========================================================================================
def _wait_cols(p: AssignmentProblem) -> IntArray:
    """Index of each job's cheapest no-resource column (the wait/pause column)."""
    free = np.flatnonzero((p.col_rows < 0).all(axis=1))
    jobs = p.col_job()[free]
    order = np.lexsort((p.col_cost[free], jobs))
    out = np.full(p.n_jobs, -1, dtype=np.int64)
    uniq, first = np.unique(jobs[order], return_index=True)  # first = cheapest free column of each job
    out[uniq] = free[order][first]
    if (out < 0).any():
        raise ValueError(f"job {int(np.flatnonzero(out < 0)[0])} has no wait column (bin -1, no resources)")
    return out


class _Capacity:
    """Remaining capacity bookkeeping for the integer heuristics."""

    __slots__ = ("left", "p")

    def __init__(self, p: AssignmentProblem) -> None:
        self.p = p
        self.left = p.row_cap.astype(np.float64).copy()

    def fits(self, c: int) -> bool:
        rows = self.p.col_rows[c]
        m = rows >= 0
        return bool((self.p.col_use[c][m] <= self.left[rows[m]] + _EPS).all())

    def take(self, c: int, sign: float = 1.0) -> None:
        rows = self.p.col_rows[c]
        m = rows >= 0
        np.subtract.at(self.left, rows[m], sign * self.p.col_use[c][m])


def round_lp(p: AssignmentProblem, x: FloatArray) -> IntArray:
    """LP-guided rounding followed by a cheapest-improvement repair pass (see module docstring)."""
    n = p.n_jobs
    wait = _wait_cols(p)
    cap = _Capacity(p)
    choice = np.full(n, -1, dtype=np.int64)
    col_job = p.col_job()
    best_x = np.zeros(n)
    np.maximum.at(best_x, col_job, x)
    # integral jobs first (they are what the LP is sure about), then by confidence
    for j in np.argsort(-best_x, kind="stable").tolist():
        lo, hi = int(p.job_ptr[j]), int(p.job_ptr[j + 1])
        xs = x[lo:hi]
        order = np.lexsort((p.col_cost[lo:hi], -np.round(xs, 6)))
        for o in order.tolist():
            c = lo + o
            if xs[o] <= _EPS and p.col_cost[c] > p.col_cost[wait[j]]:
                break  # beyond the LP's support, nothing cheaper than waiting remains in this order
            if cap.fits(c):
                choice[j] = c
                cap.take(c)
                break
        if choice[j] < 0:
            choice[j] = wait[j]
    return _repair(p, choice, cap)


def _repair(p: AssignmentProblem, choice: IntArray, cap: _Capacity) -> IntArray:
    """Move each job to its cheapest column that fits in the capacity left (one pass, biggest saving
    first)."""
    saving = np.zeros(p.n_jobs)
    for j in range(p.n_jobs):
        lo, hi = int(p.job_ptr[j]), int(p.job_ptr[j + 1])
        saving[j] = p.col_cost[choice[j]] - p.col_cost[lo:hi].min()
    for j in np.argsort(-saving, kind="stable").tolist():
        if saving[j] <= _EPS:
            break
        lo, hi = int(p.job_ptr[j]), int(p.job_ptr[j + 1])
        cur = int(choice[j])
        cap.take(cur, -1.0)
        best = cur
        for o in np.argsort(p.col_cost[lo:hi], kind="stable").tolist():
            c = lo + o
            if p.col_cost[c] >= p.col_cost[cur] - _EPS:
                break
            if cap.fits(c):
                best = c
                break
        cap.take(best)
        choice[j] = best
    return choice


def greedy(p: AssignmentProblem) -> IntArray:
    """Regret-ordered greedy: the job that loses most by missing its cheapest column chooses first."""
    n = p.n_jobs
    wait = _wait_cols(p)
    cap = _Capacity(p)
    choice = np.full(n, -1, dtype=np.int64)
    regret = np.zeros(n)
    for j in range(n):
        lo, hi = int(p.job_ptr[j]), int(p.job_ptr[j + 1])
        c = np.sort(p.col_cost[lo:hi])
        regret[j] = (c[1] - c[0]) if c.size > 1 else 0.0
    for j in np.argsort(-regret, kind="stable").tolist():
        lo, hi = int(p.job_ptr[j]), int(p.job_ptr[j + 1])
        for o in np.argsort(p.col_cost[lo:hi], kind="stable").tolist():
            c = lo + o
            if c == wait[j] or cap.fits(c):
                choice[j] = c
                cap.take(c)
                break
    return choice


def restricted_milp(p: AssignmentProblem, x: FloatArray, start: IntArray, time_limit_s: float,
                    extra: int = 2) -> IntArray | None:
    """Solve the integer problem over a restricted column set, starting from ``start``.

    Kept columns per job: its LP support (``x > 0``), its ``extra`` cheapest other columns, its current and
    wait columns, and the column of ``start``. Returns the best plan HiGHS found within the time limit, or
    ``None`` if it found none better than ``start``.
    """
    keep = x > _EPS
    keep[start] = True
    keep[p.current[p.current >= 0]] = True
    keep[_wait_cols(p)] = True
    col_job = p.col_job()
    # the `extra` cheapest columns of each job: rank columns by cost within their job
    order = np.lexsort((p.col_cost, col_job))
    rank = np.empty(p.n_cols, dtype=np.int64)
    rank[order] = np.arange(p.n_cols) - p.job_ptr[col_job[order]]
    keep |= rank < extra
    cols = np.flatnonzero(keep)
    sub = _subproblem(p, cols)
    h = _highs(time_limit_s)
    h.setOptionValue("mip_rel_gap", 1e-5)
    lp = _model(sub)
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
    sub_choice = _argmax_per_job(sub, xv)
    choice = cols[sub_choice]
    if not p.is_feasible(choice) or p.objective(choice) > p.objective(start) - _EPS:
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


def _argmax_per_job(p: AssignmentProblem, x: FloatArray) -> IntArray:
    col_job = p.col_job()
    order = np.lexsort((-x, col_job))
    first = p.job_ptr[:-1]
    return np.asarray(order[first], dtype=np.int64)


def solve(p: AssignmentProblem, milp_time_limit_s: float = 1.0, persistent: PersistentLP | None = None,
          use_milp: bool = True) -> Assignment:
    """Run the pipeline of the module docstring.

    The policy layer has no clock, so the only time budget is HiGHS's own limit on the restricted MILP
    (``milp_time_limit_s``); callers that need a wall-clock budget for the whole cycle measure it outside
    (``benchmarks/geo_solver_bench.py``). On the twin's instances the MILP proves optimality long before the
    limit, so plans do not depend on machine speed.
    """
    if p.n_jobs == 0:
        return Assignment(np.empty(0, dtype=np.int64), 0.0, 0.0, "empty")
    res = persistent.solve(p) if persistent is not None else solve_lp(p)
    if res is None:
        choice = greedy(p)
        return Assignment(choice, p.objective(choice), float("-inf"), "greedy")
    x, bound = res
    choice = round_lp(p, x)
    method = "rounding"
    integral = bool(np.all((x < _EPS) | (x > 1 - _EPS)))
    if integral and abs(p.objective(choice) - bound) <= 1e-9 * max(1.0, abs(bound)):
        method = "lp-integral"
    elif use_milp and milp_time_limit_s > 0:
        better = restricted_milp(p, x, choice, milp_time_limit_s)
        if better is not None:
            choice, method = better, "milp"
    return Assignment(choice, p.objective(choice), bound, method)
