"""The placement optimiser: a multi-resource assignment problem solved with HiGHS (highspy).

Problem (:class:`AssignmentProblem`): ``n`` jobs, each must take exactly one of its *columns*. A column is
"job ``j`` in bin ``b``" with a cost and up to ``R`` resource uses (e.g. GPUs of an accelerator pool, facility
power of a factory); a column with bin ``-1`` uses nothing and stands for *wait / pause*, so every instance is
feasible. Resource rows have capacities. Minimise total cost.

Pipeline (:func:`solve`), each stage keeping the best feasible plan found so far:

1. **LP relaxation** (dual simplex). Its optimum is a lower bound on every integer plan (``lp_bound``). With a
   :class:`PersistentLP` the model is kept between cycles and re-solved from the previous basis after cost,
   capacity and job-set changes (a warm start).
2. **LP-guided rounding**: jobs the LP assigns integrally keep their column (together they always fit); the
   fractional ones, most confident first, take their LP-heaviest column that still fits, else the next
   cheapest that fits, else wait.
3. **Repair** (:func:`improve`): local search with *shift* moves (a job moves to a column that fits) and
   *ejection* moves (a job takes a column that does not fit by evicting one job from the rows that overflow;
   the evicted job moves to its cheapest column that then fits, its wait column included; a swap is the special
   case where it takes the place the first job left). Candidates are the jobs whose column has a positive LP
   reduced cost, i.e. where the rounding disagrees with the LP. Every accepted move lowers the cost strictly,
   so the repair never worsens the rounding. This recovers most of the loss of fractional jobs that rounding
   sent to an expensive wait column.
4. **Neighbourhood MILPs** (:func:`neighbourhood_search`, large-neighbourhood search): for pairs of bins that
   share jobs, the jobs now in either bin plus the waiting jobs that could use them are re-solved exactly
   (HiGHS MILP over their columns in those two bins, their current and wait columns; everything else fixed),
   started from the current plan. Each sub-MILP has a few hundred binaries and closes most of the remaining
   packing loss; the stage stops at ``target_gap`` or when HiGHS's own run-time counters have spent the budget.
5. **Greedy fallback** (:func:`greedy`): if the LP fails or runs out of time, jobs in order of regret
   (second-cheapest minus cheapest cost) take their cheapest fitting column.

:func:`restricted_milp` (one MILP over each job's LP support, two next-cheapest, current and wait columns) is
kept for comparison; on 1k x 20 instances it is slower and erratic, see ``docs/geo_solver.md``.

The gap reported is ``(objective - lp_bound) / |lp_bound|``; it bounds the distance to the true optimum.
The module is pure: no I/O, no clock. The only time source is HiGHS's own ``time_limit`` option and run-time
counter; without a budget (the default stages are bounded by neighbourhood counts) results are deterministic.
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
        method: the stage that produced ``choice``: ``"lp-integral"``, ``"repair"`` (rounding + repair),
            ``"lns"`` (neighbourhood MILPs), ``"greedy"`` (fallback) or ``"empty"``.
        stages: ``(stage, objective after it)`` in pipeline order, for benchmarks and tests.
    """

    choice: IntArray
    objective: float
    lp_bound: float
    method: str
    stages: tuple[tuple[str, float], ...] = ()

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


@dataclass(frozen=True, slots=True)
class LpSolution:
    """An optimal LP relaxation.

    Attributes:
        x: ``(K,)`` column values in [0, 1].
        objective: the LP optimum (a lower bound on every integer plan).
        reduced_cost: ``(K,)`` reduced cost of every column (>= 0 up to tolerance at the optimum; 0 on basic
            columns). A column's reduced cost is what choosing it costs above the LP's prices; the repair uses
            it to find the jobs whose rounded column disagrees with the LP.
        run_time_s: HiGHS's own run time for this solve.
    """

    x: FloatArray
    objective: float
    reduced_cost: FloatArray
    run_time_s: float


def _lp_solution(h: highspy.Highs) -> LpSolution:
    sol = h.getSolution()
    return LpSolution(np.asarray(sol.col_value, dtype=np.float64), float(h.getInfo().objective_function_value),
                      np.asarray(sol.col_dual, dtype=np.float64), float(h.getRunTime()))


