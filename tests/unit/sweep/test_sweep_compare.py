"""compare --seeds arithmetic and verdicts, and the sweep report, on hand-made rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from superfactory.sweep.compare import compare_rows, compare_table
from superfactory.sweep.report import group_rows, swept_axes, write_report


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    greedy_cost = [10.0, 11.0, 12.0, 13.0]
    geo_cost = [9.0, 9.8, 11.2, 12.0]  # per-seed differences -1.0, -1.2, -0.8, -1.0
    greedy_ettr = [0.90, 0.92, 0.91, 0.93]
    geo_ettr = [0.91, 0.90, 0.93, 0.92]  # differences +0.01, -0.02, +0.02, -0.01: mean 0, straddles zero
    for seed in range(4):
        rows.append({"cell_id": f"g{seed}", "scenario": "default", "policy": "greedy", "seed": seed, "status": "ok",
                     "power_cost_usd": greedy_cost[seed], "ettr": greedy_ettr[seed]})
        rows.append({"cell_id": f"o{seed}", "scenario": "default", "policy": "geo", "seed": seed, "status": "ok",
                     "power_cost_usd": geo_cost[seed], "ettr": geo_ettr[seed]})
    rows.append({"cell_id": "x", "scenario": "default", "policy": "geo", "seed": 4, "status": "failed",
                 "error": "ScenarioError: bad"})
    return rows


def test_compare_rows_intervals_and_verdicts() -> None:
    res = compare_rows(_rows(), ["greedy", "geo"])
    by = {m["metric"]: m for m in res["metrics"]}
    cost = by["power_cost_usd"]
    # greedy 10..13: mean 11.5, s = 1.290994, half-width = 3.182446 * 1.290994 / 2 = 2.054259
    assert cost["policies"]["greedy"]["mean"] == pytest.approx(11.5)
    assert cost["policies"]["greedy"]["half_width"] == pytest.approx(2.054259, abs=1e-5)
    d = cost["differences"]["geo"]
    # differences: mean -1, s = 0.163299, half-width = 3.182446 * 0.163299 / 2 = 0.259845
    assert d["mean"] == pytest.approx(-1.0) and d["half_width"] == pytest.approx(0.259845, abs=1e-6)
    assert d["n"] == 4  # seed 4 failed for geo: paired only over seeds both finished
    assert (d["verdict"], d["better"]) == ("lower", True)
    e = by["ettr"]["differences"]["geo"]
    assert e["low"] < 0 < e["high"] and e["verdict"] is None  # no verdict where the interval contains zero
    assert res["failed"] == [{"policy": "geo", "seed": 4, "error": "ScenarioError: bad"}]


def test_compare_table_renders_intervals_and_only_real_verdicts() -> None:
    from rich.console import Console

    res = compare_rows(_rows(), ["greedy", "geo"])
    res.update(scenario="default", seeds=[0, 1, 2, 3, 4])
    console = Console(width=200, record=True)
    console.print(compare_table(res))
    text = console.export_text()
    assert "11.5 ± 2.1" in text and "geo lower (better)" in text
    ettr_line = next(line for line in text.splitlines() if "ETTR" in line)
    assert "lower" not in ettr_line and "higher" not in ettr_line


def test_report_plots_each_swept_parameter(tmp_path: Path) -> None:
    rows = []
    for load in (0.5, 0.9):
        for seed in range(3):
            rows.append({"cell_id": f"{load}-{seed}", "scenario": "s", "policy": "greedy", "seed": seed,
                         "set:workload.load": load, "status": "ok", "ettr": 0.9 + seed / 100 - load / 10,
                         "power_cost_usd": 100 * load + seed})
    rows.append({"cell_id": "bad", "scenario": "s", "policy": "greedy", "seed": 0, "set:workload.load": 3.0,
                 "status": "failed", "error": "ScenarioError: load <= 2"})
    assert swept_axes(rows) == ["set:workload.load"]
    groups = group_rows(rows)
    assert len(groups) == 2 and all(len(g.seeds) == 3 for g in groups)
    page = write_report(rows, tmp_path / "report.html", "sweep t").read_text()
    assert "metrics against workload.load" in page
    assert len(re.findall(r"data:image/png;base64,", page)) == 1
    assert "ScenarioError: load &lt;= 2" in page and "failed cells" in page
