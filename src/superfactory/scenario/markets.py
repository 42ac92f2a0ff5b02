"""Synthetic hourly power-price and grid-carbon generators, calibrated per market, and CSV loaders.

Price model (per market, hourly): ``p(h) = mean * shape(hour of day, weekday) * exp(noise) (+ spikes)``
- ``shape`` is a daily cosine with its peak at ``peak_hour`` and a day/night ratio ``(1+a)/(1-a)``;
  for solar-heavy CAISO a second harmonic gives the "duck" (midday dip, evening peak); weekends are scaled by
  ``weekend_factor``.
- ``noise`` is AR(1) in log space (hour-to-hour persistence ``rho``, stationary std ``sigma``).
- spikes: with probability ``spike_prob`` per hour a scarcity event multiplies that hour by ``spike_mult``.
- the series is renormalised so its mean equals ``mean_usd_per_mwh``.

Calibration targets (annual-average figures reported by the ISOs' market monitors and Nord Pool for 2023,
rounded; intra-day swings from the same reports): ERCOT hub ~$55/MWh with summer evening scarcity spikes and
~3x day/night swings in summer; PJM load-weighted LMP ~$31/MWh; MISO ~$30/MWh; Southeast (SERC, vertically
integrated utilities, no hourly market — system lambda proxy) ~$35/MWh, flat; CAISO ~$55/MWh with a solar
duck curve and ~3x evening/midday ratio; Nord Pool SE2 (northern Sweden, hydro) ~$30/MWh, flat.
Carbon intensity (average gCO2/kWh, EIA / Ember 2023, rounded): ERCOT 370, PJM 360, MISO 470, SERC 390,
CAISO 220 (solar dip midday), SE2 20. Each is a documented approximation for a twin, not a forecast: feed real
market data with a CSV (``markets: {ERCOT: {csv: {csv: prices.csv, column: price}}}``).

Sources of the figures above and of the ``default`` scenario's summer month (August 2023), all approximate:
- PJM: real-time load-weighted average LMP $31.08/MWh in 2023 (Monitoring Analytics, *2023 State of the Market
  Report for PJM*, March 2024; $30.87/MWh for January-September 2023 in the quarterly report).
- ERCOT: North hub day-ahead average approximately $56/MWh in 2023; in August 2023 the North hub real-time price
  averaged approximately $196/MWh (ERCOT settlement prices as summarised in the 2023 ERCOT market recaps);
  on 17 Aug 2023 hub real-time prices stayed above $1,000/MWh for about 6.5 hours, averaging more than
  $3,200/MWh (S&P Global Commodity Insights, 18 Aug 2023); "some hourly, real-time prices during this period
  exceeded $4,000 per megawatthour" (EIA, *Today in Energy*, 26 Feb 2024, "Wholesale U.S. electricity prices
  were relatively low in 2023", which also reports that prices at most other hubs traded within narrower
  ranges in 2023 and that ERCOT was the most dynamic market). The ``default`` scenario overrides ERCOT's mean
  to 196 USD/MWh with a 3x day/night ratio for that month; the other markets keep their 2023 levels.
- Germany (EPEX_DE, day-ahead, Germany-Luxembourg zone): approximately EUR 95/MWh average in 2023 (~$103);
  solar midday dip and evening peak. Grid intensity approximately 380 gCO2/kWh in 2023 (Ember).
- Ireland (SEM_IE, I-SEM day-ahead): approximately EUR 120/MWh average in 2023 (~$130), gas at the margin most
  hours. Grid intensity approximately 290 gCO2/kWh in 2023 (Ember, EirGrid).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from superfactory.domain.signals import StepSeries, hourly


@dataclass(frozen=True, slots=True)
class MarketProfile:
    """Parameters of one synthetic price series (see module docstring)."""

    name: str
    mean_usd_per_mwh: float
    day_night_ratio: float
    peak_hour: float
    weekend_factor: float
    sigma: float
    rho: float
    spike_prob: float
    spike_mult: float
    duck: bool = False


@dataclass(frozen=True, slots=True)
class GridProfile:
    """Parameters of one synthetic carbon-intensity series."""

    name: str
    mean_g_per_kwh: float
    solar_dip: float  # fractional dip at solar noon (0 = none)
    sigma: float


MARKETS: dict[str, MarketProfile] = {
    m.name: m
    for m in (
        MarketProfile("ERCOT", 55.0, 3.0, 18.0, 0.85, 0.20, 0.85, 0.004, 8.0),
        MarketProfile("PJM", 31.0, 1.9, 17.0, 0.85, 0.15, 0.85, 0.001, 4.0),
        MarketProfile("MISO", 30.0, 1.8, 17.0, 0.85, 0.15, 0.85, 0.001, 4.0),
        MarketProfile("SERC", 35.0, 1.4, 17.0, 0.90, 0.08, 0.90, 0.0, 1.0),
        MarketProfile("CAISO", 55.0, 3.0, 19.0, 0.90, 0.18, 0.85, 0.002, 5.0, duck=True),
        MarketProfile("NORDPOOL_SE2", 30.0, 1.3, 9.0, 0.90, 0.10, 0.90, 0.0, 1.0),
        MarketProfile("NORDPOOL_SE3", 55.0, 1.8, 9.0, 0.85, 0.20, 0.85, 0.002, 3.0),
        MarketProfile("EPEX_DE", 103.0, 1.9, 19.0, 0.80, 0.20, 0.85, 0.002, 3.0, duck=True),
        MarketProfile("SEM_IE", 130.0, 1.6, 18.0, 0.90, 0.15, 0.85, 0.002, 2.5),
    )
}

GRIDS: dict[str, GridProfile] = {
    g.name: g
    for g in (
        GridProfile("ERCOT", 370.0, 0.15, 0.06),
        GridProfile("PJM", 360.0, 0.03, 0.04),
        GridProfile("MISO", 470.0, 0.03, 0.04),
        GridProfile("SERC", 390.0, 0.05, 0.04),
        GridProfile("CAISO", 220.0, 0.45, 0.08),
        GridProfile("NORDPOOL_SE2", 20.0, 0.0, 0.10),
        GridProfile("NORDPOOL_SE3", 35.0, 0.0, 0.10),
        GridProfile("EPEX_DE", 380.0, 0.25, 0.10),
        GridProfile("SEM_IE", 290.0, 0.05, 0.12),
    )
}


def _daily_shape(hour: np.ndarray, profile: MarketProfile) -> np.ndarray:
    a = (profile.day_night_ratio - 1.0) / (profile.day_night_ratio + 1.0)
    phase = 2 * math.pi * (hour - profile.peak_hour) / 24.0
    if profile.duck:
        # evening peak plus a midday solar trough: a weighted second harmonic pulls noon down.
        shape = 1.0 + a * (0.65 * np.cos(phase) + 0.35 * np.cos(2 * phase))
    else:
        shape = 1.0 + a * np.cos(phase)
    return np.asarray(shape)


def synthetic_prices(profile: MarketProfile, hours: int, rng: np.random.Generator,
                     timezone_offset_h: float = 0.0) -> StepSeries:
    """``hours`` hourly prices, USD/MWh, starting Monday 00:00 local time."""
    h = np.arange(hours, dtype=float)
    local = (h + timezone_offset_h) % 24.0
    day = ((h + timezone_offset_h) // 24.0).astype(int) % 7
    shape = _daily_shape(local, profile) * np.where(day >= 5, profile.weekend_factor, 1.0)
    noise = np.empty(hours)
    x = 0.0
    innov = profile.sigma * math.sqrt(1 - profile.rho**2)
    eps = rng.normal(0.0, 1.0, hours)
    for i in range(hours):
        x = profile.rho * x + innov * eps[i]
        noise[i] = x
    price = shape * np.exp(noise)
    spikes = rng.random(hours) < profile.spike_prob
    price = np.where(spikes, price * profile.spike_mult, price)
    price = np.maximum(price, 0.05)
    price *= profile.mean_usd_per_mwh / price.mean()
    return hourly(f"price:{profile.name}", "USD/MWh", tuple(float(v) for v in np.round(price, 4)))


def synthetic_carbon(profile: GridProfile, hours: int, rng: np.random.Generator,
                     timezone_offset_h: float = 0.0) -> StepSeries:
    """``hours`` hourly carbon intensities, gCO2/kWh."""
    h = np.arange(hours, dtype=float)
    local = (h + timezone_offset_h) % 24.0
    dip = profile.solar_dip * np.clip(np.cos(2 * math.pi * (local - 12.5) / 24.0) * 2 - 1, 0, None)
    series = profile.mean_g_per_kwh * (1.0 - dip) * np.exp(rng.normal(0, profile.sigma, hours))
    if series.mean() > 0:
        series *= profile.mean_g_per_kwh / series.mean()
    return hourly(f"carbon:{profile.name}", "gCO2/kWh", tuple(float(v) for v in np.round(series, 3)))


def with_overrides(profile: MarketProfile, mean: float | None, ratio: float | None) -> MarketProfile:
    return replace(
        profile,
        mean_usd_per_mwh=mean if mean is not None else profile.mean_usd_per_mwh,
        day_night_ratio=ratio if ratio is not None else profile.day_night_ratio,
    )


LBS_PER_MWH_TO_G_PER_KWH = 0.45359237  # 1 lb/MWh = 453.59237 g / 1000 kWh


def read_series_csv(path: Path, column: str, step_s: int, name: str, unit: str, scale: float = 1.0,
                    time_column: str | None = None) -> StepSeries:
    """Read one numeric column of a CSV as a step series (rows in time order, one per ``step_s``).

    Raises:
        ValueError: missing column or a non-numeric cell (message names the row).
    """
    values: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f"{path}: no column {column!r}; columns are {reader.fieldnames}")
        for lineno, row in enumerate(reader, start=2):
            try:
                values.append(float(row[column]) * scale)
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{lineno}: column {column!r} is not a number: {row[column]!r}") from None
    if not values:
        raise ValueError(f"{path}: no rows")
    return StepSeries(name, unit, step_s, tuple(values))


def read_watttime_csv(path: Path, column: str = "Caiso_North") -> StepSeries:
    """Load a WattTime marginal-emissions CSV (5-minute rows, lbs CO2/MWh) as gCO2/kWh.

    The format is the one in Vessim's example data set: a time column literally named ``oootime`` and one
    column per balancing area.
    """
    return read_series_csv(path, column, 300, f"carbon:{column}", "gCO2/kWh", LBS_PER_MWH_TO_G_PER_KWH)
