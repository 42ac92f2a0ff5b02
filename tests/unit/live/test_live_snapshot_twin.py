"""The same policy sees the same world: the live scheduler's FleetSnapshot, built from its store, equals the
twin's for the same fleet state (same factories, jobs, placements, time and signals)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import yaml

from superfactory.domain.fleet import FleetSnapshot
from superfactory.live.scheduler.view import StoreFleetView
from superfactory.loop.decision import DecisionLoop
from superfactory.policy.registry import make_policy
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.fleet import SimulatedFleet
from superfactory.sim.kernel import Kernel
from superfactory.sim.twin import KernelClock

from scenario_builders import factory, job, scenario

FLEET = scenario(
    [factory("texas", market="ERCOT", nodes=16), factory("virginia", market="PJM", nodes=16),
     factory("sweden", market="NORDPOOL_SE2", nodes=16, clearances=("EU", "EU_PERSONAL"), jurisdiction="EU")],
    [job("a", gpus=64), job("b", gpus=128, priority=2), job("c", gpus=64, sovereignty=["EU_PERSONAL"]),
     job("d", gpus=128), job("e", gpus=32, home="virginia")],
    links=[{"a": "texas", "b": "virginia", "bandwidth": "400Gbps", "latency": "20ms"}],
    failures={"rate_scale": 0, "planned": False},
)
RESTART_S = 300  # the scenario defaults' restart time: placed jobs start running then
DOWN_NODE = 3  # of virginia: down in both worlds (the twin's node state, the agent's down_nodes)


class _Log:
    def __init__(self) -> None:
        self.events: list[object] = []

    def emit(self, e: object) -> None:
        self.events.append(e)


def _twin_snapshots(jobs: tuple) -> tuple[FleetSnapshot, FleetSnapshot]:
    """The twin's snapshots right after the decision at t=0 (seen at t=1) and when the jobs start (t=300)."""
    sc = parse_scenario(FLEET)
    kernel = Kernel()
    log = _Log()
    fleet = SimulatedFleet(kernel, sc.factories, sc.links, jobs, dict(sc.prices), dict(sc.carbon), sc.failure_model,
                           np.random.default_rng(0), log.emit)
    loop = DecisionLoop([make_policy("gang")], fleet, fleet, KernelClock(kernel), log, 0)
    fleet.request_decision = loop.request
    fleet.periodic = loop.periodic
    loop.start()
    fleet.start()
    fleet.rt[fleet.by_id["virginia"]].set_down(DOWN_NODE, True)  # a failed node, known before the first decision
    kernel.run(1)
    first = _frozen(fleet.snapshot())
    later: list[FleetSnapshot] = []
    kernel.at(RESTART_S, 10**9, lambda: later.append(_frozen(fleet.snapshot())))  # after everything else at t=300
    kernel.run(RESTART_S + 1)
    return first, later[0]


def _frozen(snap: FleetSnapshot) -> FleetSnapshot:
    """The snapshot with every view built now (a world may build running views lazily, on first use)."""
    return dataclasses.replace(snap, running=tuple(snap.running))


def _assert_same(live: FleetSnapshot, twin: FleetSnapshot) -> None:
    """Field by field; IT power (a float the twin keeps incrementally) to 1e-9 relative."""
    assert live.now_s == twin.now_s
    assert live.factories == twin.factories
    assert live.links == twin.links
    assert live.pending == twin.pending
    assert tuple(live.running) == tuple(twin.running)
    assert dict(live.price_history) == dict(twin.price_history)
    assert dict(live.carbon_history) == dict(twin.carbon_history)
    assert live.inference == twin.inference
    for a, b in zip(live.states, twin.states, strict=True):
        assert math.isclose(a.it_power_w, b.it_power_w, rel_tol=1e-9), (a.factory_id, a.it_power_w, b.it_power_w)
        assert dataclasses.replace(a, it_power_w=0.0) == dataclasses.replace(b, it_power_w=0.0)


def test_live_snapshot_equals_the_twins(api):
    sc = parse_scenario(FLEET)
    api.import_fleet(yaml_text=FLEET)
    for f in sc.factories:
        api.agent(f.id)
    acme = api.tenant("acme")
    ids = [api.submit(acme, entry)["id"] for entry in yaml.safe_load(FLEET)["jobs"]]  # the same `jobs:` entries
    # the twin runs the same jobs under the ids the control plane gave them
    twin_jobs = tuple(dataclasses.replace(j, id=str(i)) for j, i in zip(sc.jobs, ids, strict=True))
    twin_first, twin_later = _twin_snapshots(twin_jobs)

    api.heartbeat("virginia", down_nodes=[DOWN_NODE])
    api.cycle()  # live decision at t=0, same policy, same seed
    api.live.clock.t = 1
    for f in sc.factories:
        api.heartbeat(f.id, down_nodes=[DOWN_NODE] if f.id == "virginia" else [])
    live_first = StoreFleetView(api.live).snapshot()
    assert len(twin_first.running) == 4 and len(twin_first.pending) == 1  # the comparison is not vacuous
    assert twin_first.states[1].node_status[DOWN_NODE] == 2
    _assert_same(live_first, twin_first)

    api.live.clock.t = RESTART_S
    for f in sc.factories:
        api.heartbeat(f.id, down_nodes=[DOWN_NODE] if f.id == "virginia" else [])
    for j in api.call("GET", "/v1/jobs?state=assigned")["jobs"]:
        hdr = api.agents[j["factory_id"]][0]
        api.call("POST", f"/v1/agent/jobs/{j['id']}/report", hdr,
                 json={"fencing_token": j["fencing_token"], "state": "running", "progress_s": 0.0})
    api.cycle()
    _assert_same(StoreFleetView(api.live).snapshot(), twin_later)
