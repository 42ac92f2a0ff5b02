"""A second world for the decision loop: not the twin.

- :class:`ManualClock`: time moves only when the test calls :meth:`ManualClock.advance_to`.
- :class:`MemoryWorld`: an in-memory store of nodes, jobs and inference replicas. Jobs progress one productive
  second per second while running, start at once, and finish when their work is done; preemption and migration
  take effect at once (no checkpoints, no failures). It is the FleetView and the Actuator.
- Its actuator refuses a share ``refuse_share`` of actions and leaves a share ``timeout_share`` unanswered until
  ``timeout_s`` has passed (then reports ``timed_out``; the action is not carried out). Both draws come from its
  own seeded generator; :attr:`MemoryWorld.faulty_until_s` ends the faults.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from superfactory.domain.events import Event
from superfactory.domain.factory import Factory, WanLink
from superfactory.domain.fleet import (
    NODE_BUSY,
    NODE_FREE,
    Allocate,
    FactoryState,
    FleetSnapshot,
    JobView,
    Migrate,
    Place,
    Plan,
    Preempt,
    SyncWeights,
)
from superfactory.domain.inference import WEIGHTS_ABSENT, WEIGHTS_PRESENT, InferenceState, PopDemand, ServiceProfile
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import MOVABLE, JobLifecycle
from superfactory.domain.outcome import ActionOutcome, OutcomeStatus


class ManualClock:
    """A clock the test advances; callbacks run in (time, registration) order."""

    def __init__(self) -> None:
        self.t = 0
        self._q: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now_s(self) -> int:
        return self.t

    def call_at(self, time_s: int, callback: Callable[[], None]) -> None:
        assert time_s >= self.t, "a callback in the past"
        heapq.heappush(self._q, (time_s, next(self._seq), callback))

    def advance_to(self, t: int, world: MemoryWorld) -> None:
        """Move time to ``t``, letting the world evolve and running due callbacks in order."""
        while self._q and self._q[0][0] <= t:
            when, _, cb = heapq.heappop(self._q)
            world.evolve(when)
            self.t = when
            cb()
        world.evolve(t)
        self.t = t


@dataclass
class _Job:
    job: TrainingJob
    state: JobLifecycle = JobLifecycle.PENDING
    factory: int = -1
    nodes: tuple[int, ...] = ()
    progress_s: float = 0.0
    since_s: int = 0
    waiting_since_s: int = 0
    submitted: bool = False
    completed_s: int = -1


@dataclass
class MemoryWorld:
    """See the module docstring."""

    factories: tuple[Factory, ...]
    links: tuple[WanLink, ...]
    jobs: tuple[TrainingJob, ...]
    clock: ManualClock
    refuse_share: float = 0.0
    timeout_share: float = 0.0
    timeout_s: int = 120
    faulty_until_s: int = 0
    seed: int = 0
    service: ServiceProfile | None = None
    rate_rps: float = 0.0
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.status = [np.zeros(f.nodes, dtype=np.uint8) for f in self.factories]
        self.reserved = [np.zeros(f.nodes, dtype=bool) for f in self.factories]
        self.store = {j.id: _Job(j) for j in self.jobs}
        self.rng = np.random.default_rng(self.seed)
        self.request: Callable[[], None] = lambda: None
        self.report: Callable[[ActionOutcome], None] = lambda o: None
        self.timeouts: list[tuple[int, ActionOutcome]] = []
        self.replicas: dict[tuple[str, int], list[tuple[int, ...]]] = {}
        self.allocation: dict[tuple[str, str, str], int] = {}
        self.weights: dict[tuple[str, str], str] = {}
        if self.service is not None:
            for f in self.factories:
                self.weights[(self.service.service.id, f.id)] = WEIGHTS_PRESENT if f is self.factories[0] \
                    else WEIGHTS_ABSENT
        self.applied = 0
        self.refused = 0
        self.timed_out = 0

    # == time =================================================================================================
    def evolve(self, t: int) -> None:
        """Advance jobs to time ``t``: submissions, progress, completions, and timeouts that fall due."""
        changed = False
        for r in self.store.values():
            if not r.submitted and r.job.submit_s <= t:
                r.submitted, r.waiting_since_s = True, r.job.submit_s
                changed = True
            if r.state is JobLifecycle.RUNNING:
                r.progress_s += t - r.since_s
                r.since_s = t
                if r.progress_s >= r.job.work_s:
                    r.progress_s = r.job.work_s
                    self._release(r)
                    r.state, r.completed_s = JobLifecycle.COMPLETED, t
                    changed = True
        for due, o in list(self.timeouts):
            if due <= t:
                self.timeouts.remove((due, o))
                self.timed_out += 1
                self.report(ActionOutcome(o.action_id, OutcomeStatus.TIMED_OUT, o.job_id, o.factory_id,
                                          "agent did not answer", due))
                changed = True
        if changed:
            self.request()

    # == FleetView ============================================================================================
    def snapshot(self) -> FleetSnapshot:
        now = self.clock.now_s()
        hour = now // 3600
        states = tuple(
            FactoryState(f.id, True, self.status[i].tobytes(), self.price(i, hour), 300.0, self._it_w(i))
            for i, f in enumerate(self.factories))
        pending = tuple(self._view(r, now) for r in self.store.values()
                        if r.submitted and r.state is JobLifecycle.PENDING)
        running = tuple(self._view(r, now) for r in self.store.values() if r.state is JobLifecycle.RUNNING)
        prices = {f.market: tuple(self.price(i, h) for h in range(hour + 1)) for i, f in enumerate(self.factories)}
        carbon = {f.grid: (300.0,) * (hour + 1) for f in self.factories}
        return FleetSnapshot(now, self.factories, states, self.links, pending, running, prices, carbon,
                             self._inference())

    def price(self, i: int, hour: int) -> float:
        """A day-shaped price, USD/MWh: 50 +- 20, each factory's peak 6 h after the previous one's."""
        return 50.0 + 20.0 * float(np.sin(2 * np.pi * (hour + 6 * i) / 24))

    def _it_w(self, i: int) -> float:
        busy = int(np.count_nonzero(self.status[i] == NODE_BUSY))
        s = self.factories[i].clusters[0].system
        return busy * s.training_power_per_node_w + (self.factories[i].nodes - busy) * s.idle_power_per_node_w

    def _view(self, r: _Job, now: int) -> JobView:
        progress = r.progress_s + (now - r.since_s if r.state is JobLifecycle.RUNNING else 0)
        fid = self.factories[r.factory].id if r.factory >= 0 else None
        return JobView(r.job, fid, r.nodes, progress, r.waiting_since_s if r.state is JobLifecycle.PENDING else -1,
                       state=r.state)

    def _inference(self) -> InferenceState | None:
        if self.service is None:
            return None
        sid = self.service.service.id
        hist = (self.rate_rps,) * 60
        return InferenceState((self.service,), (PopDemand(sid, "edge", hist),),
                              {("edge", f.id): 5.0 for f in self.factories}, dict(self.allocation),
                              dict(self.weights),
                              {(sid, f.id): len(self.replicas.get((sid, i), [])) for i, f in enumerate(self.factories)})

    # == Actuator =============================================================================================
    def apply(self, plan: Plan) -> list[ActionOutcome]:
        now = self.clock.now_s()
        out: list[ActionOutcome] = []
        for a in plan.actions:
            fid = getattr(a, "factory_id", "")
            if now < self.faulty_until_s:
                u = self.rng.random()
                if u < self.refuse_share:
                    self.refused += 1
                    out.append(ActionOutcome(a.action_id, OutcomeStatus.REFUSED, a.job_id, fid, "agent refused", now))
                    continue
                if u < self.refuse_share + self.timeout_share:
                    self.timeouts.append((now + self.timeout_s, ActionOutcome(a.action_id, OutcomeStatus.TIMED_OUT,
                                                                              a.job_id, fid)))
                    continue
            why = self._carry_out(a)
            status = OutcomeStatus.APPLIED if why is None else OutcomeStatus.REFUSED
            self.applied += why is None
            out.append(ActionOutcome(a.action_id, status, a.job_id, fid, why or "", now))
        return out

    def _carry_out(self, a: object) -> str | None:
        now = self.clock.now_s()
        if isinstance(a, Place | Migrate):
            r = self.store[a.job_id]
            want = JobLifecycle.PENDING if isinstance(a, Place) else JobLifecycle.RUNNING
            if r.state is not want:
                return f"job is {r.state.value}"
            fi = next(i for i, f in enumerate(self.factories) if f.id == a.factory_id)
            if not r.job.sovereignty <= self.factories[fi].clearances:
                return "sovereignty"
            idx = np.asarray(a.nodes, dtype=np.intp)
            if np.any(self.status[fi][idx] != NODE_FREE):
                return "nodes not free"
            if isinstance(a, Migrate):
                self._release(r)
                r.progress_s += now - r.since_s
            self.status[fi][idx] = NODE_BUSY
            r.state, r.factory, r.nodes, r.since_s = JobLifecycle.RUNNING, fi, a.nodes, now
            return None
        if isinstance(a, Preempt):
            r = self.store[a.job_id]
            if r.state not in MOVABLE:
                return f"job is {r.state.value}"
            r.progress_s += now - r.since_s
            self._release(r)
            r.state, r.waiting_since_s = JobLifecycle.PENDING, now
            self.request()
            return None
        if isinstance(a, SyncWeights):
            self.weights[(a.job_id, a.factory_id)] = WEIGHTS_PRESENT
            return None
        if isinstance(a, Allocate):
            assert self.service is not None
            for k in [k for k in self.allocation if k[0] == a.job_id]:
                del self.allocation[k]
            for pop, f_id, n in a.replicas:
                self.allocation[(a.job_id, pop, f_id)] = n
            npr = self.service.nodes_per_replica
            for fi, f in enumerate(self.factories):
                want = sum(n for (s, _, x), n in self.allocation.items() if s == a.job_id and x == f.id)
                reps = self.replicas.setdefault((a.job_id, fi), [])
                while len(reps) > want:
                    self._unreserve(fi, reps.pop())
                free = np.flatnonzero(self.status[fi] == NODE_FREE)
                while len(reps) < want and free.size >= npr:
                    nodes, free = free[:npr], free[npr:]
                    self.status[fi][nodes] = NODE_BUSY
                    self.reserved[fi][nodes] = True
                    reps.append(tuple(int(n) for n in nodes))
            return None
        raise AssertionError(f"unknown action {a!r}")

    def _unreserve(self, fi: int, nodes: tuple[int, ...]) -> None:
        idx = np.asarray(nodes, dtype=np.intp)
        self.reserved[fi][idx] = False
        self.status[fi][idx] = NODE_FREE
        self.request()

    def _release(self, r: _Job) -> None:
        if r.factory >= 0:
            self.status[r.factory][np.asarray(r.nodes, dtype=np.intp)] = NODE_FREE
        r.factory, r.nodes = -1, ()
        self.request()

    # == checks ===============================================================================================
    def leaks(self) -> list[str]:
        """Capacity held by nobody: busy nodes that no running job or replica holds, and the reverse."""
        problems = []
        for fi, f in enumerate(self.factories):
            held = np.zeros(f.nodes, dtype=bool)
            for r in self.store.values():
                if r.factory == fi:
                    held[list(r.nodes)] = True
            for (_, x), reps in self.replicas.items():
                if x == fi:
                    for nodes in reps:
                        held[list(nodes)] = True
            busy = self.status[fi] == NODE_BUSY
            if np.any(busy & ~held):
                problems.append(f"{f.id}: {int(np.count_nonzero(busy & ~held))} busy nodes nobody holds")
            if np.any(self.reserved[fi] & ~busy):
                problems.append(f"{f.id}: reserved nodes marked free")
        return problems

    def finished(self) -> set[str]:
        return {k for k, r in self.store.items() if r.state is JobLifecycle.COMPLETED}
