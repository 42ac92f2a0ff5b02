"""Folded checkpoints (issue 12) change no outcome: a run with each checkpoint's unblock folded into its begin, and
(since session 5) each begin opened early by the commit before it when that commit comes first (sim/jobstate.py),
ends with every job exactly where the unfolded run (three kernel events per checkpoint) leaves it — progress,
commits, stall, lost work, energy — and logs the same lines at the same instants; only CheckpointCommitted and
JobCompleted lines of different jobs in the same second may come in another order (what the unfolded unblock
scheduled is now scheduled at the begin or at the commit before: a tie in time and priority with another job's
event may break the other way). The busy run puts failures, planned stops, speed changes (a degraded NVLink
domain) and an outage inside blocking windows and before windows opened early, and checks the invariants after
every event."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from superfactory.domain.events import EventKind
from superfactory.domain.fleet import FleetSnapshot, Plan
from superfactory.policy.registry import PolicyBase, make_policy, register, unregister
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.jobstate import JobRuntime, JobState
from superfactory.sim.twin import TwinResult, run_twin

from scenario_builders import factory, job, scenario

#: what a run leaves on each job; all equal between the folded and the unfolded run
FIELDS = ("progress_s", "committed_s", "checkpoints", "checkpoint_stall_s", "lost_work_s", "interruptions",
          "planned_stops", "completed_s", "first_start_s", "energy_j", "cost_usd", "held_gpu_s", "recovery_s")


def _busy() -> str:
    """Long blocking windows (a third of each interval), synchronous and async writes, failures at 80x, planned
    stops, a degraded NVLink domain that slows running gangs, and a factory outage."""
    facs = [factory("a", nodes=24), factory("b", market="ERCOT", nodes=24),
            factory("nvl", market="ERCOT", nodes=36, system="gb200-nvl72")]
    jobs = []
    for i in range(40):
        gpus = (8, 16, 64, 128)[i % 4]
        extra: dict[str, object] = {
            "submit": f"{(i * 41) % 1440}min",
            "checkpoint": {"interval": f"{20 + 5 * (i % 3)}min", "blocking": f"{5 + i % 4}min",
                           "size": "200GB", "write_bandwidth": ("0Gbps", "2Gbps", "40Gbps")[i % 3]}}
        acc = "H100-SXM"
        if i % 5 == 0:
            acc, extra["tp_size"] = "GB200", 8
        jobs.append(job(f"j{i}", gpus=gpus, work=f"{3 + i % 13}h", accelerator=acc, **extra))
    events = [{"at": f"{100 + 37 * k}min", "kind": "link_degradation", "factory": "nvl", "domain": k % 2,
               "duration": "13min", "factor": 0.5} for k in range(30)]
    events.append({"at": "1203min", "kind": "factory_outage", "factory": "b", "duration": "2h"})
    return scenario(facs, jobs, duration="2d", events=events, failures={"rate_scale": 80.0})


def _by_second(res: TwinResult) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for e in res.events:
        out[e.time_s].append(e.line())
    return out


def test_folded_checkpoints_change_no_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = parse_scenario(_busy())
    undone: list[str] = []  # windows opened early by a commit and undone before they began (sim/jobstate.py)
    drop = JobRuntime.drop_early

    def counting_drop(jr: JobRuntime) -> None:
        if jr.early_cell is not None and jr.before_early_window():
            undone.append(jr.job.id)
        drop(jr)

    monkeypatch.setattr(JobRuntime, "drop_early", counting_drop)
    folded = run_twin(sc, policy="greedy", check_invariants=True)
    monkeypatch.undo()
    plain = run_twin(sc, policy="greedy", fold_checkpoints=False)
    assert len(undone) > 10  # failures, stops and speed changes fell before windows that commits had opened
    # the run was busy where it matters: interruptions and speed changes, many checkpoints
    assert sum(j.interruptions for j in plain.jobs) > 30
    assert sum(j.planned_stops for j in plain.jobs) > 0
    assert sum(j.checkpoints for j in plain.jobs) > 500
    assert any(j.speed < 1.0 for j in plain.jobs) or any(e.kind is EventKind.LINK_PROBED for e in plain.events)
    for a, b in zip(folded.jobs, plain.jobs, strict=True):
        for name in FIELDS:
            assert getattr(a, name) == getattr(b, name), (a.job.id, name, getattr(a, name), getattr(b, name))
        assert a.state is b.state
    # one kernel event fewer per checkpoint that unblocked, and mostly none for the begin either (the commit
    # before opened its window): unfolded, a checkpoint is 2-3 events (begin, unblock, async commit)
    assert plain.kernel_events - folded.kernel_events > 1.25 * sum(j.checkpoints for j in plain.jobs)
    # the same lines at the same instants; only commits and completions of different jobs in one second may swap
    fa, fb = _by_second(folded), _by_second(plain)
    assert fa.keys() == fb.keys()
    for t, lines in fa.items():
        assert sorted(lines) == sorted(fb[t]), t
        moved = [x for x, y in zip(lines, fb[t], strict=True) if x != y]
        assert all("|CheckpointCommitted|" in x or "|JobCompleted|" in x for x in moved), (t, moved)


@pytest.mark.parametrize("fold", [True, False])
def test_state_reads_checkpointing_inside_a_folded_window(fold: bool) -> None:
    """A job seen by a decision inside a blocking window is CHECKPOINTING with its progress frozen at the
    checkpoint's begin; after the window it is RUNNING again and progresses from the window's end — folded, as
    the unfolded state machine shows it."""
    seen: list[tuple[int, str, float]] = []

    @register("test-fold-watcher")
    class Watcher(PolicyBase):
        """Test only: greedy, recording the running job every minute."""

        cycle_s = 60

        def __init__(self) -> None:
            self.inner = make_policy("greedy")

        def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
            for v in snapshot.running:
                seen.append((snapshot.now_s, v.state.value, v.progress_s))
            return self.inner.decide(snapshot, rng)

    sc = parse_scenario(scenario([factory("a")], [job("j", gpus=8, work="3h", checkpoint={
        "interval": "10min", "blocking": "2min", "size": "10GB", "write_bandwidth": "1Gbps"})],
        duration="2h", failures={"rate_scale": 0.0, "planned": False},
        defaults={"recovery": {"detect": "1min", "restart": "60s"}}))
    try:
        run_twin(sc, policy="test-fold-watcher", fold_checkpoints=fold)
    finally:
        unregister("test-fold-watcher")
    states = {t: (s, p) for t, s, p in seen}
    # running from 60 s; first checkpoint blocks [660, 780): progress frozen at 600
    assert states[600] == (JobState.RUNNING.value, 540.0)
    assert states[660] == (JobState.CHECKPOINTING.value, 600.0)
    assert states[720] == (JobState.CHECKPOINTING.value, 600.0)
    assert states[780] == (JobState.RUNNING.value, 600.0)
    assert states[840] == (JobState.RUNNING.value, 660.0)
    # committed at 860 s, which (folded) opened the next window early: before it, the job still runs
    assert states[1200] == (JobState.RUNNING.value, 1020.0)
    # the second begins 600 s after the first began: [1260, 1380)
    assert states[1260] == (JobState.CHECKPOINTING.value, 1080.0)
    assert states[1380] == (JobState.RUNNING.value, 1080.0)
