"""Hourly signal forecaster (power price, carbon intensity) built from history only.

Method: *seasonal profile + mean-reverting residual* ("seasonal naive with exponential smoothing").

1. Seasonal profile ``s(h)``: the median of the past values at the same position in the season. The season is
   the week (168 h) once at least two weeks of history exist, so the weekday/weekend pattern is learnt; before
   that it is the day (24 h). At most ``max_seasons`` past seasons are used, so the profile follows drift.
   Medians (not means) keep one scarcity spike from polluting a whole hour-of-day.
2. Residual ``r(t) = y(t) - s(t)``. Its slow component (a level shift: a gas-price move, a cold week) is an
   exponentially weighted mean ``L`` of past residuals (smoothing ``alpha``); its fast component (weather,
   a spike) decays geometrically with the lag-1 autocorrelation ``rho`` of the residuals, estimated from the
   same history and clipped to [0, 0.95].
3. Forecast ``k`` hours ahead: ``y(t+k) = s(t+k) + L + rho**k * (r(t) - L)``.

With less than one day of history the forecast is persistence (the last value). The forecaster never sees a
value after ``t``: its only input is the history tuple that ends at the current hour (see
:attr:`superfactory.domain.fleet.FleetSnapshot.price_history`), which is how the twin guarantees that
decisions use forecasts, never future truth. Its accuracy (MAPE on held-out hours, against persistence and
seasonal-naive baselines) is measured by :func:`backtest_mape` and reported in ``docs/geo.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DAY_H = 24
WEEK_H = 168

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SeasonalForecaster:
    """Seasonal-profile + mean-reverting-residual forecaster (module docstring has the method).

    Attributes:
        alpha: smoothing of the residual level (0..1]; higher follows level shifts faster.
        max_seasons: past seasons (days or weeks) the profile uses.
        max_rho: cap on the residual persistence.
        window_h: when set, only the last ``window_h`` hours of history are read (the level's weights have
            decayed to nothing long before; the persistence ``rho`` is then estimated over that window), so a
            forecast costs the same in hour 8,000 as in hour 800. ``None``: the whole history.
    """

    alpha: float = 0.05
    max_seasons: int = 4
    max_rho: float = 0.95
    window_h: int | None = None

    def forecast(self, history: Sequence[float] | FloatArray, horizon_h: int) -> FloatArray:
        """Forecast the ``horizon_h`` hourly values after the last one in ``history``.

        Args:
            history: hourly values from hour 0 up to and including the current hour (oldest first).
            horizon_h: number of future hours to forecast (>= 0).

        Returns:
            ``horizon_h`` values; element ``k`` is the forecast for ``len(history) + k`` (hour index).
        """
        if horizon_h <= 0:
            return np.empty(0)
        if self.window_h is not None and len(history) > self.window_h:
            history = history[len(history) - self.window_h:]
        y = np.asarray(history, dtype=np.float64)
        n = y.size
        if n == 0:
            raise ValueError("forecast needs at least one past value")
        if n < DAY_H:
            return np.full(horizon_h, y[-1])
        period = WEEK_H if n >= 2 * WEEK_H else DAY_H
        seasons = min(self.max_seasons, n // period)
        past = y[n - seasons * period:].reshape(seasons, period)
        profile = _median_rows(past)  # index i <-> hour (n - seasons*period + i) mod period
        base = n - seasons * period
        hist_prof = profile[(np.arange(n) - base) % period]
        resid = y - hist_prof
        level = _ewma(resid, self.alpha)
        dev = resid - level
        rho = _lag1(dev, self.max_rho)
        k = np.arange(1, horizon_h + 1)
        future_prof = profile[(n - 1 + k - base) % period]
        return np.asarray(future_prof + level + rho**k * dev[-1], dtype=np.float64)

    def forecast_many(self, histories: Sequence[Sequence[float]], horizon_h: int) -> list[FloatArray]:
        """:meth:`forecast` of every history, bit for bit, in one pass of array operations per group of
        histories of one length (after the window): the same element-wise operations in the same order, and
        row sums over the same values (numpy sums each row of a 2-D array as it sums a 1-D one). A group with
        a non-finite value, shorter than a day, or of one history goes through :meth:`forecast` itself."""
        out: list[FloatArray | None] = [None] * len(histories)
        groups: dict[int, list[int]] = {}
        for r, h in enumerate(histories):
            n = len(h) if self.window_h is None else min(len(h), self.window_h)
            groups.setdefault(n, []).append(r)
        for n, rows in groups.items():
            if horizon_h <= 0 or n < DAY_H or len(rows) == 1:
                for r in rows:
                    out[r] = self.forecast(histories[r], horizon_h)
                continue
            y = np.array([histories[r][len(histories[r]) - n:] for r in rows], dtype=np.float64)
            if not np.isfinite(y).all():
                for r in rows:
                    out[r] = self.forecast(histories[r], horizon_h)
                continue
            for r, fc in zip(rows, self._forecast_rows(y, horizon_h), strict=True):
                out[r] = fc
        return [o if o is not None else np.empty(0) for o in out]

    def forecast_windows(self, windows: Sequence[FloatArray], horizon_h: int) -> FloatArray:
        """:meth:`forecast` of every window (float64 arrays already cut to the last ``window_h`` values, as
        :class:`SignalWindows` keeps them), bit for bit, as one ``(len(windows), horizon_h)`` array: groups of
        two or more windows of one length (at least a day, finite values) in one pass of array operations
        (:meth:`_forecast_block`), any other window through :meth:`forecast` itself (as :meth:`forecast_many`
        does)."""
        out = np.empty((len(windows), max(horizon_h, 0)))
        if horizon_h <= 0:
            return out
        groups: dict[int, list[int]] = {}
        for r, w in enumerate(windows):
            groups.setdefault(len(w), []).append(r)
        for n, rows in groups.items():
            if n >= DAY_H and len(rows) > 1 and (self.window_h is None or n <= self.window_h):
                y = np.stack([windows[r] for r in rows]) if len(rows) < len(windows) else np.stack(windows)
                if np.isfinite(y).all():
                    out[rows] = self._forecast_block(y, horizon_h)
                    continue
            for r in rows:
                out[r] = self.forecast(windows[r], horizon_h)
        return out

    def _forecast_rows(self, y: FloatArray, horizon_h: int) -> list[FloatArray]:
        """:meth:`forecast` of each row of ``y`` (finite values, at least a day, already windowed)."""
        return list(self._forecast_block(y, horizon_h))

    def _forecast_block(self, y: FloatArray, horizon_h: int) -> FloatArray:
        """:meth:`forecast` of each row of ``y`` (finite values, at least a day, already windowed), as rows of one
        array. The same element-wise operations and row sums as :meth:`forecast`; fewer array calls (issue 12,
        each is exact):

        - a window of whole seasons (every hour of a long run: 840 = 5 weeks) takes its profile by broadcasting
          over a ``(rows, seasons, period)`` view instead of gathering it by index: the same subtractions;
        - ``rho`` is made per row on Python floats (``nu / de`` is the same IEEE division; the clip is numpy's
          rule: below 0 gives 0, above the cap gives the cap, a NaN or a signed zero passes; ``de <= 0`` gives
          0.0 as ``np.where`` did).
        """
        m, n = y.shape
        period = WEEK_H if n >= 2 * WEEK_H else DAY_H
        seasons = min(self.max_seasons, n // period)
        base = n - seasons * period
        s = seasons
        past = y[:, base:].reshape(m, seasons, period)
        if s == 4:  # (a window of five weeks: every hour of a long run) the two middle values without a sort
            profile = _middle_of_four(past) / 2 + 0.0
        else:
            srt = np.sort(past, axis=1)
            profile = srt[:, s // 2] + 0.0 if s % 2 else (srt[:, s // 2 - 1] + srt[:, s // 2]) / 2 + 0.0
        hist_ix, future_ix = _season_index(n, period, base, horizon_h)
        if n % period == 0:  # (then base % period == 0: hour i sits at season position i % period)
            resid = (y.reshape(m, n // period, period) - profile[:, None, :]).reshape(m, n)
        else:
            resid = y - profile[:, hist_ix]
        w, w_sum = _ewma_weights(self.alpha, n)
        level = (w * resid).sum(axis=1) / w_sum
        dev = resid - level[:, None]
        if n < 3:
            rho = np.zeros(m)
        else:
            a, b = dev[:, :-1], dev[:, 1:]
            den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)).tolist()
            num = (a * b).sum(axis=1).tolist()
            cap = self.max_rho
            rhos: list[float] = []
            for nu, de in zip(num, den, strict=True):
                if de <= 0.0:
                    rhos.append(0.0)
                    continue
                # (max/min keep r unless the bound is strictly beyond it: a NaN or -0.0 passes, as in np.clip)
                rhos.append(min(max(nu / de, 0.0), cap))
            rho = np.array(rhos)
        k = np.arange(1, horizon_h + 1)
        fc: FloatArray = profile[:, future_ix] + level[:, None] + rho[:, None] ** k * dev[:, -1:]
        return fc

    def mean_over(self, history: Sequence[float], horizon_h: int) -> float:
        """Forecast mean over the next ``horizon_h`` hours, the current hour included."""
        if horizon_h <= 1:
            return float(history[-1])
        fc = self.forecast(history, horizon_h - 1)
        return float((history[-1] + fc.sum()) / horizon_h)


class SignalWindows:
    """Per series, the window a forecaster reads at the current hour as a float64 array, made from the last one
    by a shift (issue 12: converting ~840 Python floats per series every hour was a third of geo's hourly
    forecast).

    :meth:`window` gives ``np.asarray(list(history[a:-1]) + [now_value])`` with ``a = max(0, len(history) -
    window_h)``, bit for bit: the values it keeps from the last call's array are used only when that call's
    history holds, at the same hours, values equal to this one's (tuple comparison: the same objects or equal
    floats) and none of them is a zero (equal non-zero floats have the same bits; 0.0 == -0.0 do not: the last
    hour holding a zero is kept with the window). Otherwise, and for a new series, it converts the whole window.
    """

    __slots__ = ("_kept", "window_h")

    def __init__(self, window_h: int | None) -> None:
        self.window_h = window_h
        # series -> (its history at the last call, the window's first hour there, the window, the last past hour
        # of that window holding a zero or -1)
        self._kept: dict[object, tuple[Sequence[float], int, FloatArray, int]] = {}

    def window(self, key: object, history: Sequence[float], now_value: float) -> FloatArray:
        """The forecaster's window of ``history`` (oldest first, current hour last; at least one value) with
        the current hour's value replaced by ``now_value`` (class docstring)."""
        n = len(history)
        a = n - self.window_h if self.window_h is not None and n > self.window_h else 0
        length = n - a
        kept = self._kept.get(key)
        arr: FloatArray | None = None
        zero_h = -1
        if kept is not None:
            k_hist, k_a, k_arr, zero_h = kept
            shift = a - k_a
            overlap = len(k_hist) - 1 - a  # past hours both windows hold: a .. len(k_hist) - 2
            if (zero_h < a and shift >= 0 and 0 < overlap <= length - 1
                    and k_hist[a:a + overlap] == history[a:a + overlap]):
                arr = np.empty(length)
                arr[:overlap] = k_arr[shift:shift + overlap]
                fresh = history[a + overlap:n - 1]
                arr[overlap:length - 1] = fresh
                arr[length - 1] = now_value
                for j, x in enumerate(fresh):
                    if x == 0.0:
                        zero_h = a + overlap + j
        if arr is None:
            arr = np.array(history[a:n - 1], dtype=np.float64) if length > 1 else np.empty(0)
            zeros = np.flatnonzero(arr == 0.0)
            zero_h = a + int(zeros[-1]) if zeros.size else -1
            arr = np.append(arr, now_value)
        self._kept[key] = (history, a, arr, zero_h)
        return arr