def _highs(time_limit_s: float | None = None) -> highspy.Highs:
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.silent()
    h.setOptionValue("threads", 1)  # deterministic, and the twin runs many policies side by side
    if time_limit_s is not None:
        h.setOptionValue("time_limit", max(0.0, float(time_limit_s)))
    return h


def lp_relaxation(p: AssignmentProblem, time_limit_s: float | None = None) -> LpSolution | None:
    """Solve the LP relaxation from scratch, or ``None`` if HiGHS did not reach optimality (time limit
    included: ``time_limit_s=0`` always returns ``None``)."""
    h = _highs(time_limit_s)
    h.setOptionValue("solver", "simplex")
    h.passModel(_model(p))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return _lp_solution(h)


def solve_lp(p: AssignmentProblem, time_limit_s: float | None = None) -> tuple[FloatArray, float] | None:
    """:func:`lp_relaxation` as ``(x, objective)``."""
    res = lp_relaxation(p, time_limit_s)
    return None if res is None else (res.x, res.objective)


class PersistentLP:
    """An LP kept between cycles and warm-started from the previous basis.

    :meth:`solve` maps the previous optimal basis onto the new problem by column identity (job key, bin) and
    row identity (job key; resource row index), so arrivals, departures, price and capacity changes all start
    from a nearly optimal basis. A change of resource-row count starts cold. The optimum does not depend on
    the start: a warm solve has the objective of a cold one (tested).
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

    def solve(self, p: AssignmentProblem, time_limit_s: float | None = None) -> tuple[FloatArray, float] | None:
        """Warm solve as ``(x, objective)``, or ``None`` (see :meth:`solve_full`)."""
        res = self.solve_full(p, time_limit_s)
        return None if res is None else (res.x, res.objective)

    def solve_full(self, p: AssignmentProblem, time_limit_s: float | None = None) -> LpSolution | None:
        """Warm solve, or ``None`` if HiGHS did not reach optimality (the next solve then starts cold)."""
        h = _highs(time_limit_s)
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
        return _lp_solution(h)


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
    """LP-guided rounding (stage 2 of the module docstring; no repair, see :func:`improve`)."""
    n = p.n_jobs
    wait = _wait_cols(p)
    cap = _Capacity(p)
    col_job = p.col_job()
    best_x = np.zeros(n)
    np.maximum.at(best_x, col_job, x)
    choice = np.full(n, -1, dtype=np.int64)
    # jobs the LP assigns integrally keep their column: their use is at most the LP's, so together they fit
    whole = np.flatnonzero(x > 1 - _EPS)
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
            if xs[o] <= _EPS and p.col_cost[c] > p.col_cost[wait[j]]:
                break  # beyond the LP's support, nothing cheaper than waiting remains in this order
            if cap.fits(c):
                choice[j] = c
                cap.take(c)
                break
        if choice[j] < 0:
            choice[j] = wait[j]
    return choice


class _Plan:
    """A mutable plan for local search: choice, capacity left per row, and the jobs on each row."""

    __slots__ = ("choice", "left", "members", "p")

    def __init__(self, p: AssignmentProblem, choice: IntArray) -> None:
        self.p = p
        self.choice = choice.copy()
        self.left = p.row_cap.astype(np.float64) - p.usage(choice)
        self.members: list[set[int]] = [set() for _ in range(p.row_cap.size)]
        rows = p.col_rows[choice]
        for j, r in zip(*np.nonzero(rows >= 0), strict=True):
            self.members[int(rows[j, r])].add(int(j))

    def move(self, j: int, c: int) -> None:
        p, old = self.p, int(self.choice[j])
        for r, u in zip(p.col_rows[old].tolist(), p.col_use[old].tolist(), strict=True):
            if r >= 0:
                self.left[r] += u
                self.members[r].discard(j)
        for r, u in zip(p.col_rows[c].tolist(), p.col_use[c].tolist(), strict=True):
            if r >= 0:
                self.left[r] -= u
                self.members[r].add(j)
        self.choice[j] = c


def _best_ejection(plan: _Plan, j: int, c: int, g_j: float, floor: float,
                   min_cost: FloatArray) -> tuple[float, int, int]:
    """Best move "job ``j`` to column ``c``, evicting one job ``k`` to its cheapest fitting column ``a``".

    ``g_j`` is ``j``'s own saving; returns ``(gain, k, a)`` with ``gain > floor``, ``k = -1`` for a plain shift,
    or ``(floor, -1, -1)`` when no such move exists.
    """
    p = plan.p
    cur = int(plan.choice[j])
    left = plan.left.copy()
    m = p.col_rows[cur] >= 0
    np.add.at(left, p.col_rows[cur][m], p.col_use[cur][m])
    rows_c = p.col_rows[c][p.col_rows[c] >= 0]
    np.subtract.at(left, rows_c, p.col_use[c][p.col_rows[c] >= 0])
    over = rows_c[left[rows_c] < -_EPS]
    if over.size == 0:
        return (g_j, -1, -1) if g_j > floor else (floor, -1, -1)
    cand = set.intersection(*(plan.members[r] for r in over.tolist()))
    cand.discard(j)
    if not cand:
        return floor, -1, -1
    ks = np.fromiter(cand, dtype=np.int64, count=len(cand))
    ks.sort()  # set order is not deterministic across runs; the tie-break below must be
    ck = plan.choice[ks]
    ks = ks[g_j + p.col_cost[ck] - min_cost[ks] > floor]  # the best k can do is its cheapest column
    if ks.size == 0:
        return floor, -1, -1
    ck = plan.choice[ks]
    rk, uk = p.col_rows[ck], p.col_use[ck]
    freed = np.stack([np.where(rk == r, uk, 0.0).sum(axis=1) for r in over.tolist()], axis=1)
    covers = (left[over][None, :] + freed >= -_EPS).all(axis=1)
    ks, ck, rk, uk = ks[covers], ck[covers], rk[covers], uk[covers]
    if ks.size == 0:
        return floor, -1, -1
    # every column of every candidate k: does it fit once j has moved and k has left?
    lens = p.job_ptr[ks + 1] - p.job_ptr[ks]
    owner = np.repeat(np.arange(ks.size), lens)
    idx = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(p.job_ptr[ks], lens)
    ra, ua = p.col_rows[idx], p.col_use[idx]
    rel = np.where(ra[:, :, None] == rk[owner][:, None, :], uk[owner][:, None, :], 0.0).sum(axis=2)
    avail = np.where(ra >= 0, left[np.maximum(ra, 0)] + rel, np.inf)
    fits = (ua <= avail + _EPS).all(axis=1) & (idx != ck[owner])
    gain = np.where(fits, g_j + p.col_cost[ck[owner]] - p.col_cost[idx], -np.inf)
    i = int(np.argmax(gain))
    if gain[i] > floor:
        return float(gain[i]), int(ks[owner[i]]), int(idx[i])
    return floor, -1, -1


def _shift_pass(plan: _Plan, col_job: IntArray, scale: float) -> int:
    """Move jobs to cheaper columns that fit in the capacity left, biggest saving first; returns the count.

    Candidates are found for all columns at once (numpy); the moves are then applied one by one, each
    re-checked against the capacity the earlier ones left.
    """
    p = plan.p
    ch = plan.choice
    own = ch[col_job]
    cheaper = p.col_cost < p.col_cost[own] - scale
    if not cheaper.any():
        return 0
    cols = np.flatnonzero(cheaper)
    ra, ua = p.col_rows[cols], p.col_use[cols]
    rk, uk = p.col_rows[own[cols]], p.col_use[own[cols]]
    rel = np.where(ra[:, :, None] == rk[:, None, :], uk[:, None, :], 0.0).sum(axis=2)
    avail = np.where(ra >= 0, plan.left[np.maximum(ra, 0)] + rel, np.inf)
    ok = (ua <= avail + _EPS).all(axis=1)
    cols, ra, ua, rel = cols[ok], ra[ok], ua[ok], rel[ok]
    if cols.size == 0:
        return 0
    delta = p.col_cost[cols] - p.col_cost[own[cols]]
    # each job moves at most once per pass: keep its three best candidates, then biggest saving first
    by_job = np.lexsort((delta, col_job[cols]))
    jobs_sorted = col_job[cols[by_job]]
    rank = np.arange(by_job.size) - np.searchsorted(jobs_sorted, jobs_sorted)
    top = by_job[rank < 3]
    order = top[np.argsort(delta[top], kind="stable")]
    # plain Python scalars from here: thousands of tiny checks, where numpy's per-call overhead dominates.
    # A job's own column only changes when it moves, and then it is done, so `rel` stays valid.
    left = plan.left.tolist()
    moved = 0
    done: set[int] = set()
    for c, j, rows, use, rl in zip(cols[order].tolist(), col_job[cols[order]].tolist(), ra[order].tolist(),
                                   ua[order].tolist(), rel[order].tolist(), strict=True):
        if j in done:
            continue
        if all(r < 0 or u <= left[r] + e + _EPS for r, u, e in zip(rows, use, rl, strict=True)):
            touched = [r for r in p.col_rows[plan.choice[j]].tolist() + rows if r >= 0]
            plan.move(j, c)
            for r in touched:
                left[r] = float(plan.left[r])
            done.add(j)
            moved += 1
    return moved


def improve(p: AssignmentProblem, choice: IntArray, reduced_cost: FloatArray | None = None,
            max_passes: int = 3, max_targets: int = 4) -> IntArray:
    """Shift/ejection local search (stage 3 of the module docstring); returns a new plan.

    Contract: if ``choice`` is feasible, the result is feasible and costs no more (each accepted move lowers
    the cost strictly). With ``reduced_cost`` (from the LP) only jobs whose column has a positive reduced cost
    move, towards columns with a lower one (their own cost may rise if the evicted job saves more); without it,
    every job not on its cheapest column tries its cheaper columns. Each job tries at most ``max_targets``
    columns (the most promising: lowest reduced cost, else lowest cost). At most ``max_passes`` sweeps.
    """
    plan = _Plan(p, choice)
    cost = p.col_cost
    min_cost = np.minimum.reduceat(cost, p.job_ptr[:-1]) if p.n_jobs else np.zeros(0)
    scale = 1e-9 * max(1.0, float(np.abs(cost).max(initial=0.0)))
    col_job = p.col_job()
    for _ in range(max_passes):
        moved = _shift_pass(plan, col_job, scale)
        ch = plan.choice
        key = reduced_cost[ch] if reduced_cost is not None else cost[ch] - min_cost
        js = np.flatnonzero(key > scale)
        for j in js[np.argsort(-key[js], kind="stable")].tolist():
            cur = int(plan.choice[j])
            lo, hi = int(p.job_ptr[j]), int(p.job_ptr[j + 1])
            floor = max(scale, 1e-9 * abs(float(cost[cur])))
            best: tuple[float, int, int, int] = (floor, -1, -1, -1)
            key_c = reduced_cost[lo:hi] if reduced_cost is not None else cost[lo:hi]
            targets = lo + np.flatnonzero(key_c < key_c[cur - lo] - scale)
            targets = targets[np.argsort(key_c[targets - lo], kind="stable")[:max_targets]]
            for c in targets.tolist():
                gain, k, a = _best_ejection(plan, j, c, float(cost[cur] - cost[c]), best[0], min_cost)
                if gain > best[0]:
                    best = (gain, c, k, a)
            if best[1] >= 0:
                if best[2] >= 0:
                    plan.move(best[2], best[3])
                plan.move(j, best[1])
                moved += 1
        if moved == 0:
            break
    return plan.choice


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
    h = _highs(time_limit_s)
    h.setOptionValue("mip_rel_gap", 1e-7)
    lp = _model(sub)
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
    new[jobs] = cols[_argmax_per_job(sub, np.asarray(h.getSolution().col_value, dtype=np.float64))]
    if p.is_feasible(new) and p.objective(new) < p.objective(choice) - 1e-9 * max(1.0, abs(p.objective(choice))):
        return new, spent
    return choice, spent


def neighbourhood_search(p: AssignmentProblem, choice: IntArray, time_limit_s: float, lp_bound: float,
                         target_gap: float = 1e-4, max_neighbourhoods: int | None = None) -> IntArray:
    """Large-neighbourhood search over pairs of bins (stage 4 of the module docstring).

    Contract: from a feasible ``choice`` returns a feasible plan that costs no more. Stops when the gap to
    ``lp_bound`` is at most ``target_gap``, after one sweep over the bin pairs that share jobs (or
    ``max_neighbourhoods`` of them), or when the sub-MILPs' HiGHS run times add up to ``time_limit_s``.
    """
    wait = _wait_cols(p)
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
    integral = bool(np.all((res.x < _EPS) | (res.x > 1 - _EPS)))
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
