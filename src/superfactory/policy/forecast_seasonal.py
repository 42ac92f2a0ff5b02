"""A day-ahead forecaster for real hourly prices and carbon: per-lead regression on same-hour lags, fitted for MAPE.

Why: on the real 2023 series (docs/forecast-2023.md) the seasonal-profile forecaster of :mod:`.forecast` loses
to plain persistence at 24 h on 8 of 9 price markets: a median weekly profile built from four weeks is too
noisy for real markets, whose level moves with fuel prices and weather day to day. What wins in the
electricity-price-forecasting literature is an autoregression on the *same hour* of previous days (the
"expert" models of Weron 2014 and Lago et al. 2021); this is that, small and pure.

Method, for each lead ``k`` = 1..horizon separately (the target is ``g = n - 1 + k`` for history ``y[0..n-1]``):

    y(g) ~ b0 + b1 y(g - k) + b2 y(g - 24) + b3 y(g - 48) + b4 y(g - 168) + b5 median_j=1..7 y(g - 24 j)

i.e. the last value seen, the same hour one, two and seven days earlier and the median of the last seven days at
that hour. The coefficients are fitted on the trailing ``window_days`` of history (only pairs whose target is
already observed) to minimise the mean absolute *percentage* error, the metric it is judged by: iteratively
reweighted least squares on ``|residual| / max(|y|, floor)`` (``irls_iterations`` steps, started from relative
least squares). With less than ``min_history_h`` of history it falls back to persistence. A fitted model
reproduces persistence or same-hour-yesterday exactly when those are best (they are in its span), so in-sample
it never does worse than either; out of sample the backtest shows how it does.

Pure and deterministic: numpy only, no state between calls (``forecast`` refits every time: ~1-3 ms for a
24-hour horizon on a 56-day window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DAY_H = 24
WEEK_H = 168
#: lags (hours before the target) of the same-hour features
_SAME_HOUR = (24, 48, 168)
_MEDIAN_DAYS = 7


@dataclass(frozen=True, slots=True)
class LagRegressionForecaster:
    """Per-lead same-hour autoregression fitted for MAPE (module docstring has the method).

    Attributes:
        window_days: trailing days of history the coefficients are fitted on.
        floor: denominator floor of the percentage error (USD/MWh or gCO2/kWh): near-zero and negative
            prices would otherwise dominate the fit.
        irls_iterations: reweighting steps towards the least-absolute-percentage-error fit (0 = relative
            least squares).
        per_hour: fit each target hour of day on its own (``window_days`` samples per fit), as the "expert"
            models do; otherwise one fit per lead over all hours.
    """

    window_days: int = 56
    floor: float = 5.0
    irls_iterations: int = 6
    per_hour: bool = False

    @property
    def min_history_h(self) -> int:
        """Shortest history that gets a fitted model: the longest lag plus two weeks of training pairs."""
        return _MEDIAN_DAYS * DAY_H + 2 * WEEK_H

    def forecast(self, history: Sequence[float] | FloatArray, horizon_h: int) -> FloatArray:
        """Forecast the ``horizon_h`` hourly values after the last one in ``history``.

        Args:
            history: hourly values up to and including the current hour (oldest first).
            horizon_h: hours to forecast (0..24; beyond a day the same-hour lags would need the future).

        Returns:
            ``horizon_h`` values; element ``k - 1`` is the forecast ``k`` hours after the last value.

        Raises:
            ValueError: empty history or a horizon beyond 24 h.
        """
        if horizon_h <= 0:
            return np.empty(0)
        return self.forecast_at(history, tuple(range(1, horizon_h + 1)))

    def forecast_at(self, history: Sequence[float] | FloatArray, leads: tuple[int, ...]) -> FloatArray:
        """The forecasts ``k`` hours after the last value of ``history`` for each ``k`` in ``leads`` (1..24);
        ``forecast(h, n)`` is ``forecast_at(h, (1, ..., n))``.

        Raises:
            ValueError: empty history or a lead outside 1..24.
        """
        if any(not 1 <= k <= DAY_H for k in leads):
            raise ValueError(f"LagRegressionForecaster forecasts 1 to {DAY_H} h ahead, not {leads}")
        y = np.asarray(history, dtype=np.float64)
        n = y.size
        if n == 0:
            raise ValueError("forecast needs at least one past value")
        if n < self.min_history_h:
            return np.full(len(leads), y[-1])
        span = self.window_days * DAY_H * (DAY_H if self.per_hour else 1)
        lo = max(_MEDIAN_DAYS * DAY_H, n - span)
        targets = np.arange(lo, n)  # observed targets usable for fitting
        same = _same_hour(y, targets)  # features that do not depend on the lead
        out = np.empty(len(leads))
        for i, k in enumerate(leads):
            g = n - 1 + k
            rows = (targets - g) % DAY_H == 0 if self.per_hour else np.ones(targets.size, dtype=bool)
            X = np.column_stack([np.ones(int(rows.sum())), y[targets[rows] - k], same[rows]])
            beta = self._fit(X, y[targets[rows]])
            x_next = np.concatenate(([1.0, y[n - 1]], _same_hour(y, np.array([g]))[0]))
            out[i] = float(x_next @ beta)
        return out

    def mean_over(self, history: Sequence[float], horizon_h: int) -> float:
        """Forecast mean over the next ``horizon_h`` hours, the current hour included (as SeasonalForecaster)."""
        if horizon_h <= 1:
            return float(history[-1])
        fc = self.forecast(history, min(horizon_h - 1, DAY_H))
        return float((history[-1] + fc.sum()) / (fc.size + 1))

    def _fit(self, X: FloatArray, t: FloatArray) -> FloatArray:
        """Coefficients minimising sum |X b - t| / max(|t|, floor) (IRLS from relative least squares)."""
        den = np.maximum(np.abs(t), self.floor)
        beta = _wls(X, t, 1.0 / den)
        for _ in range(self.irls_iterations):
            r = np.abs(X @ beta - t) / den
            # row weight 1 / (den sqrt(r)): its square times residual^2 is |residual| / den
            beta = _wls(X, t, 1.0 / (den * np.sqrt(np.maximum(r, 1e-3))))
        return beta


def _wls(X: FloatArray, t: FloatArray, w: FloatArray) -> FloatArray:
    """Least squares of ``w * (X b - t)`` by the normal equations (a few features: fast), with a tiny ridge so
    collinear lags (a flat series) stay solvable."""
    Xw = X * w[:, None]
    A = Xw.T @ Xw
    A[np.diag_indices_from(A)] += 1e-9 * (np.trace(A) / A.shape[0] + 1.0)
    return np.asarray(np.linalg.solve(A, Xw.T @ (t * w)), dtype=np.float64)


def _same_hour(y: FloatArray, targets: npt.NDArray[np.int64]) -> FloatArray:
    """Same-hour features of each target: y at -24, -48, -168 h and the median of the last seven days."""
    lags = np.stack([y[targets - DAY_H * j] for j in range(1, _MEDIAN_DAYS + 1)], axis=1)
    return np.column_stack([lags[:, 0], lags[:, 1], lags[:, 6], np.median(lags, axis=1)])
