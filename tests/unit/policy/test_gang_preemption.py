"""Preemption only when it pays, rate limits, and ``preemptible: false`` (policy/preemption.py, issue 19)."""

from __future__ import annotations

from superfactory.domain.events import EventKind
from superfactory.domain.fleet import JobView
from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
from superfactory.domain.lifecycle import JobLifecycle
from superfactory.policy.preemption import DAY_S, PreemptionCosts, PreemptionLedger
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def _view(jid: str, gpus: int, priority: int) -> JobView:
    j = TrainingJob(jid, "GB200", gpus, 1e20, 0.4, 0, CheckpointSpec(1800, 20, 1e12, 800), RecoverySpec(120, 300),
                    priority=priority)
    return JobView(j, "f", (), 0.0, -1, state=JobLifecycle.RUNNING)


def test_a_high_priority_gang_hours_sooner_pays_for_a_small_victim() -> None:
    ok, why = PreemptionCosts().pays(_view("big", 4096, 2), [(_view("v", 512, 0), 8 * 3600.0)], 4 * 3600.0)
    assert ok and "gain" in why


def test_a_small_gang_minutes_sooner_does_not_pay_for_a_large_victim() -> None:
    ok, why = PreemptionCosts().pays(_view("small", 64, 1), [(_view("v", 1024, 0), 8 * 3600.0)], 1800.0)
    assert not ok and "<=" in why


def test_the_victims_wait_is_part_of_the_cost() -> None:
    c = PreemptionCosts()
    v = _view("v", 64, 0)
    # a victim with little left loses little by waiting; one with hours left waits as long as the preemptor saved
    assert c.cost(v, 3 * 3600.0, 600.0) < c.cost(v, 3 * 3600.0, 5 * 3600.0)
    assert c.cost(v, 0.0, 5 * 3600.0) == c.value(0) * 64 * c.overhead_s(v)


def test_rate_limits_per_factory_and_per_victim() -> None:
    led = PreemptionLedger(max_per_day=2, victim_cooldown_s=3600)
    led.record("f", "a", 0)
    led.record("f", "b", 10)
    assert led.room("f", 20) == 0 and led.room("g", 20) == 2
    assert led.cooling("a", 3599) and not led.cooling("a", 3600)
    assert led.room("f", DAY_S + 10) == 2  # a rolling 24 h window
    led.record("f", "c", DAY_S + 20)
    led.forget("c")  # its preemption did not take effect
    assert led.room("f", DAY_S + 30) == 2 and not led.cooling("c", DAY_S + 30)


def _run(preemptible: bool) -> list[str]:
    text = scenario([factory("f", nodes=18, system="gb200-nvl72")],
                    [job("low", gpus=72, accelerator="GB200", work="10h", tp_size=8, priority=0,
                         preemptible=preemptible),
                     job("high", gpus=72, accelerator="GB200", work="2h", tp_size=8, priority=2, submit="10min")],
                    duration="6h", failures={"rate_scale": 0.0, "planned": False})
    result = run_twin(parse_scenario(text), policy="gang")
    return [e.job for e in result.events if e.kind is EventKind.JOB_PREEMPTED]


def test_a_preemptible_low_priority_gang_is_preempted_when_it_pays() -> None:
    assert _run(True) == ["low"]


def test_preemptible_false_is_never_touched() -> None:
    assert _run(False) == []


def test_a_drain_is_cut_by_preempting_the_job_that_ends_last_only_when_it_pays() -> None:
    # one NVL72 rack; a waiting gang is reserved on trays 0-15: "early" holds 0-7 until 600 s, "late" 8-15 until
    # ``late_s``. Trays 0-7 would sit idle from 600 s to late_s (the drain); preempting "late" (20 s checkpoint +
    # 300 s restart on 8 trays) moves the start to 600 s
    import numpy as np

    from superfactory.domain.factory import Factory, build_clusters
    from superfactory.domain.fleet import JobView
    from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
    from superfactory.domain.lifecycle import JobLifecycle
    from superfactory.domain.topology import topology_of
    from superfactory.policy.gang import GangScheduler, GangSite

    f = Factory("f", "r", "MISO", "MISO", 1e12, 1e12, 1.1, frozenset(), "US", build_clusters([("gb200-nvl72", 18)]))
    ck, rec = CheckpointSpec(1e9, 20, 1e12, 800), RecoverySpec(60, 300)

    per_flop_s = TrainingJob("x", "GB200", 32, 1e18, 0.4, 0, ck, rec).work_s / 1e18

    def running(jid: str, nodes: range, end_s: float) -> JobView:  # expected to end at end_s
        j = TrainingJob(jid, "GB200", 32, end_s / per_flop_s, 0.4, 0, ck, rec, priority=2)
        return JobView(j, "f", tuple(nodes), 0.0, -1, state=JobLifecycle.RUNNING)

    def cut(late_s: float) -> tuple[list[str], GangScheduler, GangSite]:
        sched = GangScheduler(drain_cut_gpus=64)
        site = GangSite(0, f, topology_of(f), np.ones(f.nodes, dtype=np.uint8), np.zeros(f.nodes, dtype=bool),
                        np.zeros(f.nodes, dtype=bool), set(), {}, 0.0)
        gang = JobView(TrainingJob("g", "GB200", 64, 3600.0, 0.4, 0, ck, rec, tp_size=64), None, (), 0.0, 0)
        reserved = np.zeros(f.nodes, dtype=bool)
        reserved[:16] = True
        out = sched._cut_drain(site, [running("early", range(8), 600.0), running("late", range(8, 16), late_s)],
                               gang, reserved, late_s, set(), 0)
        return [p.job_id for p in out], sched, site

    victims, sched, site = cut(7200.0)  # saves ~48,000 idle tray-s for 2,560 tray-s of checkpoint and restart
    assert victims == ["late"] and "g" in sched._cuts
    assert any(owner == "g" and start == float("-inf") for _, start, owner in site.reserved)  # withheld
    assert cut(900.0)[0] == []  # 300 s of drain on 8 trays does not pay for it
