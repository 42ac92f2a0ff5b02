"""Loaders of real hourly electricity prices and grid carbon intensity (2023), and the window they drive.

Data: ``green-dcc-2023/`` in the shared public-data folder (``../shared/data``; see its ``SOURCES.md``), from
HewlettPackard/green-dcc (MIT): prices standardised to USD/MWh at fixed exchange rates from the ISOs, ENTSO-E,
JEPX and EMC; carbon intensity per ``Data Source`` row (eia.gov, entsoe.eu, ...). The files are never copied into
the repository: they are read from the data folder (``SUPERFACTORY_DATA`` overrides it) and a scenario that
needs them and cannot find them gets a :class:`~superfactory.errors.ScenarioError` that says where it looked.

Formats:
- prices (``prices/<ZONE>.csv``): ``Datetime (UTC)`` (ISO, ``+00:00``), ``Datetime (Local)``, ``Price (USD/MWh)``.
- carbon (``carbon/<ZONE>.csv``): ``Datetime (UTC)`` (ISO, naive = UTC), ``Carbon Intensity gCO₂eq/kWh (direct)``
  and ``(LCA)`` (life-cycle, includes upstream emissions of the generators), plus shares and provenance.

Cleaning (every step counted in a :class:`LoadReport`, never silent):
- timestamps are converted to UTC hours; rows that fall in the same UTC hour (DST-style duplicates, sub-hourly
  rows) are **averaged** into one hour;
- missing hours inside the span (gaps, e.g. a spring-forward hour lost in a local-time export) are filled by
  **linear interpolation** between the neighbouring hours; missing hours before the first / after the last
  row take the nearest value;
- **negative prices are kept**: they are real (in 2023 DE-LU, FR and NL had hours where consumers were paid to
  take power) and a factory running then earns money; they are counted and the minimum reported. A negative
  carbon intensity is impossible and is an error, as is an empty cell.

Market and grid names: a scenario names markets as elsewhere in superfactory (``ERCOT``, ``PJM``, ``CAISO``,
``NYISO``, ``EPEX_DE``, ...) or by the data's zone code (``US-TEX-ERCO``, ``DE-LU``, ...). With a ``window``
(see :func:`parse_window`) the markets in :data:`PRICE_ZONES` and the grids in :data:`CARBON_ZONES` are driven
by the real series for that window; every other market stays synthetic (``scenario/markets.py``) and reports
say so.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

from superfactory.domain.signals import StepSeries, hourly
from superfactory.errors import ScenarioError
from superfactory.scenario.loaders import csv_rows

DATASET = "green-dcc-2023"
YEAR = 2023
PRICE_COLUMN = "Price (USD/MWh)"
CARBON_DIRECT_COLUMN = "Carbon Intensity gCO₂eq/kWh (direct)"
CARBON_LCA_COLUMN = "Carbon Intensity gCO₂eq/kWh (LCA)"
TIME_COLUMN = "Datetime (UTC)"

#: market name -> price zone file (``prices/<zone>.csv``)
PRICE_ZONES: dict[str, str] = {
    "ERCOT": "US-TEX-ERCO",
    "PJM": "US-MIDA-PJM",
    "CAISO": "US-CAL-CISO",
    "NYISO": "US-NY-NYIS",
    "EPEX_DE": "DE-LU",
    "EPEX_FR": "FR",
    "EPEX_NL": "NL",
    "JEPX_TOKYO": "JP-TK",
    "USEP_SG": "SG",
}
#: grid name -> carbon zone file (``carbon/<zone>.csv``)
CARBON_ZONES: dict[str, str] = {
    "ERCOT": "US-TEX-ERCO",
    "PJM": "US-MIDA-PJM",
    "CAISO": "US-CAL-CISO",
    "NYISO": "US-NY-NYIS",
    "EPEX_DE": "DE-LU",
    "GB": "GB",
    "JEPX_TOKYO": "JP-TK",
    "USEP_SG": "SG",
}
CARBON_BASES = ("direct", "lca")


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What cleaning did to one file (see the module docstring).

    Attributes:
        path: the file read.
        rows: data rows read.
        hours: hourly values produced (first to last UTC hour present).
        start_utc: the first hour, UTC.
        duplicate_rows: rows merged into an hour that already had a value (averaged).
        gap_hours: hours missing inside the span, filled by interpolation.
        longest_gap_h: the longest run of missing hours.
        negative_hours: hours with a value < 0 (kept).
        min_value, max_value, mean_value: over the cleaned hours.
    """

    path: str
    rows: int
    hours: int
    start_utc: datetime
    duplicate_rows: int
    gap_hours: int
    longest_gap_h: int
    negative_hours: int
    min_value: float
    max_value: float
    mean_value: float

    def describe(self) -> str:
        """One line: what was read and what was cleaned."""
        return (f"{self.path}: {self.rows} rows -> {self.hours} hours from {self.start_utc:%Y-%m-%d %H:%M} UTC; "
                f"{self.duplicate_rows} duplicate rows averaged, {self.gap_hours} missing hours interpolated "
                f"(longest gap {self.longest_gap_h} h), {self.negative_hours} negative hours kept; "
                f"min {self.min_value:.2f}, mean {self.mean_value:.2f}, max {self.max_value:.2f}")


