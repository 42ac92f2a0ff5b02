"""Ports between the decision loop and a world (the twin or the live control plane).

The loop core holds no database handles, sockets or simulators: it talks to these four protocols only, so
the twin and the live plane run the very same loop and policy code (the flaw DESIGN.md warns about in
Armada's simulator does not arise).
"""

from __future__ import annotations

from typing import Protocol

from superfactory.domain.events import Event
from superfactory.domain.fleet import FleetSnapshot, Plan


class Clock(Protocol):
    """Current time in integer seconds since the run started (simulated or wall)."""

    def now_s(self) -> int: ...


class FleetView(Protocol):
    """Builds an immutable snapshot of the fleet for the policy."""

    def snapshot(self) -> FleetSnapshot: ...


class Actuator(Protocol):
    """Carries out a plan's actions; returns nothing, reports effects as events."""

    def apply(self, plan: Plan) -> None: ...


class EventSink(Protocol):
    """Receives domain events in the order they happen."""

    def emit(self, event: Event) -> None: ...
