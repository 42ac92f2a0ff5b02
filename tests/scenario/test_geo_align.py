"""geo's size-aligned placement option (issue 18, ``policy/geo_align.py``): small jobs keep a cheap site's free
big-gang block whole.

Two DGX H100 sites of 8 nodes on flat prices (a CSV of constant hourly prices): ``cheap`` (20 USD/MWh) and
``dear`` (60 USD/MWh: running there beats waiting for ``cheap``, so the option may divert a small job there; it
never makes one wait).

- ``cheap`` starts full: four 1-node jobs only it is cleared for that run all day, and four that end together
  after 40 min (a whole free block of 4 nodes).
- The 4-node gang ``big`` (a day of work) arrives a minute in, when ``cheap`` is full: it starts at ``dear``, and
  the migration governor lets it move only an hour after its start.
- Small 1-node jobs (a day of work each, lawful anywhere) arrive at 45 and 50 min, while ``cheap`` has its free
  block and ``big`` may not move yet.

Without the option the small jobs take ``cheap``'s block (the cheapest site with room), so ``big`` runs at
``dear`` all day. With ``align_big_gangs`` breaking the block costs them the power ``big`` would lose, so they
start at ``dear``, stay there (a move into the block is priced the same way), and ``big`` moves to ``cheap`` at
its next full solve: power cost per productive GPU-hour falls. With the option off the two runs are the same, so
the test fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from superfactory.domain.events import EventKind
from superfactory.observe.summary import summarize
from superfactory.policy.geo import GeoPolicy
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import TwinResult, run_twin

from scenario_builders import factory, job, scenario

HOUR_S = 3600
LINKS = [{"a": "cheap", "b": "dear", "bandwidth": "400Gbps", "latency": "10ms"}]
# (a full solve at least every 30 min, so the gang's move is not left to the 4-h default in a 12-h scenario)
BASE = {"full_resolve_s": 1800, "align_min_gpus": 32}


def _run(tmp: Path, params: dict[str, Any]) -> TwinResult:
    csv = tmp / "flat.csv"
    csv.write_text("cheap,dear\n" + "20,60\n" * 24 * 7)
    markets = {m: {"csv": {"csv": str(csv), "column": col}} for m, col in (("PJM", "cheap"), ("MISO", "dear"))}
    local = [job(f"loc{i}", gpus=8, work=("40min" if i < 4 else "2d"), sovereignty=["CHEAP_ONLY"])
             for i in range(8)]
    small = [job(f"q{i}", gpus=8, work="1d", submit=f"{45 + 5 * i}min") for i in range(2)]
    text = scenario([factory("cheap", market="PJM", nodes=8, clearances=("US", "CHEAP_ONLY")),
                     factory("dear", market="MISO", nodes=8)],
                    [*local, job("big", gpus=32, work="1d", submit="1min"), *small],
                    duration="12h", links=LINKS, markets=markets)
    return run_twin(parse_scenario(text), policy="geo", policy_params={**BASE, **params})


def _site_at_end(r: TwinResult, jid: str) -> str:
    moves = [e for e in r.events if e.job == jid and e.kind in (EventKind.JOB_PLACED, EventKind.JOB_MIGRATED)]
    return moves[-1].factory


def test_small_jobs_keep_the_cheap_block_whole_and_the_big_gang_runs_there(tmp_path: Path) -> None:
    on = _run(tmp_path, {"align_big_gangs": True})
    off = _run(tmp_path, {})
    # the scenario is what it says: the gang starts at dear in both runs
    for r in (on, off):
        assert next(e.factory for e in r.events if e.kind is EventKind.JOB_PLACED and e.job == "big") == "dear"
    # without the option the small jobs break cheap's block and the gang stays at dear
    assert {_site_at_end(off, q) for q in ("q0", "q1")} == {"cheap"}
    assert _site_at_end(off, "big") == "dear"
    # with it the small jobs run at dear and the gang moves to cheap, within the hour after it may move
    assert {_site_at_end(on, q) for q in ("q0", "q1")} == {"dear"}
    moved = [e.time_s for e in on.events if e.kind is EventKind.JOB_MIGRATED and e.job == "big"
             and e.factory == "cheap"]
    assert moved and moved[0] <= 2 * HOUR_S + 60, moved
    # and it pays: lower power cost per productive GPU-hour, at no loss of work
    s_on, s_off = summarize(on), summarize(off)
    assert s_on["usd_per_productive_gpu_hour"] < 0.97 * s_off["usd_per_productive_gpu_hour"], (
        s_on["usd_per_productive_gpu_hour"], s_off["usd_per_productive_gpu_hour"])
    assert s_on["training_throughput"] >= 0.97 * s_off["training_throughput"]


def test_align_parameters_are_validated() -> None:
    for bad, msg in (({"align_min_gpus": 0}, "align_min_gpus"), ({"align_weight": -1.0}, "align_weight"),
                     ({"align_weight": float("nan")}, "align_weight")):
        with pytest.raises(ValueError, match=msg):
            GeoPolicy(**bad)
    assert GeoPolicy()._align is None  # off by default
    assert GeoPolicy(align_big_gangs=True)._align is not None
