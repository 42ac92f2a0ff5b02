"""The simulated fleet: job lifecycle, failures, outages and energy accounting on the event kernel.

:class:`SimulatedFleet` is the twin's implementation of the loop ports: it builds snapshots
(:class:`~superfactory.loop.ports.FleetView`), carries out plans (:class:`~superfactory.loop.ports.Actuator`)
and emits domain events. Invalid plans (a node that is not free, a job that is not pending, too few GPUs) are
policy bugs and raise :class:`~superfactory.errors.SimulationError` with the offending action, so property
tests catch them instead of silently corrupting capacity.
"""

from __future__ import annotations

import heapq
import math
import operator
from array import array
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from superfactory.domain.events import Event, EventKind
from superfactory.domain.factory import Factory, WanLink
from superfactory.domain.fleet import (
    NODE_DOWN,
    NODE_FREE,
    Allocate,
    FactoryState,
    FleetSnapshot,
    JobView,
    LazyViews,
    LinkProbe,
    Migrate,
    Place,
    Plan,
    Preempt,
    SwapNodes,
    SyncWeights,
)
from superfactory.domain.job import TrainingJob
from superfactory.domain.outcome import ActionOutcome, OutcomeStatus
from superfactory.domain.reliability import FailureModel
from superfactory.domain.signals import StepSeries
from superfactory.domain.topology import FactoryTopology, topology_of
from superfactory.domain.units import HOUR_S
from superfactory.errors import SimulationError
from superfactory.models.collective import nodes_array, placement_throughput
from superfactory.scenario.seeds import child_seed
from superfactory.sim.accounting import AccountingMixin
from superfactory.sim.checkpoints import CheckpointMixin
from superfactory.sim.factorystate import FactoryRuntime, HourRow
from superfactory.sim.failures import FactoryFailureProcess
from superfactory.sim.hotswap import swap_nodes
from superfactory.sim.invariants import InvariantsMixin
from superfactory.sim.jobstate import JobRuntime, JobState
from superfactory.sim.kernel import PRIO_FAILURE, PRIO_JOB, PRIO_SIGNAL, Kernel
from superfactory.sim.migration import MigrationMixin
from superfactory.sim.records import new_event, new_factory_state, new_job_view, new_outcome, new_snapshot
from superfactory.sim.reserved import ReservedCapacityMixin

if TYPE_CHECKING:
    from superfactory.sim.inference import ServingActuator
    from superfactory.sim.wan_replication import CheckpointReplication

_heappush = heapq.heappush
_first = operator.itemgetter(0)
_RUNNING, _PENDING, _CHECKPOINTING = JobState.RUNNING, JobState.PENDING, JobState.CHECKPOINTING

#: period of the fleet's all-reduce probe sweep over every NVLink domain, s (60 s, as the source asks; issue 19)
PROBE_INTERVAL_S = 60


class _PendingSet(dict[int, JobRuntime]):
    """The pending jobs by index, insertion-ordered, with a ``version`` bumped by every insertion and removal
    (snapshots rebuild their pending tuple only when it moved), and ``views``: the same keys in the same order,
    each with the job's view once a snapshot built it (``None`` until then; ``stale`` lists those), so a
    snapshot builds views only for jobs that joined the queue since the last one."""

    __slots__ = ("stale", "version", "views")

    def __init__(self) -> None:
        super().__init__()
        self.version = 0
        self.views: dict[int, JobView | None] = {}
        self.stale: list[int] = []

    def __setitem__(self, key: int, value: JobRuntime) -> None:
        self.version += 1
        super().__setitem__(key, value)
        self.views[key] = None
        self.stale.append(key)

    def __delitem__(self, key: int) -> None:
        self.version += 1
        super().__delitem__(key)
        del self.views[key]

    def pop(self, key: int, *default: JobRuntime | None) -> JobRuntime | None:  # type: ignore[override]
        self.version += 1
        self.views.pop(key, None)
        return super().pop(key, *default)

    def clear(self) -> None:
        self.version += 1
        super().clear()
        self.views.clear()
        self.stale.clear()

    def touch(self, key: int) -> None:
        """The view of pending job ``key`` changed: build it again at the next snapshot."""
        self.version += 1
        self.views[key] = None
        self.stale.append(key)


#: the kernel heap's length below which dead planned stops are never pruned (:meth:`SimulatedFleet._prune_stops`)
_PRUNE_MIN = 1024


def _stop_dead(jr: JobRuntime, incarnation: int, held_since_s: int) -> bool:
    """Whether a planned stop scheduled with these arguments would return at once whenever it ran, now or later:
    its job is in another incarnation (they only grow) or completed (for good)."""
    del held_since_s
    return jr.incarnation != incarnation or jr.completed_s >= 0


#: a history list's floats are re-made side by side in memory once this many new ones have come (:class:`_History`)
_DENSE_BLOCK = 256


