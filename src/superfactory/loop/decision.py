"""The decision loop: owns *when* to decide, runs the policies of every role, applies plans, routes outcomes.

:class:`DecisionLoop` is world-agnostic: it talks to a world only through the ports of :mod:`.ports`.

When to decide:
- **Event-driven**: a world calls :meth:`DecisionLoop.request` after any state change (arrival, failure,
  completion, repair, outage, price change). Requests are de-duplicated per instant: however many state
  changes happen at one time, each event-driven policy decides once, after all of them (the loop asks the
  :class:`~.ports.Clock` to call it back at that instant, after the world's own work).
- **Periodic**: a policy with ``cycle_s > 0`` gets a cycle every ``cycle_s`` from the loop's start; before the
  snapshot is built the loop asks ``policy.wants_cycle(now_s)``, so a quiet tick costs nothing.

Roles and precedence: one *acting* policy per role. At an instant the loop runs the due roles in ascending
precedence (:data:`~superfactory.policy.registry.ROLES`: inference before training); each decides on a fresh
snapshot taken after the previous role's plan was applied, so inference's ``Preempt`` and reserved nodes are
what training then sees. Plans never conflict over a node: a later role cannot see what an earlier one took.

Shadows: a *shadow* policy of a role decides on exactly the snapshot its role's acting policy just saw. Its
plan is recorded (``ShadowAction`` events and :attr:`DecisionLoop.shadow_stats`) and scored against the
acting plan (share of its actions the acting policy also took), never applied: the basis of a canary rollout.

Action ids and outcomes: the loop stamps every action with ``"<policy>:<decision>:<index>"`` (shadows:
``"shadow/<policy>:..."``), applies the plan, emits one ``Action*`` event per outcome, and hands each outcome
to the policy that emitted the action (:meth:`Policy.observe`). Outcomes the actuator settles later arrive
through :meth:`DecisionLoop.report_outcome`.

Randomness: every policy gets its own generator, seeded from the same :class:`numpy.random.SeedSequence`; a
shadow copy of the acting policy therefore decides exactly as it does (agreement 1.0 is a sanity check).

The loop remembers why each job waits (``--explain`` and the API answer "why is my job not scheduled").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from superfactory.domain.events import Event, EventKind
from superfactory.domain.fleet import Action, FleetSnapshot, LazyViews, Place, Plan
from superfactory.domain.outcome import ActionOutcome, outcome_event
from superfactory.loop.ports import Actuator, Clock, EventSink, FleetView
from superfactory.policy.registry import ROLES, Policy

SHADOW_PREFIX = "shadow/"


@dataclass(slots=True)
class ShadowStats:
    """How a shadow policy's plans compare with the acting policy's (see the module docstring).

    Attributes:
        decisions: decisions the shadow made.
        actions: actions it decided in total; ``by_kind`` splits them by action type.
        agreed: of those, actions the acting policy also took in the same decision (ids ignored).
        acting_actions: actions the acting policy took in the same decisions.
        waiting: sum over decisions of the jobs the shadow left waiting.
    """

    policy: str
    role: str
    decisions: int = 0
    actions: int = 0
    agreed: int = 0
    acting_actions: int = 0
    waiting: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def agreement(self) -> float:
        """Share of the shadow's actions the acting policy also took (1.0 when neither acted)."""
        return self.agreed / self.actions if self.actions else (1.0 if self.acting_actions == 0 else 0.0)


@dataclass(slots=True)
class _Slot:
    policy: Policy
    rng: np.random.Generator
    precedence: int
    prefix: str
    shadow: bool = False
    next_cycle_s: int = -1
    dirty: bool = False
    decisions: int = 0
    planned_s: int = -1  # the periodic wake-up asked of the clock for this slot (exact clocks: _plan)


def _strip(a: Action) -> Action:
    return dataclasses.replace(a, action_id="")


#: the fields :func:`_stamp` passes positionally (checked here: a new field must be added there too)
_PLACE_FIELDS = ("job_id", "factory_id", "nodes", "hot_swap", "action_id")
_PLAN_FIELDS = ("actions", "waiting", "refusals", "forecasts")
if (tuple(f.name for f in dataclasses.fields(Place)) != _PLACE_FIELDS
        or tuple(f.name for f in dataclasses.fields(Plan)) != _PLAN_FIELDS):  # pragma: no cover - a domain change
    raise ImportError("loop/decision.py stamps Place and Plan field by field; their fields changed")


