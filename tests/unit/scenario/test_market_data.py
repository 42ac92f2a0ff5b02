"""Real 2023 price and carbon loaders: the public files (skipped without ../shared/data), synthetic files with
gaps, DST-style duplicates and negative prices, windows, and scenarios driven by real data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from superfactory.errors import ScenarioError
from superfactory.scenario import market_data
from superfactory.scenario.loader import load_scenario, parse_scenario
from superfactory.scenario.market_data import (
    CARBON_ZONES,
    PRICE_ZONES,
    parse_window,
    read_carbon_file,
    read_price_file,
    series_source,
)

PRICE_HEAD = "Datetime (UTC),Datetime (Local),Price (USD/MWh)\n"
CARBON_HEAD = ("Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
               "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,Data Source,"
               "Data Estimated,Data Estimation Method\n")


# -- the real files ---------------------------------------------------------------------------------------


def test_every_real_price_file_is_a_clean_year(shared_data: Path) -> None:
    for zone in PRICE_ZONES.values():
        d = read_price_file(shared_data / "green-dcc-2023" / "prices" / f"{zone}.csv")
        assert d.values.size == 8760, zone
        assert d.start_utc == datetime(2023, 1, 1, tzinfo=UTC)
        assert d.report.gap_hours == 0 and d.report.duplicate_rows == 0, d.report.describe()


def test_ercot_2023_matches_the_published_figures(shared_data: Path) -> None:
    d = read_price_file(shared_data / "green-dcc-2023/prices/US-TEX-ERCO.csv")
    aug = d.slice(datetime(2023, 8, 1, tzinfo=UTC), 31 * 24)
    # SOURCES.md: ERCOT 2023 mean $55.9, August mean $262, max $4,112/MWh
    assert d.values.mean() == pytest.approx(55.9, abs=0.1)
    assert aug.mean() == pytest.approx(262, abs=1)
    assert d.report.max_value == pytest.approx(4112, abs=1)


def test_negative_prices_in_the_real_european_files_are_kept_and_counted(shared_data: Path) -> None:
    d = read_price_file(shared_data / "green-dcc-2023/prices/DE-LU.csv")
    assert d.report.negative_hours == int((d.values < 0).sum()) > 100
    assert d.report.min_value < -400  # the July 2023 solar glut hour (about -500 EUR/MWh)


def test_real_carbon_life_cycle_exceeds_direct_in_every_zone(shared_data: Path) -> None:
    for zone in CARBON_ZONES.values():
        path = shared_data / "green-dcc-2023/carbon" / f"{zone}.csv"
        direct, lca = read_carbon_file(path, "direct"), read_carbon_file(path, "lca")
        assert direct.values.size == lca.values.size == 8760, zone
        assert np.all(lca.values >= direct.values - 1e-9), zone
        assert 0 < direct.values.mean() < 600, zone


# -- synthetic files: gaps, duplicates, negatives, bad cells ------------------------------------------------


def test_gaps_are_interpolated_and_reported(tmp_path: Path) -> None:
    p = tmp_path / "XX.csv"
    # hours 0, 1, then 4 (2 and 3 missing), 5
    p.write_text(PRICE_HEAD + "2023-03-01 00:00:00+00:00,,10\n2023-03-01 01:00:00+00:00,,20\n"
                 "2023-03-01 04:00:00+00:00,,50\n2023-03-01 05:00:00+00:00,,60\n")
    d = read_price_file(p)
    assert d.values.tolist() == [10, 20, 30, 40, 50, 60]
    assert (d.report.gap_hours, d.report.longest_gap_h, d.report.rows, d.report.hours) == (2, 2, 4, 6)
    assert "2 missing hours interpolated" in d.report.describe()


def test_dst_style_duplicates_are_averaged_and_local_offsets_converted(tmp_path: Path) -> None:
    p = tmp_path / "XX.csv"
    # a local-time export: 01:00-05:00 twice (fall back) is the same UTC hour written twice
    p.write_text(PRICE_HEAD + "2023-11-05 05:00:00+00:00,,30\n2023-11-05 01:00:00-05:00,,40\n"
                 "2023-11-05 01:00:00-05:00,,44\n2023-11-05 07:00:00+00:00,,50\n")
    d = read_price_file(p)
    assert d.start_utc == datetime(2023, 11, 5, 5, tzinfo=UTC)
    assert d.values.tolist() == [30, 42, 50]  # 06:00 UTC = mean of the two 01:00-05:00 rows
    assert d.report.duplicate_rows == 1 and d.report.gap_hours == 0


def test_negative_prices_are_kept_and_counted(tmp_path: Path) -> None:
    p = tmp_path / "XX.csv"
    p.write_text(PRICE_HEAD + "".join(f"2023-06-01 {h:02d}:00:00+00:00,,{v}\n"
                                      for h, v in enumerate([12.5, -3.0, -480.0, 0.0, 90.0])))
    d = read_price_file(p)
    assert d.values.tolist() == [12.5, -3.0, -480.0, 0.0, 90.0]
    assert (d.report.negative_hours, d.report.min_value) == (2, -480.0)


def test_bad_cells_name_the_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "XX.csv"
    p.write_text(PRICE_HEAD + "2023-06-01 00:00:00+00:00,,1\n2023-06-01 01:00:00+00:00,,n/a\n")
    with pytest.raises(ScenarioError, match=r"XX.csv:3: 'Price \(USD/MWh\)' is not a number: 'n/a'"):
        read_price_file(p)
    p.write_text(PRICE_HEAD + "yesterday,,1\n")
    with pytest.raises(ScenarioError, match=r"XX.csv:2: .*not an ISO date-time"):
        read_price_file(p)
    p.write_text("time,price\n")
    with pytest.raises(ScenarioError, match="missing column"):
        read_price_file(p)


def test_carbon_rejects_negative_intensity_and_unknown_basis(tmp_path: Path) -> None:
    p = tmp_path / "YY.csv"
    p.write_text(CARBON_HEAD + "2023-01-01 00:00:00,X,X,X,100,120,0,0,x,false,\n"
                 "2023-01-01 01:00:00,X,X,X,-5,120,0,0,x,false,\n")
    with pytest.raises(ScenarioError, match=r"YY\.csv:3: negative carbon intensity"):
        read_carbon_file(p)
    d = read_carbon_file(p, "lca")
    assert d.values.tolist() == [120, 120] and d.unit == "gCO2/kWh"
    with pytest.raises(ScenarioError, match="carbon basis"):
        read_carbon_file(p, "marginal")


# -- windows ---------------------------------------------------------------------------------------------


def test_windows() -> None:
    assert parse_window("2023-08").hours == 31 * 24
    assert parse_window("2023-02").hours == 28 * 24
    assert parse_window("2023").hours == 8760
    w = parse_window("2023-08-07/2023-08-21")
    assert (w.start_utc, w.hours) == (datetime(2023, 8, 7, tzinfo=UTC), 14 * 24)
    for bad in ("2024-01", "August", "2023-08-21/2023-08-07", "2023-13"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)


# -- scenarios on real data ---------------------------------------------------------------------------------


def _mini(window: str, duration: str, market: str = "ERCOT", grid: str = "") -> str:
    g = f", grid: {grid}" if grid else ""
    return f"""
