"""Python's cyclic garbage collector held back for the length of a twin run (issue 12).

Why: a fleet-year run keeps ~800 MiB of long-lived objects (the scenario's jobs, every job's runtime record,
and the event log, which grows to millions of :class:`~superfactory.domain.events.Event` objects) and allocates
millions of short-lived ones (kernel heap entries, snapshots, plans). With CPython's default thresholds
``(700, 10, 10)`` the collector runs a young collection every 700 net container allocations and, as the heap
grows, full collections that traverse every tracked object: measured at ~14 % of a fleet-year's wall time for
nothing, since the run's objects are freed by reference counting (the kernel, fleet and loop build no cycles
that must be reclaimed during a run; what is left over is reclaimed by the first collection after it).

What :func:`quiet_collector` does, for the duration of a ``with`` block:
- pauses the collector (``gc.disable()``; session 7) and raises the thresholds to :data:`RUN_THRESHOLDS` (young
  collections every 50k allocations, full ones rare, should anything re-enable it). Session 5 only raised the
  thresholds: a fleet-year then still ran ~60 young collections and a middle one, ~1.8 s of ~60 s, traversing
  the log's events once each for nothing (a run builds no cyclic garbage worth reclaiming while it runs: the
  60-day cut's peak RSS is the same with the collector off);
- freezes what is already allocated (``gc.freeze()``: the loaded scenario and the rest of the process move to
  the permanent generation, which no collection traverses) when nothing was frozen before;
- and on the way out, normally or by an exception, restores the thresholds and the enabled state it found and
  unfreezes what it froze. When it froze, what the run allocated and kept (the result: events, jobs, hours) is
  moved to the oldest generation with the rest (``gc.freeze()`` then ``gc.unfreeze()``) instead of waiting in
  the young one for a collection to traverse it: the next full collection looks at it, as it would have anyway,
  and reclaims any cycle the run left.

Nested or concurrent runs (threads of a server, a sweep) share one pause: the first to enter sets it up, the
last to leave restores the state the first one found. A caller that froze objects itself keeps them frozen (no
freeze or unfreeze here then). ``SUPERFACTORY_RUN_GC`` (``threshold``, ``freeze``, ``both``, ``off``) selects
the parts for measurements (benchmarks/twin_bench.py); the default is ``both``.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: the collector's thresholds during a run (generation 0 allocations, gen-0 runs per gen 1, gen-1 runs per gen 2)
RUN_THRESHOLDS = (50_000, 50, 100)
MODES = ("both", "threshold", "freeze", "off")



class _Pause:
    """The one pause shared by every run in the process: how many runs are inside it, and what to restore."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        # (thresholds found, whether it froze, whether the collector was enabled)
        self.saved: tuple[tuple[int, ...], bool, bool] = ((), False, True)


_pause = _Pause()


def _mode() -> str:
    mode = os.environ.get("SUPERFACTORY_RUN_GC", "both")
    if mode not in MODES:
        raise ValueError(f"SUPERFACTORY_RUN_GC={mode!r}: expected one of {', '.join(MODES)}")
    return mode


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Hold the cyclic collector back inside the block (see the module docstring); the collector's state (its
    thresholds, the frozen count, whether it is enabled) is what it was before once the outermost block ends."""
    mode, p = _mode(), _pause
    with p.lock:
        if p.depth == 0:
            found, enabled = gc.get_threshold(), gc.isenabled()
            freeze = mode in ("both", "freeze") and gc.get_freeze_count() == 0
            if freeze:
                gc.freeze()
            if mode in ("both", "threshold"):
                gc.set_threshold(*RUN_THRESHOLDS)
                gc.disable()
            p.saved = (found, freeze, enabled)
        p.depth += 1
    try:
        yield
    finally:
        with p.lock:
            p.depth -= 1
            if p.depth == 0:
                thresholds, froze, enabled = p.saved
                gc.set_threshold(*thresholds)
                if froze:
                    gc.freeze()  # what the run kept joins the frozen heap, untraversed ...
                    gc.unfreeze()  # ... and all of it goes to the oldest generation, as it was before the run
                if enabled:
                    gc.enable()
