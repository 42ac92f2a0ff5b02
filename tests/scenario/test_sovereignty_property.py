"""Property: sovereignty is a hard filter. Over random small fleets and jobs with random data classes, no policy
ever places or migrates a job into a factory not cleared for all its classes; every AuditRefusal names a factory
that really is not cleared; and ``geo`` reports a refusal for every (job, uncleared factory with room for it)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from superfactory.domain.events import EventKind
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario

CLASSES = ["US", "EU", "EU_PERSONAL"]


@st.composite
def sovereign_fleets(draw: st.DrawFn) -> str:
    facs = [factory(f"f{i}", market=draw(st.sampled_from(["PJM", "MISO", "NORDPOOL_SE2"])),
                    nodes=draw(st.integers(4, 16)),
                    clearances=tuple(draw(st.sets(st.sampled_from(CLASSES), max_size=3))))
            for i in range(draw(st.integers(2, 4)))]
    # each job's classes are a subset of some factory's clearances (the compiler rejects a job no factory may
    # take), so a policy always has a lawful place and a tempting unlawful one
    jobs = []
    for i in range(draw(st.integers(1, 10))):
        lawful = sorted(draw(st.sampled_from(facs))["clearances"])
        classes = sorted(draw(st.sets(st.sampled_from(lawful), max_size=2))) if lawful else []
        jobs.append(job(f"j{i}", gpus=8 * draw(st.integers(1, 4)), work=f"{draw(st.integers(2, 30))}h",
                        submit=f"{draw(st.integers(0, 36))}h", sovereignty=classes))
    return scenario(facs, jobs, duration="3d")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sovereign_fleets(), st.sampled_from(["geo", "greedy", "home-region", "cheapest-static"]))
def test_no_placement_in_uncleared_factories(text: str, policy: str) -> None:
    sc = parse_scenario(text)
    cleared = {f.id: f.clearances for f in sc.factories}
    gpus = {f.id: f.gpus for f in sc.factories}
    classes = {j.id: j.sovereignty for j in sc.jobs}
    r = run_twin(sc, policy=policy)
    refused: set[tuple[str, str]] = set()
    for e in r.events:
        if e.kind in (EventKind.JOB_PLACED, EventKind.JOB_MIGRATED):
            assert classes[e.job] <= cleared[e.factory], (policy, e)
        elif e.kind is EventKind.AUDIT_REFUSAL:
            assert not classes[e.job] <= cleared[e.factory], (policy, e)
            assert e.cause.startswith("sovereignty"), e
            refused.add((e.job, e.factory))
    if policy == "geo":
        submitted = {e.job for e in r.events if e.kind is EventKind.JOB_SUBMITTED}
        expected = {(j.id, fid) for j in sc.jobs if j.id in submitted for fid in cleared
                    if not j.sovereignty <= cleared[fid] and gpus[fid] >= j.gpus}
        assert expected <= refused, expected - refused
