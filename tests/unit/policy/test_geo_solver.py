"""The HiGHS assignment pipeline: feasible plans (capacity, power, sovereignty), bounded by its LP, stages that
never worsen the plan, warm LP equal to cold, greedy fallback when out of time, exact on two-bin instances."""

from __future__ import annotations

import itertools

import highspy
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.policy import solver as S


def _instance(n: int, m: int, seed: int, p_allowed: float = 0.7) -> tuple[S.AssignmentProblem, list[set[int]]]:
    """``m`` factories with a GPU row each and one shared power row; a job may use a factory only if it is
    cleared (sovereignty: ``allowed[j]``), which the problem expresses by having no column there."""
    rng = np.random.default_rng(seed)
    ptr = [0]
    bins: list[int] = []
    cost: list[float] = []
    rows: list[tuple[int, int]] = []
    use: list[tuple[float, float]] = []
    allowed: list[set[int]] = []
    for _ in range(n):
        size = float(rng.integers(1, 6))
        ok = {b for b in range(m) if rng.random() < p_allowed}
        allowed.append(ok)
        for b in sorted(ok):
            bins.append(b)
            cost.append(size * rng.uniform(1, 3))
            rows.append((b, m))
            use.append((size, size * rng.uniform(0.5, 1.5)))
        bins.append(-1)
        cost.append(size * 4.0)
        rows.append((-1, -1))
        use.append((0.0, 0.0))
        ptr.append(len(bins))
    cap = np.concatenate([rng.integers(3, 12, m).astype(float), [rng.uniform(0.5, 3.0) * n]])
    p = S.AssignmentProblem(np.array(ptr), np.array(bins), np.array(cost), np.array(rows), np.array(use), cap,
                            np.arange(n), np.full(n, -1))
    return p, allowed


def _check_plan(p: S.AssignmentProblem, allowed: list[set[int]], choice: np.ndarray) -> None:
    """Capacity and power rows, one column per job, and no job in a factory it is not cleared for."""
    assert choice.shape == (p.n_jobs,)
    assert (choice >= p.job_ptr[:-1]).all() and (choice < p.job_ptr[1:]).all()
    used = p.usage(choice)
    assert (used <= p.row_cap + 1e-6).all(), (used, p.row_cap)
    for j, c in enumerate(choice.tolist()):
        b = int(p.col_bin[c])
        assert b == -1 or b in allowed[j]


def _exact(p: S.AssignmentProblem) -> float:
    h = highspy.Highs()
    h.silent()
    h.setOptionValue("threads", 1)
    h.setOptionValue("mip_rel_gap", 0.0)
    lp = S._model(p)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * p.n_cols
    h.passModel(lp)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return float(h.getInfo().objective_function_value)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), m=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_pipeline_feasible_and_above_lp_bound(n: int, m: int, seed: int) -> None:
    p, allowed = _instance(n, m, seed)
    sol = S.solve(p, milp_time_limit_s=5.0)
    _check_plan(p, allowed, sol.choice)
    assert sol.objective == p.objective(sol.choice)
    assert sol.objective >= sol.lp_bound - 1e-6 * max(1.0, abs(sol.lp_bound))
    # each stage keeps or improves the plan of the one before
    objs = [o for _, o in sol.stages]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(objs))
    _check_plan(p, allowed, S.greedy(p))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 40), m=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_repair_never_worsens_the_rounding(n: int, m: int, seed: int) -> None:
    p, allowed = _instance(n, m, seed)
    lp = S.lp_relaxation(p)
    assert lp is not None
    rounded = S.round_lp(p, lp.x)
    _check_plan(p, allowed, rounded)
    repaired = S.improve(p, rounded, lp.reduced_cost)
    _check_plan(p, allowed, repaired)
    assert p.objective(repaired) <= p.objective(rounded) + 1e-9
    # without LP prices too (the cost-driven variant), e.g. from the greedy plan
    g = S.greedy(p)
    g2 = S.improve(p, g)
    _check_plan(p, allowed, g2)
    assert p.objective(g2) <= p.objective(g) + 1e-9
    # and the neighbourhood MILPs never worsen what they start from
    nb = S.neighbourhood_search(p, repaired, 5.0, lp.objective, target_gap=0.0)
    _check_plan(p, allowed, nb)
    assert p.objective(nb) <= p.objective(repaired) + 1e-9


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 25), m=st.integers(1, 2), seed=st.integers(0, 10_000))
def test_two_bins_are_solved_exactly(n: int, m: int, seed: int) -> None:
    # with at most two bins the one neighbourhood frees every job: the pipeline must reach the MILP optimum
    p, _ = _instance(n, m, seed)
    sol = S.solve(p, milp_time_limit_s=30.0, target_gap=0.0)
    opt = _exact(p)
    assert abs(sol.objective - opt) <= 1e-6 * max(1.0, abs(opt))


