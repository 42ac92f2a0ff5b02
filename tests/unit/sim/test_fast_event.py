"""The fleet's hot commit builds its log event without the dataclass __init__ (sim/fleet.py committed_event): the
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