def _stamp(plan: Plan, prefix: str) -> Plan:
    """``plan`` with its actions' ids set to ``"<prefix>:<index>"``: ``dataclasses.replace`` of each action and of
    the plan, except that a ``Place`` (every placement of the greedy family) and a ``Plan`` are built by their
    constructors directly (issue 12: ``replace`` walks the fields at each call, ~2x the constructor's cost; the
    same objects)."""
    if not plan.actions:
        return plan
    acts = tuple(Place(a.job_id, a.factory_id, a.nodes, a.hot_swap, f"{prefix}:{i}") if type(a) is Place
                 else dataclasses.replace(a, action_id=f"{prefix}:{i}") for i, a in enumerate(plan.actions))
    if type(plan) is Plan:
        return Plan(acts, plan.waiting, plan.refusals, plan.forecasts)
    return dataclasses.replace(plan, actions=acts)  # pragma: no cover - Plan is final in practice


class DecisionLoop:
    """observe -> decide -> act over the ports, for a set of policies with roles (and shadows).

    Args:
        policies: the acting policies, at most one per role.
        view, actuator, clock, sink: the world's ports.
        seed: seeds every policy's random generator (see the module docstring).
        shadows: policies that decide but never act; each needs an acting policy of its role.

    Attributes:
        waiting_reasons: latest reason per waiting job id.
        reason_history: per job, ``(time_s, reason)`` each time its waiting reason changed (at most
            ``MAX_REASONS_PER_JOB`` kept, the earliest ones), so ``--explain`` can tell the whole story.
        cycles: decisions made by acting policies.
        decisions_by_policy: acting decisions per policy name.
        shadow_stats: per shadow policy name, its :class:`ShadowStats`.
        outcomes: outcome counts by status value, over every action applied.
    """

    MAX_REASONS_PER_JOB = 40

    def __init__(self, policies: Sequence[Policy], view: FleetView, actuator: Actuator, clock: Clock,
                 sink: EventSink, seed: np.random.SeedSequence | int = 0, shadows: Sequence[Policy] = ()) -> None:
        self.view = view
        self.actuator = actuator
        self.clock = clock
        self.sink = sink
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        roles: set[str] = set()
        self._slots: list[_Slot] = []
        for p in policies:
            if p.role not in ROLES:
                raise ValueError(f"policy {p.name!r}: unknown role {p.role!r}")
            if p.role in roles:
                raise ValueError(f"two acting policies for role {p.role!r}")
            roles.add(p.role)
            self._slots.append(_Slot(p, np.random.default_rng(ss), ROLES[p.role], p.name))
        self._slots.sort(key=lambda s: s.precedence)
        self._shadows: dict[str, list[_Slot]] = {}
        for p in shadows:
            if p.role not in roles:
                raise ValueError(f"shadow policy {p.name!r}: no acting policy for role {p.role!r}")
            self._shadows.setdefault(p.role, []).append(
                _Slot(p, np.random.default_rng(ss), ROLES[p.role], SHADOW_PREFIX + p.name, shadow=True))
        self._wakes: set[int] = set()
        #: the clock calls back exactly at the instant asked (a simulated clock): quiet periodic ticks are then
        #: checked ahead instead of each being a wake-up of its own (:meth:`_plan`)
        self._exact = bool(getattr(clock, "exact", False))
        self._in_flight: dict[str, _Slot] = {}
        self._started = False
        self.waiting_reasons: dict[str, str] = {}
        self.reason_history: dict[str, list[tuple[int, str]]] = {}
        self.cycles = 0
        self.decisions_by_policy: dict[str, int] = {}
        self.shadow_stats: dict[str, ShadowStats] = {
            s.policy.name: ShadowStats(s.policy.name, s.policy.role) for ss_ in self._shadows.values() for s in ss_}
        self.outcomes: dict[str, int] = {}

    # == what the world calls =================================================================================
    @property
    def policies(self) -> tuple[Policy, ...]:
        """The acting policies, in precedence order."""
        return tuple(s.policy for s in self._slots)

    @property
    def periodic(self) -> bool:
        """Whether an event-driven acting policy also has a periodic cycle (it may then care about every price
        change even with no job waiting)."""
        return any(s.policy.event_driven and s.policy.cycle_s > 0 for s in self._slots)

    def start(self) -> None:
        """Schedule the first periodic cycle of every periodic policy at the clock's current time."""
        if self._started:
            return
        self._started = True
        now = self.clock.now_s()
        for s in self._slots:
            if s.policy.cycle_s > 0:
                s.next_cycle_s = s.planned_s = now
                self._schedule(now)

    def request(self, role: str | None = None) -> None:
        """The world's state changed: every event-driven policy decides once at this instant. With ``role``,
        only that role's acting policy does (event-driven or not): the world tells it that its own inputs
        changed (e.g. new WAN transfers for the ``wan`` role) without waking the others."""
        any_dirty = False
        for s in self._slots:
            if s.policy.role == role if role is not None else s.policy.event_driven:
                s.dirty = any_dirty = True
        if any_dirty:
            self._schedule(self.clock.now_s())

    def report_outcome(self, outcome: ActionOutcome) -> None:
        """An action in flight settled (the world learnt it after ``apply`` returned)."""
        slot = self._in_flight.pop(outcome.action_id, None)
        if slot is None:
            raise KeyError(f"outcome for unknown or already settled action {outcome.action_id!r}")
        self._settle(slot, (outcome,))
        if self._exact and slot.policy.cycle_s > 0 and not slot.shadow:
            self._plan(slot, self.clock.now_s())  # observe may change what its wants_cycle answers

    def step(self) -> Plan:
        """Run every acting policy once now, in precedence order, regardless of schedules (tests, tools);
        returns the last plan applied."""
        plan = Plan()
        for s in self._slots:
            plan = self._decide(s)
        return plan

    @property
    def in_flight(self) -> int:
        """Actions applied whose outcome is not known yet."""
        return len(self._in_flight)

    # == internals ===========================================================================================
    def _schedule(self, t: int) -> None:
        if t not in self._wakes:
            self._wakes.add(t)
            self.clock.call_at(t, partial(self._wake, t))

    def _wake(self, t: int) -> None:
        self._wakes.discard(t)
        now = self.clock.now_s()
        if self._exact:
            self._wake_exact(now)
            return
        for s in self._slots:
            cycle = s.policy.cycle_s
            periodic_due = cycle > 0 and 0 <= s.next_cycle_s <= now
            if periodic_due:
                s.next_cycle_s = now + cycle
                self._schedule(s.next_cycle_s)
            if s.dirty or (periodic_due and s.policy.wants_cycle(now)):
                self._decide(s)

    #: grid ticks :meth:`_plan` checks ahead at most before it asks for a wake-up anyway
    PLAN_AHEAD = 16

    def _wake_exact(self, now: int) -> None:
        """:meth:`_wake` on an exact clock (issue 12). A periodic slot's ticks stay on their grid (start +
        k * ``cycle_s``, the clock calls back exactly then), but a wake-up is asked only for the first tick where
        ``wants_cycle`` answers yes (:meth:`_plan`); the ticks before it are *quiet*: with the policy's state as
        it is, ``wants_cycle`` said no there, and a quiet tick does nothing else (a geo fleet-year had ~10^6 of
        them, one kernel event each). A wake-up at any instant first passes the quiet ticks before now; one at a
        grid instant is that tick, exactly as before. ``wants_cycle`` is therefore asked ahead of time: it must
        answer from ``now_s`` and the state ``decide`` and ``observe`` leave (every policy's does), and after
        either of them the ticks ahead are checked again."""
        for s in self._slots:
            cycle = s.policy.cycle_s
            periodic_due = False
            nxt = s.next_cycle_s
            if cycle > 0 and 0 <= nxt <= now:
                if nxt < now:  # quiet ticks passed (wants_cycle said no at each)
                    nxt += (now - nxt) // cycle * cycle
                if nxt == now:
                    periodic_due = True
                    nxt += cycle
                else:
                    nxt += cycle
                s.next_cycle_s = nxt
            if s.dirty or (periodic_due and s.policy.wants_cycle(now)):
                self._decide(s)  # (plans the ticks ahead again)
            elif cycle > 0 and 0 <= s.planned_s <= now:
                self._plan(s, now)  # this was the planned wake-up: plan the next one

    def _plan(self, s: _Slot, now: int) -> None:
        """Ask for slot ``s``'s next periodic wake-up on an exact clock: at the first tick from now on where its
        policy wants a cycle, or :attr:`PLAN_AHEAD` ticks on (then it looks again), or at the wake-up already
        asked for when that comes first (it looks again there). See :meth:`_wake_exact`."""
        cycle = s.policy.cycle_s
        t = s.next_cycle_s
        if cycle <= 0 or t < 0:
            return
        if t < now:  # quiet ticks passed
            t += -(-(now - t) // cycle) * cycle
        wants = s.policy.wants_cycle
        stop = s.planned_s
        if stop < t or stop not in self._wakes:  # no wake-up ahead yet (the planned one is this one, or past)
            stop = t + self.PLAN_AHEAD * cycle
        while t < stop and not wants(t):
            t += cycle
        s.planned_s = t
        self._schedule(t)

    def _decide(self, s: _Slot) -> Plan:
        s.dirty = False
        snapshot = self.view.snapshot()
        plan = s.policy.decide(snapshot, s.rng)
        if plan.actions:  # (the prefix string only when there is something to stamp)
            plan = _stamp(plan, f"{s.prefix}:{s.decisions}")
        s.decisions += 1
        self.cycles += 1
        name = s.policy.name
        self.decisions_by_policy[name] = self.decisions_by_policy.get(name, 0) + 1
        for a in plan.actions:
            self._in_flight[a.action_id] = s
        shadows = self._shadows.get(s.policy.role, ())
        if shadows and isinstance(snapshot.running, LazyViews):
            snapshot.running.items()  # shadows decide on this snapshot after the plan is applied: build it now
        outcomes = self.actuator.apply(plan)
        self._settle(s, outcomes, pop=True)
        self._note_waiting(snapshot.now_s, plan)
        for sh in shadows:
            self._shadow(sh, snapshot, plan)
        if self._exact and s.policy.cycle_s > 0:
            self._plan(s, snapshot.now_s)  # its state moved: check the ticks ahead again
        return plan

    def _settle(self, s: _Slot, outcomes: Sequence[ActionOutcome], pop: bool = False) -> None:
        for o in outcomes:
            if pop:
                self._in_flight.pop(o.action_id, None)
            self.outcomes[o.status.value] = self.outcomes.get(o.status.value, 0) + 1
            self.sink.emit(outcome_event(o))
        if outcomes:
            s.policy.observe(outcomes)

    def _note_waiting(self, now_s: int, plan: Plan) -> None:
        reasons = self.waiting_reasons
        get = reasons.get
        for job_id, reason in plan.waiting:
            if get(job_id) != reason:  # unchanged (the usual case at fleet scale): nothing to write
                hist = self.reason_history.setdefault(job_id, [])
                if len(hist) < self.MAX_REASONS_PER_JOB:
                    hist.append((now_s, reason))
                reasons[job_id] = reason
        for action in plan.actions:
            reasons.pop(action.job_id, None)

    def _shadow(self, sh: _Slot, snapshot: FleetSnapshot, acting: Plan) -> None:
        plan = _stamp(sh.policy.decide(snapshot, sh.rng), f"{sh.prefix}:{sh.decisions}")
        sh.decisions += 1
        st = self.shadow_stats[sh.policy.name]
        st.decisions += 1
        st.actions += len(plan.actions)
        st.acting_actions += len(acting.actions)
        st.waiting += len(plan.waiting)
        taken = [_strip(a) for a in acting.actions]
        for a in plan.actions:
            kind = type(a).__name__
            st.by_kind[kind] = st.by_kind.get(kind, 0) + 1
            bare = _strip(a)
            if bare in taken:
                taken.remove(bare)
                st.agreed += 1
            self.sink.emit(Event(snapshot.now_s, EventKind.SHADOW_ACTION, a.job_id, getattr(a, "factory_id", ""),
                                 cause=kind, value=float(len(getattr(a, "nodes", ()))), action=a.action_id))
