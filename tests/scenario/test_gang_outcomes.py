"""Outcomes the gang policy must show (issues 4, 19): >= 90 % occupancy and more productive GPU-hours than the
topology-blind first-fit baseline on a saturated NVL72 factory, ETTR above greedy's without a preemption storm,
hot-swap beating requeue on Llama 3 405B, degraded NVLink domains avoided."""

from __future__ import annotations

import functools
from typing import Any

from superfactory.domain.events import EventKind
from superfactory.domain.fleet import Place
from superfactory.domain.topology import topology_of
from superfactory.observe.summary import summarize
from superfactory.policy.waits import Wait, first_start_waits
from superfactory.scenario.loader import load_scenario, parse_scenario
from superfactory.sim import fleet as fleet_mod
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


@functools.cache
def _saturated(policy: str) -> tuple[dict[str, Any], list[Wait]]:
    sc = load_scenario("nvl72-saturated")
    result = run_twin(sc, policy=policy)
    return summarize(result), first_start_waits(result.events, sc.jobs, sc.duration_s)


def test_saturated_nvl72_occupancy_beats_topology_blind_first_fit() -> None:
    sc = load_scenario("nvl72-saturated")
    gang = _saturated("gang")[0]
    blind = summarize(run_twin(sc, policy="firstfit-blind"))
    assert gang["gpu_utilization"] >= 0.90
    # restored in issue 19's second session (starvation guard + hot swaps: 0.931 vs 0.928 measured)
    assert gang["gpu_utilization"] >= blind["gpu_utilization"]
    # and the work it does is worth more: no TP group straddles racks, degraded racks are avoided
    assert gang["training_throughput"] > blind["training_throughput"]


def test_saturated_nvl72_largest_gangs_start_within_12_hours() -> None:
    """Issue 19: every 4,096-GPU gang submitted that day starts within 12 h (one still waiting at the end counts
    with its wait so far): the starvation guard gives the longest waiter the first reservation after 6 h."""
    waits = _saturated("gang")[1]
    big = [w for w in waits if w.gpus == max(x.gpus for x in waits)]
    assert big and max(w.wait_s for w in big) <= 12 * 3600


def test_saturated_nvl72_gang_beats_greedy_on_ettr_without_a_preemption_storm() -> None:
    """Issue 19: gang's effective training time ratio >= greedy's, <= 20 preemptions a day (evacuations off
    degraded domains included: the factory's rate limit covers both)."""
    gang, greedy = _saturated("gang")[0], _saturated("greedy")[0]
    assert gang["ettr"] >= greedy["ettr"]
    assert gang["preemptions"] <= 20


def test_hot_swap_beats_requeue_on_llama3_405b() -> None:
    sc = load_scenario("llama3-405b")
    swap = run_twin(sc, policy="gang", policy_params={"hot_swap": True, "spare_pool": 1})
    requeue = run_twin(sc, policy="gang", policy_params={"hot_swap": False, "spare_pool": 1})
    swaps = sum(1 for e in swap.events if e.kind is EventKind.JOB_PLACED and e.cause == "hot-swap")
    assert swaps > 300  # most of the ~420 interruptions are absorbed by a spare in the same rack/leaf group
    assert summarize(swap)["ettr"] > summarize(requeue)["ettr"]


def _placements(yaml_text: str, policy: str) -> tuple[Any, list[Place]]:
    placed: list[Place] = []
    orig = fleet_mod.SimulatedFleet._place

    def spy(self: fleet_mod.SimulatedFleet, a: Place) -> None:
        placed.append(a)
        orig(self, a)

    fleet_mod.SimulatedFleet._place = spy  # type: ignore[method-assign]
    try:
        return run_twin(parse_scenario(yaml_text), policy=policy), placed
    finally:
        fleet_mod.SimulatedFleet._place = orig  # type: ignore[method-assign]


def test_bandwidth_check_steers_gangs_off_a_silently_degraded_domain() -> None:
    text = scenario(
        [factory("f", nodes=4 * 18, system="gb200-nvl72")],
        [job(f"j{i}", gpus=16, accelerator="GB200", work="4h", tp_size=8, submit="1h") for i in range(8)],
        duration="6h", events=[{"at": "30min", "kind": "link_degradation", "factory": "f", "domain": 0,
                                "duration": "330min"}],
        failures={"rate_scale": 0.0, "planned": False},
    )
    result, placed = _placements(text, "gang")
    topo = topology_of(result.scenario.factories[0])
    assert placed and all(0 not in set(topo.node_domain[list(a.nodes)].tolist()) for a in placed)
    # the same jobs under the topology-blind baseline land on it and run 40 % slower
    blind, blind_placed = _placements(text, "firstfit-blind")
    assert any(0 in set(topo.node_domain[list(a.nodes)].tolist()) for a in blind_placed)
    assert summarize(result)["training_throughput"] > summarize(blind)["training_throughput"]
