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


def drains_of(result: object) -> int:
    """Drains and hot swaps of a twin run (planned stops, preemptions, ``SwapNodes``): the budget of the hold
    rows (5) that covers its schedule."""
    from superfactory.domain.events import EventKind

    kinds = {EventKind.JOB_PLANNED_STOP, EventKind.JOB_PREEMPTED, EventKind.JOB_HOT_SWAPPED}
    return sum(e.kind in kinds for e in result.events)  # type: ignore[attr-defined]


def _sc(nodes: int, jobs: list[dict[str, object]], duration: str = "4h") -> object:
    return parse_scenario(scenario([factory("f", nodes=nodes, system="gb200-nvl72")], jobs, duration=duration,
                                   failures={"rate_scale": 0.0, "planned": False}))


def test_tp16_gangs_fill_16_of_18_nodes_of_an_nvl72_domain() -> None:
    # one NVL72 rack (18 trays of 4 GPUs); only 16-GPU TP groups (4 trays each) in the queue: 4 units fit a domain
    sc = _sc(18, [job(f"j{i}", gpus=16, accelerator="GB200", work="8h", tp_size=16) for i in range(10)])
    b = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=True)
    assert b.occupancy == pytest.approx(16 / 18)
    assert b.binding == "domains"
    # a topology-blind schedule may split TP groups, but its gangs are still whole: 4 gangs of 4 trays
    assert occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=False).occupancy == pytest.approx(16 / 18)
    # the volume relaxation alone (no whole-gang rows) would let fractions of gangs use all 18 trays
    assert occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=False,
                           integral=False).occupancy == pytest.approx(1.0)
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
        result = run_twin(sc, policy=policy)
        busy = summarize(result)["gpu_utilization"]
        assert busy <= blind.occupancy + 1e-9, policy  # every policy, NVLink-blind or not
        # the time-coupled hold rows (5), for schedules with as many drains and hot swaps as this one made
        held = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=False, drains=drains_of(result))
        assert busy <= held.occupancy + 1e-9 and held.occupancy <= blind.occupancy + 1e-9, policy
        if policy == "gang":  # TP groups inside NVLink domains: the strict bound holds too
            assert busy <= strict.occupancy + 1e-9
            assert busy <= occupancy_bound(sc.factories, sc.jobs, sc.duration_s,
                                           drains=drains_of(result)).occupancy + 1e-9


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
        # hold rows: one interruption per outage, and this run's drains (planned stops, preemptions, swaps)
        assert busy <= occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=False, down=down,
                                       drains=drains_of(result)).occupancy + 1e-9, policy
    assert traces[0] == traces[1] == traces[2] and traces[0]  # same failures whatever the policy


def _packs(units: tuple[int, ...], domains: int, per_domain: int) -> bool:
    """Whether TP units of these node counts fit whole into ``domains`` domains of ``per_domain`` nodes (exact)."""
    free = [per_domain] * domains

    def place(i: int) -> bool:
        if i == len(units):
            return True
        tried: set[int] = set()
        for d in range(domains):
            if free[d] >= units[i] and free[d] not in tried:  # domains with equal room are interchangeable
                tried.add(free[d])
                free[d] -= units[i]
                if place(i + 1):
                    return True
                free[d] += units[i]
        return False

    return place(0)


