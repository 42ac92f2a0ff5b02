"""Exact accounting of progress, checkpoints and lost work on a hand-computable timeline."""

from __future__ import annotations

import pytest

from superfactory.domain.events import EventKind
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def _run(write_bandwidth: str) -> tuple[object, object]:
    j = job("j", gpus=64, work="10h",
            checkpoint={"interval": "10min", "blocking": "10s", "size": "100GB", "write_bandwidth": write_bandwidth},
            recovery={"detect": "1min", "restart": "5min"})
    text = scenario([factory("a", nodes=8)], [j], duration="1d",
                    failures={"rate_scale": 0.0, "planned": False},
                    events=[{"at": "2000s", "kind": "factory_outage", "factory": "a", "duration": "1h"}])
    res = run_twin(parse_scenario(text), seed=0)
    return res, res.jobs[0]


def test_interruption_loses_work_since_last_committed_checkpoint() -> None:
    res, jr = _run("0Gbps")  # synchronous: a checkpoint commits when its blocking part ends
    # placed at 0, running at 300 (restart); checkpoints start every 600 s: 900-910 (progress 600) and
    # 1500-1510 (progress 1190); outage at 2000 -> progress 1190 + 490 = 1680, of which 490 s is lost.
    ints = [e for e in res.events if e.kind is EventKind.JOB_INTERRUPTED]
    assert len(ints) == 1 and ints[0].time_s == 2000
    assert ints[0].value == pytest.approx(490)
    commits = [(e.time_s, e.value) for e in res.events if e.kind is EventKind.CHECKPOINT_COMMITTED]
    assert commits[:2] == [(910, 600.0), (1510, 1190.0)]
    assert jr.lost_work_s == pytest.approx(490)
    # detect 60 s (held), requeue at 2060, site down until 5600, restart 300 s: running again at 5900.
    runs = [e.time_s for e in res.events if e.kind is EventKind.JOB_RUNNING]
    assert runs == [300, 5900]
    t, progress = 5900, 1190.0  # from here: 590 s of progress per 600 s until the last partial interval
    while 36000 - progress > 600:
        t, progress = t + 610 - 10, progress + 590
    assert jr.completed_s == t + (36000 - progress)
    assert jr.progress_s == pytest.approx(10 * 3600)


def test_async_write_commits_later_and_loses_more() -> None:
    res, _ = _run("80Gbps")  # 100 GB at 80 Gb/s = 10 s of background write after each 10 s stall
    commits = [(e.time_s, e.value) for e in res.events if e.kind is EventKind.CHECKPOINT_COMMITTED]
    assert commits[:2] == [(920, 600.0), (1520, 1190.0)]
    ints = [e for e in res.events if e.kind is EventKind.JOB_INTERRUPTED]
    assert ints[0].value == pytest.approx(490)


def test_write_in_flight_at_failure_does_not_commit() -> None:
    j = job("j", gpus=64, work="10h",
            checkpoint={"interval": "10min", "blocking": "10s", "size": "1TB", "write_bandwidth": "8Gbps"},
            recovery={"detect": "1min", "restart": "5min"})
    # writes take 1000 s; the first starts at 910 and would commit at 1910, the outage at 1500 kills it.
    text = scenario([factory("a", nodes=8)], [j], duration="1d", failures={"rate_scale": 0.0, "planned": False},
                    events=[{"at": "1500s", "kind": "factory_outage", "factory": "a", "duration": "1h"}])
    res = run_twin(parse_scenario(text), seed=0)
    ints = [e for e in res.events if e.kind is EventKind.JOB_INTERRUPTED]
    assert ints[0].value == pytest.approx(1500 - 300 - 10)  # nothing was durable: all progress lost
    assert not any(e.kind is EventKind.CHECKPOINT_COMMITTED and e.time_s < 1500 for e in res.events)
