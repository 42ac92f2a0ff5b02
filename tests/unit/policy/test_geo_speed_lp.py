"""geo's warm LP keeps one HiGHS instance between solves (issue 12): its answers must be those of a fresh
instance given the same model and basis, solve after solve, and a solve's run time must be that solve's alone."""

from __future__ import annotations

import numpy as np
import pytest

from superfactory.policy.assignment import AssignmentProblem
from superfactory.policy.relaxation import PersistentLP, highs_model


def _problem(rng: np.random.Generator, n: int, bins: int) -> AssignmentProblem:
    """n jobs, each with a wait column and one column per bin (one node row per bin, a power row per bin)."""
    k = bins + 1
    ptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    col_bin = np.tile(np.arange(-1, bins, dtype=np.int64), n)
    cost = rng.uniform(0.0, 10.0, n * k)
    cost[col_bin < 0] = rng.uniform(4.0, 8.0, n)  # waiting is sometimes cheaper than every bin
    rows = np.full((n * k, 2), -1, dtype=np.int64)
    use = np.zeros((n * k, 2))
    on = col_bin >= 0
    rows[on, 0] = col_bin[on]
    rows[on, 1] = bins + col_bin[on]
    use[on, 0] = rng.integers(1, 5, int(on.sum()))
    use[on, 1] = rng.uniform(0.5, 2.0, int(on.sum()))
    cap = np.concatenate([rng.uniform(5, 3 * n / bins, bins), rng.uniform(3, n / bins, bins)])
    return AssignmentProblem(ptr, col_bin, cost, rows, use, cap, rng.permutation(4 * n)[:n].astype(np.int64),
                             np.full(n, -1, dtype=np.int64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reused_instance_answers_as_a_fresh_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kept, fresh = PersistentLP(), PersistentLP()
    bins = 2 + seed  # one shape of resource rows: every solve after the first starts warm
    for step in range(12):
        p = _problem(rng, int(rng.integers(20, 80)), bins)
        fresh._highs = None  # a new HiGHS instance for every solve, as before the change
        a, b = kept.solve_full(p), fresh.solve_full(p)
        assert a is not None and b is not None
        assert a.objective == b.objective, step
        assert np.array_equal(a.x, b.x) and np.array_equal(a.reduced_cost, b.reduced_cost), step
        assert np.array_equal(kept._col_status, fresh._col_status), step
        assert np.array_equal(kept._row_status, fresh._row_status), step
    assert kept.warm_solves == fresh.warm_solves == 11


def test_run_time_is_per_solve() -> None:
    rng = np.random.default_rng(7)
    lp = PersistentLP()
    times = []
    for _ in range(5):
        res = lp.solve_full(_problem(rng, 60, 4))
        assert res is not None
        times.append(res.run_time_s)
    assert lp._highs is not None
    total = float(lp._highs.getRunTime())  # HiGHS's counter adds up over the instance's runs
    assert all(t >= 0.0 for t in times)
    assert sum(times) == pytest.approx(total, rel=1e-6, abs=1e-9)
    assert max(times) < total


def _reference_matrix(p: AssignmentProblem) -> tuple[list[int], list[int], list[float]]:
    """The constraint matrix column by column, as plain loops: each column's job row (1.0), then its resource rows
    in order (the problem's use), after the job rows."""
    start, index, value = [0], [], []
    job = p.col_job()
    for c in range(p.n_cols):
        index.append(int(job[c]))
        value.append(1.0)
        for r, u in zip(p.col_rows[c].tolist(), p.col_use[c].tolist(), strict=True):
            if r >= 0:
                index.append(p.n_jobs + r)
                value.append(u)
        start.append(len(index))
    return start, index, value


@pytest.mark.parametrize("seed", range(6))
def test_model_matrix_equals_the_plain_construction(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = _problem(rng, int(rng.integers(1, 60)), int(rng.integers(1, 6)))
    rows = p.col_rows.copy()
    rows[rng.random(rows.shape) < 0.3] = -1  # columns with holes in their rows, as geo's stay columns have
    p = AssignmentProblem(p.job_ptr, p.col_bin, p.col_cost, rows, p.col_use, p.row_cap, p.job_keys, p.current)
    lp = highs_model(p)
    start, index, value = _reference_matrix(p)
    assert list(np.asarray(lp.a_matrix_.start_)) == start
    assert list(np.asarray(lp.a_matrix_.index_)) == index
    assert np.asarray(lp.a_matrix_.value_).tobytes() == np.asarray(value, dtype=np.float64).tobytes()
    assert lp.num_col_ == p.n_cols and lp.num_row_ == p.n_jobs + p.row_cap.size
