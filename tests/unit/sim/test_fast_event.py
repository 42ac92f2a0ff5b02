"""The twin builds its log events without the dataclass __init__ (sim/records.py new_event, committed_event): the
object must be indistinguishable from ``Event(...)``."""

from __future__ import annotations

import pickle

from superfactory.domain.events import Event, EventKind, event_log_digest
from superfactory.sim.records import committed_event


def test_committed_event_is_the_event_the_constructor_builds() -> None:
    for t, job, fac, p in ((0, "j", "", 0.0), (31_536_000, "job-25999", "sweden", 1234.5678), (7, "", "a", -0.0)):
        fast = committed_event(t, job, fac, p)
        slow = Event(t, EventKind.CHECKPOINT_COMMITTED, job, fac, -1, "", p)
        assert type(fast) is Event
        assert fast == slow and hash(fast) == hash(slow)
        assert fast.line() == slow.line()
        assert event_log_digest([fast]) == event_log_digest([slow])
        assert pickle.loads(pickle.dumps(fast)) == slow
        assert repr(fast) == repr(slow)


def test_new_event_equals_the_constructor_for_every_kind_and_default() -> None:
    import copy
    import dataclasses

    import pytest

    from superfactory.sim.records import new_event

    cases: list[tuple[tuple[object, ...], dict[str, object]]] = [
        ((5, EventKind.JOB_SUBMITTED, "job-1", "home"), {"value": 8}),  # an int value stays an int (repr "8")
        ((3600, EventKind.METERED, "", "f1", 3600, "usd", 12.5), {}),
        ((9, EventKind.AUDIT_REFUSAL, "j", "f"), {"cause": "sovereignty"}),
        ((0, EventKind.JOB_INTERRUPTED), {}),
        ((1, EventKind.JOB_PLACED, "j", "f"), {"cause": "hot-swap", "value": 64.0, "action": "greedy:1:0"}),
    ]
    cases += [((11, kind, "j", "f", 2, "c", 0.25, "a"), {}) for kind in EventKind]
    for args, kw in cases:
        fast = new_event(*args, **kw)  # type: ignore[arg-type]
        slow = Event(*args, **kw)  # type: ignore[arg-type]
        assert type(fast) is Event
        assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
        assert fast.line() == slow.line()
        assert pickle.loads(pickle.dumps(fast)) == slow
        assert copy.copy(fast) == slow and dataclasses.replace(fast, job="x") == dataclasses.replace(slow, job="x")
        assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.job = "changed"  # type: ignore[misc]


def test_record_builders_equal_the_constructors() -> None:
    import dataclasses

    from superfactory.domain.fleet import FactoryState, FleetSnapshot, JobView, LinkProbe
    from superfactory.domain.lifecycle import JobLifecycle
    from superfactory.scenario.loader import load_scenario
    from superfactory.sim.records import new_factory_state, new_job_view, new_snapshot

    sc = load_scenario("llama3-405b")
    job = sc.jobs[0]
    views = [
        (job, None, (), 0.0, 120, None, (), False, 0.0, JobLifecycle.PENDING, 0.0),
        (job, "f1", (1, 2, 3), 3600.5, -1, "f0", (4, 5), True, 1800.25, JobLifecycle.RUNNING, 1.5e-3),
    ]
    for args in views:
        fast, slow = new_job_view(*args), JobView(*args)
        assert type(fast) is JobView and fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
        assert pickle.loads(pickle.dumps(fast)) == slow and dataclasses.astuple(fast) == dataclasses.astuple(slow)
    st_args = ("f1", True, bytes([0, 1, 2]), 42.5, 300.0, 1.5e6, (LinkProbe(3, 0.5, 120),))
    fast_st, slow_st = new_factory_state(*st_args), FactoryState(*st_args)
    assert type(fast_st) is FactoryState and fast_st == slow_st and hash(fast_st) == hash(slow_st)
    assert fast_st.link_factors == slow_st.link_factors and repr(fast_st) == repr(slow_st)
    snap_args = (60, sc.factories, (slow_st,), sc.links, (JobView(*views[0]),), (), {"m": (1.0,)}, {}, None, None)
    fast_sn, slow_sn = new_snapshot(*snap_args), FleetSnapshot(*snap_args)
    assert type(fast_sn) is FleetSnapshot and fast_sn == slow_sn and repr(fast_sn) == repr(slow_sn)
    assert fast_sn.factory_index(sc.factories[0].id) == 0
    from superfactory.domain.outcome import ActionOutcome, OutcomeStatus
    from superfactory.sim.records import new_outcome

    for args in (("greedy:3:0", OutcomeStatus.APPLIED, "j", "f", "", 7200),
                 ("x", OutcomeStatus.REFUSED, "", "", "no", 0)):
        fast_o, slow_o = new_outcome(*args), ActionOutcome(*args)
        assert type(fast_o) is ActionOutcome and fast_o == slow_o and hash(fast_o) == hash(slow_o)
        assert fast_o.in_force == slow_o.in_force and pickle.loads(pickle.dumps(fast_o)) == slow_o


def test_record_builder_refuses_records_it_would_not_build_exactly() -> None:
    import dataclasses

    import pytest

    from superfactory.sim.records import record_builder

    @dataclasses.dataclass(frozen=True)  # no slots
    class Unslotted:
        a: int

    @dataclasses.dataclass(slots=True)  # not frozen
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            assert self.a >= 0

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    for cls in (Unslotted, Mutable, Checked, Derived, int):
        with pytest.raises(TypeError):
            record_builder(cls)