name: mini
duration: {duration}
window: "{window}"
factories:
  - {{id: a, region: r, market: {market}{g}, power_cap: 30MW, cooling_capacity: 30MW,
     systems: [{{system: dgx-h100, nodes: 16}}]}}
  - {{id: b, region: r, market: MISO, power_cap: 30MW, cooling_capacity: 30MW,
     systems: [{{system: dgx-h100, nodes: 16}}]}}
"""


def test_real_fleet_is_driven_by_the_real_series(shared_data: Path) -> None:
    sc = load_scenario("real-2023")
    assert {f.market for f in sc.factories} == {"ERCOT", "PJM", "CAISO", "NYISO", "EPEX_DE"}
    assert 95_000 <= sum(f.gpus for f in sc.factories) <= 105_000
    ercot = read_price_file(shared_data / "green-dcc-2023/prices/US-TEX-ERCO.csv")
    aug = ercot.slice(datetime(2023, 8, 1, tzinfo=UTC), 31 * 24)
    assert np.allclose(sc.prices["ERCOT"].values[:744], aug)
    for name, s in (*sc.prices.items(), *sc.carbon.items()):
        assert series_source(s).startswith("real: green-dcc-2023:"), name


def test_markets_without_data_stay_synthetic_and_are_marked(shared_data: Path) -> None:
    sc = parse_scenario(_mini("2023-07", "7d"))
    assert series_source(sc.prices["ERCOT"]) == "real: green-dcc-2023:US-TEX-ERCO 2023-07"
    assert series_source(sc.prices["MISO"]) == "synthetic"
    assert series_source(sc.carbon["MISO"]) == "synthetic"


def test_lca_basis_and_zone_codes(shared_data: Path) -> None:
    text = _mini("2023-07", "2d", market="DE-LU", grid="GB") + "grids: {GB: {basis: lca}}\n"
    sc = parse_scenario(text)
    gb = read_carbon_file(shared_data / "green-dcc-2023/carbon/GB.csv", "lca")
    assert np.allclose(sc.carbon["GB"].values[:48], gb.slice(datetime(2023, 7, 1, tzinfo=UTC), 48))
    assert series_source(sc.prices["DE-LU"]).startswith("real: green-dcc-2023:DE-LU")


def test_window_errors_point_at_the_field(shared_data: Path) -> None:
    with pytest.raises(ScenarioError, match=r"duration: duration 40 d is longer than the window '2023-08'"):
        parse_scenario(_mini("2023-08", "40d"))
    with pytest.raises(ScenarioError, match=r"window: window '2024-01': the real data covers 2023 only"):
        parse_scenario(_mini("2024-01", "2d"))


def test_real_only_market_without_window_says_how_to_fix() -> None:
    text = _mini("2023-08", "2d", market="NYISO").replace('window: "2023-08"\n', "")
    with pytest.raises(ScenarioError, match=r"unknown market 'NYISO'.*set a 'window' such as 2023-08"):
        parse_scenario(text)


def test_absent_data_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(market_data, "searched", lambda: [tmp_path / "nowhere"])
    with pytest.raises(ScenarioError, match=r"need the public data set green-dcc-2023; looked in .*nowhere"):
        parse_scenario(_mini("2023-08", "2d"))


def test_a_user_csv_is_marked_as_a_file(tmp_path: Path) -> None:
    (tmp_path / "prices.csv").write_text("price\n" + "\n".join(str(40 + h % 24) for h in range(72)) + "\n")
    text = _mini("2023-08", "2d").replace('window: "2023-08"\n', "")
    text += "markets: {ERCOT: {csv: {csv: prices.csv, column: price}}}\n"
    sc = parse_scenario(text, base_dir=tmp_path)
    assert series_source(sc.prices["ERCOT"]) == "file:prices.csv"
    assert series_source(sc.prices["MISO"]) == "synthetic"


def test_validate_notes_say_what_cleaning_did(shared_data: Path) -> None:
    sc = parse_scenario(_mini("2023-08", "31d", market="EPEX_DE"))
    notes = market_data.data_notes(sc.prices, sc.carbon)
    de = next(n for n in notes if n.startswith("price EPEX_DE:"))
    assert "292 negative hours kept" in de and "21 negative hours in this run" in de
    assert not any("MISO" in n for n in notes)  # synthetic series have no data notes