def test_repair_recovers_the_job_that_rounding_sends_to_wait() -> None:
    # factory 0 has 4 GPUs, factory 1 has 2. Job A (4 GPUs) fits only in factory 0; job B (2 GPUs) sits there,
    # so A waits. No single job can move alone to a cheaper column; the ejection move (A into factory 0, B
    # evicted to factory 1) is the improvement.
    p = S.AssignmentProblem(
        job_ptr=np.array([0, 3, 6]),
        col_bin=np.array([0, 1, -1, 0, 1, -1]),
        col_cost=np.array([4.0, 9.0, 40.0, 2.0, 2.5, 20.0]),
        col_rows=np.array([[0, -1], [1, -1], [-1, -1], [0, -1], [1, -1], [-1, -1]]),
        col_use=np.array([[4.0, 0], [4.0, 0], [0, 0], [2.0, 0], [2.0, 0], [0, 0]]),
        row_cap=np.array([4.0, 2.0]),
        job_keys=np.arange(2), current=np.full(2, -1))
    stuck = np.array([2, 3])  # A waits (40), B sits in factory 0 (2): total 42
    assert p.is_feasible(stuck)
    better = S.improve(p, stuck)
    assert better.tolist() == [0, 4]  # A in factory 0, B ejected to factory 1: 6.5
    assert p.objective(better) == 6.5


def test_greedy_fallback_when_the_lp_has_no_time() -> None:
    p, allowed = _instance(60, 5, 3)
    sol = S.solve(p, lp_time_limit_s=0.0)
    assert sol.method == "greedy"
    assert sol.lp_bound == float("-inf") and sol.gap == float("inf")
    _check_plan(p, allowed, sol.choice)
    assert sol.choice.tolist() == S.greedy(p).tolist()
    # a persistent LP out of time falls back the same way, and its next solve starts cold
    warm = S.PersistentLP()
    assert S.solve(p, persistent=warm, lp_time_limit_s=0.0).method == "greedy"
    assert S.solve(p, persistent=warm).method != "greedy"


def test_warm_lp_matches_cold_after_prices_and_churn() -> None:
    p, _ = _instance(60, 4, 1)
    warm = S.PersistentLP()
    assert warm.solve(p) is not None
    # prices move in one factory
    q = S.AssignmentProblem(p.job_ptr, p.col_bin, p.col_cost * np.where(p.col_bin == 0, 1.3, 1.0), p.col_rows,
                            p.col_use, p.row_cap, p.job_keys, p.current)
    cold, again = S.solve_lp(q), warm.solve(q)
    assert cold is not None and again is not None
    assert warm.warm_solves == 1
    assert abs(cold[1] - again[1]) <= 1e-6 * max(1.0, abs(cold[1]))
    # jobs 0-4 leave, 5 arrive (new keys): the remapped basis still gives the cold optimum
    r, _ = _instance(60, 4, 2)
    keep = np.arange(5, 60)
    cols = np.concatenate([np.arange(q.job_ptr[j], q.job_ptr[j + 1]) for j in keep]
                          + [np.arange(r.job_ptr[j], r.job_ptr[j + 1]) + q.n_cols for j in range(5)])
    lens = np.concatenate([np.diff(q.job_ptr)[keep], np.diff(r.job_ptr)[:5]])
    cat = lambda a, b: np.concatenate([a, b])  # noqa: E731
    s = S.AssignmentProblem(np.concatenate([[0], np.cumsum(lens)]), cat(q.col_bin, r.col_bin)[cols],
                            cat(q.col_cost, r.col_cost)[cols], cat(q.col_rows, r.col_rows)[cols],
                            cat(q.col_use, r.col_use)[cols], q.row_cap, np.concatenate([keep, 100 + np.arange(5)]),
                            np.full(60, -1))
    cold, again = S.solve_lp(s), warm.solve(s)
    assert cold is not None and again is not None
    assert warm.warm_solves == 2
    assert abs(cold[1] - again[1]) <= 1e-6 * max(1.0, abs(cold[1]))


def test_regret_greedy_lets_the_job_with_most_to_lose_choose_first() -> None:
    """One slot, two jobs that both want it: the one whose second-best column is far dearer (regret 9) takes it,
    though it is listed second; on equal regret the lower index chooses first; ``place`` is asked cheapest first."""
    slots = [1]
    asked: list[tuple[int, int]] = []

    def place(j: int, k: int) -> bool:
        asked.append((j, k))
        if k == 1:  # the wait column: always accepted
            return True
        if slots[0] > 0:
            slots[0] -= 1
            return True
        return False

    assert S.regret_greedy([[1.0, 2.0], [1.0, 10.0]], place) == [1, 0]
    assert asked == [(1, 0), (0, 0), (0, 1)]
    slots[0] = 1
    assert S.regret_greedy([[1.0, 5.0], [1.0, 5.0]], place) == [0, 1]
    # the array greedy is the same function over the problem's rows
    p, allowed = _instance(12, 3, 5)
    g = S.greedy(p)
    _check_plan(p, allowed, g)
    ptr = p.job_ptr.tolist()
    left = p.row_cap.astype(float).copy()

    def fits(j: int, k: int) -> bool:
        c = ptr[j] + k
        rows, use = p.col_rows[c], p.col_use[c]
        m = rows >= 0
        if (use[m] <= left[rows[m]] + 1e-9).all():
            np.subtract.at(left, rows[m], use[m])
            return True
        return False

    local = S.regret_greedy([p.col_cost[ptr[j]:ptr[j + 1]].tolist() for j in range(p.n_jobs)], fits)
    assert [ptr[j] + k for j, k in enumerate(local)] == g.tolist()
