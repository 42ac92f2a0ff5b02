"""The LP relaxation of an :class:`~superfactory.policy.assignment.AssignmentProblem`, cold or warm (HiGHS).

Contract: :func:`highs_model` is the one HiGHS model of a problem (columns = the problem's columns; rows = one
equality per job, then the resource rows), used by the LP here and by the MILPs of
:mod:`superfactory.policy.neighbourhood`; :func:`new_highs` is the one way to configure HiGHS (silent,
single-threaded, optional ``time_limit``). :func:`lp_relaxation` solves the LP (dual simplex) from scratch;
its optimum is a lower bound on every integer plan (``lp_bound``). :class:`PersistentLP` keeps the model
between cycles and re-solves it from the previous basis after cost, capacity and job-set changes (a warm
start); warm and cold optima are equal. Both return ``None`` when HiGHS does not reach optimality (its time
limit included), which sends :func:`~superfactory.policy.solver.solve` to its greedy fallback.

Pure: no I/O, no clock; the only time source is HiGHS's own ``time_limit`` option and run-time counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import highspy
import numpy as np
import numpy.typing as npt

from superfactory.policy.assignment import AssignmentProblem, FloatArray

_ModelArrays = tuple[int, int, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray,
                     npt.NDArray[np.int32], npt.NDArray[np.int32], FloatArray]


def _model_arrays(p: AssignmentProblem) -> _ModelArrays:
    """The arrays of :func:`highs_model`: (columns, rows, cost, col lower, col upper, row lower, row upper,
    column starts, row indices, values), column-wise."""
    n, k = p.n_jobs, p.n_cols
    if k <= _SMALL_COLS:
        return _model_lists(p)
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
    row_lower = np.concatenate([np.ones(n), np.full(p.row_cap.size, -highspy.kHighsInf)])
    row_upper = np.concatenate([np.ones(n), p.row_cap.astype(np.float64)])
    return (k, n + p.row_cap.size, p.col_cost.astype(np.float64), np.zeros(k), np.ones(k), row_lower, row_upper,
            start, index, value)


#: problems with at most this many columns have their model arrays made from plain Python values
_SMALL_COLS = 256


def _model_lists(p: AssignmentProblem) -> _ModelArrays:
    """:func:`_model_arrays` of a small problem, entry by entry in the same order (each column: its job's
    row, then its resource rows in slot order): numpy's per-call cost was most of a small model's build."""
    n, k = p.n_jobs, p.n_cols
    ptr = p.job_ptr.tolist()
    rows_of = p.col_rows.tolist()
    use_of = p.col_use.tolist()
    start = [0]
    index: list[int] = []
    value: list[float] = []
    for j in range(n):
        for c in range(ptr[j], ptr[j + 1]):
            index.append(j)
            value.append(1.0)
            for r, u in zip(rows_of[c], use_of[c], strict=True):
                if r >= 0:
                    index.append(n + r)
                    value.append(u)
            start.append(len(index))
    nr = p.row_cap.size
    return (k, n + nr, p.col_cost.astype(np.float64), np.zeros(k), np.ones(k),
            np.array([1.0] * n + [-highspy.kHighsInf] * nr, dtype=np.float64),
            np.array([1.0] * n + p.row_cap.tolist(), dtype=np.float64), np.array(start, dtype=np.int32),
            np.array(index, dtype=np.int32), np.array(value, dtype=np.float64))


def highs_model(p: AssignmentProblem) -> highspy.HighsLp:
    """Columns = the problem's columns; rows = one equality per job, then the resource rows."""
    k, rows, cost, col_lower, col_upper, row_lower, row_upper, start, index, value = _model_arrays(p)
    lp = highspy.HighsLp()
    lp.num_col_ = k
    lp.num_row_ = rows
    lp.col_cost_ = cost
    lp.col_lower_ = col_lower
    lp.col_upper_ = col_upper
    lp.row_lower_ = row_lower
    lp.row_upper_ = row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    return lp


_COLWISE = int(highspy.MatrixFormat.kColwise)
_MINIMIZE = int(highspy.ObjSense.kMinimize)


def _pass_model(h: highspy.Highs, p: AssignmentProblem) -> None:
    """``h.passModel(highs_model(p))`` without the :class:`highspy.HighsLp` object: the same model passed as
    arrays (setting the object's fields one by one cost more than the LP of a small problem; issue 12)."""
    k, rows, cost, col_lower, col_upper, row_lower, row_upper, start, index, value = _model_arrays(p)
    h.passModel(k, rows, int(index.size), _COLWISE, _MINIMIZE, 0.0, cost, col_lower, col_upper, row_lower,
                row_upper, start, index, value, np.zeros(k, dtype=np.int32))  # every column continuous


#: HiGHS's basis statuses by their integer code (index = code)
_STATUSES = list(highspy.HighsBasisStatus.__members__.values())


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


