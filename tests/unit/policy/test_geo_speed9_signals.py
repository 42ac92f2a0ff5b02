"""geo's hourly signals on the lean path (issue 12, session 9): the forecaster's windows kept from hour to hour
(:class:`~superfactory.policy.forecast.SignalWindows`), the batch forecast of whole windows
(:meth:`~superfactory.policy.forecast.SeasonalForecaster.forecast_windows`) and the paths and horizon means made as
rows of one array (:meth:`~superfactory.policy.geo_signals.GeoSignals._prefetch`) must give the old computation's
floats bit for bit (geo compares costs built from them). The old code is kept here as the reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.policy.forecast import SeasonalForecaster, SignalWindows
from superfactory.policy.geo import GeoPolicy

# values with ties, zeros of both signs, negatives and a wide range (a few hundred distinct floats)
_VALUES = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 30.0, 30.5, 1e-300, 5e3]),
                    st.floats(-200.0, 400.0, allow_nan=False, width=64))


def _old_window(history: tuple[float, ...], now_value: float, window_h: int) -> np.ndarray:
    """What geo's old _prefetch gave the forecaster for one series: the last 5 * 168 + 1 hours, the current one at
    ``now_value``, of which forecast_many read the last ``window_h``."""
    hist = list(history[-(5 * 168 + 1):])
    hist[-1] = now_value
    return np.array(hist[len(hist) - min(len(hist), window_h):], dtype=np.float64)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_kept_windows_equal_a_fresh_conversion(data: st.DataObject) -> None:
    """Hour after hour (histories growing by 0-3 values, a past value sometimes changed, or a zero's sign
    flipped), every window equals a fresh conversion of the history, bit for bit."""
    window_h = data.draw(st.sampled_from([5, 24, 60]))
    wins = SignalWindows(window_h)
    hist: list[float] = data.draw(st.lists(_VALUES, min_size=1, max_size=80))
    for _ in range(data.draw(st.integers(2, 12))):
        step = data.draw(st.sampled_from(["grow", "grow", "same", "edit", "flip"]))
        if step == "grow":
            hist = hist + data.draw(st.lists(_VALUES, min_size=1, max_size=3))
        elif step == "edit":
            i = data.draw(st.integers(0, len(hist) - 1))
            hist = [*hist[:i], data.draw(_VALUES), *hist[i + 1:]]
        elif step == "flip":
            hist = [-x if x == 0.0 else x for x in hist]
        now_value = data.draw(_VALUES)
        history = tuple(hist)
        got = wins.window("s", history, now_value)
        want = _old_window(history, now_value, window_h)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_a_kept_window_is_reused_and_a_flipped_zero_is_not() -> None:
    """The kept array is really used for an unchanged past (a value the kept array holds shows through), and a
    zero whose sign changed in the history is read again."""
    wins = SignalWindows(4)
    hist = (1.0, 2.0, 3.0, 4.0, 5.0)
    wins.window("s", hist, 5.0)
    kept = wins._kept["s"][2]
    kept[1] = 99.0  # (the array the next window copies from)
    assert wins.window("s", (*hist, 6.0), 6.0).tolist() == [99.0, 4.0, 5.0, 6.0]
    wins = SignalWindows(4)
    wins.window("z", (1.0, 0.0, 3.0, 4.0), 4.0)
    got = wins.window("z", (1.0, -0.0, 3.0, 4.0, 5.0), 5.0)
    assert np.signbit(got[0])


def _old_block(fc: SeasonalForecaster, y: np.ndarray, horizon_h: int) -> list[np.ndarray]:
    """The old ``_forecast_rows`` (session 8): gathered profile, rho by np.where/np.clip."""
    from superfactory.policy.forecast import DAY_H, WEEK_H, _ewma_weights, _middle_of_four, _season_index
    m, n = y.shape
    period = WEEK_H if n >= 2 * WEEK_H else DAY_H
    seasons = min(fc.max_seasons, n // period)
    base = n - seasons * period
    s = seasons
    past = y[:, base:].reshape(m, seasons, period)
    if s == 4:
        profile = _middle_of_four(past) / 2 + 0.0
    else:
        srt = np.sort(past, axis=1)
        profile = srt[:, s // 2] + 0.0 if s % 2 else (srt[:, s // 2 - 1] + srt[:, s // 2]) / 2 + 0.0
    hist_ix, future_ix = _season_index(n, period, base, horizon_h)
    resid = y - profile[:, hist_ix]
    w, w_sum = _ewma_weights(fc.alpha, n)
    level = (w * resid).sum(axis=1) / w_sum
    dev = resid - level[:, None]
    if n < 3:
        rho = np.zeros(m)
    else:
        a, b = dev[:, :-1], dev[:, 1:]
        den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where(den <= 0.0, 0.0, np.clip((a * b).sum(axis=1) / den, 0.0, fc.max_rho))
    k = np.arange(1, horizon_h + 1)
    return list(profile[:, future_ix] + level[:, None] + rho[:, None] ** k * dev[:, -1:])


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_block_forecast_equals_the_old_rows(data: st.DataObject) -> None:
    """The block forecast (broadcast profile, rho on Python floats) equals the old rows bit for bit: whole weeks
    and not, constant rows (rho's zero denominator), anti-correlated rows (rho clipped to 0), ties."""
    n = data.draw(st.sampled_from([24, 30, 48, 100, 336, 400, 504, 840]))
    m = data.draw(st.integers(2, 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rows = []
    for _ in range(m):
        kind = data.draw(st.sampled_from(["normal", "const", "alt", "round", "zeros"]))
        if kind == "const":
            x = np.full(n, data.draw(_VALUES))
        elif kind == "alt":
            x = np.where(np.arange(n) % 2 == 0, 10.0, -10.0) + rng.normal(0, 1e-3, n)
        else:
            x = rng.normal(50.0, 30.0, n)
            if kind == "round":
                x = np.round(x, -1)
            elif kind == "zeros":
                x[rng.random(n) < 0.5] = data.draw(st.sampled_from([0.0, -0.0]))
        rows.append(x)
    y = np.array(rows)
    fc = SeasonalForecaster(window_h=840, max_rho=data.draw(st.sampled_from([0.95, 0.5, 0.0])))
    horizon = data.draw(st.sampled_from([1, 5, 23]))
    got = fc._forecast_block(y, horizon)
    for g, w in zip(got, _old_block(fc, y, horizon), strict=True):
        assert g.tobytes() == w.tobytes()


def _old_prefetch(pol: GeoPolicy, asks: list[tuple[str, str, tuple[float, ...], float]]
                  ) -> dict[tuple[str, str, int, float], tuple[float, np.ndarray]]:
    """The old _prefetch's cache entries (session 8): forecast_many of lists, one path and one mean per series."""
    todo: dict[tuple[str, str, int, float], tuple[tuple[float, ...], float]] = {}
    for kind, name, history, now_value in asks:
        key = (kind, name, len(history), now_value)
        if len(history):
            todo.setdefault(key, (history, now_value))
    hists = []
    for history, now_value in todo.values():
        hist = list(history[-(5 * 168 + 1):])
        hist[-1] = now_value
        hists.append(hist)
    out = {}
    for (key, (_h, now_value)), fc in zip(todo.items(), pol.forecaster.forecast_many(hists, 23), strict=True):
        path = np.maximum(np.concatenate([[now_value], fc]), 0.0)
        out[key] = (float(path[: pol.horizon_h].mean()), path)
    return out


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_hourly_paths_and_means_equal_the_old_ones(data: st.DataObject) -> None:
    """A policy's hourly batch over several markets, hour after hour (windows kept, some markets of another
    length, zeros and negative prices so paths hold clipped zeros), caches the old paths and horizon means."""
    pol = GeoPolicy(horizon_h=data.draw(st.sampled_from([1, 3, 7, 8, 9, 12, 16, 24, 30])))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    start = data.draw(st.sampled_from([30, 200, 838, 845]))
    markets = {f"m{i}": list(rng.normal(40.0, 40.0, start + (i % 2) * data.draw(st.integers(0, 3))))
               for i in range(data.draw(st.integers(2, 5)))}
    for hist in markets.values():
        hist[int(rng.integers(0, len(hist)))] = data.draw(st.sampled_from([0.0, -0.0]))
    for _hour in range(data.draw(st.integers(1, 4))):
        asks = []
        for name, hist in markets.items():
            hist.append(float(np.round(rng.normal(40.0, 40.0), data.draw(st.sampled_from([0, 6])))))
            asks.append(("p", name, tuple(hist), hist[-1] + data.draw(st.sampled_from([0.0, 1.5]))))
        want = _old_prefetch(pol, asks)
        pol._fc_cache.clear()
        pol._prefetch(asks)
        assert set(pol._fc_cache) == set(want)
        for key, (mean, path) in want.items():
            got_mean, got_path = pol._fc_cache[key]
            assert np.float64(got_mean).tobytes() == np.float64(mean).tobytes()
            assert got_path.dtype == path.dtype and got_path.tobytes() == path.tobytes()
