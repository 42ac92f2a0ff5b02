"""Sweeps on local processes: failures recorded, kill-and-resume, scenario edits, the CLI.

The reference sweep (8 cells: 2 loads x 2 policies x 2 seeds, the load of 9 invalid) runs once per module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sweep_scenario import SMALL, write_small

from superfactory.sweep.engine import SweepOutcome, run_sweep
from superfactory.sweep.spec import spec_from_flags
from superfactory.sweep.store import read_table, timing_column

FLAGS = ["--policies", "greedy,home-region", "--seeds", "0-1", "--set", "workload.load=0.6,9"]


def _spec(path: Path) -> Any:
    return spec_from_flags([str(path)], "greedy,home-region", "0-1", ["workload.load=0.6,9"], None)


def _stable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the columns that measure the run (wall times, timestamps)."""
    return [{k: v for k, v in r.items() if not timing_column(k)} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SweepOutcome]:
    folder = tmp_path_factory.mktemp("ref")
    scenario = write_small(folder)
    return scenario, run_sweep(_spec(scenario), folder / "out", runner_kind="local", progress=False)


def test_a_failing_cell_is_recorded_and_the_others_finish(reference: tuple[Path, SweepOutcome]) -> None:
    _, outcome = reference
    rows = read_table(outcome.table)
    assert outcome.cells == 8 and outcome.ran == 8 and outcome.failed == 4 and len(rows) == 8
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["set:workload.load"] for r in failed} == {9}
    assert all("workload.load" in r["error"] and "less than or equal to 2" in r["error"] for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(r["policy"], r["seed"]) for r in ok} == {(p, s) for p in ("greedy", "home-region") for s in range(2)}
    assert all(0 < r["ettr"] <= 1 and r["jobs"] > 0 for r in ok)
    assert len({r["power_cost_usd"] for r in ok if r["policy"] == "greedy"}) == 2  # seeds differ


def test_killing_a_sweep_midway_and_rerunning_gives_the_same_table(reference: tuple[Path, SweepOutcome],
                                                                    tmp_path: Path) -> None:
    scenario, ref = reference
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "superfactory.cli.main", "sweep", str(scenario), *FLAGS, "--out", str(out),
           "--runner", "local", "--no-progress", "--json"]
    proc = subprocess.Popen([*cmd, "--slots", "1", "--batch", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(list((out / "parts").glob("*.json"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes, mid-batch
        proc.wait()
    journaled = len(list((out / "parts").glob("*.json")))
    assert 2 <= journaled < 8, "the sweep was not killed midway"
    assert not (out / "results.parquet").exists()

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # --json: stdout is one JSON document
    assert result["skipped"] >= 1 and result["skipped"] + result["ran"] == 8
    assert Path(result["report"]).is_file() and result["groups"]
    assert _stable(read_table(out / "results.parquet")) == _stable(read_table(ref.table))


def test_editing_the_scenario_invalidates_its_cells(tmp_path: Path) -> None:
    scenario = write_small(tmp_path)
    spec = spec_from_flags([str(scenario)], "greedy", "0-1", None, None)
    first = run_sweep(spec, tmp_path / "out", runner_kind="local", progress=False)
    again = run_sweep(spec, tmp_path / "out", runner_kind="local", progress=False)
    assert (first.ran, again.skipped, again.ran, again.runner) == (2, 2, 0, "none (nothing to run)")
    before = read_table(first.table)

    write_small(tmp_path, text=SMALL.replace("rate_scale: 4.0", "rate_scale: 0.5"))
    edited = run_sweep(spec, tmp_path / "out", runner_kind="local", progress=False)
    after = read_table(edited.table)
    assert (edited.skipped, edited.ran) == (0, 2)
    assert len(after) == 2  # the old content's rows stay in the journal, not in the table
    assert {r["scenario_hash"] for r in after}.isdisjoint({r["scenario_hash"] for r in before})
    assert [r["interruptions"] for r in after] != [r["interruptions"] for r in before]


def test_cli_errors_exit_2_without_a_traceback(tmp_path: Path) -> None:
    scenario = write_small(tmp_path)
    for args, message in (
        (["sweep", str(scenario), "--set", "workload.lod=1"], "'lod' is not a field of workload"),
        (["sweep", str(scenario), "--seeds", "4-2"], "is empty"),
        (["compare", str(scenario), "--policies", "greedy,home-region", "--seeds", "3"], "at least two seeds"),
        (["compare", str(scenario), "--seed", "1", "--seeds", "0-3"], "give one"),
    ):
        r = subprocess.run([sys.executable, "-m", "superfactory.cli.main", *args], capture_output=True, text=True,
                           timeout=120, check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr


def test_a_cell_gives_what_simulate_gives_for_its_seed(tmp_path: Path) -> None:
    """The worker's path (parse once, reseed per cell) and `simulate --seed` (parse under the seed) agree."""
    from superfactory.observe.summary import summarize
    from superfactory.scenario.loader import load_scenario
    from superfactory.sim.twin import run_twin
    from superfactory.sweep.worker import run_batch, summary_fields

    scenario = write_small(tmp_path)
    batch = {"scenario": {"text": SMALL, "source": str(scenario), "base_dir": str(tmp_path)},
             "cells": [{"coordinates": {"seed": s}, "fields": [], "policy": "home-region", "params": [], "seed": s}
                       for s in (1, 2)]}
    rows = run_batch(batch)
    for row in rows:
        direct = summary_fields(summarize(run_twin(load_scenario(str(scenario), seed=row["seed"]),
                                                   policy="home-region")))
        assert row["status"] == "ok"
        assert {k: v for k, v in direct.items() if not timing_column(k)} == \
            {k: row[k] for k in direct if not timing_column(k)}


def test_without_ray_it_falls_back_to_local_processes_and_says_so(tmp_path: Path) -> None:
    scenario = write_small(tmp_path)
    blocker = tmp_path / "no_ray" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('ray is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent)}
    r = subprocess.run([sys.executable, "-m", "superfactory.cli.main", "sweep", str(scenario), "--seeds", "0",
                        "--out", str(tmp_path / "out"), "--json", "--no-report"], capture_output=True, text=True,
                       timeout=300, check=False, env=env)
    assert r.returncode == 0, r.stderr
    assert "Ray is not installed; running on" in r.stderr
    result = json.loads(r.stdout)
    assert result["runner"] == "local processes" and result["ran"] == 1 and result["failed"] == 0
