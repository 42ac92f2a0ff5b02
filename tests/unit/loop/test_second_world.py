"""A second world (not the twin) drives every registered policy, inference included, through DecisionLoop.

The world (``loop_world.py``) has a clock the test advances, an in-memory store, and an actuator that refuses
or leaves unanswered (then ``timed_out``) a share of actions until ``faulty_until_s``. Property: once the
faults stop, every job that finishes in a fault-free run finishes too, nothing is left holding capacity, and
the policies hold no promise (claim, victim link) for a job that no longer needs it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from loop_world import ManualClock, MemoryWorld

from superfactory.domain.inference import ServiceProfile
from superfactory.domain.job import InferenceService
from superfactory.loop.decision import DecisionLoop
from superfactory.policy.registry import INFERENCE, TRAINING, available, make_policy
from superfactory.scenario.loader import parse_scenario

from scenario_builders import factory, job, scenario

# every policy the package registers (tests register spies of their own: not those)
TRAINING_POLICIES = sorted(p for p in available(TRAINING)
                           if type(make_policy(p)).__module__.startswith("superfactory.policy."))
HORIZON_S = 3 * 86400
FAULTS_END_S = 6 * 3600


def _fleet() -> tuple:
    text = scenario(
        [factory("a", nodes=16, market="PJM"), factory("b", nodes=16, market="ERCOT")],
        [job(f"j{i}", gpus=32 + 16 * (i % 3), work=f"{6 + 3 * (i % 4)}h", submit=f"{i * 40}min",
             priority=i % 2, preemptible=True) for i in range(10)],
        duration="3d", links=[{"a": "a", "b": "b", "bandwidth": "400Gbps", "latency": "10ms"}],
    )
    sc = parse_scenario(text)
    return sc.factories, sc.links, sc.jobs


def _service() -> ServiceProfile:
    svc = InferenceService("chat", "llama-70b", 140e9, "H100-SXM", 8, 2000.0, ("edge",))
    return ServiceProfile(svc, 1, 0.2, 0.5)


def _run(policy: str, refuse: float, timeout: float, seed: int) -> tuple[MemoryWorld, DecisionLoop]:
    factories, links, jobs = _fleet()
    clock = ManualClock()
    world = MemoryWorld(factories, links, jobs, clock, refuse, timeout, 300, FAULTS_END_S, seed,
                        service=_service(), rate_rps=10.0)
    sink = _Sink(world)
    loop = DecisionLoop([make_policy(policy), make_policy("preplacer", horizon_s=900)], world, world, clock,
                        sink, seed=seed)
    world.request = loop.request
    world.report = loop.report_outcome
    loop.start()
    loop.request()
    for t in range(0, HORIZON_S + 1, 600):
        clock.advance_to(t, world)
    return world, loop


class _Sink:
    def __init__(self, world: MemoryWorld) -> None:
        self.world = world

    def emit(self, event: object) -> None:
        self.world.events.append(event)  # type: ignore[arg-type]


def test_every_role_is_registered() -> None:
    assert "preplacer" in available(INFERENCE)
    assert {"gang", "geo", "greedy", "home-region", "firstfit-blind"} <= set(TRAINING_POLICIES)


@pytest.mark.parametrize("policy", TRAINING_POLICIES)
def test_policy_runs_unchanged_in_the_second_world(policy: str) -> None:
    world, loop = _run(policy, 0.0, 0.0, 1)
    assert world.finished(), f"{policy}: nothing finished"
    assert not world.leaks()
    assert loop.decisions_by_policy.get("preplacer", 0) > 0
    assert sum(len(r) for r in world.replicas.values()) > 0  # inference got replicas through Allocate


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=(Phase.explicit, Phase.reuse, Phase.generate))  # no shrinking: each example runs 2 worlds
@given(policy=st.sampled_from(TRAINING_POLICIES),
       refuse=st.floats(0.1, 0.5), timeout=st.floats(0.0, 0.3), seed=st.integers(0, 10_000))
def test_after_refusals_stop_everything_that_would_finish_finishes(policy: str, refuse: float, timeout: float,
                                                                   seed: int) -> None:
    clean, _ = _run(policy, 0.0, 0.0, seed)
    faulty, loop = _run(policy, refuse, timeout, seed)
    assert faulty.refused + faulty.timed_out > 0  # the faults did happen
    assert clean.finished() <= faulty.finished(), f"{policy}: lost {clean.finished() - faulty.finished()}"
    assert not faulty.leaks()
    assert loop.in_flight == 0  # every action got an outcome
    pol = loop.policies[-1] if loop.policies[-1].role == TRAINING else loop.policies[0]
    live = {k for k, r in faulty.store.items() if r.state.value not in ("completed",)}
    for attr in ("_claims", "_victim_of", "_sticky"):  # gang's promises: none for a job that is done
        held = getattr(pol, attr, {})
        assert not (set(held) - live), f"{policy}.{attr} leaked {set(held) - live}"
    kinds = {e.kind.value for e in faulty.events}
    assert "ActionRefused" in kinds or "ActionTimedOut" in kinds


def test_outcomes_reach_the_policy_and_the_record() -> None:
    world, loop = _run("gang", 0.3, 0.2, 7)
    assert loop.outcomes.get("refused", 0) > 0 and loop.outcomes.get("timed_out", 0) > 0
    ids = [e.action for e in world.events if e.kind.value.startswith("Action")]
    assert len(ids) == len(set(ids))  # one outcome per action id
    assert all(i.startswith(("gang:", "preplacer:")) for i in ids)
    assert np.all([e.time_s <= HORIZON_S for e in world.events])


def test_geo_after_refusals_stop_everything_that_would_finish_finishes() -> None:
    clean, _ = _run("geo", 0.0, 0.0, 2)
    faulty, _ = _run("geo", 0.3, 0.1, 2)
    assert clean.finished() <= faulty.finished()
