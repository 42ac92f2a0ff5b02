"""geo forecasts all its signals of an hour in one batch (issue 12): :meth:`SeasonalForecaster.forecast_many` must
give :meth:`SeasonalForecaster.forecast`'s answer for every history, byte for byte (geo's decisions compare costs
built from these paths, so a last-bit difference could change a decision)."""

from __future__ import annotations

import numpy as np
import pytest

from superfactory.policy.forecast import SeasonalForecaster


@pytest.mark.parametrize("seed", range(12))
def test_batch_equals_one_by_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for trial in range(40):
        fc = SeasonalForecaster(window_h=[None, 840, 200][trial % 3])
        n = int(rng.choice([1, 23, 24, 25, 100, 335, 336, 337, 841, 1200]))
        hists: list[list[float] | np.ndarray] = []
        for _ in range(int(rng.integers(1, 7))):
            length = n if rng.random() < 0.8 else int(rng.integers(1, 1300))  # mostly one length, some others
            x = rng.normal(50.0, 20.0, length)
            if rng.random() < 0.3:
                x = np.round(x, int(rng.integers(0, 3)))  # ties in the seasonal median
            if rng.random() < 0.2:
                x[rng.random(length) < 0.3] = 0.0  # zeros (signed-zero medians)
            if rng.random() < 0.05:
                x[int(rng.integers(0, length))] = np.nan  # a gap: that group falls back to forecast()
            hists.append(list(x) if rng.random() < 0.5 else x)
        horizon = int(rng.choice([0, 1, 23]))
        got = fc.forecast_many(hists, horizon)
        assert len(got) == len(hists)
        for h, g in zip(hists, got, strict=True):
            want = fc.forecast(h, horizon)
            assert g.shape == want.shape and g.tobytes() == want.tobytes()


def test_batch_is_used_and_matches_on_one_length() -> None:
    """The common case (every market's history of one length) goes through the array path, not a fallback."""
    rng = np.random.default_rng(3)
    fc = SeasonalForecaster(window_h=840)
    hists = [list(rng.normal(60.0, 25.0, 900)) for _ in range(10)]
    got = fc.forecast_many(hists, 23)
    rows = fc._forecast_rows(np.array([h[-840:] for h in hists]), 23)
    for h, g, r in zip(hists, got, rows, strict=True):
        assert g.tobytes() == r.tobytes() == fc.forecast(h, 23).tobytes()
