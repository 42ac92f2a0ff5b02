"""Degraded NVLink domains under ``gang``: the 60 s all-reduce probe sweep reveals a domain that silently lost
bandwidth, and a running gang on it is hot-swapped (its TP groups on the bad domain move to healthy nodes after a
short pause, progress kept), or drained and restarted on healthy nodes, whichever costs less (issue 19)."""

from __future__ import annotations

from typing import Any

import pytest

from superfactory.domain.events import EventKind
from superfactory.domain.fleet import Place
from superfactory.domain.topology import topology_of
from superfactory.models.collective import placement_throughput
from superfactory.observe.explain import explain_job
from superfactory.scenario.loader import parse_scenario
from superfactory.sim import fleet as fleet_mod
from superfactory.sim.twin import TwinResult, run_twin

from scenario_builders import factory, job, scenario

ONSET_S = 3630  # not on a probe boundary: detection waits for the next sweep


def _run(restart: str, domain: int | None, params: dict[str, Any] | None = None
         ) -> tuple[TwinResult, list[tuple[int, Place]]]:
    events = [] if domain is None else [{"at": f"{ONSET_S}s", "kind": "link_degradation", "factory": "f",
                                         "domain": domain, "duration": "3h"}]
    text = scenario([factory("f", nodes=4 * 18, system="gb200-nvl72")],
                    [job("j", gpus=16, accelerator="GB200", work="6h", tp_size=8)],
                    duration="4h", events=events, failures={"rate_scale": 0.0, "planned": False},
                    defaults={"recovery": {"detect": "2min", "restart": restart}})
    placed: list[tuple[int, Place]] = []
    orig = fleet_mod.SimulatedFleet._place

    def spy(self: fleet_mod.SimulatedFleet, a: Place) -> None:
        placed.append((self.k.now_s(), a))
        orig(self, a)

    fleet_mod.SimulatedFleet._place = spy  # type: ignore[method-assign]
    try:
        return run_twin(parse_scenario(text), policy="gang", policy_params=params or {}), placed
    finally:
        fleet_mod.SimulatedFleet._place = orig  # type: ignore[method-assign]


def _domain_of_first_placement(restart: str) -> int:
    result, placed = _run(restart, None)
    topo = topology_of(result.scenario.factories[0])
    doms = set(topo.node_domain[list(placed[0][1].nodes)].tolist())
    assert len(doms) == 1
    return doms.pop()


def _back_to_speed_s(restart: str, params: dict[str, Any] | None = None) -> tuple[float, float, TwinResult]:
    d = _domain_of_first_placement(restart)
    result, placed = _run(restart, d, params)
    sc = result.scenario
    topo = topology_of(sc.factories[0])
    probes = [e for e in result.events if e.kind is EventKind.LINK_PROBED and e.node == d]
    assert probes and ONSET_S <= probes[0].time_s <= ONSET_S + fleet_mod.PROBE_INTERVAL_S
    evac = [e for e in result.events if e.kind is EventKind.JOB_PREEMPTED and e.job == "j"]
    assert len(evac) == 1 and evac[0].cause.startswith("evacuating degraded NVLink domain")
    assert evac[0].time_s == probes[0].time_s  # acted on at the sweep that revealed it (the event is visible)
    t, again = placed[1]
    assert not set(topo.node_domain[list(again.nodes)].tolist()) & {d}
    speed = placement_throughput(topo, again.nodes, sc.jobs[0], {d: 1 / 8})  # the true link state
    return t + sc.jobs[0].recovery.restart_s - ONSET_S, speed, result


def test_a_fast_restarting_gang_is_moved_when_a_move_is_cheaper_than_a_hot_swap() -> None:
    # restart 30 s: drain (20 s) + restart = 50 s < the 60 s hot-swap pause, so the gang is moved
    back_s, speed, _ = _back_to_speed_s("30s")
    assert speed >= 0.9
    assert back_s <= 2 * fleet_mod.PROBE_INTERVAL_S


def test_without_hot_swap_a_five_minute_restart_is_back_after_one_sweep_plus_drain_and_restart() -> None:
    # hot swap off: a move with the default 5 min restart is one sweep + checkpoint + restart
    back_s, speed, result = _back_to_speed_s("5min", {"hot_swap": False})
    ck = result.scenario.jobs[0].checkpoint
    assert speed >= 0.9
    assert back_s <= fleet_mod.PROBE_INTERVAL_S + ck.blocking_s + ck.async_write_s + 300


