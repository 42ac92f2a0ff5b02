"""`chaos price-shock` under `geo` moves a running job: it checkpoints (SIGTERM), stops, and starts at another
site from that migration checkpoint. Time is compressed: one 0.1 s step stands for 10 productive minutes, so
a two-day job (288 steps) is worth moving when its market's price jumps tenfold."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from superfactory.agent import chaos
from superfactory.agent.drills import progress_records, wait_job
from superfactory.agent.fleet import SITES, FleetOptions, LocalFleet


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def geo_fleet(tmp_path: Path) -> Any:
    opts = FleetOptions(port=_port(), policy="geo", seconds_per_step=600.0, step_wall_s=0.1, suspect_after_s=20.0,
                        lost_after_s=60.0, heartbeat_interval_s=0.5, cycle_s=0.5, stop_grace_s=10.0, tick_s=0.1,
                        mesh_fsync=False)
    fleet = LocalFleet(tmp_path, opts)
    try:
        fleet.up(demo_jobs=False)
        yield fleet
    finally:
        assert fleet.down(grace_s=5.0) == []


def test_price_shock_moves_a_running_job_which_resumes_from_the_migration_checkpoint(geo_fleet: Any) -> None:
    fleet = geo_fleet
    spec = {"id": "geo-move", "accelerator": "H100-SXM", "gpus": 8, "work": "2d",
            "checkpoint": {"interval": "1h", "blocking": "0s", "size": "1MB"}}
    job_id = fleet.submit(spec)
    job = wait_job(fleet, job_id, lambda j: j["state"] == "running" and (j.get("step") or 0) >= 8, 180.0,
                   "training")
    site = job["factory_id"]
    market = {s: m for s, _, m in SITES}[site]
    chaos.price_shock(fleet, market, 10.0)
    moved = wait_job(fleet, job_id, lambda j: j["factory_id"] not in (None, site), 120.0, "a move")
    assert moved["fencing_token"] > job["fencing_token"]
    end = wait_job(fleet, job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), 240.0, "the end")
    assert end["state"] == "succeeded" and end["factory_id"] == moved["factory_id"]
    events = [e for e in fleet.events(job_id) if e["kind"] == "assigned"]
    assert events[-1]["data"].get("cause") == "migrate" and events[-1]["data"].get("from") == site, events
    recs = progress_records(fleet, job_id)
    old = [r for r in recs if r["site"] == site]
    new = [r for r in recs if r["site"] == moved["factory_id"]]
    stop = [r for r in old if r["kind"] == "stopping"]
    assert [r["reason"] for r in stop] == ["SIGTERM"]
    final_ckpt = [r for r in old if r["kind"] == "checkpoint"][-1]
    assert final_ckpt["step"] == stop[0]["step"]  # the migration checkpoint: the step it was at, nothing lost
    started = [r for r in new if r["kind"] == "started"]
    assert started[0]["step"] == final_ckpt["step"] and started[0]["restored_checkpoint"] == final_ckpt["checkpoint_id"]
    assert next(r for r in new if r["kind"] == "completed")["step"] == 288