def _middle_of_four(past: FloatArray) -> FloatArray:
    """Sum of the two middle values of the four along axis 1 of ``(m, 4, period)`` finite values: the sorted
    ``srt[:, 1] + srt[:, 2]``, bit for bit (the middle two of four are max(lower pair mins) and min(upper pair
    maxes); float addition is commutative, and a signed zero there is made +0 by the median's ``+ 0.0``)."""
    a, b, c, d = past[:, 0], past[:, 1], past[:, 2], past[:, 3]
    return np.maximum(np.minimum(a, b), np.minimum(c, d)) + np.minimum(np.maximum(a, b), np.maximum(c, d))


#: (n, period, base, horizon) -> (season position of each of the n past hours, of each of the horizon hours)
_SEASON_INDEX: dict[tuple[int, int, int, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}


def _season_index(n: int, period: int, base: int, horizon_h: int
                  ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(np.arange(n) - base) % period`` and ``(n - 1 + k - base) % period`` for k = 1..horizon (cached: a
    windowed forecaster asks the same ones every hour)."""
    key = (n, period, base, horizon_h)
    hit = _SEASON_INDEX.get(key)
    if hit is None:
        if len(_SEASON_INDEX) > 256:
            _SEASON_INDEX.clear()
        k = np.arange(1, horizon_h + 1)
        hist_ix, future_ix = (np.arange(n) - base) % period, (n - 1 + k - base) % period
        hist_ix.flags.writeable = False
        future_ix.flags.writeable = False
        hit = _SEASON_INDEX[key] = (hist_ix, future_ix)
    return hit


def _median_rows(past: FloatArray) -> FloatArray:
    """``np.median(past, axis=0)``, bit for bit, without its overhead (it dominated a forecast): the middle
    row of the sorted columns, or the mean of the two middle ones; ``+ 0.0`` gives a zero median the sign
    numpy's summing mean gives it. Columns with a NaN go to ``np.median`` itself."""
    s = past.shape[0]
    srt = np.sort(past, axis=0)
    if np.isnan(srt[-1]).any():  # NaNs sort last
        return np.asarray(np.median(past, axis=0), dtype=np.float64)
    mid: FloatArray = srt[s // 2] + 0.0 if s % 2 else (srt[s // 2 - 1] + srt[s // 2]) / 2 + 0.0
    return mid


#: (alpha, n) -> (EWMA weights of n values, their sum): a forecaster with a window reads the same n every hour
_EWMA_WEIGHTS: dict[tuple[float, int], tuple[FloatArray, float]] = {}


def _ewma_weights(alpha: float, n: int) -> tuple[FloatArray, float]:
    """The EWMA weights of ``n`` values (oldest first) and their sum (cached)."""
    hit = _EWMA_WEIGHTS.get((alpha, n))
    if hit is None:
        if len(_EWMA_WEIGHTS) > 256:
            _EWMA_WEIGHTS.clear()
        w = (1.0 - alpha) ** np.arange(n - 1, -1, -1, dtype=np.float64)
        w.flags.writeable = False
        hit = _EWMA_WEIGHTS[(alpha, n)] = (w, w.sum())
    return hit


def _ewma(x: FloatArray, alpha: float) -> float:
    """Exponentially weighted mean of ``x`` (latest weighs ``alpha``), computed in closed form."""
    w, w_sum = _ewma_weights(alpha, x.size)
    return float((w * x).sum() / w_sum)


def _lag1(x: FloatArray, cap: float) -> float:
    if x.size < 3:
        return 0.0
    a, b = x[:-1], x[1:]
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if den <= 0.0:
        return 0.0
    return float(np.clip((a * b).sum() / den, 0.0, cap))


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """MAPE (%) of the forecaster and two naive baselines on the same held-out hours.

    ``persistence`` forecasts the last value; ``seasonal_naive`` the value one day earlier.
    """

    forecaster_mape: float
    persistence_mape: float
    seasonal_naive_mape: float
    points: int


def backtest_mape(series: Sequence[float], train_h: int, horizon_h: int = 24, step_h: int = 1,
                  forecaster: SeasonalForecaster | None = None) -> BacktestResult:
    """Rolling-origin backtest: at every ``step_h`` hours from ``train_h`` on, forecast the next ``horizon_h``
    hours from the past only and score against the held-out truth.

    Args:
        series: the full hourly series (truth).
        train_h: hours of history before the first forecast origin (the held-out part starts there).
        horizon_h: forecast horizon, h.
        step_h: hours between forecast origins.
        forecaster: the method under test (default parameters if omitted).

    Returns:
        MAPE in percent for the forecaster and the baselines, over all (origin, lead) pairs.
    """
    fc = forecaster or SeasonalForecaster()
    y = np.asarray(series, dtype=np.float64)
    if train_h < DAY_H or train_h + horizon_h > y.size:
        raise ValueError(f"backtest needs 24 <= train_h and train_h + horizon_h <= {y.size}")
    errs_f: list[FloatArray] = []
    errs_p: list[FloatArray] = []
    errs_s: list[FloatArray] = []
    for t in range(train_h, y.size - horizon_h + 1, step_h):
        truth = y[t:t + horizon_h]
        denom = np.maximum(np.abs(truth), 1e-9)
        pred = fc.forecast(y[:t], horizon_h)
        errs_f.append(np.abs(pred - truth) / denom)
        errs_p.append(np.abs(y[t - 1] - truth) / denom)
        lead = np.arange(horizon_h)
        errs_s.append(np.abs(y[t - DAY_H + lead % DAY_H] - truth) / denom)
    f, p, s = (float(np.concatenate(e).mean() * 100.0) for e in (errs_f, errs_p, errs_s))
    return BacktestResult(f, p, s, int(sum(e.size for e in errs_f)))
