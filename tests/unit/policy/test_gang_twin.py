"""Invariants of the gang policy driven by the twin (hypothesis over random small NVL72 workloads).

- no TP group ever spans NVLink domains (every Place the policy emits is checked);
- capacity is never exceeded (the twin's invariant check runs after every event);
- a preempted job never loses work past its last checkpoint.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.events import EventKind
from superfactory.domain.fleet import Place
from superfactory.domain.topology import split_tp_groups, topology_of
from superfactory.scenario.loader import parse_scenario
from superfactory.sim import fleet as fleet_mod
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario

JOB = st.fixed_dictionaries({
    "gpus": st.sampled_from([8, 16, 32, 64, 128, 256]),
    "tp": st.sampled_from([4, 8, 16, 32, 64]),
    "priority": st.integers(0, 2),
    "submit_h": st.integers(0, 12),
    "work_h": st.integers(1, 10),
})


def _run(jobs: list[dict[str, Any]], seed: int, params: dict[str, object]) -> tuple[Any, list[tuple[Place, Any]]]:
    yaml_text = scenario(
        [factory("f", nodes=144, system="gb200-nvl72")],
        [job(f"j{i}", gpus=j["gpus"], accelerator="GB200", work=f"{j['work_h']}h", tp_size=min(j["tp"], j["gpus"]),
             priority=j["priority"], submit=f"{j['submit_h']}h") for i, j in enumerate(jobs)],
        duration="1d", policy="gang", failures={"rate_scale": 40.0},
    )
    sc = parse_scenario(yaml_text)
    placed: list[tuple[Place, Any]] = []
    orig = fleet_mod.SimulatedFleet._place

    def spy(self: fleet_mod.SimulatedFleet, a: Place) -> None:
        placed.append((a, self.factories[self.by_id[a.factory_id]]))
        orig(self, a)

    fleet_mod.SimulatedFleet._place = spy  # type: ignore[method-assign]
    try:
        result = run_twin(sc, seed=seed, policy_params=params, check_invariants=True)
    finally:
        fleet_mod.SimulatedFleet._place = orig  # type: ignore[method-assign]
    return result, placed


@settings(max_examples=25, deadline=None)
@given(jobs=st.lists(JOB, min_size=3, max_size=14), seed=st.integers(0, 1000),
       spare_pool=st.integers(0, 2), preempt_after_s=st.sampled_from([0, 600]))
def test_gang_invariants_hold_in_the_twin(jobs: list[dict[str, Any]], seed: int, spare_pool: int,
                                          preempt_after_s: int) -> None:
    result, placed = _run(jobs, seed, {"spare_pool": spare_pool, "preempt_after_s": preempt_after_s})
    by_id = {j.job.id: j.job for j in result.jobs}
    for a, f in placed:
        j = by_id[a.job_id]
        assert split_tp_groups(topology_of(f), a.nodes, j.gpus, j.tp_size) == 0, a
    # a preempted job restarts from at least the progress its last committed checkpoint recorded
    last_commit: dict[str, float] = {}
    preempted_at: dict[str, float] = {}
    for e in result.events:
        if e.kind is EventKind.CHECKPOINT_COMMITTED:
            last_commit[e.job] = e.value
        elif e.kind is EventKind.JOB_PREEMPTED:
            preempted_at[e.job] = last_commit.get(e.job, 0.0)
        elif e.kind is EventKind.JOB_RUNNING and e.job in preempted_at:
            assert e.value >= preempted_at.pop(e.job) - 1e-6
    for jr in result.jobs:
        if jr.preemptions and not jr.interruptions:
            assert jr.lost_work_s == 0.0


def test_preemption_happens_and_loses_no_work() -> None:
    low = [{"gpus": 256, "tp": 8, "priority": 0, "submit_h": 0, "work_h": 20} for _ in range(2)]
    high = [{"gpus": 256, "tp": 16, "priority": 2, "submit_h": 1, "work_h": 2}]
    result, _ = _run(low + high, 1, {"preempt_after_s": 0})
    jobs = {j.job.id: j for j in result.jobs}
    assert sum(j.preemptions for j in result.jobs) >= 1
    assert jobs["j2"].first_start_s < 2 * 3600  # the high-priority gang did not wait for the 20 h jobs
    assert all(j.lost_work_s == 0 for j in result.jobs if not j.interruptions)
