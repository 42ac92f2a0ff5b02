"""geo's wait reasons read each job's cheapest run from one pass over the columns (issue 12: the per-job scan was
quadratic in the queue): the column found is the one ``min`` over that job's factory columns returns (the first of
equal costs), for every job, including jobs with no factory column."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.policy.geo_columns import _Col
from superfactory.policy.geo_plan import GeoPlanning

_cols = st.lists(st.builds(_Col, job=st.integers(0, 6), factory=st.integers(-1, 4),
                           cost=st.sampled_from([0.0, 1.0, 1.5, 2.0, -0.5, 3.25]), nodes=st.integers(0, 3),
                           it_w=st.just(0.0), migrating=st.booleans()), max_size=60)


@settings(max_examples=200, deadline=None)
@given(cols=_cols)
def test_cheapest_runs_is_min_over_each_jobs_factory_columns(cols: list[_Col]) -> None:
    got = GeoPlanning._cheapest_runs(cols)
    for j in range(7):
        runs = [c for c in cols if c.job == j and c.factory >= 0]
        if not runs:
            assert j not in got
        else:
            assert got[j] is min(runs, key=lambda c: c.cost)  # the same object: the first of equal costs