class _History(Mapping[str, tuple[float, ...]]):
    """Hourly histories as a snapshot shows them: for each series, its values so far (the lists, which only ever
    grow, read up to their length now) and the value in force now, as one tuple built on first read.

    A read costs one pass over the series' h values (a tuple of a year's history is h references), and geo
    reads every market each hour, so the passes add up to O(h^2) over a run (issue 12). Two things keep that
    pass cheap, neither changing a value: the tuple is made from the list itself in one pass (the value now
    appended for the copy and removed again) rather than by slicing, unpacking and converting it; and the
    list's floats, appended one an hour between everything else the run allocates (one cache miss each when
    a pass touches them), are re-made side by side in blocks of :data:`_DENSE_BLOCK` (equal floats, the same
    bits; ``dense`` keeps, per series, how far that has been done across the hours' snapshots).
    """

    __slots__ = ("_built", "_dense", "_lens", "_lists", "_now")

    def __init__(self, lists: dict[str, list[float]], now: dict[str, float], dense: dict[str, int] | None = None
                 ) -> None:
        self._lists = lists
        self._lens = {k: len(v) for k, v in lists.items()}
        self._now = now
        self._built: dict[str, tuple[float, ...]] = {}
        self._dense = dense if dense is not None else {}

    def __getitem__(self, key: str) -> tuple[float, ...]:
        got = self._built.get(key)
        if got is None:
            lst, n = self._lists[key], self._lens[key]
            if len(lst) == n:  # the usual case: the list has not grown since the snapshot
                done = self._dense.get(key, 0)
                if n - done >= _DENSE_BLOCK:
                    lst[done:n] = array("d", lst[done:n]).tolist()
                    self._dense[key] = n
                lst.append(self._now[key])
                try:
                    got = tuple(lst)
                finally:
                    lst.pop()  # the list is as it was
            else:
                got = (*lst[:n], self._now[key])
            self._built[key] = got
        return got

    def __iter__(self) -> Iterator[str]:
        return iter(self._lens)

    def __len__(self) -> int:
        return len(self._lens)


