"""The HiGHS assignment pipeline returns feasible plans no worse than greedy and within its LP bound."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.policy import solver as S


def _instance(n: int, m: int, seed: int) -> S.AssignmentProblem:
    rng = np.random.default_rng(seed)
    ptr = [0]
    bins: list[int] = []
    cost: list[float] = []
    rows: list[tuple[int, int]] = []
    use: list[tuple[float, float]] = []
    for _ in range(n):
        size = float(rng.integers(1, 6))
        for b in range(m):
            if rng.random() < 0.7:
                bins.append(b)
                cost.append(size * rng.uniform(1, 3))
                rows.append((b, m))
                use.append((size, size * rng.uniform(0.5, 1.5)))
        bins.append(-1)
        cost.append(size * 4.0)
        rows.append((-1, -1))
        use.append((0.0, 0.0))
        ptr.append(len(bins))
    cap = np.concatenate([rng.integers(3, 12, m).astype(float), [3.0 * n]])
    return S.AssignmentProblem(np.array(ptr), np.array(bins), np.array(cost), np.array(rows), np.array(use), cap,
                               np.arange(n), np.full(n, -1))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 25), m=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_pipeline_feasible_and_bounded(n: int, m: int, seed: int) -> None:
    p = _instance(n, m, seed)
    sol = S.solve(p, milp_time_limit_s=5.0)
    assert p.is_feasible(sol.choice)
    assert sol.objective >= sol.lp_bound - 1e-6
    g = S.greedy(p)
    assert p.is_feasible(g)
    assert sol.objective <= p.objective(g) + 1e-6 or sol.method == "rounding"


def test_warm_lp_matches_cold() -> None:
    p = _instance(40, 4, 1)
    warm = S.PersistentLP()
    x0 = warm.solve(p)
    assert x0 is not None
    q = S.AssignmentProblem(p.job_ptr, p.col_bin, p.col_cost * np.where(p.col_bin == 0, 1.3, 1.0), p.col_rows,
                            p.col_use, p.row_cap, p.job_keys, p.current)
    cold = S.solve_lp(q)
    again = warm.solve(q)
    assert cold is not None and again is not None
    assert warm.warm_solves == 1
    assert abs(cold[1] - again[1]) <= 1e-6 * max(1.0, abs(cold[1]))
