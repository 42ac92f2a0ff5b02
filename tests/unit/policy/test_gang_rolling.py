"""gang's rolling plan (``rolling_plan``, policy/gang_rolling.py): planned from the snapshot with the offline
planner's rules, it fills the gap before a planned big start with the longest work that ends in time and saves
the short job for later, where gang's default walk starts the short job first and leaves the gap mostly idle."""

from __future__ import annotations

import pytest

from superfactory.policy.gang import GangScheduler
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, first_placed, job, scenario


def _first_starts(params: dict[str, object]) -> dict[str, int]:
    # two NVL72 racks (two domains of 18 trays); every job is made of 16-tray TP units (tp 64 GPUs). "r" takes
    # one domain at t=0 for 2 h; a minute later the 2-domain gang "big" (blocked until r ends), a 30 min job
    # "a-short" and a 100 min job "b-long" arrive together. Only one of the two fits the other domain, and both
    # end before r does
    jobs = [job("r", gpus=64, accelerator="GB200", work="2h", tp_size=64, submit="0s"),
            job("big", gpus=128, accelerator="GB200", work="3h", tp_size=64, submit="60s"),
            job("a-short", gpus=64, accelerator="GB200", work="30min", tp_size=64, submit="60s"),
            job("b-long", gpus=64, accelerator="GB200", work="100min", tp_size=64, submit="60s")]
    sc = parse_scenario(scenario([factory("f", nodes=36, system="gb200-nvl72")], jobs, duration="8h",
                                 policy="gang", failures={"rate_scale": 0.0, "planned": False}))
    result = run_twin(sc, policy="gang", policy_params=params, check_invariants=True)
    return first_placed(result.events)


def test_the_rolling_plan_fills_the_gap_before_a_big_start_with_the_longest_work() -> None:
    default = _first_starts({})
    rolling = _first_starts({"rolling_plan": True, "rolling_big_gpus": 128})
    # gang's default walk (queue order: same priority and submission -> id) starts the short job into the gap;
    # the long one no longer ends before the big gang's reservation and waits until after it
    assert default["a-short"] == 60
    assert default["b-long"] > default["big"]
    # the rolling plan plans big at r's end, fills the gap with the most work that ends before it (b-long) and
    # saves the short job for later; the big start is not delayed
    assert rolling["b-long"] == 60
    assert rolling["a-short"] > 60
    assert rolling["big"] <= default["big"]
    assert rolling["big"] < rolling["a-short"] or rolling["a-short"] + 1800 <= rolling["big"]


def test_rolling_knobs_are_checked() -> None:
    with pytest.raises(ValueError, match="rolling_big_gpus"):
        GangScheduler(rolling_plan=True, rolling_big_gpus=0)
