"""`superfactory chaos price-shock MARKET x10` under ``geo`` moves a running job: geo decides a migration, the
job checkpoints the step it is at (SIGTERM), stops, and starts at another site from that checkpoint — no step
lost, never two live processes, and the final state is bit-identical to a failure-free run.

The scenario is a long job on a fleet whose three markets post the same price (50 USD/MWh) for the next hours;
the shock makes its site's power ten times dearer. The job declares four days of work, so geo compares the sites
over the next 24 h: staying costs ~3.4 USD/h of power, a move ~0.4 USD/h plus its one-off cost (drain and restart
at the value of a GPU-hour, spread over the span) — the move pays. Live, the demo compresses the job's time
(a step stands for 10 productive minutes) but not the fleet's clock, so geo's once-per-hour rate limit on a job's
moves (counted from its first placement) is set to the demo's scale with ``min_move_interval_s``.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import JobProcess, ProcessWatch, free_port
from superfactory.policy.geo import GeoPolicy

SPEC = {"id": "geo-mover", "accelerator": "H100-SXM", "gpus": 8, "work": "4d",
        "checkpoint": {"interval": "2h", "blocking": "0s", "size": "1MB"}}
SECONDS_PER_STEP, STEP_WALL_S = 600.0, 0.05  # 576 steps of 50 ms, a checkpoint every 12 steps
GEO_PARAMS = {"min_move_interval_s": 2}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("min_move_interval_s" not in inspect.signature(GeoPolicy.__init__).parameters,
                       reason="geo has no min_move_interval_s parameter: its once-per-hour move limit, counted from "
                              "a job's first placement, forbids any move within a live job's first real hour"),
]


@pytest.fixture(scope="module")
def geo_fleet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from superfactory.agent.fleet import FleetOptions, LocalFleet

    state = tmp_path_factory.mktemp("geo") / ".superfactory"
    opts = FleetOptions(port=free_port(), suspect_after_s=3.0, lost_after_s=10.0, heartbeat_interval_s=0.5,
                        cycle_s=0.5, hang_s=6.0, startup_s=120.0, stop_grace_s=5.0, tick_s=0.1,
                        seconds_per_step=SECONDS_PER_STEP, step_wall_s=STEP_WALL_S, mesh_fsync=False, policy="geo")
    f = LocalFleet(state, opts)
    watch = ProcessWatch(f.root)
    try:
        f.up(demo_jobs=False)
        f.api("PUT", "/v1/policies/active", json={"name": "geo", "params": GEO_PARAMS})
        now = time.time()
        f.api("POST", "/v1/signals", json={"points": [
            {"kind": "price", "key": m, "value": 50.0, "at_unix_s": now + h * 3600.0}
            for m in ("ERCOT", "SERC", "MISO") for h in range(3)]})
        f.wait_warm()
        yield f, state, watch
    finally:
        watch.close()
        left = f.down(grace_s=5.0)
        assert left == [], f"processes left after down: {left}"


def _reference(tmp_path: Path, zygote: Any) -> str:
    """The failure-free run of SPEC with the parameters an agent gives it (same seed, steps, interval)."""
    from superfactory.agent.config import agent_config_from_dict
    from superfactory.agent.launch import plan_job

    cfg = agent_config_from_dict({"factory": "x", "job": {"seconds_per_step": SECONDS_PER_STEP}}, tmp_path)
    params = dict(plan_job(cfg, {"job_id": "ref", "spec": SPEC}).params(), step_sleep_s=0.0)
    job = JobProcess(tmp_path, "ref", 1, params, zygote)
    try:
        assert job.finish() == 0, job.stderr()
        return str(next(r for r in job.records if r["kind"] == "completed")["state_sha256"])
    finally:
        job.close()


def test_price_shock_under_geo_moves_the_job_which_resumes_from_the_migration_checkpoint(
        geo_fleet: Any, tmp_path: Path, zygote: Any) -> None:
    from superfactory.agent.drills import TERMINAL, completed_digest, progress_records, wait_job
    from superfactory.agent.fleet import SITES

    fleet, state, watch = geo_fleet
    market_of = {site: market for site, _, market in SITES}
    job_id = fleet.submit(SPEC, key=f"geo-{uuid.uuid4().hex[:8]}")
    job = wait_job(fleet, job_id, lambda j: j["state"] == "running", 120, "running")
    origin = job["factory_id"]
    placed = next(e["at_unix_s"] for e in fleet.events(job_id) if e["kind"] == "assigned")
    deadline = time.monotonic() + 60
    while not any(r["kind"] == "checkpoint" for r in progress_records(fleet, job_id)):  # training, committed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # geo decides once on the price change: by then the job must be past its move limit (counted from placement)
    time.sleep(max(0.0, placed + GEO_PARAMS["min_move_interval_s"] + 1.0 - time.time()))

    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERFACTORY_")}
    shock = subprocess.run([sys.executable, "-m", "superfactory.cli.main", "chaos", "price-shock",
                            market_of[origin], "x10", "--state-dir", str(state), "--json"],
                           env=env, capture_output=True, text=True, timeout=120, check=False)
    assert shock.returncode == 0, shock.stderr
    assert json.loads(shock.stdout)["usd_per_mwh"] == 500.0

    moved = wait_job(fleet, job_id, lambda j: j["state"] == "running" and j["factory_id"] != origin, 90,
                     "running at another site")
    end = wait_job(fleet, job_id, lambda j: j["state"] in TERMINAL, 180, "the end")
    assert end["state"] == "succeeded", end

    events = fleet.events(job_id)
    stops = [e for e in events if e["kind"] == "stopping"]
    assert len(stops) == 1, stops
    assert stops[0]["data"]["reason"] == "migrate" and stops[0]["data"]["to"] == moved["factory_id"], stops
    assert stops[0]["data"]["because"].startswith("geo:"), stops
    assert not any(e["kind"] in ("requeued", "failed") for e in events), events

    recs = progress_records(fleet, job_id)
    first_token = job["fencing_token"]
    mine = [r for r in recs if r["fencing_token"] == first_token]
    # the final checkpoint at the origin: SIGTERM, the step it was at, committed
    assert [r["kind"] for r in mine][-2:] == ["stopping", "checkpoint"], mine[-3:]
    assert mine[-2]["reason"] == "SIGTERM"
    final = mine[-1]
    starts = [r for r in recs if r["kind"] == "started" and r["fencing_token"] != first_token]
    assert len(starts) == 1 and starts[0]["site"] == moved["factory_id"] != origin, starts
    # the destination resumed from exactly that checkpoint: no step lost
    assert starts[0]["step"] == final["step"] and starts[0]["restored_checkpoint"] == final["checkpoint_id"]
    assert watch.max_live.get(str(job_id), 0) == 1, watch.max_live
    assert completed_digest(fleet, job_id) == _reference(tmp_path, zygote)