def test_without_evacuation_the_gang_stays_slow() -> None:
    d = _domain_of_first_placement("30s")
    result, placed = _run("30s", d, {"evacuate_degraded": False})
    assert len(placed) == 1
    assert not any(e.kind is EventKind.JOB_PREEMPTED for e in result.events)
    topo = topology_of(result.scenario.factories[0])
    assert placement_throughput(topo, placed[0][1].nodes, result.scenario.jobs[0], {d: 1 / 8}) < 0.9


def test_a_five_minute_restart_gang_is_hot_swapped_back_to_speed_within_two_probe_periods() -> None:
    # the default 5 min restart: a move would take one sweep + drain + 5 min; the hot swap moves only the TP
    # groups on the bad domain, pauses 60 s and keeps every second of progress
    d = _domain_of_first_placement("5min")
    result, placed = _run("5min", d)
    sc = result.scenario
    topo = topology_of(sc.factories[0])
    probe_t = next(e.time_s for e in result.events if e.kind is EventKind.LINK_PROBED and e.node == d)
    mine = [e for e in result.events if e.job == "j"]
    assert not any(e.kind in (EventKind.JOB_PREEMPTED, EventKind.JOB_INTERRUPTED) for e in mine)
    assert len(placed) == 1  # never requeued
    swaps = [e for e in mine if e.kind is EventKind.JOB_HOT_SWAPPED]
    assert len(swaps) == 1 and swaps[0].time_s == probe_t  # acted on at the sweep that revealed it, visibly
    assert "degraded NVLink domain(s)" in swaps[0].cause and swaps[0].value == sc.jobs[0].recovery.hot_swap_s
    resumed = next(e for e in mine if e.kind is EventKind.JOB_RUNNING and e.time_s > probe_t)
    assert resumed.time_s - ONSET_S <= 2 * fleet_mod.PROBE_INTERVAL_S
    # no progress lost: at the resume it has everything run so far (full speed before the onset, 0.6 after)
    first_run = next(e.time_s for e in mine if e.kind is EventKind.JOB_RUNNING)
    ck = sc.jobs[0].checkpoint
    stalled = ck.blocking_s * ((ONSET_S - first_run) // ck.interval_s)
    expected = (ONSET_S - first_run - stalled) + 0.6 * (probe_t - ONSET_S)
    assert resumed.value >= expected - 1
    committed = [e.value for e in mine if e.kind is EventKind.CHECKPOINT_COMMITTED and e.time_s <= probe_t]
    assert resumed.value > max(committed)  # not rolled back to its last checkpoint
    # runs at full speed afterwards: it ends with the progress of full-speed running since the resume
    progress = next(e.value for e in mine if e.kind is EventKind.JOB_PROGRESS)
    stalls = ck.blocking_s * (-(-(sc.duration_s - resumed.time_s) // ck.interval_s))
    assert progress >= resumed.value + (sc.duration_s - resumed.time_s - stalls) * 0.9
    del topo
    # the swap is in the job's --explain timeline, when and why
    timeline = explain_job(result, "j")
    assert f"hot-swapped on {sc.factories[0].id}: " in timeline and "(paused 60 s)" in timeline


def test_remedy_choice_by_cost() -> None:
    from superfactory.policy.degraded import choose_remedy, stay_cost_s

    assert stay_cost_s(3600, 0.6) == pytest.approx(2400)
    assert choose_remedy(3600, 0.6, 60, 320).kind == "swap"
    assert choose_remedy(3600, 0.6, 60, 50).kind == "move"
    assert choose_remedy(3600, 0.6, None, 320).kind == "move"
    assert choose_remedy(60, 0.6, 60, 320).kind == "stay"  # a minute left: not worth a 60 s pause
    assert choose_remedy(3600, 0.6, None, None).kind == "stay"


def test_swap_plan_keeps_tp_groups_whole_and_off_bad_domains() -> None:
    import numpy as np

    from superfactory.policy.degraded import swap_plan

    sc = parse_scenario(scenario([factory("f", nodes=4 * 18, system="gb200-nvl72")],
                                 [job("j", gpus=8, accelerator="GB200", work="1h", tp_size=8)]))
    topo = topology_of(sc.factories[0])
    nodes = (0, 1, 2, 3, 18, 19)  # three 2-node TP groups: two on domain 0, one on domain 1
    usable = np.ones(topo.node_domain.size, dtype=bool)
    usable[list(nodes)] = False
    usable[36:54] = False  # domain 2 busy
    usable[54:70] = False  # domain 3: two free nodes left (70, 71)
    pairs = swap_plan(topo, usable, nodes, 2, {0})
    assert pairs is not None and [o for o, _ in pairs] == [0, 1, 2, 3]
    new = [n for _, n in pairs]
    assert not set(topo.node_domain[new].tolist()) & {0}
    for i in (0, 2):  # each moved group inside one domain
        assert topo.node_domain[new[i]] == topo.node_domain[new[i + 1]]
    assert swap_plan(topo, usable, nodes, 2, {3}) is None  # nothing of the gang on domain 3
    full = np.zeros_like(usable)
    full[[70, 20]] = True  # two free nodes in different domains: no whole TP group fits
    assert swap_plan(topo, full, nodes, 2, {0}) is None


def test_the_twin_refuses_an_invalid_hot_swap() -> None:
    # a swap onto a node that is not free is a policy bug: the twin stops the run with the offending action
    import numpy as np

    from superfactory.domain.fleet import FleetSnapshot, Plan, SwapNodes
    from superfactory.domain.lifecycle import JobLifecycle
    from superfactory.errors import SimulationError
    from superfactory.policy.gang import GangScheduler
    from superfactory.policy.registry import register, unregister

    class BadSwap(GangScheduler):
        def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
            running = [v for v in snapshot.running if v.state is JobLifecycle.RUNNING]
            if running and running[0].factory_id is not None:
                v = running[0]
                return Plan((SwapNodes(v.job.id, v.factory_id, ((v.nodes[0], v.nodes[1]),)),))
            return super().decide(snapshot, rng)

    register("gang-badswap")(BadSwap)
    try:
        text = scenario([factory("f", nodes=18, system="gb200-nvl72")],
                        [job("j", gpus=16, accelerator="GB200", work="6h", tp_size=8)], duration="1h",
                        failures={"rate_scale": 0.0, "planned": False})
        with pytest.raises(SimulationError, match="not free"):
            run_twin(parse_scenario(text), policy="gang-badswap")
    finally:
        unregister("gang-badswap")


def test_degraded_racks_are_backfilled_and_the_gang_is_swapped_out_with_nodes_nobody_waits_for() -> None:
    # two NVL72 racks; rack of "a" healthy and full, the other probed degraded: "b" runs there slowly rather than
    # wait; when "a" ends and nobody waits for its nodes, "b" is hot-swapped onto them and runs at full speed
    def run(params: dict[str, Any]) -> TwinResult:
        text = scenario([factory("f", nodes=2 * 18, system="gb200-nvl72")],
                        [job("a", gpus=72, accelerator="GB200", work="2h", tp_size=8),
                         job("b", gpus=8, accelerator="GB200", work="4h", tp_size=8, submit="1h")],
                        duration="6h", events=[{"at": "30min", "kind": "link_degradation", "factory": "f",
                                                "domain": 1, "duration": "5h"}],
                        failures={"rate_scale": 0.0, "planned": False})
        return run_twin(parse_scenario(text), policy="gang", policy_params=params)

    # "a" lands on domain 0 (first fit of a whole rack), so domain 1 is the one that degrades
    result = run({})
    b = [e for e in result.events if e.job == "b"]
    placed = next(e for e in b if e.kind is EventKind.JOB_PLACED)
    assert placed.time_s == 3600  # started at submission, on the degraded rack
    a_done = next(e.time_s for e in result.events if e.job == "a" and e.kind is EventKind.JOB_COMPLETED)
    swap = next(e for e in b if e.kind is EventKind.JOB_HOT_SWAPPED)
    assert a_done <= swap.time_s <= a_done + fleet_mod.PROBE_INTERVAL_S
    assert not any(e.kind is EventKind.JOB_PREEMPTED for e in b)
    # without degraded backfill it waits for "a"'s nodes instead
    waited = run({"degraded_backfill": False})
    first = next(e.time_s for e in waited.events if e.job == "b" and e.kind is EventKind.JOB_PLACED)
    assert first >= a_done
    # backfilled, it has done more work by the end (slow first, full speed after the swap)
    done = {e.job: e for e in result.events if e.kind in (EventKind.JOB_COMPLETED, EventKind.JOB_PROGRESS)}
    done_w = {e.job: e for e in waited.events if e.kind in (EventKind.JOB_COMPLETED, EventKind.JOB_PROGRESS)}
    assert done["b"].value >= done_w["b"].value