def _lp_solution(h: highspy.Highs, started_s: float = 0.0, info: highspy.HighsInfo | None = None) -> LpSolution:
    """The solution of the last run; ``started_s``: ``h``'s run-time counter before it (the counter adds up
    over the runs of one instance); ``info``: ``h.getInfo()`` when the caller has it."""
    sol = h.getSolution()
    info = h.getInfo() if info is None else info
    return LpSolution(np.asarray(sol.col_value, dtype=np.float64), float(info.objective_function_value),
                      np.asarray(sol.col_dual, dtype=np.float64), float(h.getRunTime()) - started_s)


def new_highs(time_limit_s: float | None = None) -> highspy.Highs:
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.silent()
    h.setOptionValue("threads", 1)  # deterministic, and the twin runs many policies side by side
    if time_limit_s is not None:
        h.setOptionValue("time_limit", max(0.0, float(time_limit_s)))
    return h


def lp_relaxation(p: AssignmentProblem, time_limit_s: float | None = None) -> LpSolution | None:
    """Solve the LP relaxation from scratch, or ``None`` if HiGHS did not reach optimality (time limit
    included: ``time_limit_s=0`` always returns ``None``)."""
    h = new_highs(time_limit_s)
    h.setOptionValue("solver", "simplex")
    _pass_model(h, p)
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
        # the last optimal basis: column keys (job key, bin) and job keys with HiGHS's statuses, as plain lists
        # (the statuses are HiGHS's own enum values, handed back to it unconverted)
        self._col_keys: list[int] | None = None
        self._row_keys: list[int] | None = None
        self._col_status: list[highspy.HighsBasisStatus] | None = None
        self._row_status: list[highspy.HighsBasisStatus] | None = None
        self._n_res = -1
        self.warm_solves = 0
        self.last_iterations = 0
        # one HiGHS instance for every solve without a time limit: a fresh one costs more than a small LP
        # (passModel replaces the model and clears the solver's data, so each solve starts from the model and
        # the basis set here, as a fresh instance would)
        self._highs: highspy.Highs | None = None

    @staticmethod
    def _keys(p: AssignmentProblem) -> tuple[list[int], list[int]]:
        """(key of every column: job key x span + bin + 1, key of every job) as Python ints."""
        span = int(p.col_bin.max(initial=0)) + 2
        job_keys = p.job_keys.astype(np.int64).tolist()
        ptr = p.job_ptr.tolist()
        bins = p.col_bin.tolist()
        col_keys = [job_keys[j] * span + bins[c] + 1 for j in range(len(ptr) - 1) for c in range(ptr[j], ptr[j + 1])]
        return col_keys, job_keys

    def solve(self, p: AssignmentProblem, time_limit_s: float | None = None) -> tuple[FloatArray, float] | None:
        """Warm solve as ``(x, objective)``, or ``None`` (see :meth:`solve_full`)."""
        res = self.solve_full(p, time_limit_s)
        return None if res is None else (res.x, res.objective)

    def solve_full(self, p: AssignmentProblem, time_limit_s: float | None = None) -> LpSolution | None:
        """Warm solve, or ``None`` if HiGHS did not reach optimality (the next solve then starts cold)."""
        if time_limit_s is None:
            h = self._highs
            if h is None:
                h = self._highs = new_highs()
                h.setOptionValue("solver", "simplex")
            else:
                h.clearSolver()
        else:
            h = new_highs(time_limit_s)
            h.setOptionValue("solver", "simplex")
        _pass_model(h, p)
        col_keys, job_keys = self._keys(p)
        if self._col_keys is not None and self._n_res == p.row_cap.size:
            assert self._col_status is not None and self._row_status is not None
            assert self._row_keys is not None
            n_old = len(self._row_keys)
            basis = highspy.HighsBasis()
            basis.col_status = _remap(self._col_keys, self._col_status, col_keys, _STATUSES[0])
            basis.row_status = (_remap(self._row_keys, self._row_status[:n_old], job_keys, _STATUSES[1])
                                + self._row_status[n_old:])
            basis.valid = True
            basis.alien = True  # may be rank-deficient after arrivals: let HiGHS repair it
            h.setBasis(basis)
            self.warm_solves += 1
        started_s = float(h.getRunTime())
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            self._col_keys = None
            return None
        b = h.getBasis()
        self._col_keys, self._row_keys, self._n_res = col_keys, job_keys, p.row_cap.size
        self._col_status = b.col_status
        self._row_status = b.row_status
        info = h.getInfo()
        self.last_iterations = int(info.simplex_iteration_count)
        return _lp_solution(h, started_s, info)


_S = TypeVar("_S")


def _remap(old_keys: list[int], old_vals: list[_S], new_keys: list[int], default: _S) -> list[_S]:
    """Per new key, the value of its first occurrence among the old keys, else ``default``."""
    first: dict[int, _S] = {}
    for k, v in zip(old_keys, old_vals, strict=True):
        first.setdefault(k, v)
    return [first.get(k, default) for k in new_keys]
