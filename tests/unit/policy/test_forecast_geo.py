"""The forecaster beats naive baselines on held-out hours and never reads past the history it is given."""

from __future__ import annotations

import numpy as np
import pytest

from superfactory.policy.forecast import SeasonalForecaster, backtest_mape
from superfactory.scenario import markets


@pytest.mark.parametrize("market", ["ERCOT", "PJM", "CAISO", "NORDPOOL_SE2"])
def test_mape_beats_persistence_and_seasonal_naive(market: str) -> None:
    series = markets.synthetic_prices(markets.MARKETS[market], 24 * 35, np.random.default_rng(3))
    r = backtest_mape(series.values, train_h=24 * 14, horizon_h=24, step_h=3)
    assert r.points > 1000
    assert r.forecaster_mape < r.persistence_mape
    assert r.forecaster_mape < r.seasonal_naive_mape


def test_forecast_depends_only_on_history() -> None:
    rng = np.random.default_rng(0)
    truth = 50 + 10 * np.sin(np.arange(24 * 20) * 2 * np.pi / 24) + rng.normal(0, 2, 24 * 20)
    altered = truth.copy()
    altered[24 * 10:] *= 7.0  # a different future
    fc = SeasonalForecaster()
    np.testing.assert_array_equal(fc.forecast(truth[: 24 * 10], 24), fc.forecast(altered[: 24 * 10], 24))


def test_short_history_is_persistence() -> None:
    assert SeasonalForecaster().forecast([3.0, 4.0], 5).tolist() == [4.0] * 5