@dataclass(frozen=True, slots=True)
class HourlyData:
    """A cleaned hourly series with its provenance.

    Attributes:
        zone: zone code (``"US-TEX-ERCO"``).
        unit: ``"USD/MWh"`` or ``"gCO2/kWh"``.
        start_utc: UTC time of ``values[0]``.
        values: one value per hour.
        report: what cleaning did.
    """

    zone: str
    unit: str
    start_utc: datetime
    values: np.ndarray
    report: LoadReport

    def slice(self, start_utc: datetime, hours: int) -> np.ndarray:
        """The ``hours`` values from ``start_utc`` on (clipped to the data; raises ValueError outside it)."""
        i = int((start_utc - self.start_utc).total_seconds() // 3600)
        if i < 0 or i >= self.values.size:
            raise ValueError(f"{self.zone}: no data at {start_utc:%Y-%m-%d %H:%M} UTC (data covers "
                             f"{self.start_utc:%Y-%m-%d %H:%M} + {self.values.size} h)")
        return self.values[i:i + hours]


def parse_utc(text: str) -> datetime:
    """An ISO timestamp -> aware UTC datetime (naive timestamps are UTC).

    Raises:
        ValueError: not an ISO date-time.
    """
    t = datetime.fromisoformat(text.strip())
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def regularise(stamps: list[datetime], values: list[float], path: str) -> tuple[datetime, np.ndarray, LoadReport]:
    """Put ``(timestamp, value)`` rows on an hourly UTC grid: average duplicates, interpolate gaps.

    Returns:
        ``(first hour, values, report)``.
    """
    if not stamps:
        raise ScenarioError(f"{path}: no data rows")
    hour_of = [int(t.timestamp() // 3600) for t in stamps]
    h0, h1 = min(hour_of), max(hour_of)
    n = h1 - h0 + 1
    total = np.zeros(n)
    count = np.zeros(n, dtype=np.int64)
    idx = np.asarray(hour_of, dtype=np.int64) - h0
    np.add.at(total, idx, np.asarray(values, dtype=np.float64))
    np.add.at(count, idx, 1)
    have = count > 0
    out = np.empty(n)
    out[have] = total[have] / count[have]
    missing = np.flatnonzero(~have)
    if missing.size:
        out[missing] = np.interp(missing, np.flatnonzero(have), out[have])
    longest = 0
    run = 0
    for m in ~have:
        run = run + 1 if m else 0
        longest = max(longest, run)
    start = datetime.fromtimestamp(h0 * 3600, tz=UTC)
    report = LoadReport(
        path=path, rows=len(stamps), hours=n, start_utc=start, duplicate_rows=int((count[have] - 1).sum()),
        gap_hours=int(missing.size), longest_gap_h=longest, negative_hours=int((out < 0).sum()),
        min_value=float(out.min()), max_value=float(out.max()), mean_value=float(out.mean()),
    )
    return start, out, report


def _read(path: Path, column: str, what: str) -> tuple[list[datetime], list[float]]:
    stamps: list[datetime] = []
    values: list[float] = []
    for line, row in csv_rows(path, {TIME_COLUMN, column}, what):
        try:
            t = parse_utc(row[TIME_COLUMN])
        except (TypeError, ValueError):
            raise ScenarioError(f"{path}:{line}: {TIME_COLUMN!r} is not an ISO date-time: "
                                f"{row[TIME_COLUMN]!r}") from None
        try:
            v = float(row[column])
        except (TypeError, ValueError):
            raise ScenarioError(f"{path}:{line}: {column!r} is not a number: {row[column]!r}") from None
        if not math.isfinite(v):
            raise ScenarioError(f"{path}:{line}: {column!r} is not finite: {row[column]!r}")
        stamps.append(t)
        values.append(v)
    return stamps, values


def read_price_file(path: Path) -> HourlyData:
    """Load a green-dcc standardised price file (USD/MWh, hourly, UTC). See the module docstring.

    Raises:
        ScenarioError: unreadable file, missing column, bad timestamp or number (with the line).
    """
    stamps, values = _read(path, PRICE_COLUMN, "a green-dcc price file")
    start, out, report = regularise(stamps, values, str(path))
    return HourlyData(path.stem, "USD/MWh", start, out, report)


def read_carbon_file(path: Path, basis: str = "direct") -> HourlyData:
    """Load a green-dcc carbon-intensity file: ``basis`` ``"direct"`` (combustion) or ``"lca"`` (life-cycle),
    gCO2eq/kWh, hourly, UTC.

    Raises:
        ScenarioError: as :func:`read_price_file`, an unknown basis, or a negative intensity.
    """
    if basis not in CARBON_BASES:
        raise ScenarioError(f"carbon basis {basis!r}: use one of {CARBON_BASES}")
    column = CARBON_DIRECT_COLUMN if basis == "direct" else CARBON_LCA_COLUMN
    stamps, values = _read(path, column, "a green-dcc carbon-intensity file")
    bad = next((i for i, v in enumerate(values) if v < 0), None)
    if bad is not None:
        raise ScenarioError(f"{path}:{bad + 2}: negative carbon intensity {values[bad]} gCO2/kWh")
    start, out, report = regularise(stamps, values, str(path))
    return HourlyData(path.stem, "gCO2/kWh", start, out, report)


def data_root() -> Path | None:
    """The ``green-dcc-2023`` folder, or ``None`` when it is nowhere to be found (see :func:`searched`)."""
    for d in searched():
        if d.is_dir():
            return d
    return None


def searched() -> list[Path]:
    """Where :func:`data_root` looks, in order: ``$SUPERFACTORY_DATA``, ``../shared/data`` beside the repository,
    beside the current directory, and under it."""
    out = []
    env = os.environ.get("SUPERFACTORY_DATA")
    if env:
        out.append(Path(env) / DATASET)
    out.append(Path(__file__).resolve().parents[3].parent / "shared" / "data" / DATASET)
    out.append(Path.cwd().parent / "shared" / "data" / DATASET)
    out.append(Path.cwd() / "shared" / "data" / DATASET)
    return out


def _zone(name: str, table: dict[str, str]) -> str | None:
    if name in table:
        return table[name]
    return name if name in table.values() else None


def has_real_prices(market: str) -> bool:
    """Whether ``market`` (a name or zone code) has a real 2023 price series."""
    return _zone(market, PRICE_ZONES) is not None


def has_real_carbon(grid: str) -> bool:
    """Whether ``grid`` (a name or zone code) has a real 2023 carbon series."""
    return _zone(grid, CARBON_ZONES) is not None


@lru_cache(maxsize=64)
def _cached(kind: str, zone: str, basis: str, root: str) -> HourlyData:
    path = Path(root) / kind / f"{zone}.csv"
    return read_price_file(path) if kind == "prices" else read_carbon_file(path, basis)


def _load(kind: str, zone: str, basis: str = "direct") -> HourlyData:
    root = data_root()
    if root is None:
        raise ScenarioError(f"real {kind} for {zone} need the public data set {DATASET}; looked in "
                            f"{', '.join(map(str, searched()))} (put it in ../shared/data or set SUPERFACTORY_DATA)")
    return _cached(kind, zone, basis, str(root))


def load_prices(market: str) -> HourlyData:
    """The cleaned 2023 price series of ``market`` (name or zone code).

    Raises:
        ScenarioError: no real data for that market, or the data set is absent.
    """
    zone = _zone(market, PRICE_ZONES)
    if zone is None:
        raise ScenarioError(f"no real price data for market {market!r}; markets with 2023 data: "
                            f"{', '.join(f'{k} ({v})' for k, v in PRICE_ZONES.items())}")
    return _load("prices", zone)


def load_carbon(grid: str, basis: str = "direct") -> HourlyData:
    """The cleaned 2023 carbon-intensity series of ``grid`` (name or zone code); see :func:`load_prices`."""
    zone = _zone(grid, CARBON_ZONES)
    if zone is None:
        raise ScenarioError(f"no real carbon data for grid {grid!r}; grids with 2023 data: "
                            f"{', '.join(f'{k} ({v})' for k, v in CARBON_ZONES.items())}")
    return _load("carbon", zone, basis)


@dataclass(frozen=True, slots=True)
class Window:
    """A span of real time that a scenario's hour 0 maps to.

    Attributes:
        text: as written in the scenario (``"2023-08"``).
        start_utc: the first hour, UTC.
        hours: its length, h.
    """

    text: str
    start_utc: datetime
    hours: int


def parse_window(text: str) -> Window:
    """Parse a window: a year (``"2023"``), a month (``"2023-08"``) or a range of days
    (``"2023-08-07/2023-08-21"``, end exclusive), all in UTC and inside 2023 (the data's year).

    Raises:
        ValueError: with what is allowed.
    """
    s = str(text).strip()
    hint = "a window is a year '2023', a month '2023-08' or days '2023-08-07/2023-08-21' (end exclusive)"
    try:
        if "/" in s:
            a, b = s.split("/", 1)
            start = datetime.strptime(a.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
            end = datetime.strptime(b.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
        elif len(s) == 4:
            start = datetime(int(s), 1, 1, tzinfo=UTC)
            end = datetime(int(s) + 1, 1, 1, tzinfo=UTC)
        else:
            start = datetime.strptime(s, "%Y-%m").replace(tzinfo=UTC)
            end = (start + timedelta(days=32)).replace(day=1)
    except ValueError:
        raise ValueError(f"window {s!r}: {hint}") from None
    if end <= start:
        raise ValueError(f"window {s!r}: the end must come after the start")
    lo, hi = datetime(YEAR, 1, 1, tzinfo=UTC), datetime(YEAR + 1, 1, 1, tzinfo=UTC)
    if start < lo or end > hi:
        raise ValueError(f"window {s!r}: the real data covers {YEAR} only (UTC); {hint}")
    return Window(s, start, int((end - start).total_seconds() // 3600))


def window_series(data: HourlyData, kind: str, name: str, window: Window, hours: int) -> StepSeries:
    """A step series for the twin: ``hours`` values of ``data`` from the window's start (clipped at the data's
    end; a StepSeries wraps past its end). Its name records the provenance: ``"<kind>:<name>@<dataset>:<zone>
    <window>"``."""
    values = data.slice(window.start_utc, hours)
    label = f"{kind}:{name}@{DATASET}:{data.zone} {window.text}"
    return hourly(label, data.unit, tuple(float(v) for v in values))


def series_source(series: StepSeries) -> str:
    """Where a compiled series came from, for reports: ``"real: green-dcc-2023:US-TEX-ERCO 2023-08"``,
    ``"synthetic"`` or ``"file"`` (a user CSV)."""
    _, _, src = series.name.partition("@")
    if src.startswith(DATASET):
        return f"real: {src}"
    return src or "synthetic"


def real_prices(market: str, window: Window, hours: int) -> StepSeries:
    """The twin's price series of ``market`` for ``window`` (``hours`` long, clipped at the data's end).

    Raises:
        ScenarioError: no data for the market, or the data set is absent.
    """
    return window_series(load_prices(market), "price", market, window, hours)


def real_carbon(grid: str, window: Window, hours: int, basis: str = "direct") -> StepSeries:
    """The twin's carbon-intensity series of ``grid`` for ``window``; see :func:`real_prices`."""
    return window_series(load_carbon(grid, basis), "carbon", grid, window, hours)


def data_notes(prices: dict[str, StepSeries], carbon: dict[str, StepSeries]) -> list[str]:
    """One line per real series of a compiled scenario: its file's cleaning report and, for prices, the negative
    hours inside the run (for ``superfactory scenario validate``). Synthetic and file series are skipped."""
    out = []
    for kind, series in (("price", prices), ("carbon", carbon)):
        for name, s in sorted(series.items()):
            if not series_source(s).startswith("real:"):
                continue
            data = load_prices(name) if kind == "price" else load_carbon(name)
            neg = sum(1 for v in s.values if v < 0)
            extra = f"; {neg} negative hours in this run" if kind == "price" else ""
            out.append(f"{kind} {name}: {data.report.describe()}{extra}")
    return out
