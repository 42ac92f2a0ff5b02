"""``superfactory cost``: the source's calculator with formulas, JSON output, pricing a twin run, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from superfactory.cli.main import app
from superfactory.errors import SuperfactoryError

from scenario_builders import factory, job, scenario


class Out:
    """What a command printed and returned (in-process: fast)."""

    def __init__(self, args: tuple[str, ...]) -> None:
        r = CliRunner().invoke(app, list(args))
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        self.returncode, self.stdout = r.exit_code, r.stdout
        self.stderr = ""


def sf(*args: str) -> Out:
    return Out(args)


def sf_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point (exit codes and stderr of user errors)."""
    return subprocess.run([sys.executable, "-m", "superfactory.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_llama3_405b_json_total_and_breakdown() -> None:
    r = sf("cost", "llama3-405b", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    lines = {ln["item"]: ln for ln in doc["lines"]}
    assert set(lines) == {"compute", "waste", "compute with waste", "networking", "storage", "power", "people",
                          "total"}
    assert 95e6 <= doc["total_usd"] <= 105e6 and doc["total_usd"] == lines["total"]["usd"]
    assert lines["compute"]["formula"] == "16,384 GPUs x $3/GPU-h x 54 d x 24 h"
    assert (lines["compute"]["usd"], lines["compute"]["source_usd"]) == (63_700_992.0, 63e6)  # both printed
    low, high = doc["total_usd_at_source_share_ranges"].values()
    assert low < doc["total_usd"] < high


def test_scale_json_and_text_show_formula_and_source() -> None:
    doc = json.loads(sf("cost", "scale", "--json").stdout)
    assert [ln["usd"] for ln in doc["lines"]] == [24, 192, 3072, 49152, 300000]
    assert doc["source_rounding"] == [ln["source_usd"] for ln in doc["lines"]] == [25, 200, 3000, 50000, 300000]
    text = sf("cost", "--usd-per-gpu-hour", "2").stdout
    assert "16,384 x $2" in text and "Llama 3 405B" in text and "Cost of a failure" in text


def test_cost_run_prices_a_twin_result(tmp_path: Path) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(scenario([factory("a", nodes=16), factory("b", market="ERCOT", nodes=8)],
                             [job("j1", gpus=64, work="1d")], duration="2d"))
    out = tmp_path / "run"
    assert sf("simulate", str(scen), "--out", str(out), "--json").returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    r = sf("cost", "--run", str(out), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["capital_cost_usd"] == summary["capital_cost_usd"] > 0
    assert doc["fleet"]["total_usd"] == doc["fleet"]["capital_usd"] + doc["fleet"]["power_usd"]
    assert [f["factory"] for f in doc["by_factory"]] == ["a", "b"]
    assert doc["by_factory"][0]["capital_usd"] == 2 * doc["by_factory"][1]["capital_usd"]  # 16 vs 8 DGX
    rental = {ln["item"]: ln["usd"] for ln in doc["rental_view"]}
    assert rental["compute"] == (16 + 8) * 8 * 48 * 3.0
    longer = json.loads(sf("cost", "--run", str(out / "summary.json"), "--json", "--depreciation-years", "8").stdout)
    assert abs(longer["capital_cost_usd"] - doc["capital_cost_usd"] / 2) < 1e-6 * doc["capital_cost_usd"]
    text = sf("cost", "--run", str(out)).stdout
    assert "capital rate dgx-h100: $350,000 / 8 GPUs x (1 + 20.0% + 7.5%) / (4 y x 8,760 h)" in text


def test_cost_errors_are_messages(tmp_path: Path) -> None:
    r = sf_process("cost", "--run", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "no summary.json" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "summary.json").write_text(json.dumps({"scenario": "old"}))
    with pytest.raises(SuperfactoryError, match="no cost inputs"):
        sf("cost", "--run", str(tmp_path))
    (tmp_path / "summary.json").write_text(json.dumps({"cost_inputs": [{"factory": "a"}]}))
    with pytest.raises(SuperfactoryError, match="malformed cost_inputs"):
        sf("cost", "--run", str(tmp_path))
    assert sf("cost", "gpt-5").returncode == 2  # not an estimate: a usage error
