"""Interval arithmetic against hand-computed cases and published t tables."""

from __future__ import annotations

import math

import pytest

from superfactory.sweep.stats import mean_ci, paired_difference, t_quantile


@pytest.mark.parametrize(("df", "expected"), [
    (1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (19, 2.0930), (30, 2.0423), (120, 1.9799),
])
def test_t_quantile_matches_the_published_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_is_symmetric_and_other_levels() -> None:
    assert t_quantile(0.025, 9) == pytest.approx(-t_quantile(0.975, 9))
    assert t_quantile(0.995, 5) == pytest.approx(4.0321, abs=1e-4)
    assert t_quantile(0.5, 3) == 0.0
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 3)


def test_mean_ci_hand_computed() -> None:
    # 1..5: mean 3, s = sqrt(10 / 4) = 1.58114, s/sqrt(5) = 0.70711, t(0.975, 4) = 2.77645 -> half-width 1.96324
    iv = mean_ci([1, 2, 3, 4, 5])
    assert iv.n == 5
    assert iv.mean == pytest.approx(3.0)
    assert iv.std == pytest.approx(1.58114, abs=1e-5)
    assert iv.half_width == pytest.approx(1.96324, abs=1e-5)
    assert (iv.low, iv.high) == (pytest.approx(1.03676, abs=1e-5), pytest.approx(4.96324, abs=1e-5))
    assert iv.excludes_zero()


def test_mean_ci_degenerate_cases() -> None:
    one = mean_ci([4.0])
    assert one.n == 1 and one.mean == 4.0 and math.isnan(one.half_width) and not one.excludes_zero()
    assert mean_ci([]).n == 0
    assert mean_ci([2.0, float("nan"), 4.0]).n == 2  # NaN (a metric a run lacks) is dropped
    assert mean_ci([1, 1, 1]).half_width == 0.0


def test_paired_difference_uses_only_common_seeds() -> None:
    # per-seed differences other - base: -1.0, -1.2, -0.8, -1.0 (seed 9 only in base: dropped)
    base = {0: 10.0, 1: 11.0, 2: 12.0, 3: 13.0, 9: 99.0}
    other = {0: 9.0, 1: 9.8, 2: 11.2, 3: 12.0}
    d = paired_difference(base, other)
    # mean -1, s = sqrt((0 + 0.04 + 0.04 + 0) / 3) = 0.163299, se = 0.081650, t(0.975, 3) = 3.18245
    assert d.n == 4
    assert d.mean == pytest.approx(-1.0)
    assert d.half_width == pytest.approx(3.18245 * 0.0816497, abs=1e-5)
    assert d.high < 0 and d.excludes_zero()


def test_an_interval_that_straddles_zero_excludes_nothing() -> None:
    d = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 1.5, 2: 3.1})
    assert d.low < 0 < d.high
    assert not d.excludes_zero()
