"""Issue 12, session 9: the running jobs' views a snapshot builds in one inlined pass
(``SimulatedFleet._running_views``) equal :meth:`SimulatedFleet._view`'s, field for field and bit for bit, in
every state a held job can be in: inside or outside a folded checkpoint window, before an early-opened window,
at a window's begin or end instant at each kernel priority."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.fleet import JobView
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.fleet import SimulatedFleet
from superfactory.sim.jobstate import JobState
from superfactory.sim.kernel import PRIO_DECIDE, PRIO_FAILURE, PRIO_JOB, PRIO_SIGNAL, Kernel

from scenario_builders import factory, job, scenario

_SC = parse_scenario(scenario([factory("a", nodes=16), factory("b", nodes=16, market="ERCOT")],
                              [job(f"j{i}", gpus=8) for i in range(8)], duration="1d"))
_HELD = (JobState.RUNNING, JobState.STARTING, JobState.DRAINING, JobState.DETECTING, JobState.MIGRATING)


def _fleet() -> SimulatedFleet:
    sc = _SC
    return SimulatedFleet(Kernel(), sc.factories, sc.links, sc.jobs, dict(sc.prices), dict(sc.carbon),
                          sc.failure_model, np.random.default_rng(1), lambda e: None)


_job = st.fixed_dictionaries({
    "state": st.sampled_from(_HELD),
    "factory": st.integers(-1, 1), "last_factory": st.integers(-1, 1),
    "began": st.integers(-3, 3), "length": st.integers(-1, 3),  # window relative to now (-1 length: none)
    "early": st.booleans(), "cell_p": st.floats(0, 1e6), "cell_rs": st.integers(-5, 0),
    "progress": st.floats(0, 1e6) | st.just(-0.0), "run_since": st.integers(-5, 5),
    "speed": st.floats(0.1, 2.0), "committed": st.floats(0, 1e6), "carbon": st.floats(0, 1e9),
    "token": st.integers(0, 9), "recovering": st.booleans(), "waiting": st.integers(0, 100),
})


def _bits(v: JobView) -> tuple[object, ...]:
    return tuple((type(x), repr(x)) for x in (getattr(v, f.name) for f in dataclasses.fields(v)))


@settings(max_examples=150, deadline=None)
@given(jobs=st.lists(_job, min_size=1, max_size=8),
       prio=st.sampled_from((PRIO_SIGNAL, PRIO_FAILURE, PRIO_JOB - 1, PRIO_JOB, PRIO_DECIDE)),
       now=st.integers(10, 1000))
def test_running_views_equal_the_job_by_job_views(jobs: list[dict[str, object]], prio: int, now: int) -> None:
    fl = _fleet()
    fl.k.now, fl.k.prio = now, prio
    for jr, d in zip(fl.jobs, jobs, strict=False):
        jr._state = d["state"]  # type: ignore[assignment]
        jr.factory, jr.last_factory = d["factory"], d["last_factory"]  # type: ignore[assignment]
        jr.nodes, jr.last_nodes = (1, 2), (3,)
        if d["length"] >= 0:  # type: ignore[operator]
            jr.ckpt_began_s = now + d["began"]  # type: ignore[operator]
            jr.ckpt_until_s = jr.ckpt_began_s + d["length"]  # type: ignore[operator]
        if d["early"]:
            jr.early_cell = [True, d["cell_p"], now + d["cell_rs"], jr.ckpt_began_s]  # type: ignore[list-item,operator]
        jr.progress_s, jr.run_since_s = d["progress"], now + d["run_since"]  # type: ignore[assignment,operator]
        jr.speed, jr.committed_s, jr.carbon_g = d["speed"], d["committed"], d["carbon"]  # type: ignore[assignment]
        jr.token, jr.recovering, jr.waiting_since_s = d["token"], d["recovering"], d["waiting"]  # type: ignore[assignment]
        fl.holding[jr.index] = jr
    fast = fl._running_views(now, fl._changes)
    again = fl._running_views(now, fl._changes)
    assert all(a is b for a, b in zip(fast, again, strict=True))  # kept on the job while nothing moved
    for jr in fl.holding.values():
        jr.view_key = (-1, 0.0, 0.0, -1)
    ref = tuple(fl._view(jr, now) for jr in fl.holding.values())
    assert [_bits(v) for v in fast] == [_bits(v) for v in ref]
    assert fast == ref
