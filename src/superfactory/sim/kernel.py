"""A small deterministic discrete-event kernel.

Time is an integer (seconds). Scheduled calls are ordered by ``(time, priority, sequence)``: lower priority
values run first at equal times, and the sequence number (the order of scheduling) breaks remaining ties, so
a run is a pure function of its inputs and seeds. Like SimPy's core, there is one heap and one loop; unlike
SimPy, callbacks are plain functions rather than generator processes (cheaper for the hundreds of thousands of
checkpoint events a month of fleet produces). Cancellation is lazy: a callback checks a token it was given.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from superfactory.errors import SimulationError

_push = heapq.heappush

# Priorities at equal time: state changes of the fleet first, then the decision loop, then metrics.
PRIO_SIGNAL = 0
PRIO_FAILURE = 10
PRIO_JOB = 20
PRIO_DECIDE = 50
PRIO_METRICS = 90


class Kernel:
    """The event heap and simulated clock."""

    __slots__ = ("_heap", "next_seq", "now", "prio", "processed")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Callable[..., None], tuple[Any, ...]]] = []
        #: the simulated clock, s (read it; only :meth:`run` moves it). Hot paths read this attribute rather
        #: than calling :meth:`now_s` (issue 12: a method call per read adds up over millions of events).
        self.now = 0
        #: the priority of the event being processed (below every priority outside :meth:`run`): a folded
        #: checkpoint's window reads it at the window's end instant (sim/jobstate.py)
        self.prio = -1
        #: the next sequence number (the order of scheduling breaks ties); with :attr:`heap`, what a hot path
        #: that pushes its own entries uses (the fleet's checkpoint chain, issue 12)
        self.next_seq = itertools.count(1).__next__
        self.processed = 0

    def now_s(self) -> int:
        return self.now

    @property
    def heap(self) -> list[tuple[int, int, int, Callable[..., None], tuple[Any, ...]]]:
        """The heap itself: entries ``(time_s, priority, next_seq(), fn, args)``, never before now."""
        return self._heap

    def at(self, time_s: int, priority: int, fn: Callable[..., None], *args: Any) -> None:
        """Schedule ``fn(*args)`` at absolute time ``time_s`` (not before now)."""
        if time_s < self.now:
            raise SimulationError(f"cannot schedule {fn.__name__} at {time_s} s, before now ({self.now} s)")
        _push(self._heap, (time_s, priority, self.next_seq(), fn, args))

    def after(self, delay_s: int, priority: int, fn: Callable[..., None], *args: Any) -> None:
        """Schedule ``fn(*args)`` ``delay_s`` seconds from now."""
        if delay_s < 0:
            raise SimulationError(f"cannot schedule {fn.__name__} {delay_s} s before now ({self.now} s)")
        _push(self._heap, (self.now + delay_s, priority, self.next_seq(), fn, args))

    def prune(self, fn: Callable[..., None], dead: Callable[..., bool]) -> int:
        """Remove the scheduled calls of ``fn`` (the same object) whose arguments ``dead(*args)`` says would return
        at once whenever they ran (a stale token: issue 12, the fleet's planned stops). Every other entry pops in
        the same order as before, since entries are ordered by their unique ``(time, priority, sequence)``; the
        removed ones are not counted in :attr:`processed`. Returns how many were removed."""
        heap = self._heap
        kept = [e for e in heap if e[3] is not fn or not dead(*e[4])]
        removed = len(heap) - len(kept)
        if removed:
            heap[:] = kept  # the same list: a running loop holds it
            heapq.heapify(heap)
        return removed

    def run(self, until_s: int, on_progress: Callable[[int], None] | None = None,
            after_each: Callable[[], None] | None = None) -> None:
        """Process events with time < ``until_s``; the clock ends at ``until_s``.

        ``on_progress(now_s)`` is called about every 4096 events (for progress bars). ``after_each()``, if
        given, runs after every event (invariant checks in tests; slow).
        """
        if after_each is not None:
            while self._heap and self._heap[0][0] < until_s:
                time_s, self.prio, _seq, fn, args = heapq.heappop(self._heap)
                self.now = time_s
                fn(*args)
                self.processed += 1
                after_each()
            self.now, self.prio = until_s, -1
            return
        heap = self._heap
        pop = heapq.heappop
        n = self.processed
        if on_progress is None:  # the usual loop: nothing but the events (issue 12: ~2.4 M a fleet-year)
            while heap and heap[0][0] < until_s:
                time_s, self.prio, _seq, fn, args = pop(heap)
                self.now = time_s
                fn(*args)
                n += 1
        else:
            while heap and heap[0][0] < until_s:
                time_s, self.prio, _seq, fn, args = pop(heap)
                self.now = time_s
                fn(*args)
                n += 1
                if not n & 4095:
                    on_progress(time_s)
        self.processed = n
        self.now, self.prio = until_s, -1
