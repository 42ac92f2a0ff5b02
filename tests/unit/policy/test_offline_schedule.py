"""The clairvoyant offline planner (policy/offline_schedule.py): its checker catches each kind of broken plan, its
plans are valid at exact times and never beat the occupancy bound, and the lane plan hands a big gang's domains
to the next big gang."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from superfactory.policy.occupancy_bound import occupancy_bound
from superfactory.policy.offline_schedule import (
    OfflineJob,
    OfflinePlan,
    PlannedJob,
    best_plan,
    check_plan,
    lane_plan,
    offline_jobs,
    plan,
    plan_in_order,
)
from superfactory.scenario.loader import parse_scenario

from scenario_builders import factory, job, scenario


def _plan(starts: list[PlannedJob], jobs: list[OfflineJob], horizon_s: int) -> OfflinePlan:
    by = {j.id: j for j in jobs}
    held = sum(by[p.job].nodes * (min(p.start_s + by[p.job].hold_s, horizon_s) - p.start_s) for p in starts)
    return OfflinePlan(tuple(starts), "hand", held, held / (2 * 4 * horizon_s))


def test_the_checker_names_each_kind_of_broken_plan() -> None:
    # two domains of 4 nodes; a 2-unit gang of 4-node units and a 1-unit job of 2 nodes
    jobs = [OfflineJob("big", 0, 100.0, 2, 4), OfflineJob("small", 50, 100.0, 1, 2)]
    ok = _plan([PlannedJob("big", 0, ((0, 1), (1, 1))), PlannedJob("small", 100, ((0, 1),))], jobs, 1000)
    assert check_plan(ok, jobs, 2, 4, 1000) == []
    # the small job overlaps the big gang on domain 0 (4 + 2 nodes > 4) when it starts at 60
    clash = _plan([PlannedJob("big", 0, ((0, 1), (1, 1))), PlannedJob("small", 60, ((0, 1),))], jobs, 1000)
    assert any("domain 0: 6 nodes held" in b for b in check_plan(clash, jobs, 2, 4, 1000))
    early = _plan([PlannedJob("small", 10, ((0, 1),))], jobs, 1000)
    assert any("before its release" in b for b in check_plan(early, jobs, 2, 4, 1000))
    split = _plan([PlannedJob("big", 0, ((0, 1),))], jobs, 1000)
    assert any("whole units" in b for b in check_plan(split, jobs, 2, 4, 1000))
    twice = _plan([PlannedJob("small", 100, ((0, 1),)), PlannedJob("small", 300, ((1, 1),))], jobs, 1000)
    assert any("started twice" in b for b in check_plan(twice, jobs, 2, 4, 1000))
    outside = _plan([PlannedJob("small", 1000, ((0, 1),))], jobs, 1000)
    assert any("outside" in b for b in check_plan(outside, jobs, 2, 4, 1000))
    far = _plan([PlannedJob("small", 100, ((2, 1),))], jobs, 1000)
    assert any("out of range" in b for b in check_plan(far, jobs, 2, 4, 1000))
    lie = OfflinePlan(ok.starts, "hand", ok.held_node_s + 1.0, ok.occupancy)
    assert any("differs" in b for b in check_plan(lie, jobs, 2, 4, 1000))
    # past the horizon nothing is held: two jobs overlapping only after it are fine
    tail = [OfflineJob("a", 0, 2000.0, 1, 4), OfflineJob("b", 0, 500.0, 1, 4)]
    late = OfflinePlan((PlannedJob("a", 0, ((0, 1),)), PlannedJob("b", 900, ((1, 1),))), "hand",
                       4 * 1000.0 + 4 * 100.0, 0.0)
    assert check_plan(late, tail, 2, 4, 1000) == []


def test_the_lane_hands_domains_from_big_gang_to_big_gang() -> None:
    # 4 domains of 4 nodes; two 2-domain gangs (units of 4) and 1-domain jobs of mismatched lengths. The lane plan
    # keeps both big gangs on domains 0-1 (the second starts when the first ends: a hand-off, no drain) and the
    # small jobs on the rest, so every node is held the whole horizon
    horizon = 3600
    jobs = [OfflineJob("big1", 0, 1800.0, 2, 4), OfflineJob("big2", 0, 1800.0, 2, 4)]
    jobs += [OfflineJob(f"s{k}", 0, 1200.0 if k % 2 else 2400.0, 1, 4) for k in range(6)]
    lane = lane_plan(jobs, [0, 1], 4, 4, horizon, slot_s=60, big_nodes=8)
    assert check_plan(lane, jobs, 4, 4, horizon) == []
    assert lane.occupancy == pytest.approx(1.0)
    starts = {p.job: p for p in lane.starts}
    assert {d for d, _ in starts["big1"].placement} == {d for d, _ in starts["big2"].placement} == {0, 1}
    assert starts["big2"].start_s == 1800
    plain = plan(jobs, 4, 4, horizon, "release", slot_s=60, big_nodes=8)
    assert check_plan(plain, jobs, 4, 4, horizon) == []
    assert best_plan(jobs, 4, 4, horizon, slot_s=60, big_nodes=8).occupancy == pytest.approx(1.0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([8, 16, 64, 128]), st.integers(1, 6), st.integers(0, 3)),
                min_size=1, max_size=10))
def test_plans_are_valid_and_never_beat_the_occupancy_bound(specs: list[tuple[int, int, int]]) -> None:
    # random small workloads on two NVL72 racks (36 trays): the plan passes the checker and, being a schedule,
    # holds no more than the LP bound allows (failure-free: the bound's per-instant rows)
    jobs = [job(f"j{k}", gpus=g, accelerator="GB200", work=f"{h}h", tp_size=min(g, 16), submit=f"{s}h")
            for k, (g, h, s) in enumerate(specs)]
    sc = parse_scenario(scenario([factory("f", nodes=36, system="gb200-nvl72")], jobs, duration="8h",
                                 failures={"rate_scale": 0.0, "planned": False}))
    oj = offline_jobs(sc.jobs, 4, 18)
    p = best_plan(oj, 2, 18, sc.duration_s, big_nodes=16, max_swaps=3)
    assert check_plan(p, oj, 2, 18, sc.duration_s) == []
    bound = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=True).occupancy
    assert p.occupancy <= bound + 1e-6


def test_a_plan_can_start_from_domains_already_held() -> None:
    # the rolling plan's use: 3 domains of 4 nodes, domain 0 held until slot 10 (600 s), the others free. The
    # 2-domain big gang (lane of 2 domains: 0 and 1) is planned at 600 s; a 1-domain job that ends before then
    # starts now, and with lane_last it takes domain 2 (outside the lane) first
    free = np.full((3, 60), 4, dtype=np.int16)
    free[0, :10] = 0
    jobs = [OfflineJob("big", 0, 1200.0, 2, 4), OfflineJob("small", 0, 300.0, 1, 4)]
    p = plan_in_order(jobs, [0], 3, 4, 3600, 60, "rolling", 8, 2, [1], initial_free=free, sweep_slots=1,
                      lane_last=True)
    starts = {s.job: s for s in p.starts}
    assert starts["big"].start_s == 600 and {d for d, _ in starts["big"].placement} == {0, 1}
    assert starts["small"].start_s == 0 and starts["small"].placement == ((2, 1),)
    # without lane_last the tightest-first rule puts it in the lane's gap before the big start (domain 1)
    p2 = plan_in_order(jobs, [0], 3, 4, 3600, 60, "rolling", 8, 2, [1], initial_free=free, sweep_slots=1)
    assert {s.job: s for s in p2.starts}["small"].placement == ((1, 1),)
    with pytest.raises(ValueError, match="initial_free"):
        plan_in_order(jobs, [0], 3, 4, 3600, 60, initial_free=np.full((3, 60), 5, dtype=np.int16))


def test_a_pessimistic_hold_keeps_late_work_out_of_the_lane() -> None:
    # 3 domains of 4 nodes; the lane is domains 0-1; domain 0 is held until 600 s and domain 2 all along, so the
    # 2-domain big gang is planned at 600 s and the only room now is the lane's gap on domain 1. A 540 s job fits
    # that gap exactly; padded by 25 % (675 s, a late end would delay the big start) it must not enter it
    free = np.full((3, 60), 4, dtype=np.int16)
    free[0, :10] = 0
    free[2, :] = 0
    jobs = [OfflineJob("big", 0, 1200.0, 2, 4), OfflineJob("small", 0, 540.0, 1, 4)]

    def starts(**kw: float) -> dict[str, int]:
        p = plan_in_order(jobs, [0], 3, 4, 3600, 60, "rolling", 8, 2, [1], initial_free=free, sweep_slots=1, **kw)
        return {s.job: s.start_s for s in p.starts}

    assert starts() == {"big": 600, "small": 0}
    assert starts(lane_slack=0.25) == {"big": 600}  # waits: no room for a late end before the big start
    assert starts(lane_pad_s=120.0) == {"big": 600}
    assert starts(lane_pad_s=60.0) == {"big": 600, "small": 0}  # 600 s still ends by the big start
    with pytest.raises(ValueError, match="lane_slack"):
        plan_in_order(jobs, [0], 3, 4, 3600, 60, lane_slack=-0.1)
