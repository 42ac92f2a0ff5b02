"""The usable capacity of a pool (nodes down, whole gangs) is never below what any gang schedule can have busy,
and tightening the bound's capacity or rate rows only raises it, never above a schedule that obeys them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_geo_hindsight import _policy_schedule, instances

from superfactory.domain.events import Event, EventKind
from superfactory.policy.hindsight import HindsightInstance, exact_schedule, hindsight_bound, schedule_cost
from superfactory.policy.hindsight_fleet import usable_gpus_per_hour

STEP_S = 60


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_gang_schedule_has_more_gpus_busy_than_the_usable_capacity(data: st.DataObject) -> None:
    """Simulate a pool minute by minute the way the twin holds it: gangs of whole nodes placed on free live
    nodes, a node failing under a gang stays held (down) until the gang lets go, busy = live held GPUs. The
    hourly mean of busy GPUs never exceeds :func:`usable_gpus_per_hour`."""
    gpn = data.draw(st.sampled_from([4, 8]))
    n_nodes = data.draw(st.integers(2, 24))
    sizes = data.draw(st.lists(st.sampled_from([1, 2, 3, 4, 6]), min_size=1, max_size=4))  # gangs in nodes
    gran = int(np.gcd.reduce(np.array(sizes) * gpn))
    hours = data.draw(st.integers(1, 3))
    horizon = hours * 3600
    spells = []  # a node is down at most once at a time (the twin thins failures of down nodes)
    for node in data.draw(st.sets(st.integers(0, n_nodes - 1), max_size=4)):
        a = STEP_S * data.draw(st.integers(0, horizon // STEP_S - 1))  # on the simulation's minute grid
        b = STEP_S * data.draw(st.integers(a // STEP_S + 1, (horizon + 3600) // STEP_S))
        spells.append((a, b, node))
    cap = usable_gpus_per_hour(n_nodes * gpn, gran, [(a, b, gpn) for a, b, _ in spells], hours)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    gangs: list[np.ndarray] = []  # node sets held
    busy = np.zeros(hours)
    for t in range(0, horizon, STEP_S):
        down = np.zeros(n_nodes, dtype=bool)
        for a, b, node in spells:
            down[node] |= a <= t < b
        if gangs and rng.random() < 0.3:  # a gang lets go (done, preempted, interrupted after detection)
            gangs.pop(int(rng.integers(len(gangs))))
        held = np.zeros(n_nodes, dtype=bool)
        for g in gangs:
            held[g] = True
        for _ in range(3):  # try to place gangs on free live nodes
            size = int(rng.choice(sizes))
            free = np.flatnonzero(~held & ~down)
            if free.size >= size:
                g = rng.choice(free, size, replace=False)
                gangs.append(g)
                held[g] = True
        busy[t // 3600] += gpn * int((held & ~down).sum()) * STEP_S
    busy /= 3600
    assert (busy <= cap + 1e-9).all(), (busy, cap)


def test_usable_capacity_by_hand() -> None:
    # 20 GPUs, gangs of 8: at most 16 busy; 8 GPUs down from 0:30 to 1:30 -> 12 live in those half hours
    assert usable_gpus_per_hour(20, 8, [(1800, 5400, 8)], 2) == pytest.approx([14.0, 14.0])
    # a whole factory lost for the second hour, a spell running past the horizon
    assert usable_gpus_per_hour(16, 4, [(3600, 99_999, 16)], 2) == pytest.approx([16.0, 0.0])
    assert usable_gpus_per_hour(16, 4, [], 1) == pytest.approx([16.0])
    with pytest.raises(ValueError, match="granularity"):
        usable_gpus_per_hour(16, 0, [], 1)


def test_down_spells_pairs_failures_with_repairs_and_runs_open_ones_to_the_end() -> None:
    from superfactory.policy.hindsight_fleet import down_spells
    from superfactory.scenario.loader import parse_scenario

    from scenario_builders import factory, scenario

    sc = parse_scenario(scenario([factory("a", nodes=4), factory("b", nodes=2)], [], duration="1d"))
    ev = [Event(10, EventKind.NODE_FAILED, factory="a", node=1),
          Event(50, EventKind.NODE_REPAIRED, factory="a", node=1),
          Event(70, EventKind.NODE_FAILED, factory="a", node=3),
          Event(5, EventKind.FACTORY_LOST, factory="b"),
          Event(25, EventKind.FACTORY_RESTORED, factory="b")]
    assert down_spells(ev, sc.factories, 1000) == [[(10, 50, 8), (70, 1000, 8)], [(5, 25, 16)]]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.data())
def test_a_tighter_capacity_or_rate_only_raises_the_bound_and_stays_below_schedules_that_obey_it(
        inst: HindsightInstance, data: st.DataObject) -> None:
    cut = np.array([[data.draw(st.integers(0, int(c))) for c in row] for row in inst.capacity_gpus], dtype=float)
    tight = HindsightInstance(cut, inst.usd_per_gpu_h, inst.jobs)
    run = _policy_schedule(tight, data.draw(st.booleans()))  # a schedule that fits the tighter capacity
    cost, gpu_h = schedule_cost(tight, run)
    loose = hindsight_bound(inst, gpu_h)
    two_gangs = hindsight_bound(tight, gpu_h, gangs_held=2.0)
    bound = hindsight_bound(tight, gpu_h)
    exact = exact_schedule(tight, gpu_h)
    assert None not in (loose.cost_usd, two_gangs.cost_usd, bound.cost_usd, exact.cost_usd)
    assert loose.cost_usd <= bound.cost_usd + 1e-6  # fewer GPUs to use: never cheaper
    assert two_gangs.cost_usd <= bound.cost_usd + 1e-6  # a looser rate row: never dearer
    assert bound.cost_usd <= exact.cost_usd + 1e-6 <= cost + 2e-6


def test_a_placement_on_more_gpus_than_the_gang_is_found() -> None:
    from superfactory.policy.hindsight_fleet import oversized_placements
    from superfactory.scenario.loader import parse_scenario

    from scenario_builders import factory, job, scenario

    sc = parse_scenario(scenario([factory("a", nodes=4)], [job("x", gpus=12), job("y", gpus=16)], duration="1d"))
    ev = [Event(0, EventKind.JOB_PLACED, "x", "a", value=16.0),  # 12 GPUs round up to 2 nodes: exact
          Event(0, EventKind.JOB_PLACED, "y", "a", value=24.0)]  # 16 GPUs on 3 nodes: one node too many
    assert oversized_placements(ev, sc.jobs, sc.factories) == ["y"]
