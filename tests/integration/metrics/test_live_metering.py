"""The control plane's own measurements on /metrics: metered power, energy, cost and carbon per factory, durable
work, and what the agents report of the checkpoint mesh (save duration, bytes replicated across links, sync queue,
quorum wait, reachability) — values checked against the declared systems, the clock and the reports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_harness import FLEET, Plane, make_live, parse_exposition

from live_pg import pg_cluster, store_url  # noqa: F401  (fixtures)
from superfactory.live.services.fleet import load_fleet

Samples = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture
def any_plane(tmp_path: Path, store_url: str) -> Iterator[Plane]:  # noqa: F811
    """A plane on SQLite and on PostgreSQL (the job figures are read with each database's JSON operators)."""
    p = Plane(make_live(tmp_path, manual=True, url=store_url))
    p.call("POST", "/v1/fleet/import", json={"yaml": FLEET})
    yield p
    p.live.engine.dispose()


def _one(m: Samples, name: str, **labels: str) -> float:
    hits = [v for lb, v in m.get(name, []) if all(lb.get(k) == x for k, x in labels.items())]
    assert len(hits) == 1, (name, labels, m.get(name))
    return hits[0]


def _running(plane: Plane, n: int = 1) -> tuple[list[int], dict[int, str]]:
    acme = plane.tenant("acme")
    plane.agent("texas")
    plane.agent("virginia")
    ids = [plane.submit(acme, f"run-{i}") for i in range(n)]
    plane.cycle()
    where = {i: plane.job(i)["factory_id"] for i in ids}
    for i in ids:
        plane.report(i, where[i], state="running", progress_s=0)
    return ids, where


def test_power_follows_the_gpus_jobs_hold_and_energy_cost_carbon_integrate_it(plane: Plane) -> None:
    _running(plane, n=3)
    plane.heartbeat("virginia", down_nodes=[15])
    m1 = parse_exposition(plane.metrics(plane.admin).text)
    fleet = {f.id: f for f in load_fleet(plane.live).factories}
    for fid, f in fleet.items():
        (c,) = f.clusters
        busy = _one(m1, "superfactory_factory_allocated_gpus", factory=fid) / c.system.gpus_per_node
        down = _one(m1, "superfactory_factory_failed_nodes", factory=fid)
        it = busy * c.system.training_power_per_node_w + (c.nodes - busy - down) * c.system.idle_power_per_node_w
        assert _one(m1, "superfactory_factory_it_power_watts", factory=fid) == pytest.approx(it)
        assert _one(m1, "superfactory_factory_power_watts", factory=fid) == pytest.approx(it * f.pue)
        assert _one(m1, "superfactory_factory_energy_joules_total", factory=fid) == 0  # the meter starts here
    assert {lb["factory"] for lb, v in m1["superfactory_factory_allocated_gpus"] if v} == {"texas", "virginia"}
    plane.live.clock.advance(1800)
    plane.heartbeat("texas")
    plane.heartbeat("virginia", down_nodes=[15])
    m2 = parse_exposition(plane.metrics(plane.admin).text)
    for fid in fleet:
        joules = _one(m1, "superfactory_factory_power_watts", factory=fid) * 1800
        mwh = joules / 3.6e9
        price = _one(m2, "superfactory_factory_energy_price_usd_per_megawatt_hour", factory=fid)
        carbon = _one(m2, "superfactory_factory_carbon_intensity_grams_per_kilowatt_hour", factory=fid)
        assert joules > 0
        assert _one(m2, "superfactory_factory_energy_joules_total", factory=fid) == pytest.approx(joules)
        assert _one(m2, "superfactory_factory_energy_cost_usd_total", factory=fid) == pytest.approx(mwh * price)
        assert _one(m2, "superfactory_factory_carbon_grams_total", factory=fid) == pytest.approx(mwh * 1000 * carbon)
    plane.live.clock.advance(700)  # past the lost timeout (600 s) without a heartbeat from virginia
    plane.heartbeat("texas")
    m3 = parse_exposition(plane.metrics(plane.admin).text)
    assert _one(m3, "superfactory_factory_lease_up", factory="virginia") == 0
    assert _one(m3, "superfactory_factory_power_watts", factory="virginia") == 0
    assert _one(m3, "superfactory_factory_power_watts", factory="texas") > 0


def test_checkpoint_reports_give_durable_work_duration_and_link_traffic(any_plane: Plane) -> None:
    plane = any_plane
    (job,), where = _running(plane)
    here = where[job]
    there = "virginia" if here == "texas" else "texas"
    plane.checkpoint(job, here, 10, 100.0, mesh={"duration_s": 4.5, "quorum_s": 2.0,
                                                  "replicated_bytes": {here: 1e9, there: 5e8}})
    plane.live.clock.advance(100)
    plane.checkpoint(job, here, 18, 180.0, mesh={"duration_s": 3.25, "replicated_bytes": {there: 2.5e8}})
    plane.checkpoint(job, here, 18, 180.0)  # a repeated commit makes nothing more durable
    m = parse_exposition(plane.metrics(plane.admin).text)
    flop_per_s = _one(m, "superfactory_job_theoretical_flop_per_second", job_id=str(job))
    assert _one(m, "superfactory_factory_productive_flop_total", factory=here) == pytest.approx(180 * flop_per_s)
    assert _one(m, "superfactory_factory_productive_flop_total", factory=there) == 0
    assert _one(m, "superfactory_job_checkpoint_duration_seconds", job_id=str(job)) == 3.25
    assert _one(m, "superfactory_link_transmitted_bytes_total", link="texas-virginia") == 7.5e8  # own site: no WAN
    assert _one(m, "superfactory_link_up", link="texas-virginia") == 1
    assert "superfactory_checkpoint_sync_queue_depth" not in m  # no agent reported its mesh yet
    bad = plane.call("POST", f"/v1/agent/jobs/{job}/checkpoints", plane.agents[here][0], expect=422, json={
        "fencing_token": plane.job(job)["fencing_token"], "step": 19, "progress_s": 190.0, "location": "x",
        "mesh": {"duration_s": -1}})
    assert bad["error"]["code"]


def test_mesh_status_reports_become_queue_quorum_and_link_gauges(plane: Plane) -> None:
    _running(plane)
    plane.mesh_status("texas", sync_queue={"virginia": 3, "texas": 9}, quorum_wait_s=12.5)
    m = parse_exposition(plane.metrics(plane.admin).text)
    assert _one(m, "superfactory_checkpoint_sync_queue_depth", link="texas-virginia") == 3  # own-site uploads: no link
    assert _one(m, "superfactory_checkpoint_quorum_wait_seconds", factory="texas") == 12.5
    assert "virginia" not in {lb["factory"] for lb, _ in m["superfactory_checkpoint_quorum_wait_seconds"]}
    plane.mesh_status("virginia", sync_queue={"texas": 4}, quorum_wait_s=0, unreachable=["texas"])
    m = parse_exposition(plane.metrics(plane.admin).text)
    assert _one(m, "superfactory_checkpoint_sync_queue_depth", link="texas-virginia") == 7  # both directions
    assert _one(m, "superfactory_link_up", link="texas-virginia") == 0  # virginia cannot reach texas' storage
    # the route's contract: current lease epoch, agent tokens only, validated body
    err = plane.call("POST", "/v1/agent/mesh-status", plane.agents["texas"][0], expect=409,
                     json={"lease_epoch": 999})
    assert err["error"]["code"] == "stale_lease_epoch"
    assert plane.call("POST", "/v1/agent/mesh-status", plane.tenant("beta"), expect=403,
                      json={"lease_epoch": 1})["error"]["code"]
    assert plane.client.post("/v1/agent/mesh-status", json={"lease_epoch": 1}).status_code == 401
    plane.mesh_status("texas", expect=422, sync_queue={"virginia": -1})
    plane.live.clock.advance(61)  # older than the lease's short timeout: no longer exposed
    plane.heartbeat("texas")
    plane.heartbeat("virginia")
    m = parse_exposition(plane.metrics(plane.admin).text)
    assert "superfactory_checkpoint_sync_queue_depth" not in m
    assert "superfactory_checkpoint_quorum_wait_seconds" not in m
    assert _one(m, "superfactory_link_up", link="texas-virginia") == 1


def test_metered_it_power_respects_the_caps_and_down_nodes(tmp_path: Path) -> None:
    from superfactory.live.power_meter import it_power_w
    from superfactory.scenario.loader import load_scenario

    from scenario_builders import factory, scenario

    path = tmp_path / "caps.yaml"
    path.write_text(scenario([factory("big", nodes=16), factory("capped", nodes=16, power_cap="60kW", pue=1.5),
                              factory("cool", nodes=16, cooling_capacity="50kW")], []))
    fs = {f.id: f for f in load_scenario(str(path)).factories}
    (c,) = fs["big"].clusters
    busy_w, idle_w = c.system.training_power_per_node_w, c.system.idle_power_per_node_w
    assert it_power_w(fs["big"], {"H100-SXM": 20}, set()) == pytest.approx(3 * busy_w + 13 * idle_w)  # 20 GPUs: 3 nodes
    assert it_power_w(fs["big"], {"H100-SXM": 8}, {0, 1}) == pytest.approx(busy_w + 13 * idle_w)  # down: no power
    assert it_power_w(fs["big"], {"B200": 64}, set()) == pytest.approx(16 * idle_w)  # no such accelerator there
    assert it_power_w(fs["capped"], {"H100-SXM": 128}, set()) == pytest.approx(60e3 / 1.5)
    assert it_power_w(fs["cool"], {"H100-SXM": 128}, set()) == pytest.approx(50e3)