def _exhaustive_best(racks: int, specs: list[tuple[int, int, int, int]], steps: int) -> float:
    """The best occupancy of any non-preemptive schedule of gangs ``(nodes, unit nodes, submit step, run steps)``
    on ``racks`` NVL72 domains over ``steps`` 15-min steps, found by trying every start step (or never) of every
    gang; TP units whole inside a domain; gangs may be re-placed at every step (a relaxation of the twin)."""
    import itertools
    from functools import cache

    @cache
    def fits(running: tuple[int, ...]) -> bool:
        units = tuple(sorted((specs[j][1] for j in running for _ in range(specs[j][0] // specs[j][1])),
                             reverse=True))
        return sum(units) <= racks * 18 and _packs(units, racks, 18)

    best = 0
    options = [[None, *range(sub, steps)] for _, _, sub, _ in specs]
    for starts in itertools.product(*options):
        held = 0
        for t in range(steps):
            running = tuple(j for j, s in enumerate(starts) if s is not None and s <= t < s + specs[j][3])
            if not fits(running):
                break
            held += sum(specs[j][0] for j in running)
        else:
            best = max(best, held)
    return best / (racks * 18 * steps)


_tiny = st.tuples(st.sampled_from([(8, 8), (16, 16), (32, 16), (40, 8), (48, 16), (64, 32)]),
                  st.integers(0, 3), st.integers(1, 4))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(racks=st.integers(1, 2), specs=st.lists(_tiny, min_size=1, max_size=4))
def test_no_schedule_found_by_exhaustive_search_exceeds_the_bound(
        racks: int, specs: list[tuple[tuple[int, int], int, int]]) -> None:
    from superfactory.policy.gangfit import shape_of

    steps = 6
    jobs = [job(f"j{i}", gpus=g, accelerator="GB200", tp_size=tp, submit=f"{sub * 15}min", work=f"{w * 15}min")
            for i, ((g, tp), sub, w) in enumerate(specs)]
    sc = _sc(racks * 18, jobs, duration="90min")
    shapes = [shape_of(j, 4, 18) for j in sc.jobs]
    best = _exhaustive_best(racks, [(s.nodes, s.unit_nodes, sub, w) for s, (_, sub, w) in
                                    zip(shapes, specs, strict=True)], steps)
    b = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, slot_s=900)
    assert best <= b.occupancy + 1e-9
    assert best <= occupancy_bound(sc.factories, sc.jobs, sc.duration_s, slot_s=900, drains=0).occupancy + 1e-9
    # the whole-gang and knapsack rows only tighten the volume relaxation
    assert b.occupancy <= occupancy_bound(sc.factories, sc.jobs, sc.duration_s, slot_s=900,
                                          integral=False).occupancy + 1e-9


def test_whole_gang_rows_are_exact_on_a_one_instant_knapsack() -> None:
    # three 48-GPU gangs (12 trays = three TP-16 units of 4 trays) on two NVL72 racks: a rack holds 4 units, so
    # the 9 units of three gangs never fit (8 do) and at most two whole gangs, 24 of 36 trays, are ever held.
    # The volume relaxation says 32 (16 per rack); the whole-gang row finds the exhaustive optimum.
    sc = _sc(36, [job(f"j{i}", gpus=48, accelerator="GB200", tp_size=16, work="8h") for i in range(3)])
    assert occupancy_bound(sc.factories, sc.jobs, sc.duration_s, integral=False).occupancy == pytest.approx(32 / 36)
    b = occupancy_bound(sc.factories, sc.jobs, sc.duration_s)
    assert b.occupancy == pytest.approx(24 / 36) and b.binding == "whole gangs"
    assert _exhaustive_best(2, [(12, 4, 0, 16)] * 3, 4) == pytest.approx(24 / 36)


def test_domain_knapsack_rows_are_tighter_than_the_multiples_rule_for_mixed_units() -> None:
    from superfactory.policy.occupancy_bound import domain_rows, knap

    assert knap(18, [16]) == 16 and knap(18, [2, 16]) == 18 and knap(18, [8, 12]) == 16 and knap(3, [4]) == 0
    rows = dict(domain_rows([8, 12], nodes=2 * 18 + 12, per_domain=18))
    # per unit size alone: 16 and 12 of a domain (+ 8 and 12 of the 12-node rest); together 16 (+ 12), not 18
    assert rows[frozenset({8})] == 2 * 16 + 8 and rows[frozenset({12})] == 2 * 12 + 12
    assert rows[frozenset({8, 12})] == 2 * 16 + 12


def test_blind_bound_counts_the_nodes_a_blind_policy_holds_not_whole_tp_units() -> None:
    # 24-GPU gangs with TP 16: a topology-aware gang holds two 4-tray units (8 trays), a blind one 6 trays; on one
    # 18-tray rack greedy runs three at once (18 trays) and the blind bound must allow it, the strict one 2 x 8
    sc = _sc(18, [job(f"j{i}", gpus=24, accelerator="GB200", tp_size=16, work="8h") for i in range(3)])
    blind = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, topology=False)
    assert blind.occupancy == pytest.approx(1.0)
    assert occupancy_bound(sc.factories, sc.jobs, sc.duration_s).occupancy == pytest.approx(16 / 18)
    assert summarize(run_twin(sc, policy="greedy"))["gpu_utilization"] <= blind.occupancy + 1e-9
