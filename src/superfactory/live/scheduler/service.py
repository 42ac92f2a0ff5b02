"""The scheduler service: the registered policies run through :class:`~superfactory.loop.decision.DecisionLoop`
against the store, on wall-clock time.

- :class:`CallbackClock` is the loop's :class:`~superfactory.loop.ports.Clock`: fleet time from the live clock
  and a heap of callbacks that :meth:`SchedulerService.tick` runs when due.
- :class:`StoreSink` records the loop's events: action outcomes and shadow decisions go to the ``actions``
  table (every action a policy proposed and what became of it).
- :class:`SchedulerService` builds the loop for the policy chosen in the store (``meta.policy``), and each
  :meth:`tick` (the server's scheduler thread calls it every fraction of a second) does, if this process holds
  the scheduler lock: sweep leases (long timeout -> requeue), tell the loop the world changed when something
  was submitted or ``cycle_s`` passed, and run the loop's due callbacks. Only one process schedules at a
  time: the lock is itself a lease in the ``locks`` table.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from superfactory.domain.events import Event
from superfactory.domain.fleet import Plan
from superfactory.errors import PolicyError
from superfactory.live.context import Live
from superfactory.live.errors import ApiError
from superfactory.live.scheduler.actuator import StoreActuator
from superfactory.live.scheduler.view import StoreFleetView
from superfactory.live.services.fleet import sweep_leases
from superfactory.live.store import tables as t
from superfactory.loop.decision import DecisionLoop
from superfactory.policy.registry import Policy, UnknownPolicyError, make_policy

log = logging.getLogger("superfactory.live.scheduler")
LOCK_S = 10.0


class CallbackClock:
    """Fleet time plus callbacks run by :meth:`run_due` (in the scheduler thread)."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now_s(self) -> int:
        return self.live.clock.now_s()

    def call_at(self, time_s: int, callback: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (time_s, next(self._seq), callback))

    def run_due(self) -> int:
        """Run every callback due by now (in time, then registration order); returns how many ran."""
        n = 0
        while self._heap and self._heap[0][0] <= self.now_s():
            _, _, cb = heapq.heappop(self._heap)
            cb()
            n += 1
        return n


class StoreSink:
    """The loop's EventSink. Action outcomes are already in the ``actions`` table (the actuator writes them in
    the transaction that applies them); shadow decisions are buffered here and written by :meth:`flush`, once
    per scheduler pass."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.pending: list[dict[str, Any]] = []

    def emit(self, event: Event) -> None:
        kind = event.kind.value if hasattr(event.kind, "value") else str(event.kind)
        if not event.action or kind.startswith("Action"):
            return
        self.pending.append({"policy": event.action.rsplit(":", 2)[0], "action_id": event.action, "kind": kind,
                             "job_id": event.job, "factory_id": event.factory or None, "outcome": "shadow",
                             "reason": event.cause, "at_unix_s": self.live.clock.unix_s()})

    def flush(self) -> None:
        if self.pending:
            rows, self.pending = self.pending, []
            with self.live.engine.begin() as conn:
                conn.execute(t.actions.insert(), rows)


def build_policy(name: str, params: dict[str, Any]) -> Policy:
    try:
        return make_policy(name, **params)
    except UnknownPolicyError as e:
        raise ApiError(422, "unknown_policy", str(e.args[0])) from None
    except (TypeError, ValueError, PolicyError) as e:
        raise ApiError(422, "invalid_policy_params", f"policy {name!r}: bad parameters: {e}") from None


def active_policy(live: Live) -> dict[str, Any]:
    with live.engine.connect() as conn:
        raw = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "policy")).scalar()
    return json.loads(raw) if raw else {"name": live.settings.default_policy, "params": {}}


class SchedulerService:
    """Runs the loop for the store's fleet (see the module docstring)."""

    def __init__(self, live: Live, seed: int = 0) -> None:
        self.live = live
        self.holder = f"{uuid.uuid4().hex[:12]}"
        self.seed = seed
        self.view = StoreFleetView(live)
        self.actuator = StoreActuator(live)
        self.clock = CallbackClock(live)
        self.sink = StoreSink(live)
        self.loop: DecisionLoop | None = None
        self._policy_key = ""
        self._last_request_unix = -1e18
        self._held_until = -1e18
        self.lock = threading.Lock()

    def _ensure_loop(self) -> DecisionLoop:
        spec = active_policy(self.live)
        key = json.dumps(spec, sort_keys=True)
        if self.loop is None or key != self._policy_key:
            policy = build_policy(spec["name"], spec.get("params", {}))
            self.clock = CallbackClock(self.live)
            self.loop = DecisionLoop([policy], self.view, self.actuator, self.clock, self.sink, self.seed)
            self.loop.start()
            self._policy_key = key
        return self.loop

    def is_leader(self) -> bool:
        """Take or renew the scheduler lock (a lease of ``LOCK_S``); True if this process holds it. A lock held
        for more than half its term more is not renewed yet (no store write on most passes)."""
        now = self.live.clock.unix_s()
        if now < self._held_until - LOCK_S / 2:
            return True
        with self.live.engine.begin() as conn:
            n = conn.execute(t.locks.update().where(
                t.locks.c.name == "scheduler",
                sa.or_(t.locks.c.holder == self.holder, t.locks.c.expires_unix_s < now),
            ).values(holder=self.holder, expires_unix_s=now + LOCK_S)).rowcount
            if not n:
                try:
                    with conn.begin_nested():
                        conn.execute(t.locks.insert().values(name="scheduler", holder=self.holder,
                                                             expires_unix_s=now + LOCK_S))
                except sa.exc.IntegrityError:
                    self._held_until = -1e18
                    return False
        self._held_until = now + LOCK_S
        return True

    def tick(self) -> bool:
        """One pass of the scheduler thread; returns whether this process is the scheduler."""
        with self.lock:
            if not self.is_leader():
                self.live.wake.clear()  # the leader (another process) schedules; do not spin on our wake-ups
                return False
            sweep_leases(self.live)
            loop = self._ensure_loop()
            now = self.live.clock.unix_s()
            if self.live.wake.is_set() or now - self._last_request_unix >= self.live.settings.cycle_s:
                self.live.wake.clear()
                self._last_request_unix = now
                loop.request()
            self.clock.run_due()
            self.sink.flush()
            return True

    def cycle(self) -> Plan:
        """Decide and act once now (tools, tests, the benchmark), whatever the schedule."""
        with self.lock:
            sweep_leases(self.live)
            plan = self._ensure_loop().step()
            self.sink.flush()
            return plan

    def run(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        """The scheduler thread: tick until ``stop`` is set; errors are logged, never fatal."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a store hiccup must not kill the scheduler; it retries next tick
                log.exception("scheduler tick failed")
            self.live.wake.wait(interval_s)
