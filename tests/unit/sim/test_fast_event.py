"""The twin builds its log events without the dataclass __init__ (sim/eventbuild.py new_event, committed_event): the
object must be indistinguishable from ``Event(...)``."""

from __future__ import annotations

import pickle

from superfactory.domain.events import Event, EventKind, event_log_digest
from superfactory.sim.fleet import committed_event


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

    from superfactory.sim.eventbuild import new_event

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
