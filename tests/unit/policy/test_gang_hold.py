"""The time-coupled hold rows (5) of the occupancy bound: hold caps read from the twin (policy/gang_hold.py),
exact on a hand-computed case, necessary (a cap without its slack terms is beaten by the twin) and the
fill patterns of an NVLink domain. The property tests over random workloads are in test_gang_bound.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from superfactory.observe.summary import summarize
from superfactory.policy.gang_hold import HoldCap, fill_patterns, hold_cap
from superfactory.policy.occupancy_bound import occupancy_bound
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def _lone_job() -> object:
    # one 8-GPU TP-8 job (2 trays) with 1 h of work on one NVL72 rack for 4 h, no failures, no planned stops
    return parse_scenario(scenario([factory("f", nodes=18, system="gb200-nvl72")],
                                   [job("a", gpus=8, accelerator="GB200", tp_size=8, work="1h")], duration="4h",
                                   failures={"rate_scale": 0.0, "planned": False}))


def test_hold_cap_is_the_stated_sum_of_the_twin_s_delays() -> None:
    sc = _lone_job()
    j = sc.jobs[0]  # type: ignore[attr-defined]
    ck, rec = j.checkpoint, j.recovery
    cap = hold_cap(j)
    stretch = 1 / (1 - ck.blocking_s / ck.interval_s)
    assert cap.min_speed == pytest.approx(0.6)  # a TP group split across domains or on a degraded domain
    assert cap.base_s == pytest.approx(stretch * (j.work_s / 0.6 + 1 + rec.restart_s))
    assert cap.per_failure_s == pytest.approx(stretch * ((ck.interval_s + ck.async_write_s) / 0.6
                                                         + rec.restart_s + rec.detect_s))
    assert cap.per_drain_s == pytest.approx(stretch * (rec.restart_s + ck.blocking_s + ck.async_write_s))
    assert cap.hold_s(2, 3) == pytest.approx(cap.base_s + 2 * cap.per_failure_s + 3 * cap.per_drain_s)
    with pytest.raises(ValueError, match="speed"):
        hold_cap(j, speed=0.0)


def test_hold_rows_cap_a_lone_job_at_its_hold_cap_and_the_twin_stays_below() -> None:
    sc = _lone_job()
    j = sc.jobs[0]  # type: ignore[attr-defined]
    capacity_node_s = 18 * sc.duration_s  # type: ignore[attr-defined]
    free = occupancy_bound(sc.factories, sc.jobs, sc.duration_s)  # type: ignore[attr-defined]
    held = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=0)  # type: ignore[attr-defined]
    assert free.occupancy == pytest.approx(2 / 18)  # without hold caps: 2 trays for the whole 4 h
    assert held.occupancy == pytest.approx(2 * hold_cap(j).base_s / capacity_node_s)
    assert held.binding == "hold caps"
    busy = summarize(run_twin(sc, policy="gang"))["gpu_utilization"]
    # the twin holds it for the restart, 1 h of work and two 30 s checkpoint stalls: 3,960 s
    assert busy * capacity_node_s / 2 == pytest.approx(300 + 3600 + 2 * j.checkpoint.blocking_s)
    assert busy <= held.occupancy + 1e-9
    # a drain budget only loosens the rows
    assert occupancy_bound(sc.factories, sc.jobs, sc.duration_s,  # type: ignore[attr-defined]
                           drains=2).occupancy >= held.occupancy


def test_a_cap_without_its_slack_terms_is_beaten_by_the_twin() -> None:
    # the mutation the property tests must catch: hold = work at full speed (no restart, stalls, slow placements)
    sc = _lone_job()
    nominal = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=0,  # type: ignore[attr-defined]
                              hold=lambda j: HoldCap(j.work_s, 0.0, 0.0, 1.0))
    busy = summarize(run_twin(sc, policy="gang"))["gpu_utilization"]
    assert nominal.occupancy == pytest.approx(2 * 3600 / (18 * 4 * 3600))
    assert busy > nominal.occupancy  # so a bound without the slack terms is not a bound


def test_failures_and_drains_each_add_at_most_one_worst_job_s_slack() -> None:
    # two lone jobs of different sizes: one failure may hit either, so the rows add the larger job's slack
    jobs = [job("a", gpus=8, accelerator="GB200", tp_size=8, work="1h"),
            job("b", gpus=32, accelerator="GB200", tp_size=8, work="1h")]
    sc = parse_scenario(scenario([factory("f", nodes=18, system="gb200-nvl72")], jobs, duration="6h",
                                 failures={"rate_scale": 0.0, "planned": False}))
    cap = hold_cap(sc.jobs[0])
    node_s = 18 * sc.duration_s
    base = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=0).busy_gpu_s / 4
    assert base == pytest.approx((2 + 8) * cap.base_s)
    one_failure = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=0,
                                  down=[("f", 0, 100, 200)]).busy_gpu_s / 4
    assert one_failure == pytest.approx(base + 8 * cap.per_failure_s)  # capacity is not binding
    one_drain = occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=1).busy_gpu_s / 4
    assert one_drain == pytest.approx(base + 8 * cap.per_drain_s)
    assert one_drain < node_s
    with pytest.raises(ValueError, match="drains"):
        occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=-1)


def test_fill_patterns_are_the_maximal_multisets_of_unit_sizes_in_a_domain() -> None:
    pats = fill_patterns(18, [2, 4, 8, 16, 1])
    assert (16, 2) in pats and (8, 8, 2) in pats and (2,) * 9 in pats and (4, 4, 4, 4, 2) in pats
    assert (16,) not in pats and (8, 8) not in pats  # a 2-tray unit still fits: not maximal
    assert all(sum(p) <= 18 and 18 - sum(p) < 2 for p in pats)
    assert sorted(fill_patterns(18, [8, 12])) == [(8, 8), (12,)]
    assert fill_patterns(3, [4]) == [()] and fill_patterns(18, []) == [()]


def test_gangbound_command_takes_a_drain_budget() -> None:
    cmd = [sys.executable, "-c", "from superfactory.cli.main import main; main()"]
    ok = subprocess.run([*cmd, "gangbound", "nvl72-saturated", "--drains", "16", "--json"], capture_output=True,
                        text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["drains"] == 16 and 0 < doc["occupancy_bound"] <= 1.0
    bad = subprocess.run([*cmd, "gangbound", "nvl72-saturated", "--drains", "-1"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "--drains -1" in bad.stderr and "Traceback" not in bad.stderr


def test_the_slow_speed_term_is_needed_on_a_degraded_domain() -> None:
    # the only rack is degraded the whole time: the TP-8 job runs at 0.6 and holds its 2 trays for the restart,
    # 1 h / 0.6 and three 30 s stalls (6,390 s); the cap at v = 0.6 covers it (6,408 s), one at v = 1 does not
    sc = parse_scenario(scenario([factory("f", nodes=18, system="gb200-nvl72")],
                                 [job("a", gpus=8, accelerator="GB200", tp_size=8, work="1h")], duration="4h",
                                 failures={"rate_scale": 0.0, "planned": False},
                                 events=[{"at": "0s", "kind": "link_degradation", "factory": "f", "domain": 0,
                                          "duration": "4h"}]))
    busy = summarize(run_twin(sc, policy="gang"))["gpu_utilization"]
    assert busy * 18 * sc.duration_s / 2 == pytest.approx(300 + 3600 / 0.6 + 3 * 30)
    assert busy <= occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=0).occupancy + 1e-9
    assert busy > occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=0,
                                  hold=lambda j: hold_cap(j, speed=1.0)).occupancy


def test_the_failure_term_is_needed_when_a_failure_hits_the_job() -> None:
    # a 1-node job without TP (v = 1, so its base cap is nearly its failure-free hold of 7,620 s); seed 3 of this
    # failure rate hits it once: it holds 9,171 s, within the cap with one slack per outage, not without
    from superfactory.policy.occupancy_bound import down_spells

    sc = parse_scenario(scenario([factory("f", nodes=18, system="gb200-nvl72")],
                                 [job("a", gpus=4, accelerator="GB200", tp_size=1, work="2h")], duration="6h",
                                 failures={"table": "llama3-405b", "rate_scale": 300.0, "planned": False}, seed=3))
    result = run_twin(sc, policy="gang")
    busy = summarize(result)["gpu_utilization"]
    down = down_spells(result.events, sc.duration_s)
    assert sum(e.kind.name == "JOB_INTERRUPTED" for e in result.events) >= 1
    assert busy <= occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=0, down=down).occupancy + 1e-9

    def no_failure_slack(j: object) -> HoldCap:
        c = hold_cap(j)  # type: ignore[arg-type]
        return HoldCap(c.base_s, 0.0, c.per_drain_s, c.min_speed)

    assert busy > occupancy_bound(sc.factories, sc.jobs, sc.duration_s, drains=0, down=down,
                                  hold=no_failure_slack).occupancy
