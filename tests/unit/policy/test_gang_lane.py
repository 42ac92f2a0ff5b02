"""gang's lane (policy/gang_lane.py): the big gangs' domains are chosen as the healthiest, and never moved under
a running big gang."""

from __future__ import annotations

import numpy as np
import pytest

from superfactory.policy.gang import GangScheduler
from superfactory.policy.gang_lane import choose_lane
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, first_placed, job, scenario


def test_the_lane_is_the_healthiest_domains_and_keeps_its_big_gang() -> None:
    # 5 domains of 18 nodes; a big gang's unit needs 16 healthy nodes. Last lane: domains 0 and 1; domain 1 now
    # has 3 nodes down (15 healthy: no room for a unit), a big gang runs on domain 4
    healthy = np.array([18, 15, 18, 17, 18])
    big_held = np.array([False, False, False, False, True])
    previous = np.array([True, True, False, False, False])
    lane = choose_lane(healthy, big_held, previous, 3, 16)
    # domain 4 (its big gang) and domain 0 (last lane, healthy) stay; domain 1 leaves for the healthiest other
    assert lane.tolist() == [True, False, True, False, True]
    # a lane never moves under a running big gang, even when a healthier domain is free
    held = choose_lane(np.array([18, 18, 16]), np.array([False, False, True]), np.zeros(3, dtype=bool), 1, 16)
    assert held.tolist() == [False, False, True]
    # last lane's domains are kept while healthy enough, so the lane does not wander with every node's state
    kept = choose_lane(np.array([18, 16, 18]), np.zeros(3, dtype=bool), np.array([False, True, False]), 1, 16)
    assert kept.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="one entry per domain"):
        choose_lane(healthy, big_held[:3], previous, 3, 16)


def _saving_run(params: dict[str, object]) -> dict[str, int]:
    # two NVL72 racks (two domains of 18 trays). "a" holds 16 trays of domain 0 for 2 h, "b" all of domain 1 for
    # 1 h; the top-priority 2-domain gang "big" (16 trays in each) is reserved on them and starts at 2 h, so
    # domain 1 drains from 1 h to 2 h. The only free room at first is domain 0's 2 spare trays; two 2-tray jobs
    # arrive: "a-short" (50 min) and "z-long" (10 h)
    jobs = [job("a", gpus=64, accelerator="GB200", work="2h", tp_size=64, priority=1),
            job("b", gpus=72, accelerator="GB200", work="1h", tp_size=8, priority=1),
            job("big", gpus=128, accelerator="GB200", work="3h", tp_size=64, priority=2, submit="60s"),
            job("a-short", gpus=8, accelerator="GB200", work="50min", tp_size=8, submit="60s"),
            job("z-long", gpus=8, accelerator="GB200", work="10h", tp_size=8, submit="60s")]
    sc = parse_scenario(scenario([factory("f", nodes=36, system="gb200-nvl72")], jobs, duration="12h",
                                 failures={"rate_scale": 0.0, "planned": False}))
    result = run_twin(sc, policy="gang", policy_params={"preemption": False, **params}, check_invariants=True)
    return first_placed(result.events)


def test_short_work_is_saved_for_the_drain_window_before_a_big_start() -> None:
    default = _saving_run({})
    # gang's walk (same priority and submission: id order) gives the spare trays to the short job; the long one
    # waits for it to end, and nothing is short enough for domain 1's drain window
    assert default["a-short"] == 60 and default["z-long"] >= default["a-short"] + 50 * 60
    saved = _saving_run({"save_short_s": 3600})
    # saved: the long job takes the spare trays at once, the short one runs in domain 1's drain window (it ends
    # before big's start, which is not delayed)
    assert saved["z-long"] == 60
    assert saved["a-short"] >= 3600 and saved["a-short"] + 50 * 60 <= saved["big"]
    assert saved["big"] <= default["big"]
    with pytest.raises(ValueError, match="save_short_s"):
        GangScheduler(save_short_s=-1)
