"""The occupancy bound (policy/occupancy_bound.py): exact on hand-computed cases, and an upper bound on what
every policy's schedule reaches on random small workloads (property test)."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from superfactory.observe.summary import summarize
from superfactory.policy.occupancy_bound import occupancy_bound
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def _sc(nodes: int, jobs: list[dict[str, object]], duration: str = "4h") -> object:
    return parse_scenario(scenario([factory("f", nodes=nodes, system="gb200-nvl72")], jobs, duration=duration,
                                   failures={"rate_scale": 0.0, "planned": False}))


def test_tp16_gangs_fill_16_of_18_nodes_of_an_nvl72_domain() -> None:
    # one NVL72 rack (18 trays of 4 GPUs); only 16-GPU TP groups (4 trays each) in the queue: 4 units fit a domain
    sc = _sc(18, [job(f"j{i}", gpus=16, accelerator="GB200", work="8h", tp_size=16) for i in range(10)])
    b = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=True)
    assert b.occupancy == pytest.approx(16 / 18)
    assert b.binding == "domains"
    # a topology-blind schedule may use all 18 trays
    assert occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=False).occupancy == pytest.approx(1.0)
    # and two-tray jobs fill the two left over
    sc2 = _sc(18, [job(f"j{i}", gpus=16, accelerator="GB200", work="8h", tp_size=16) for i in range(10)]
              + [job("s", gpus=8, accelerator="GB200", work="8h", tp_size=8)])
    assert occupancy_bound(sc2.factories, sc2.jobs, sc2.duration_s).occupancy == pytest.approx(1.0)


def test_release_times_limit_the_bound() -> None:
    # 8 of 18 trays wanted from t=0, all 18 from t=2h of a 4 h horizon: (8 x 2 h + 18 x 2 h) / (18 x 4 h)
    jobs = [job("a", gpus=32, accelerator="GB200", work="8h", tp_size=8),
            job("b", gpus=40, accelerator="GB200", work="8h", tp_size=8, submit="2h")]
    sc = _sc(18, jobs)
    b = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, slot_s=900)
    assert b.occupancy == pytest.approx((8 * 2 + 18 * 2) / (18 * 4))


def test_bad_arguments_are_refused() -> None:
    sc = _sc(18, [job("a", gpus=8, accelerator="GB200", work="1h", tp_size=8)])
    with pytest.raises(ValueError, match="horizon_s and slot_s"):
        occupancy_bound(sc.factories, sc.jobs, 0)


_job = st.tuples(st.sampled_from([(8, 8), (16, 8), (16, 16), (32, 16), (64, 32), (24, 8), (72, 8)]),
                 st.integers(0, 12), st.integers(1, 16), st.integers(0, 2))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(racks=st.integers(1, 3), specs=st.lists(_job, min_size=1, max_size=9))
def test_no_policy_schedule_exceeds_the_bound(racks: int, specs: list[tuple[tuple[int, int], int, int, int]]) -> None:
    jobs = [job(f"j{i}", gpus=g, accelerator="GB200", tp_size=tp, submit=f"{sub * 15}min", work=f"{w * 15}min",
                priority=p)
            for i, ((g, tp), sub, w, p) in enumerate(specs)]
    sc = _sc(racks * 18, jobs)
    strict = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=True)
    blind = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=False)
    assert strict.busy_gpu_s <= blind.busy_gpu_s + 1e-6
    for policy in ("gang", "greedy", "firstfit-blind"):
        busy = summarize(run_twin(sc, policy=policy))["gpu_utilization"]
        assert busy <= blind.occupancy + 1e-9, policy  # every policy, NVLink-blind or not
        if policy == "gang":  # TP groups inside NVLink domains: the strict bound holds too
            assert busy <= strict.occupancy + 1e-9


def test_gangbound_command_prints_pure_json_and_refuses_bad_input() -> None:
    import json
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from superfactory.cli.main import main; main()"]
    ok = subprocess.run([*cmd, "gangbound", "nvl72-saturated", "--json"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["occupancy_bound"] == pytest.approx(1.0) and doc["topology"] is True
    bad = subprocess.run([*cmd, "gangbound", "nvl72-saturated", "--slot", "0"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "--slot 0" in bad.stderr and "Traceback" not in bad.stderr
    # --failures: the seed's node outages come off the capacity (still pure JSON, the run's output included)
    fail = subprocess.run([*cmd, "gangbound", "nvl72-saturated", "--failures", "--json"], capture_output=True,
                          text=True, check=False)
    assert fail.returncode == 0, fail.stderr
    fdoc = json.loads(fail.stdout)
    assert fdoc["node_outages"] > 0 and fdoc["down_node_s"] > 0
    assert fdoc["occupancy_bound"] < doc["occupancy_bound"]
    assert fdoc["occupancy_bound"] == pytest.approx(1 - fdoc["down_node_s"] * 4 / fdoc["capacity_gpu_s"])


def test_down_nodes_lower_the_bound_by_their_node_seconds() -> None:
    # two trays of an 18-tray rack down for 2 h of a 4 h horizon, plenty of 8-GPU work: 1 - (2 x 2) / (18 x 4)
    sc = _sc(18, [job(f"j{i}", gpus=8, accelerator="GB200", work="8h", tp_size=8) for i in range(12)])
    down = [("f", 3, 0, 7200), ("f", 4, 3600, 10800)]
    b = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, down=down)
    assert b.occupancy == pytest.approx(1 - (2 + 2) / (18 * 4))
    with pytest.raises(ValueError, match="unknown node"):
        occupancy_bound(sc.factories, sc.jobs, sc.duration_s, down=[("f", 99, 0, 10)])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(_job, min_size=2, max_size=8), seed=st.integers(0, 50))
def test_with_failures_the_trace_is_policy_independent_and_the_bound_holds(
        specs: list[tuple[tuple[int, int], int, int, int]], seed: int) -> None:
    from superfactory.policy.occupancy_bound import down_spells

    jobs = [job(f"j{i}", gpus=g, accelerator="GB200", tp_size=tp, submit=f"{sub * 15}min", work=f"{w * 15}min",
                priority=p)
            for i, ((g, tp), sub, w, p) in enumerate(specs)]
    sc = parse_scenario(scenario([factory("f", nodes=36, system="gb200-nvl72")], jobs, duration="6h",
                                 failures={"table": "llama3-405b", "rate_scale": 3000.0}, seed=seed))
    traces = []
    for policy in ("gang", "greedy", "firstfit-blind"):
        result = run_twin(sc, policy=policy)
        down = down_spells(result.events, sc.duration_s)
        traces.append(down)
        busy = summarize(result)["gpu_utilization"]
        assert busy <= occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=False,
                                       down=down).occupancy + 1e-9, policy
    assert traces[0] == traces[1] == traces[2] and traces[0]  # same failures whatever the policy
