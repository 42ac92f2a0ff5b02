"""Property tests: capacity is never exceeded and no job ever runs on a failed node or a down site."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from superfactory.domain.events import EventKind
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


@st.composite
def small_fleets(draw: st.DrawFn) -> str:
    n_f = draw(st.integers(1, 3))
    facs = [factory(f"f{i}", market=draw(st.sampled_from(["PJM", "ERCOT", "MISO"])),
                    nodes=draw(st.integers(4, 24))) for i in range(n_f)]
    smallest = min(f["systems"][0]["nodes"] for f in facs) * 8
    jobs = [job(f"j{i}", gpus=8 * draw(st.integers(1, smallest // 8)),
                work=f"{draw(st.integers(2, 40))}h", submit=f"{draw(st.integers(0, 48))}h",
                priority=draw(st.integers(0, 2)),
                checkpoint={"interval": f"{draw(st.integers(5, 60))}min", "blocking": "20s", "size": "50GB",
                            "write_bandwidth": draw(st.sampled_from(["0Gbps", "100Gbps"]))})
            for i in range(draw(st.integers(1, 12)))]
    events = []
    if draw(st.booleans()):
        events.append({"at": f"{draw(st.integers(1, 60))}h", "kind": "factory_outage", "factory": "f0",
                       "duration": f"{draw(st.integers(1, 10))}h"})
    return scenario(facs, jobs, duration="4d", events=events,
                    failures={"rate_scale": draw(st.sampled_from([50.0, 300.0])), "planned": True},
                    policy=draw(st.sampled_from(["greedy", "home-region", "cheapest-static"])))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_fleets(), st.integers(0, 2**31))
def test_invariants_hold_after_every_event(text: str, seed: int) -> None:
    sc = parse_scenario(text)
    result = run_twin(sc, seed=seed, check_invariants=True)  # raises SimulationError on any violation
    # Work is conserved: retained progress never exceeds the job's work, and lost work is non-negative.
    for j in result.jobs:
        assert 0 <= j.progress_s <= j.job.work_s + 1e-6
        assert j.lost_work_s >= 0
    # Every interruption hit a job that was placed before it (no interruptions of pending jobs).
    placed: set[str] = set()
    for e in result.events:
        if e.kind is EventKind.JOB_PLACED:
            placed.add(e.job)
        elif e.kind is EventKind.JOB_INTERRUPTED:
            assert e.job in placed
