"""The day-ahead lag-regression forecaster (policy/forecast_seasonal.py): exact on what it can represent, better
than persistence on a noisy daily series, persistence on short history, and on the real ERCOT 2023 prices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from superfactory.policy.forecast_seasonal import LagRegressionForecaster


def _daily(days: int, level_walk: float, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = np.arange(days * 24)
    level = 60 + np.cumsum(rng.normal(0, level_walk, h.size))
    return level * (1 + 0.4 * np.cos(2 * np.pi * (h % 24 - 18) / 24)) + rng.normal(0, noise, h.size)


def test_a_repeating_day_is_forecast_exactly() -> None:
    y = _daily(40, 0.0, 0.0)
    fc = LagRegressionForecaster().forecast(y[:-24], 24)
    assert np.allclose(fc, y[-24:], rtol=1e-6)


def test_beats_persistence_a_day_ahead_on_a_drifting_daily_series() -> None:
    y = _daily(70, 0.3, 3.0, seed=4)
    f = LagRegressionForecaster()
    origins = range(50 * 24, y.size - 24, 13)
    err_f = [abs(f.forecast_at(y[:t], (24,))[0] - y[t + 23]) / abs(y[t + 23]) for t in origins]
    err_p = [abs(y[t - 1] - y[t + 23]) / abs(y[t + 23]) for t in origins]
    assert np.mean(err_f) < 0.8 * np.mean(err_p)


def test_short_history_is_persistence_and_bad_leads_are_refused() -> None:
    f = LagRegressionForecaster()
    assert f.forecast([3.0, 4.0, 5.0], 3).tolist() == [5.0, 5.0, 5.0]
    assert f.forecast(_daily(40, 0, 0), 0).size == 0
    with pytest.raises(ValueError):
        f.forecast(_daily(40, 0, 0), 25)
    with pytest.raises(ValueError):
        f.forecast([], 2)
    y = _daily(40, 0.2, 1.0)
    assert np.allclose(f.forecast_at(y, (1, 6, 24)), f.forecast(y, 24)[[0, 5, 23]])


def test_real_ercot_2023_day_ahead_beats_persistence(shared_data: Path) -> None:
    from superfactory.scenario.market_data import read_price_file

    y = read_price_file(shared_data / "green-dcc-2023/prices/US-TEX-ERCO.csv").values
    f = LagRegressionForecaster()
    origins = range(28 * 24, y.size - 24, 24 * 7 + 5)  # ~47 origins spread over the year and the hours
    den = [max(abs(y[t + 23]), 5.0) for t in origins]
    mape_f = np.mean([abs(f.forecast_at(y[:t], (24,))[0] - y[t + 23]) / d for t, d in zip(origins, den, strict=True)])
    mape_p = np.mean([abs(y[t - 1] - y[t + 23]) / d for t, d in zip(origins, den, strict=True)])
    assert mape_f < mape_p
