"""Sweeps on Ray: one local Ray instance for the whole module (start-up is slow on small machines), a private
temporary folder and no fixed ports, so it runs beside other test processes (pytest-xdist)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sweep_scenario import write_small

pytest.importorskip("ray", reason="Ray is not installed (pip install 'superfactory[ray]')")

from superfactory.sweep.compare import compare_seeds
from superfactory.sweep.engine import run_sweep
from superfactory.sweep.runners import RayRunner
from superfactory.sweep.spec import spec_from_flags
from superfactory.sweep.store import read_table, timing_column


@pytest.fixture(scope="module")
def ray_runner() -> Iterator[RayRunner]:
    runner = RayRunner(slots=2)
    try:
        yield runner
    finally:
        runner.close()


def _stable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not timing_column(k)} for r in rows]


def test_ray_and_local_processes_give_identical_tables(ray_runner: RayRunner, tmp_path: Path) -> None:
    scenario = write_small(tmp_path)
    spec = spec_from_flags([str(scenario)], "greedy,home-region", "0-1", None, None)
    on_ray = run_sweep(spec, tmp_path / "ray", ray_runner, progress=False)
    local = run_sweep(spec, tmp_path / "local", runner_kind="local", progress=False)
    assert on_ray.runner == "local Ray" and local.runner == "local processes"
    ray_rows, local_rows = read_table(on_ray.table), read_table(local.table)
    assert len(ray_rows) == 4 and all(r["status"] == "ok" for r in ray_rows)
    assert _stable(ray_rows) == _stable(local_rows)


def test_compare_seeds_on_ray_prints_intervals(ray_runner: RayRunner, tmp_path: Path) -> None:
    scenario = write_small(tmp_path)
    result = compare_seeds(str(scenario), ["greedy", "home-region"], "0-1", out_dir=tmp_path / "cmp",
                           runner=ray_runner, progress=False)
    cost = next(m for m in result["metrics"] if m["metric"] == "power_cost_usd")
    for policy in ("greedy", "home-region"):
        iv = cost["policies"][policy]
        assert iv["n"] == 2 and iv["low"] <= iv["mean"] <= iv["high"]
    diff = cost["differences"]["home-region"]
    assert diff["n"] == 2 and diff["half_width"] is not None
    assert (diff["verdict"] is None) == (diff["low"] <= 0 <= diff["high"])
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["metrics"] == result["metrics"] and Path(result["report"]).is_file()
