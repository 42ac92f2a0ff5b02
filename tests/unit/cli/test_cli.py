"""The CLI end to end: summary JSON keys, output folder contents, clear errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from superfactory.scenario.loader import builtin_text, parse_scenario

from scenario_builders import factory, job, scenario

REQUIRED = {"scenario", "seed", "simulated_days", "interruptions", "planned_interruptions", "interruptions_by_cause",
            "ettr", "gpu_utilization", "energy_mwh", "power_cost_usd", "carbon_tco2", "wall_seconds", "events"}


def sf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "superfactory.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_simulate_json_and_out(tmp_path: Path) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(scenario([factory("a", nodes=32), factory("b", market="ERCOT", nodes=32)],
                             [job("j1", gpus=128, work="3d"), job("j2", gpus=64, work="1d", submit="1d")]))
    out = tmp_path / "out"
    r = sf("simulate", str(scen), "--seed", "4", "--json", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert set(summary) >= REQUIRED
    assert summary["seed"] == 4 and summary["simulated_days"] == 5.0
    assert 0 < summary["gpu_utilization"] <= 1 and 0 < summary["ettr"] <= 1
    assert summary["energy_mwh"] > 0 and summary["power_cost_usd"] > 0
    assert json.loads((out / "summary.json").read_text()) == summary | {"wall_seconds": summary["wall_seconds"]}
    jobs = pq.read_table(out / "jobs.parquet").to_pydict()
    assert sorted(jobs["job"]) == ["j1", "j2"]
    events = pq.read_table(out / "events.parquet")
    assert events.num_rows == summary["events"]
    hours = pq.read_table(out / "factory_hours.parquet")
    assert hours.num_rows == 2 * 5 * 24
    # the hourly table adds up to the summary
    assert sum(hours.column("power_cost_usd").to_pylist()) == summary["power_cost_usd"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "Interruptions by cause" in html


def test_bad_scenario_exit_2_no_traceback(tmp_path: Path) -> None:
    scen = tmp_path / "bad.yaml"
    scen.write_text(scenario([factory("a", pue="high")], [job("j1")]))
    r = sf("simulate", str(scen))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "bad.yaml:" in r.stderr and "factories[0].pue" in r.stderr


def test_unknown_policy_and_builtin(tmp_path: Path) -> None:
    r = sf("simulate", "llama3-405b", "--policy", "magic")
    assert r.returncode == 2 and "unknown policy 'magic'" in r.stderr and "greedy" in r.stderr
    r = sf("simulate", "nope")
    assert r.returncode == 2 and "built-ins are" in r.stderr


def test_scenarios_show_schema_validate(tmp_path: Path) -> None:
    r = sf("scenarios")
    assert r.returncode == 0 and "default" in r.stdout and "llama3-405b" in r.stdout
    r = sf("scenario", "show", "default")
    assert r.returncode == 0 and r.stdout == builtin_text("default")
    copy = tmp_path / "copy.yaml"
    copy.write_text(r.stdout)
    assert parse_scenario(copy.read_text()).name == "default"
    r = sf("scenario", "schema")
    schema = json.loads(r.stdout)
    assert {"factories", "jobs", "duration"} <= set(schema["properties"])
    r = sf("scenario", "validate", str(copy))
    assert r.returncode == 0 and "96,800 GPUs" in r.stdout


def test_explain(tmp_path: Path) -> None:
    scen = tmp_path / "s.yaml"
    text = scenario([factory("a", nodes=4)], [job("big", gpus=32, work="2d"), job("waits", gpus=32, work="1d")])
    scen.write_text(text)
    r = sf("simulate", str(scen), "--explain", "waits")
    assert r.returncode == 0, r.stderr
    assert "job waits" in r.stdout and "placed on a" in r.stdout
    assert "why it waited" in r.stdout and "not enough free H100-SXM nodes at a" in r.stdout
    r = sf("simulate", str(scen), "--explain", "ghost")
    assert r.returncode == 2 and "no job 'ghost'" in r.stderr


def test_default_runs_and_keeps_the_fleet_busy() -> None:
    r = sf("simulate", "default", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["gpus"] == 96_800 and s["simulated_days"] == 30
    # offered demand averages 85 % of the fleet; what runs depends on the workload draw (now from the run seed:
    # greedy 0.75 at the default seed 7, 0.93 at seed 1)
    assert s["gpu_utilization"] >= 0.70
    assert s["interruptions"] > 500 and s["jobs_completed"] > 100
    assert yaml.safe_load(builtin_text("default"))["workload"]["load"] >= 0.8


def test_policy_params_from_the_command_line() -> None:
    r = sf("compare", "llama3-405b", "--policies", "greedy,gang", "-p", "gang.spare_pool=1", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["policy"]: row for row in json.loads(r.stdout)["policies"]}
    assert rows["gang"]["ettr"] > rows["greedy"]["ettr"]  # hot-swap onto a spare beats requeue
    r = sf("simulate", "llama3-405b", "--policy", "gang", "-p", "bogus=1")
    assert r.returncode == 2 and "policy 'gang' has no parameter 'bogus'" in r.stderr and "spare_pool" in r.stderr
    r = sf("simulate", "llama3-405b", "--policy", "gang", "-p", "spare_pol=1")
    assert r.returncode == 2 and "did you mean 'spare_pool'" in r.stderr
    r = sf("simulate", "llama3-405b", "--policy", "gang", "-p", "spare_pool=lots")
    assert r.returncode == 2 and "spare_pool must be a whole number" in r.stderr and "Traceback" not in r.stderr
    r = sf("simulate", "llama3-405b", "-p", "nokey")
    assert r.returncode == 2 and "expected KEY=VALUE" in r.stderr