class SimulatedFleet(CheckpointMixin, MigrationMixin, ReservedCapacityMixin, AccountingMixin, InvariantsMixin):
    """Fleet state + the job state machine (see :mod:`superfactory.sim.jobstate`)."""

    def __init__(
        self,
        kernel: Kernel,
        factories: tuple[Factory, ...],
        links: tuple[WanLink, ...],
        jobs: tuple[TrainingJob, ...],
        prices: dict[str, StepSeries],
        carbon: dict[str, StepSeries],
        failure_model: FailureModel,
        rng: np.random.Generator,
        emit: Callable[[Event], None],
    ) -> None:
        self.k = kernel
        self.factories = factories
        self.links = links
        self.links_down: set[tuple[str, str]] = set()
        self.rt = [FactoryRuntime(f, i) for i, f in enumerate(factories)]
        self._touched: list[int] = []  # factories whose version moved since the last snapshot (see snapshot)
        for r in self.rt:
            r.touched = self._touched
        self._topos: list[FactoryTopology | None] = [None] * len(factories)  # topology_of, per factory (_place)
        self.by_id = {f.id: i for i, f in enumerate(factories)}
        self._fids = (*(f.id for f in factories), "")  # factory ids by index; [-1] (no factory) is ""
        self._fids_none: tuple[str | None, ...] = (*(f.id for f in factories), None)  # the same, [-1] is None
        self.jobs = [JobRuntime(j, i, kernel=kernel) for i, j in enumerate(jobs)]
        self.job_by_id = {j.id: r for j, r in zip(jobs, self.jobs, strict=True)}
        self.prices = prices
        self.carbon = carbon
        self.model = failure_model
        self.emit = emit
        self.pending = _PendingSet()  # insertion-ordered pending set (versioned: snapshots reuse its views)
        self.holding: dict[int, JobRuntime] = {}
        self.hour_rows: list[HourRow] = []
        self.request_decision: Callable[[], None] = lambda: None
        self.periodic = False  # set by the twin for policies with a cycle: they also decide on every price change
        self._refused: set[tuple[str, str, str]] = set()  # audit refusals already emitted (job, factory, reason)
        # one failure stream per factory, keyed by its id (scenario/seeds.py): adding a factory reshuffles no other
        # factory's failures; planned maintenance has its own stream
        base = int(rng.integers(2**63))
        self.planned_rng = np.random.default_rng(child_seed(base, "planned"))
        self.failures = [
            FactoryFailureProcess(f, failure_model, np.random.default_rng(child_seed(base, f"factory:{f.id}")))
            for f in factories
        ]
        self._hour_start_s = 0
        # price shocks: market -> multiplier in force; realised hourly histories for snapshots
        self.price_factor: dict[str, float] = dict.fromkeys(prices, 1.0)
        self._price_hist: dict[str, list[float]] = {m: [] for m in prices}
        self._carbon_hist: dict[str, list[float]] = {g: [] for g in carbon}
        self._hist_dense: tuple[dict[str, int], dict[str, int]] = ({}, {})
        self._hist_cache: tuple[int, Mapping[str, tuple[float, ...]], Mapping[str, tuple[float, ...]]] | None = None
        # (from, until, prices, carbon intensities): the signals in force over [from, until) (see _signals_now)
        self._signals: tuple[int, int, dict[str, float], dict[str, float]] | None = None
        # silently degraded NVLink domains per factory: domain -> fraction of nominal bandwidth (no alarm)
        self.link_factors: list[dict[int, float]] = [{} for _ in factories]
        # what the all-reduce probes last measured below nominal (what snapshots show): domain -> reading
        self.link_probes: list[dict[int, LinkProbe]] = [{} for _ in factories]
        self.serving: ServingActuator | None = None  # the inference layer, when the scenario serves services
        self.wan: CheckpointReplication | None = None  # checkpoint replication over the WAN (scenario ``wan:``)
        #: periodic checkpoints folded (one kernel event fewer each; see _checkpoint_begin); the twin turns it
        #: off when the WAN is modelled (its barrier holds a checkpoint at its begin) or when asked to
        self.fold_checkpoints = True
        self._changes = 0  # plans applied (guards lazily built snapshot views)
        # what the last snapshot showed, reused while unchanged (see snapshot())
        self._state_cache: list[tuple[tuple[int, float, float], FactoryState] | None] = [None] * len(factories)
        self._links_cache: tuple[frozenset[tuple[str, str]], tuple[WanLink, ...]] | None = None
        self._pending_cache: tuple[int, tuple[JobView, ...]] | None = None
        self._states: tuple[FactoryState, ...] | None = None
        self._states_signals: object = None  # the _signals tuple the states were last fully checked against
        # inference capacity (sim/inference.py): nodes wanted per (factory, accelerator) from jobs being
        # preempted for it, and nodes handed over to it when those jobs released them
        self.claims: dict[tuple[int, str], int] = {}
        self.claimed: dict[tuple[int, str], list[int]] = {}
        # submissions in the kernel's order, the next one on the heap (see _schedule_submissions)
        self._subs: list[tuple[int, int, JobRuntime]] = []
        self._sub_at = 0
        # the checkpoint chain's hot path pushes its own kernel entries (see _checkpoint_begin)
        self._heap, self._next_seq = kernel.heap, kernel.next_seq
        self._chain_cb, self._complete_cb, self._begin_cb = (self._chain_commit, self._complete,
                                                            self._checkpoint_begin)
        # planned stops are pushed with this one bound method, so dead ones can be found (see _prune_stops)
        self._stop_cb = self._planned_stop
        self._prune_at = _PRUNE_MIN

    # == start-up ==========================================================================================
    def start(self) -> None:
        """Schedule submissions, the first failure of each factory and the hourly accounting tick."""
        self._schedule_submissions()
        for i in range(len(self.factories)):
            self._schedule_failure(i)
        self._emit_prices(0)
        self.k.at(HOUR_S, PRIO_SIGNAL, self._hour_tick)

    def _schedule_submissions(self) -> None:
        """Every job's submission, in the kernel's order, with only the next one on the heap at a time (issue 12).

        A fleet-year has ~26k jobs; pushing every submission at the start kept ~26k entries on the heap for most
        of the run, and every push and pop of the ~2.4 M other events paid for the deeper heap (a pop + push
        costs ~2x at 26k entries what it costs at ~1k). Each submission still gets its sequence number here, in
        job order, exactly as scheduling them all at once gave (and in the same place among the run's other
        start-up entries), so the heap's order ``(time, priority, sequence)`` pops every event in the same order:
        the next submission is always on the heap before it can be the smallest entry."""
        k = self.k
        now = k.now
        seq = self._next_seq
        subs: list[tuple[int, int, JobRuntime]] = []
        for jr in self.jobs:
            t = jr.job.submit_s
            if t < now:
                raise SimulationError(f"cannot schedule _submit at {t} s, before now ({now} s)")
            subs.append((t, seq(), jr))
        subs.sort(key=_first)  # stable: equal times keep job order, which is sequence order
        self._subs = subs
        self._sub_at = 0
        if subs:
            t, sq, jr = subs[0]
            _heappush(self._heap, (t, PRIO_JOB, sq, self._submit_next, (jr,)))

    def _submit_next(self, jr: JobRuntime) -> None:
        """A scheduled submission (:meth:`_schedule_submissions`): put the next one on the heap, then submit."""
        i = self._sub_at = self._sub_at + 1
        subs = self._subs
        if i < len(subs):
            t, sq, nxt = subs[i]
            _heappush(self._heap, (t, PRIO_JOB, sq, self._submit_next, (nxt,)))
        self._submit(jr)

    # == FleetView ===========================================================================================
    def snapshot(self) -> FleetSnapshot:
        """The fleet now. Parts that did not change since the last snapshot are the same objects (issue 12): a
        factory's :class:`FactoryState` while its ``version``, price and carbon are unchanged, the pending tuple
        while the pending set is, the link tuple while no link is down or healed."""
        now = self.k.now
        price, carbon_now = self._signals_now(now)
        cache = self._state_cache
        touched = self._touched
        if self._states is not None and self._signals is self._states_signals:
            # the same prices and carbon as the last snapshot (the same objects): only the factories whose version
            # moved since can differ from their cached state (fleet-200: 200 factories, a few touched a decision)
            if touched:
                states_l = list(self._states)
                fresh = False
                for fi in set(touched):
                    r = self.rt[fi]
                    f = r.factory
                    key = (r.version, price[f.market], carbon_now[f.grid])
                    hit = cache[fi]
                    if hit is not None and hit[0] == key:
                        continue
                    fresh = True
                    probes = self.link_probes[fi]  # (mostly none: the empty tuple, as tuple() of nothing gives)
                    st = new_factory_state(f.id, r.up, r.status.tobytes(), key[1], key[2], r.it_power_w,
                                           tuple(probes[d] for d in sorted(probes)) if probes else ())
                    cache[fi] = (key, st)
                    states_l[fi] = st
                touched.clear()
                if fresh:
                    self._states = tuple(states_l)
            states = self._states
        else:
            states = self._factory_states(price, carbon_now)
        down = self.links_down  # compared as a set: a frozenset copy only when it moved
        if self._links_cache is None or self._links_cache[0] != down:
            kept = frozenset(down)
            self._links_cache = (kept, tuple(lk for lk in self.links if (lk.a, lk.b) not in kept))
        links = self._links_cache[1]
        pset = self.pending
        if self._pending_cache is None or self._pending_cache[0] != pset.version:
            views = pset.views
            for idx in pset.stale:
                if idx in views:
                    views[idx] = self._view(pset[idx], now)
            pset.stale.clear()
            self._pending_cache = (pset.version, tuple(views.values()))  # type: ignore[arg-type]
        pending = self._pending_cache[1]
        running = LazyViews(partial(self._running_views, now, self._changes))
        prices, carbon = self._histories(now)
        inference = self.serving.state() if self.serving is not None else None
        return new_snapshot(now, self.factories, states, links, pending, running, prices, carbon, inference, None)

    def _factory_states(self, price: dict[str, float], carbon_now: dict[str, float]) -> tuple[FactoryState, ...]:
        """Every factory's state for :meth:`snapshot`, each reused while its ``version``, price and carbon are
        unchanged; the same tuple when all are. Notes the signals it was built for (``_states_signals``)."""
        cache = self._state_cache
        states_l: list[FactoryState] = []
        fresh = False
        for r in self.rt:
            f = r.factory
            key = (r.version, price[f.market], carbon_now[f.grid])
            hit = cache[r.index]
            if hit is not None and hit[0] == key:
                states_l.append(hit[1])
                continue
            fresh = True
            if hit is not None and hit[0][0] == r.version:  # only price or carbon moved: the same node bytes
                st = new_factory_state(f.id, r.up, hit[1].node_status, key[1], key[2], r.it_power_w,
                                       hit[1].link_probes)
            else:
                probes = self.link_probes[r.index]
                st = new_factory_state(f.id, r.up, r.status.tobytes(), key[1], key[2], r.it_power_w,
                                       tuple(probes[d] for d in sorted(probes)) if probes else ())
            cache[r.index] = (key, st)
            states_l.append(st)
        states = self._states if not fresh and self._states is not None else tuple(states_l)
        self._states = states  # every factory's state the same objects: the same tuple (policies compare by identity)
        self._states_signals = self._signals
        self._touched.clear()
        return states

    def _signals_now(self, now: int) -> tuple[dict[str, float], dict[str, float]]:
        """Every market's price and every grid's carbon intensity now, kept until the next step of any series
        (a price shock drops them: ``_signals``)."""
        got = self._signals
        if got is not None and got[0] <= now < got[1]:
            return got[2], got[3]
        price = {m: self.price_at(m, now) for m in self.prices}
        carbon = {g: s.at(now) for g, s in self.carbon.items()}
        until = min((now // s.step_s + 1) * s.step_s for s in (*self.prices.values(), *self.carbon.values()))
        self._signals = (now, until, price, carbon)
        return price, carbon

    def _running_views(self, now: int, changes: int) -> tuple[JobView, ...]:
        """The views of the jobs holding nodes: :meth:`_view` of each, with ``JobRuntime.state``,
        ``progress_now`` and ``before_early_window`` inlined (issue 12, session 9: geo reads every running job
        at each full solve, ~10^6 views a year; the same values, the same cache on the job)."""
        k = self.k
        if k.now != now or self._changes != changes:
            raise SimulationError("a snapshot's running jobs were first read after the fleet changed")
        prio = k.prio
        early_ok = prio >= PRIO_JOB  # at a window's begin instant: inside it (sim/jobstate.py)
        late_ok = prio < PRIO_JOB  # at a window's end instant: still inside it
        fids = self._fids_none
        out: list[JobView] = []
        append = out.append
        for jr in self.holding.values():
            state = jr._state  # jr.state: CHECKPOINTING inside a folded window
            until = jr.ckpt_until_s
            if state is _RUNNING and until >= 0:
                b = jr.ckpt_began_s
                if (now < until or (now == until and late_ok)) and (now > b or (now == b and early_ok)):
                    state = _CHECKPOINTING
            running = state is _RUNNING
            key = (jr.token, jr.committed_s, jr.carbon_g, now if running else -1)
            if jr.view_key == key:
                append(jr.view)  # type: ignore[arg-type]
                continue
            cell = jr.early_cell
            if cell is None:
                progress = jr.progress_s + ((now - jr.run_since_s) * jr.speed if running else 0)
            else:  # jr.progress_now(now)
                b = jr.ckpt_began_s
                if now < b or (now == b and late_ok):  # before the early-opened window
                    progress = cell[1] + (now - cell[2]) * jr.speed
                elif running:
                    progress = jr.progress_s + (now - jr.run_since_s) * jr.speed
                else:
                    progress = jr.progress_s
            jr.view_key = key
            pending = state is _PENDING
            jr.view = view = new_job_view(
                jr.job, fids[jr.factory], jr.nodes, progress, jr.waiting_since_s if pending else -1,
                fids[jr.last_factory], jr.last_nodes, jr.recovering and pending, jr.committed_s, state,
                jr.carbon_g / 1e6,
            )
            append(view)
        return tuple(out)

    def price_at(self, market: str, t_s: int) -> float:
        """The price in force at ``t_s`` (scripted shocks applied); only ever asked for t <= now."""
        return self.prices[market].at(t_s) * self.price_factor[market]

    def _histories(self, now: int) -> tuple[Mapping[str, tuple[float, ...]], Mapping[str, tuple[float, ...]]]:
        """Realised hourly signals up to and including the current hour (cached per hour). Each series' tuple is
        built when a policy first reads it (:class:`_History`): copying a year of history for every market at
        every hour cost O(hours^2) over a fleet-year, for policies (greedy) that never read it."""
        hour = now // HOUR_S
        cache = self._hist_cache
        if cache is not None and cache[0] == hour:
            return cache[1], cache[2]
        prices = _History(self._price_hist, {m: self.price_at(m, now) for m in self._price_hist}, self._hist_dense[0])
        carbon = _History(self._carbon_hist, {g: self.carbon[g].at(now) for g in self._carbon_hist},
                          self._hist_dense[1])
        if all(len(v) == hour for v in self._price_hist.values()):
            self._hist_cache = (hour, prices, carbon)
        return prices, carbon

    def _view(self, jr: JobRuntime, now: int) -> JobView:
        """The job as policies see it. Cached on the job: a view changes only with its state (every transition
        bumps ``token``), its committed progress, its carbon, and — while running — time. A queue of waiting jobs
        therefore costs nothing to show again (issue 12: decision cost must not grow with the backlog's age)."""
        state = jr.state  # the property reads the kernel's clock: once (it cannot change within this call)
        key = (jr.token, jr.committed_s, jr.carbon_g, now if state is _RUNNING else -1)
        if jr.view_key == key:
            return jr.view  # type: ignore[return-value]
        progress = jr.progress_now(now) if jr.early_cell is not None else jr.progress_s + (
            (now - jr.run_since_s) * jr.speed if state is _RUNNING else 0)
        jr.view_key = key
        pending = state is _PENDING
        jr.view = view = new_job_view(
            jr.job,
            self.factories[jr.factory].id if jr.factory >= 0 else None,
            jr.nodes,
            progress,
            jr.waiting_since_s if pending else -1,
            self.factories[jr.last_factory].id if jr.last_factory >= 0 else None,
            jr.last_nodes,
            jr.recovering and pending,
            jr.committed_s,
            state,
            jr.carbon_g / 1e6,
        )
        return view

    # == Actuator ============================================================================================
    def apply(self, plan: Plan) -> list[ActionOutcome]:
        """Carry out ``plan`` now; every training action is applied at once (outcome ``applied``). An invalid
        action is a policy bug and raises :class:`SimulationError`. Inference actions go to the serving layer
        (``self.serving``), which reports their outcomes."""
        now = self.k.now_s()
        if plan.actions:
            self._changes += 1  # lazily built views of earlier snapshots must not show the new state
        for job_id, factory_id, reason in plan.refusals:
            key = (job_id, factory_id, reason)
            if key not in self._refused:  # one audit record per distinct refusal, not one per decision
                self._refused.add(key)
                self.emit(new_event(now, EventKind.AUDIT_REFUSAL, job_id, factory_id, cause=reason))
        outcomes: list[ActionOutcome] = []
        serving: list[Allocate | SyncWeights] = []
        for action in plan.actions:
            if isinstance(action, Place):
                self._place(action)
            elif isinstance(action, Preempt):
                self._preempt(action)
            elif isinstance(action, Migrate):
                self._migrate(action)
            elif isinstance(action, SwapNodes):
                swap_nodes(self, action)
            elif isinstance(action, Allocate | SyncWeights):
                serving.append(action)
                continue
            else:  # pragma: no cover - Action is a closed union
                raise SimulationError(f"unknown action {action!r}")
            fid = action.factory_id if isinstance(action, Place | Migrate) else self._fid(self.job_by_id[action.job_id])
            outcomes.append(new_outcome(action.action_id, OutcomeStatus.APPLIED, action.job_id, fid, "", now))
        if serving:
            if self.serving is None:
                raise SimulationError("an inference action in a fleet that serves nothing")
            outcomes.extend(self.serving.apply(serving, plan.forecasts))
        return outcomes

    def _place(self, a: Place) -> None:
        jr = self.job_by_id.get(a.job_id)
        if jr is None or jr.state is not JobState.PENDING or not jr.submitted:
            raise SimulationError(f"policy placed job {a.job_id!r} which is not pending")
        fi, nodes, gpus = self._check_nodes(jr, a.factory_id, a.nodes)
        r = self.rt[fi]
        f = r.factory
        restart_s = jr.job.recovery.restart_s
        if a.hot_swap:
            self._check_hot_swap(jr, fi, nodes)
            restart_s = jr.job.recovery.hot_swap_s
        now = self.k.now_s()
        r.accrue(now)
        r.hold(nodes, jr.index)
        del self.pending[jr.index]
        self.holding[jr.index] = jr
        jr.factory, jr.nodes, jr.held_since_s = fi, a.nodes, now
        jr._node_arr, jr._node_arr_of = nodes, a.nodes  # the checked array is the job's node array
        if jr.first_start_s < 0:
            jr.first_start_s = now
        tok = jr.bump(JobState.STARTING)
        jr.restart_cost_s = restart_s
        topo = self._topos[fi]
        if topo is None:  # (topology_of hashes the whole Factory value at each call: once per factory here)
            topo = self._topos[fi] = topology_of(f)
        jr.speed = placement_throughput(topo, a.nodes, jr.job, self.link_factors[fi])
        self.emit(new_event(now, EventKind.JOB_PLACED, jr.job.id, f.id, cause="hot-swap" if a.hot_swap else "",
                        value=float(gpus)))
        if self.wan is not None:  # away from every copy of its checkpoint it also waits for a RESTORE (issue 16)
            self.wan.start(jr, tok, restart_s)
        else:
            self.k.after(restart_s, PRIO_JOB, self._begin_running, jr, tok)

    def _check_nodes(self, jr: JobRuntime, factory_id: str, raw_nodes: tuple[int, ...]) -> tuple[int, np.ndarray, int]:
        """Validate a node set for ``jr``: known up factory cleared for the job's data classes, in range, distinct,
        free, right accelerator, enough GPUs. Returns ``(factory index, nodes array, GPUs)``; raises
        SimulationError on policy bugs. Sovereignty is checked here too (defence in depth): a policy that
        forgets the law stops the run instead of silently moving regulated data."""
        a_job_id = jr.job.id
        fi = self.by_id.get(factory_id)
        if fi is None:
            raise SimulationError(f"policy placed job {a_job_id!r} on unknown factory {factory_id!r}")
        r = self.rt[fi]
        f = r.factory
        if not jr.job.sovereignty <= f.clearances:
            missing = ", ".join(sorted(jr.job.sovereignty - f.clearances))
            raise SimulationError(f"policy placed job {a_job_id!r} on {f.id}, which lacks clearance for {missing}")
        if not r.up:
            raise SimulationError(f"policy placed job {a_job_id!r} on {f.id}, which is down")
        nodes = nodes_array(raw_nodes)  # placement's own array (read-only) when it built the tuple
        size = nodes.size
        # strictly ascending (what first-fit gives): distinct without sorting, and its ends are its min and max
        ascending = size <= 1 or not np.count_nonzero(nodes[1:] <= nodes[:-1])
        if size and ((nodes[0] < 0 or nodes[-1] >= f.nodes) if ascending
                     else (nodes.min() < 0 or nodes.max() >= f.nodes)):
            raise SimulationError(f"policy placed job {a_job_id!r} on nodes outside {f.id} (0..{f.nodes - 1})")
        if not ascending and np.unique(nodes).size != size:
            raise SimulationError(f"policy gave job {a_job_id!r} duplicate nodes")
        taken = nodes[r.status[nodes] != NODE_FREE]
        if taken.size:
            raise SimulationError(
                f"policy placed job {a_job_id!r} on node {int(taken[0])} of {f.id}, which is not free"
            )
        gpus = 0
        cl = r.node_cluster[nodes]
        # mostly one cluster: no sort (ascending nodes over clusters laid out in order: its ends tell)
        if size and (int(cl[0]) == int(cl[-1]) if ascending and r.clusters_in_order
                     else int(cl.min()) == int(cl.max())):
            parts: list[tuple[int, int]] = [(int(cl[0]), int(cl.size))]
        else:
            ids, counts = np.unique(cl, return_counts=True)
            parts = list(zip(ids.tolist(), counts.tolist(), strict=True))
        for ci, count in parts:
            c = f.clusters[ci]
            if c.accelerator != jr.job.accelerator:
                raise SimulationError(f"job {a_job_id!r} needs {jr.job.accelerator}, got {c.accelerator} nodes")
            gpus += count * c.system.gpus_per_node
        if gpus < jr.job.gpus:
            raise SimulationError(f"policy gave job {a_job_id!r} {gpus} GPUs < {jr.job.gpus}")
        return fi, nodes, gpus

    def _check_hot_swap(self, jr: JobRuntime, fi: int, nodes: np.ndarray) -> None:
        """A hot swap keeps the job's previous nodes except ones now down, in the same factory."""
        if not jr.recovering or jr.last_factory != fi:
            raise SimulationError(f"hot swap of job {jr.job.id!r}: only an interrupted job, in the same factory")
        r = self.rt[fi]
        last = np.asarray(jr.last_nodes, dtype=np.intp)
        replaced = np.setdiff1d(last, nodes)
        if np.any(r.status[replaced] != NODE_DOWN):
            raise SimulationError(f"hot swap of job {jr.job.id!r} replaced nodes that are not down")

    def _preempt(self, a: Preempt) -> None:
        jr = self.job_by_id.get(a.job_id)
        if jr is None or jr.state not in (JobState.RUNNING, JobState.CHECKPOINTING):
            raise SimulationError(f"policy preempted job {a.job_id!r} which is not running")
        jr.preemptions += 1
        self.emit(new_event(self.k.now_s(), EventKind.JOB_PREEMPTED, jr.job.id, self._fid(jr), cause=a.reason))
        self._drain(jr)

    # == job lifecycle =======================================================================================
    def _meter_recovery(self, jr: JobRuntime, seconds: float) -> None:
        """Record wall time a job spent recovering (detection, restart) as a ``Metered`` event."""
        if seconds:
            self.emit(new_event(self.k.now_s(), EventKind.METERED, jr.job.id, self._fid(jr), -1, "recovery_s",
                            float(seconds)))

    def end_run(self, until_s: int) -> None:
        """Close the run at ``until_s``: the last accounting hour, and a ``JobProgress`` reading of every job that
        started and did not finish (telemetry a live plane gets from its agents)."""
        self.close_hour(until_s)
        for jr in self.holding.values():
            self._cut_window(jr)  # a folded checkpoint still blocking at the end never unblocked
            jr.accrue_progress(until_s)
            jr.held_gpu_s += (until_s - jr.held_since_s) * jr.job.gpus
        for jr in self.jobs:
            if jr.first_start_s >= 0 and jr.completed_s < 0:
                self.emit(new_event(until_s, EventKind.JOB_PROGRESS, jr.job.id, self._fid(jr), value=jr.progress_s))

    def _fid(self, jr: JobRuntime) -> str:
        return self._fids[jr.factory]  # (index -1, no factory: "")

    def _submit(self, jr: JobRuntime) -> None:
        now = self.k.now_s()
        jr.submitted = True
        jr.waiting_since_s = now
        self.pending[jr.index] = jr
        self.emit(new_event(now, EventKind.JOB_SUBMITTED, jr.job.id, jr.job.home_factory or "", value=jr.job.gpus))
        self.request_decision()

    def _begin_running(self, jr: JobRuntime, tok: int) -> None:
        if jr.token != tok:
            return
        now = self.k.now_s()
        if jr.recovering:
            jr.recovery_s += jr.restart_cost_s
            self._meter_recovery(jr, jr.restart_cost_s)
            jr.recovering = False
        jr.run_since_s = now
        tok = jr.bump(JobState.RUNNING)
        self.emit(new_event(now, EventKind.JOB_RUNNING, jr.job.id, self._fid(jr), value=jr.progress_s))
        jitter_s = self.wan.barrier_offset_s(jr) if self.wan is not None else 0
        self._schedule_running(jr, tok, now + jr.job.checkpoint.interval_s + jitter_s)
        if self.model.planned_rate_per_gpu_hour > 0:
            rate_per_s = self.model.planned_rate_per_gpu_hour * jr.job.gpus / HOUR_S
            gap = max(1, math.ceil(self.planned_rng.exponential(1.0 / rate_per_s)))  # = int(np.ceil(x)), a float
            self.k.after(gap, PRIO_FAILURE, self._stop_cb, jr, jr.incarnation, jr.held_since_s)
            if len(self._heap) >= self._prune_at:
                self._prune_stops()

    def _prune_stops(self) -> None:
        """Drop planned stops that can no longer happen from the kernel heap (issue 12). A stop is drawn at each
        start, mostly weeks ahead, and most jobs end first: a geo fleet-year's heap was ~90 % such dead entries
        (~2,500 of ~2,700 after 35 days, growing), and every event's pop and push paid for the depth. A stop is
        dead once its job moved to another incarnation or completed (:func:`_stop_dead`: :meth:`_planned_stop`
        would return at once); the rest of the heap pops in the same order. Runs when the heap doubled since."""
        self.k.prune(self._stop_cb, _stop_dead)
        self._prune_at = max(_PRUNE_MIN, 2 * len(self._heap))

    def _complete(self, jr: JobRuntime, tok: int) -> None:
        if jr.token != tok:
            return
        now = self.k.now_s()
        jr.progress_s = jr.committed_s = jr.job.work_s
        jr.completed_s = now
        jr.bump(JobState.COMPLETED)
        self.emit(new_event(now, EventKind.JOB_COMPLETED, jr.job.id, self._fid(jr), value=jr.progress_s))
        self._release(jr)
        self.request_decision()

    def _interrupt(self, jr: JobRuntime, cause: str, node: int) -> None:
        """A component under the job failed: lose work since the last commit, detect, then requeue."""
        if jr.state not in (JobState.STARTING, JobState.RUNNING, JobState.CHECKPOINTING):
            return  # already detecting or draining: the same incident
        now = self.k.now_s()
        self._cut_window(jr)
        if jr.state is JobState.STARTING and jr.recovering:
            jr.recovery_s += now - (jr.held_since_s)  # partial restart wasted
            self._meter_recovery(jr, now - jr.held_since_s)
        jr.accrue_progress(now)
        if self.wan is not None:  # with the WAN modelled, a failure restores the last *durable* checkpoint
            jr.committed_s = min(jr.committed_s, self.wan.restore_point(jr))
        lost = jr.progress_s - jr.committed_s
        jr.lost_work_s += lost
        jr.progress_s = jr.committed_s
        jr.incarnation += 1
        jr.interruptions += 1
        jr.interruptions_by_cause[cause] = jr.interruptions_by_cause.get(cause, 0) + 1
        tok = jr.bump(JobState.DETECTING)
        self.emit(new_event(now, EventKind.JOB_INTERRUPTED, jr.job.id, self._fid(jr), node, cause, lost))
        jr.recovery_s += jr.job.recovery.detect_s
        self._meter_recovery(jr, jr.job.recovery.detect_s)
        self.k.after(jr.job.recovery.detect_s, PRIO_JOB, self._requeue, jr, tok, True)

    def _planned_stop(self, jr: JobRuntime, incarnation: int, held_since_s: int) -> None:
        if (
            jr.incarnation != incarnation
            or jr.held_since_s != held_since_s
            or jr.state not in (JobState.RUNNING, JobState.CHECKPOINTING)
        ):
            return
        jr.planned_stops += 1
        self.emit(new_event(self.k.now_s(), EventKind.JOB_PLANNED_STOP, jr.job.id, self._fid(jr), cause="planned"))
        self._drain(jr)

    def _drain(self, jr: JobRuntime, migrate: bool = False) -> None:
        """Take a final checkpoint (blocking + write), then requeue (or migrate) with no work lost."""
        now = self.k.now_s()
        self._cut_window(jr)
        jr.accrue_progress(now)
        jr.incarnation += 1  # in-flight async writes are superseded by the drain checkpoint
        tok = jr.bump(JobState.DRAINING)
        ck = jr.job.checkpoint
        jr.checkpoint_stall_s += ck.blocking_s + ck.async_write_s
        self.k.after(ck.blocking_s + ck.async_write_s, PRIO_JOB, self._drained, jr, tok, migrate)

    def _drained(self, jr: JobRuntime, tok: int, migrate: bool) -> None:
        if jr.token != tok:
            return
        self._checkpoint_commit(jr, jr.incarnation, jr.progress_s)
        if migrate and self.wan is not None:  # the checkpoint crosses the modelled WAN fabric (issue 16)
            self.wan.migrate(jr)
        elif migrate:
            self._transfer(jr)
        else:
            self._requeue(jr, jr.token, False)

    # == degraded placements =================================================================================
    def set_job_speed(self, job_index: int, speed: float) -> None:
        """Change how fast a job progresses (productive s per s), e.g. on a degraded NVLink domain."""
        if speed <= 0:
            raise SimulationError(f"job speed must be positive, got {speed}")
        jr = self.jobs[job_index]
        now = self.k.now_s()
        if jr.ckpt_until_s >= 0 and jr.in_ckpt_window():  # a folded checkpoint is blocking: what follows its
            jr.speed = speed  # window was scheduled at the old speed; schedule it again from the window's end
            began, until = jr.ckpt_began_s, jr.ckpt_until_s
            tok = jr.bump(JobState.RUNNING)
            jr.ckpt_began_s, jr.ckpt_until_s = began, until
            self._schedule_running(jr, tok, jr.next_ckpt_s, until)
            return
        jr.accrue_progress(now)
        jr.speed = speed
        if jr.state is JobState.RUNNING:
            tok = jr.bump(JobState.RUNNING)
            self._schedule_running(jr, tok, max(now + 1, jr.next_ckpt_s))

    def degrade_domain(self, factory_id: str, domain: int, factor: float, duration_s: int) -> None:
        """Silently cut NVLink domain ``domain``'s bandwidth to ``factor`` of nominal for ``duration_s``: no
        event, no alarm; gangs whose TP groups sit there slow down, and only an all-reduce probe sees it."""
        fi = self.by_id[factory_id]
        self.link_factors[fi][domain] = factor
        self._respeed(fi, domain)
        self._schedule_probe(fi, domain)
        self.k.after(duration_s, PRIO_FAILURE, self._heal_domain, fi, domain)

    def _heal_domain(self, fi: int, domain: int) -> None:
        self.link_factors[fi].pop(domain, None)
        self._respeed(fi, domain)
        self._schedule_probe(fi, domain)

    def _schedule_probe(self, fi: int, domain: int) -> None:
        """The fleet's all-reduce probes sweep every domain each ``PROBE_INTERVAL_S``; only a sweep reveals a
        change of a domain's bandwidth (scheduled only where the truth changed: other sweeps find nothing new)."""
        now = self.k.now_s()
        self.k.at(-(-now // PROBE_INTERVAL_S) * PROBE_INTERVAL_S, PRIO_SIGNAL, self._probe, fi, domain)

    def _probe(self, fi: int, domain: int) -> None:
        now = self.k.now_s()
        factor = self.link_factors[fi].get(domain, 1.0)
        known = self.link_probes[fi].get(domain)
        r = self.rt[fi]
        r.version += 1  # snapshots show probe readings
        r.touched.append(fi)
        if factor < 1.0:
            self.link_probes[fi][domain] = LinkProbe(domain, factor, now)
        elif known is not None:
            del self.link_probes[fi][domain]
        else:
            return
        self.emit(new_event(now, EventKind.LINK_PROBED, "", self.factories[fi].id, domain, value=factor))

    def _respeed(self, fi: int, domain: int) -> None:
        topo = topology_of(self.factories[fi])
        for jr in list(self.holding.values()):
            if jr.factory == fi and jr.nodes and np.any(topo.node_domain[np.asarray(jr.nodes)] == domain):
                speed = placement_throughput(topo, jr.nodes, jr.job, self.link_factors[fi])
                if speed != jr.speed:
                    self.set_job_speed(jr.index, speed)

    def _requeue(self, jr: JobRuntime, tok: int, after_failure: bool) -> None:
        if jr.token != tok:
            return
        now = self.k.now_s()
        self._release(jr)
        if jr.migrate_to >= 0:  # interrupted between deciding a migration and arriving: free the reservation
            dest = self.rt[jr.migrate_to]
            dest.accrue(now)
            dest.release(np.asarray(jr.migrate_nodes, dtype=np.intp))
            jr.migrate_to, jr.migrate_nodes = -1, ()
        jr.bump(JobState.PENDING)
        jr.recovering = after_failure
        jr.waiting_since_s = now
        self.pending[jr.index] = jr
        self.request_decision()

    def _release(self, jr: JobRuntime) -> None:
        now = self.k.now_s()
        r = self.rt[jr.factory]
        r.accrue(now)
        self._accrue_job_energy(jr, now)
        jr.held_gpu_s += (now - jr.held_since_s) * jr.job.gpus
        r.release(jr.node_array())
        jr._node_arr, jr._node_arr_of = None, ()  # a job that holds nothing keeps no array (26k jobs a year)
        if self.claims:
            self._serve_claims(r.index, jr.nodes)
        self.holding.pop(jr.index, None)
        jr.last_factory, jr.last_nodes = jr.factory, jr.nodes
        jr.factory, jr.nodes, jr.held_since_s, jr.held_power_w = -1, (), -1, -1.0

    # == failures, outages, partitions =======================================================================
    def _schedule_failure(self, fi: int) -> None:
        nxt = self.failures[fi].next_failure(self.k.now_s())
        if nxt is not None:
            t, node, cause = nxt
            self.k.at(t, PRIO_FAILURE, self._node_failure, fi, node, cause)

    def _node_failure(self, fi: int, node: int, cause_i: int) -> None:
        self._schedule_failure(fi)
        r = self.rt[fi]
        if not r.up or r.down[node]:
            return  # thinning: a down node cannot fail again
        cause = self.model.causes[cause_i]
        now = self.k.now_s()
        r.accrue(now)
        r.set_down(node, True)
        self.emit(new_event(now, EventKind.NODE_FAILED, "", r.factory.id, node, cause.name))
        self.k.after(cause.repair_s, PRIO_FAILURE, self._node_repair, fi, node)
        ji = int(r.node_job[node])
        if ji >= 0:
            self._interrupt(self.jobs[ji], cause.name, node)  # its requeue after detection asks for a decision
        elif self.pending:
            self.request_decision()

    def _node_repair(self, fi: int, node: int) -> None:
        r = self.rt[fi]
        r.accrue(self.k.now_s())
        r.set_down(node, False)
        self.emit(new_event(self.k.now_s(), EventKind.NODE_REPAIRED, "", r.factory.id, node))
        if self.pending:  # capacity came back: only waiting jobs can use it
            self.request_decision()

    def factory_outage(self, factory_id: str, duration_s: int, cause: str = "factory outage") -> None:
        """Take a whole factory out now for ``duration_s``; jobs there are interrupted."""
        fi = self.by_id[factory_id]
        r = self.rt[fi]
        now = self.k.now_s()
        r.accrue(now)
        r.set_up(False)
        self.emit(new_event(now, EventKind.FACTORY_LOST, "", factory_id, cause=cause, value=duration_s))
        for jr in [j for j in self.holding.values() if j.factory == fi]:
            self._interrupt(jr, cause, -1)
        self.k.after(duration_s, PRIO_FAILURE, self._factory_restore, fi)
        self.request_decision()

    def _factory_restore(self, fi: int) -> None:
        r = self.rt[fi]
        r.accrue(self.k.now_s())
        r.set_up(True)
        self.emit(new_event(self.k.now_s(), EventKind.FACTORY_RESTORED, "", r.factory.id))
        self.request_decision()

    def partition(self, a: str, b: str, duration_s: int) -> None:
        """Cut the WAN link a-b for ``duration_s`` (it disappears from snapshots meanwhile)."""
        key = (a, b) if any((lk.a, lk.b) == (a, b) for lk in self.links) else (b, a)
        self.links_down.add(key)
        self.emit(new_event(self.k.now_s(), EventKind.LINK_PARTITIONED, "", f"{key[0]}-{key[1]}", value=duration_s))
        self.k.after(duration_s, PRIO_FAILURE, self._heal, key)
        self.request_decision()

    def _heal(self, key: tuple[str, str]) -> None:
        self.links_down.discard(key)
        self.emit(new_event(self.k.now_s(), EventKind.LINK_RESTORED, "", f"{key[0]}-{key[1]}"))
        self.request_decision()
