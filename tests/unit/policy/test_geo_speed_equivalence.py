"""The cheaper forms geo reads this stop (issue 12) equal what they replaced, bit for bit: the seasonal profile's
median by one sort against ``np.median``, and every job's backoffs read in one pass against the per-job call."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from superfactory.policy.forecast import _median_rows
from superfactory.policy.migration import MigrationGovernor

_values = st.one_of(st.floats(-1e4, 1e4, allow_nan=False, width=64), st.sampled_from([0.0, -0.0, np.nan]))


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 9)), elements=_values))
def test_median_rows_is_np_median_bit_for_bit(past: np.ndarray) -> None:
    got, want = _median_rows(past), np.median(past, axis=0)
    assert got.shape == want.shape
    assert got.tobytes() == np.asarray(want, dtype=np.float64).tobytes()  # NaN and the sign of zero included


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from("xyz"), st.integers(0, 5_000)), max_size=25),
       st.integers(0, 10_000), st.integers(0, 2**31))
def test_backoffs_by_job_is_backoffs_of_each_job(refusals: list[tuple[str, str, int]], now_s: int,
                                                 seed: int) -> None:
    gov, rng = MigrationGovernor(), np.random.default_rng(seed)
    for job, dest, at_s in refusals:
        gov.refuse(job, dest, at_s, rng)
    by_job = gov.backoffs_by_job(now_s)
    for job in "abcde":
        assert by_job.get(job, ()) == gov.backoffs(job, now_s)
    assert all(by_job.values())  # a job with nothing to back off from is left out, not given ()
