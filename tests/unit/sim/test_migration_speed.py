"""A migrated job runs at the speed of the nodes it arrives on, not of the nodes it left.

Regression: before, ``_arrive`` kept the source placement's speed, so a job moved off a silently degraded NVLink
domain (0.6 speed) kept running at 0.6 at its healthy destination, and the twin's TrainingEfficiencyAnomaly
followed it there.
"""

from __future__ import annotations

import itertools

import numpy as np

from superfactory.domain.events import EventKind
from superfactory.domain.fleet import NODE_FREE, FleetSnapshot, Migrate, Place, Plan
from superfactory.domain.lifecycle import JobLifecycle
from superfactory.policy.registry import PolicyBase, register, unregister
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import TwinResult, run_twin

SCENARIO = """
name: migrate-off-degraded
duration: 4h
policy: home-region
factories:
  - {id: a, region: r1, market: PJM, power_cap: 20MW, cooling_capacity: 20MW,
     systems: [{system: gb200-nvl72, racks: 2}]}
  - {id: b, region: r2, market: PJM, power_cap: 20MW, cooling_capacity: 20MW,
     systems: [{system: gb200-nvl72, racks: 2}]}
links:
  - {a: a, b: b, bandwidth: 1Tbps, latency: 5ms}
defaults:
  checkpoint: {interval: 20min, blocking: 10s, size: 100GB, write_bandwidth: 800Gbps}
  recovery: {detect: 1min, restart: 2min}
jobs:
  - {id: j1, accelerator: GB200, gpus: 72, tp_size: 8, work: 30d, home: a, preemptible: false}
failures: {rate_scale: 0, planned: false}
events:
  - {at: 0s, kind: link_degradation, factory: a, domain: 0, duration: 10h}
"""


class _DomainZeroThenMove(PolicyBase):
    """Places ``j1`` on domain 0 of ``a`` (degraded from t = 0); at 1 h moves it to ``b``'s first free nodes."""

    cycle_s = 300

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng
        actions: list[Place | Migrate] = []
        for v in snapshot.pending:
            actions.append(Place(v.job.id, "a", tuple(range(v.job.gpus // 4))))
        for v in snapshot.running:
            if v.factory_id == "a" and snapshot.now_s >= 3600 and v.state is JobLifecycle.RUNNING:
                free = np.flatnonzero(np.frombuffer(snapshot.states[1].node_status, dtype=np.uint8) == NODE_FREE)
                actions.append(Migrate(v.job.id, "b", tuple(int(n) for n in free[: v.job.gpus // 4]), "test"))
        return Plan(tuple(actions))


def _run() -> TwinResult:
    register("test-degraded-then-move")(_DomainZeroThenMove)
    try:
        return run_twin(parse_scenario(SCENARIO, "x.yaml"), policy="test-degraded-then-move")
    finally:
        unregister("test-degraded-then-move")


def _rates(r: TwinResult, factory: str) -> list[float]:
    """Productive seconds per wall second between consecutive checkpoint commits at ``factory``."""
    commits = [(e.time_s, e.value) for e in r.events
               if e.kind is EventKind.CHECKPOINT_COMMITTED and e.job == "j1" and e.factory == factory]
    return [(p1 - p0) / (t1 - t0) for (t0, p0), (t1, p1) in itertools.pairwise(commits)]


def test_a_job_moved_off_a_degraded_domain_runs_at_full_speed_at_its_destination() -> None:
    r = _run()
    assert [e.factory for e in r.events if e.kind is EventKind.JOB_MIGRATED and e.job == "j1"] == ["b"]
    slow, fast = _rates(r, "a"), _rates(r, "b")
    assert slow and fast
    # interval 1,200 s with a 10 s blocking snapshot: 0.6 x 1190/1200 on the degraded domain, 1190/1200 after
    assert all(abs(x - 0.6 * 1190 / 1200) < 0.01 for x in slow), slow
    assert all(abs(x - 1190 / 1200) < 0.01 for x in fast), fast
    jr = next(j for j in r.jobs if j.job.id == "j1")
    assert jr.speed == 1.0
