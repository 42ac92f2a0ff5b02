"""The plain-Python paths of small assignment problems (issue 12: geo's full solves are 1-10 jobs): the rounding
and the HiGHS model arrays equal the array versions exactly, on LP solutions and on arbitrary column values with
ties, and the model passed as arrays solves to the same LP as the :class:`highspy.HighsLp` object."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.policy import local_search as L
from superfactory.policy import relaxation as R
from superfactory.policy import solver as S


def _problem(seed: int, n: int, m: int, ties: bool) -> S.AssignmentProblem:
    """``n`` jobs over ``m`` bins (a node row per bin, a shared power row, and a quota row per bin for some
    columns), each with a wait column (sometimes two of equal cost); ``ties`` draws costs and uses from a few
    values so that equal keys are common."""
    rng = np.random.default_rng(seed)
    pick = (lambda vals: float(rng.choice(vals))) if ties else (lambda vals: float(rng.uniform(min(vals), max(vals))))
    ptr, bins, cost, rows, use = [0], [], [], [], []
    for _ in range(n):
        size = float(rng.integers(1, 6))
        for b in sorted(rng.choice(m, size=int(rng.integers(0, m + 1)), replace=False).tolist()):
            bins.append(b)
            cost.append(size * pick([1.0, 1.5, 2.0, 3.0]))
            quota = rng.random() < 0.3
            rows.append((b, m, m + 1 + b if quota else -1))
            use.append((size, size * pick([0.5, 1.0, 1.5]), size if quota else 0.0))
        for _w in range(2 if rng.random() < 0.2 else 1):
            bins.append(-1)
            cost.append(size * 4.0)
            rows.append((-1, -1, -1))
            use.append((0.0, 0.0, 0.0))
        ptr.append(len(bins))
    cap = np.concatenate([rng.integers(0, 12, m).astype(float), [rng.uniform(0.0, 3.0) * n],
                          rng.integers(0, 8, m).astype(float)])
    return S.AssignmentProblem(np.array(ptr), np.array(bins), np.array(cost), np.array(rows), np.array(use), cap,
                               np.arange(n), np.full(n, -1))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 12), m=st.integers(1, 5), ties=st.booleans(),
       kind=st.sampled_from(["lp", "grid", "uniform"]))
def test_small_rounding_equals_the_array_rounding(seed: int, n: int, m: int, ties: bool, kind: str) -> None:
    """On the LP's own solution and on arbitrary values (a grid with many ties and values within EPS of 0 and 1,
    or uniform), the plain-Python rounding gives the array version's plan, column for column."""
    p = _problem(seed, n, m, ties)
    rng = np.random.default_rng(seed + 1)
    if kind == "lp":
        res = R.lp_relaxation(p)
        assert res is not None
        x = res.x
    elif kind == "grid":
        x = rng.choice([0.0, 1e-8, 0.25, 0.5, 0.5000004, 1 - 1e-8, 1.0], size=p.n_cols)
    else:
        x = rng.uniform(0.0, 1.0, size=p.n_cols)
    assert p.n_cols <= S.SMALL_COLS
    np.testing.assert_array_equal(S._round_small(p, x), S._round_arrays(p, x))
    np.testing.assert_array_equal(S.round_lp(p, x), S._round_arrays(p, x))


def test_large_problems_take_the_array_rounding() -> None:
    p = _problem(3, 80, 5, ties=True)
    assert p.n_cols > S.SMALL_COLS
    res = R.lp_relaxation(p)
    assert res is not None
    np.testing.assert_array_equal(S.round_lp(p, res.x), S._round_arrays(p, res.x))


def test_small_wait_columns_equal_wait_cols() -> None:
    for seed in range(40):
        p = _problem(seed, 6, 3, ties=True)
        plain = S._wait_small(p.job_ptr.tolist(), p.col_cost.tolist(), p.col_rows.tolist())
        assert plain == S.wait_cols(p).tolist()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 12), m=st.integers(1, 5), ties=st.booleans())
def test_small_model_arrays_equal_the_array_build(seed: int, n: int, m: int, ties: bool) -> None:
    """The list-built model of a small problem is the numpy-built one, array for array and dtype for dtype."""
    p = _problem(seed, n, m, ties)
    small = R._model_lists(p)
    saved = R._SMALL_COLS
    R._SMALL_COLS = -1  # the numpy build, as for a large problem
    try:
        big = R._model_arrays(p)
    finally:
        R._SMALL_COLS = saved
    assert small[:2] == big[:2]
    for a, b in zip(small[2:], big[2:], strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_model_passed_as_arrays_solves_as_the_lp_object() -> None:
    """The same primal, duals and objective, bit for bit, through passModel(arrays) and passModel(HighsLp)."""
    for seed in range(25):
        p = _problem(seed, 8, 4, ties=seed % 2 == 0)
        h1 = R.new_highs()
        h1.setOptionValue("solver", "simplex")
        h1.passModel(R.highs_model(p))
        h1.run()
        h2 = R.new_highs()
        h2.setOptionValue("solver", "simplex")
        R._pass_model(h2, p)
        h2.run()
        a, b = R._lp_solution(h1), R._lp_solution(h2)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.reduced_cost, b.reduced_cost)
        assert a.objective == b.objective


def _improve_arrays(p: S.AssignmentProblem, choice: np.ndarray, rc: np.ndarray | None) -> np.ndarray:
    saved = L.SMALL_COLS
    L.SMALL_COLS = -1  # the array version, as for a large problem
    try:
        return L.improve(p, choice, rc)
    finally:
        L.SMALL_COLS = saved


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 12), m=st.integers(1, 5), ties=st.booleans(),
       start=st.sampled_from(["rounding", "wait", "greedy"]), with_rc=st.booleans())
def test_small_repair_equals_the_array_repair(seed: int, n: int, m: int, ties: bool, start: str,
                                              with_rc: bool) -> None:
    """From the LP's rounding, from every job waiting, or from the greedy plan, with the LP's reduced costs or
    without: the plain-Python repair returns the array version's plan, column for column."""
    p = _problem(seed, n, m, ties)
    res = R.lp_relaxation(p)
    assert res is not None
    choice = {"rounding": lambda: S._round_arrays(p, res.x), "wait": lambda: S.wait_cols(p),
              "greedy": lambda: S.greedy(p)}[start]()
    rc = res.reduced_cost if with_rc else None
    assert L._plain_ok(p, rc)
    np.testing.assert_array_equal(L._improve_small(p, choice, rc, 3, 4), _improve_arrays(p, choice, rc))
    np.testing.assert_array_equal(L.improve(p, choice, rc), _improve_arrays(p, choice, rc))


def test_repair_of_a_column_using_a_row_twice_takes_the_array_path() -> None:
    p = _problem(5, 4, 2, ties=False)
    rows = p.col_rows.copy()
    rows[0, 2] = rows[0, 0] if rows[0, 0] >= 0 else 0
    rows[0, 0] = rows[0, 2]
    q = S.AssignmentProblem(p.job_ptr, p.col_bin, p.col_cost, rows, p.col_use, p.row_cap, p.job_keys, p.current)
    assert not L._plain_ok(q, None)
