"""Ports between the decision loop and a world (the twin, the live control plane, or a test's world).

The loop core holds no database handles, sockets or simulators: it talks to these four protocols only, so
every world runs the very same loop and policy code. What a world implements:

- :class:`Clock`: the time (integer seconds since the run started) and a way to be called back at a time.
  The twin's clock is its event kernel; the live plane's is wall time on an event loop; tests advance one.
- :class:`FleetView`: an immutable :class:`~superfactory.domain.fleet.FleetSnapshot` of what it can measure.
- :class:`Actuator`: carries out a plan and returns the outcome of each action it settled at once; outcomes
  it learns later (an agent answering, a deadline passing) go to :meth:`DecisionLoop.report_outcome`.
- :class:`EventSink`: receives domain events in the order they happen (the loop emits action outcomes and
  shadow decisions through it; the world emits everything else).

A world also tells the loop when its state changed (:meth:`DecisionLoop.request`), so event-driven policies
decide promptly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from superfactory.domain.events import Event
from superfactory.domain.fleet import FleetSnapshot, Plan
from superfactory.domain.outcome import ActionOutcome


class Clock(Protocol):
    """Time and wake-ups."""

    def now_s(self) -> int:
        """Current time, integer seconds since the run started (simulated or wall)."""
        ...

    def call_at(self, time_s: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` at ``time_s`` (>= now), after everything else the world does at that instant;
        callbacks due at the same instant run in the order they were registered."""
        ...


class FleetView(Protocol):
    """Builds an immutable snapshot of the fleet for the policies."""

    def snapshot(self) -> FleetSnapshot: ...


class Actuator(Protocol):
    """Carries out a plan's actions in order.

    Returns the outcomes it settled at once (any order, at most one per action id). An action left without an
    outcome is in flight; the world must report its outcome later through ``DecisionLoop.report_outcome``.
    """

    def apply(self, plan: Plan) -> Sequence[ActionOutcome]: ...


class EventSink(Protocol):
    """Receives domain events in the order they happen."""

    def emit(self, event: Event) -> None: ...
