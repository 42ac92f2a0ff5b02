"""geo no longer builds the columns of running jobs that are settled (staying strictly cheapest) at a full solve
(issue 12): dropping them in the column builder must give the plan's problem that dropping them afterwards gave."""

from __future__ import annotations

import random

import pytest

from superfactory.policy.geo_columns import _Col, stays
from superfactory.policy.geo_plan import GeoPlanning


def _random_cols(rng: random.Random, n_jobs: int, running: set[int]) -> list[_Col]:
    cols: list[_Col] = []
    for j in range(n_jobs):
        costs = [round(rng.uniform(0, 10), 1) for _ in range(rng.randint(0, 4))]  # ties happen (one decimal)
        if j in running and rng.random() < 0.9:
            cols.append(_Col(j, rng.randrange(5), round(rng.uniform(0, 10), 1), 0, 0.0, False))  # stay
        for c in costs:
            cols.append(_Col(j, rng.randrange(5), c, rng.randint(1, 4), 100.0, j in running))
        cols.append(_Col(j, -1, round(rng.uniform(0, 12), 1), 0, 0.0, False))  # wait / pause
    return cols


def _old_settled(running: set[int], cols: list[_Col]) -> set[int]:
    """The rule as _without_settled wrote it before (a comprehension over every job's columns)."""
    stay = {c.job: c.cost for c in cols if c.job in running and c.factory >= 0 and c.nodes == 0}
    other: dict[int, float] = {}
    for c in cols:
        if c.job in running and not (c.factory >= 0 and c.nodes == 0):
            other[c.job] = min(other.get(c.job, float("inf")), c.cost)
    return {j for j, s in stay.items() if s < other.get(j, float("inf"))}


@pytest.mark.parametrize("seed", range(40))
def test_dropping_settled_jobs_early_gives_the_same_problem(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 30)
    running = {j for j in range(n) if rng.random() < 0.7}
    cols = _random_cols(rng, n, running)
    views = [f"job{j}" for j in range(n)]
    per_job = {j: [c for c in cols if c.job == j] for j in range(n)}
    early = {j for j in running if stays(per_job[j])}
    assert early == _old_settled(running, cols)
    late = GeoPlanning._without_settled(views, running, cols)  # type: ignore[arg-type]
    kept = [c for c in cols if c.job not in early]
    got = GeoPlanning._without_settled(views, running, kept, frozenset(early))  # type: ignore[arg-type]
    assert got == late
