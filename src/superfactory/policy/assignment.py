"""The placement optimiser's problem and plan types: a multi-resource assignment problem and its solution.

Problem (:class:`AssignmentProblem`): ``n`` jobs, each must take exactly one of its *columns*. A column is
"job ``j`` in bin ``b``" with a cost and up to ``R`` resource uses (e.g. GPUs of an accelerator pool, facility
power of a factory); a column with bin ``-1`` uses nothing and stands for *wait / pause*, so every instance is
feasible. Resource rows have capacities. Minimise total cost.

Plan (:class:`Assignment`): the chosen column per job, its cost, the LP lower bound and the stage that found
it. The gap reported is ``(objective - lp_bound) / |lp_bound|``; it bounds the distance to the true optimum.

This module holds only values and the small numpy helpers every stage shares (:func:`wait_cols`,
:func:`argmax_per_job`); it imports nothing from the other solver modules, so they can all import it. The
stages: :mod:`.relaxation` (LP), :mod:`.local_search` (repair), :mod:`.neighbourhood` (MILPs),
:mod:`.solver` (rounding, greedy and the :func:`~superfactory.policy.solver.solve` pipeline). Pure: no I/O,
no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
EPS = 1e-7  # tolerance on column values and capacity checks, shared by every stage


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


def wait_cols(p: AssignmentProblem) -> IntArray:
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


def argmax_per_job(p: AssignmentProblem, x: FloatArray) -> IntArray:
    """Column of each job with the largest value in ``x`` (ties: the lowest column); reads an (MI)LP solution."""
    col_job = p.col_job()
    order = np.lexsort((-x, col_job))
    first = p.job_ptr[:-1]
    return np.asarray(order[first], dtype=np.int64)
