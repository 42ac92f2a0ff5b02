"""Baseline placement policies (greedy, home-region, cheapest-static) with TP-aligned first-fit nodes.

These are the reference points the smarter policies are measured against. Neither migrates nor preempts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_FREE, FactoryState, FleetSnapshot, JobView, Place, Plan
from superfactory.domain.job import TrainingJob
from superfactory.models.collective import nodes_array
from superfactory.policy.feasibility import ShapeCheck, evaluate, shape_check
from superfactory.policy.nodes import tp_aligned_fit
from superfactory.policy.registry import PolicyBase, register

FULL = "full"


def _why(snapshot: FleetSnapshot, accelerator: str, reasons: dict[int, str]) -> str:
    """One stable sentence for a waiting job: factories in scenario order, full ones grouped, those without
    the accelerator grouped, other refusals verbatim (so the reason changes only when the situation does)."""
    if not reasons:
        return "no candidate factory"
    full = [snapshot.factories[i].id for i in sorted(reasons) if reasons[i] == FULL]
    lacking = [snapshot.factories[i].id for i in sorted(reasons)
               if snapshot.factories[i].gpus_of(accelerator) == 0]
    parts = []
    if full:
        parts.append(f"not enough free {accelerator} nodes at {', '.join(full)}")
    parts.extend(reasons[i] for i in sorted(reasons)
                 if reasons[i] != FULL and snapshot.factories[i].id not in lacking)
    if lacking:
        parts.append(f"no {accelerator} at {', '.join(lacking)}")
    return "; ".join(parts)


def _queue_order(pending: tuple[JobView, ...]) -> list[JobView]:
    """Higher priority first, then earlier submission (a requeued job keeps its place), then id."""
    return sorted(pending, key=lambda v: (-v.job.priority, v.job.submit_s, v.job.id))


class _FirstFitPlanner(PolicyBase, ABC):
    """Shared machinery: walk the queue, try candidate factories in order, first-fit nodes that never split a
    tensor-parallel group across NVLink domains (:func:`~superfactory.policy.nodes.tp_aligned_fit`).

    Subclasses choose the candidate factories for each job (:meth:`candidates`). Within one call, capacity
    and power taken by earlier placements are tracked so a plan never double-books a node or a megawatt.
    Jobs that fit nowhere wait; later, smaller jobs may backfill around them.

    Cost (issue 12): a decision's work grows with the job *shapes* waiting and the factories that changed, not
    with the queue or the fleet. A job's outcome depends only on its shape — accelerator, GPUs, TP size, data
    classes (and its candidate list when that depends on the job) — and on the candidate factories' states;
    jobs with a carbon budget are always evaluated in full (their outcome depends on their own progress). When a
    shape fits nowhere its outcome (per-factory reasons, refusals, the waiting sentence) is kept with the
    factory states it was computed on. The next job of that shape, in this decision or a later one,
    re-evaluates only the factories that changed since in what the outcome depends on (up, IT power, node
    states; a new price only reorders the candidates) or that this plan placed a job on, and of those only the
    ones the shape can use at all (accelerator, size, data classes). A factory that refused before and did not
    change refuses again for the same reason, so the first factory that now accepts the job is the first
    changed one that does, in candidate order: the same plan as evaluating every factory. The queue order is
    kept while the world shows the same pending tuple (a world that reuses it while its queue is unchanged
    saves the sort).
    """

    name = "abstract"
    #: whether :meth:`candidates` depends on the job; when False it is called once per decision
    candidates_per_job = True

    def __init__(self) -> None:
        super().__init__()
        self._order_of: tuple[tuple[JobView, ...], list[JobView]] | None = None
        self._shape_of: dict[str, _Shape] = {}  # job id -> its shape (shared candidates)
        self._shape_by_key: dict[tuple[object, ...], _Shape] = {}  # one _Shape per shape
        # (factory index, accelerator) -> (the state it was counted on, free nodes of that accelerator there)
        self._free_of: dict[tuple[int, str], tuple[FactoryState, int]] = {}
        # (factory index, accelerator, GPUs, data classes) -> shape_check, for the factories of _fleet
        self._shapes: dict[tuple[int, str, int, frozenset[str]], ShapeCheck] = {}
        self._fleet: tuple[Factory, ...] = ()
        self._failed: dict[tuple[object, ...], _Failed] = {}
        # (factory index, accelerator, GPUs, TP, data classes) -> (the state it was computed on, decision serial,
        # placements the plan had made there then, its reason, whether a hard rule refused it): a factory's last
        # answer to a shape, reused in the same decision while no placement went there since, or in a later one
        # when it was computed on the snapshot's own state and the factory did not move
        self._at: dict[tuple[object, ...], tuple[FactoryState, int, int, str, bool]] = {}
        # (accelerator, GPUs, data classes) -> factories that pass the static filters (others never change)
        self._possible: dict[tuple[str, int, frozenset[str]], frozenset[int]] = {}
        self._serial = 0  # decisions made
        self._prev_states: tuple[FactoryState, ...] = ()
        # (decision serial, factories whose state object changed since the decision before) for recent decisions
        self._log: deque[tuple[int, tuple[int, ...]]] = deque(maxlen=16)

    @abstractmethod
    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        """Factory indices to try for ``view``, best first."""

    def _queue(self, pending: tuple[JobView, ...]) -> list[JobView]:
        memo = self._order_of
        if memo is not None and memo[0] is pending:
            return memo[1]
        order = _queue_order(pending)
        self._order_of = (pending, order)
        return order

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng  # deterministic
        factories, states = snapshot.factories, snapshot.states
        if factories is not self._fleet:  # another fleet: nothing kept applies
            self._shapes, self._failed, self._possible, self._at, self._fleet = {}, {}, {}, {}, factories
            self._shape_of, self._free_of, self._shape_by_key = {}, {}, {}
            self._prev_states, self._log = (), deque(maxlen=16)
        self._serial += 1
        serial = self._serial
        shapes, failed = self._shapes, self._failed
        prev = self._prev_states
        if len(prev) == len(states):
            self._log.append((serial, () if prev is states else tuple(
                i for i, (a, b) in enumerate(zip(prev, states, strict=True)) if a is not b and _moved(a, b))))
        else:
            self._log.clear()
        self._prev_states = states
        status: dict[int, npt.NDArray[np.uint8]] = {}
        free_count: dict[tuple[int, str], int] = {}  # free nodes per (factory, accelerator), kept up to date
        it_power = [s.it_power_w for s in states]
        actions: list[Place] = []
        touched: list[int] = []  # factory of each placement of this plan, in order
        tvers: dict[int, int] = {}  # placements of this plan per factory
        at = self._at
        waiting: list[tuple[str, str]] = []
        refusals: list[tuple[str, str, str]] = []
        # shape -> (placements of this plan then, its memo): the memo was found still valid for an earlier job of
        # the shape in this decision; while the plan places nothing more, the next job of the shape waits the same
        # (per-job candidates only: with shared candidates the shape's _Shape holds it, read without hashing)
        clear: dict[tuple[object, ...], tuple[int, _Failed]] = {}
        since: dict[int, frozenset[int]] = {}  # decision serial -> factories changed since (see _changed_since)
        shared = None if self.candidates_per_job or not snapshot.pending else self.candidates(
            snapshot, snapshot.pending[0])
        shared_t = tuple(shared) if shared is not None else ()
        shape_of, shape_by_key = self._shape_of, self._shape_by_key
        free_of = self._free_of
        placed_n = 0  # len(touched)
        memo: _Failed | None
        redo: frozenset[int] | None  # factories to evaluate (None: every candidate)
        for view in self._queue(snapshot.pending):
            job = view.job
            shape: tuple[object, ...] | None
            sh: _Shape | None = None
            if shared is not None:
                jid = job.id
                sh = shape_of.get(jid)
                if sh is None:  # the job's shape, kept (one object per shape); _IN_FULL when it has a carbon budget
                    if job.carbon_budget_tco2 is None:
                        new_key = (job.accelerator, job.gpus, job.tp_size, job.sovereignty, None)
                        sh = shape_by_key.get(new_key)
                        if sh is None:
                            sh = shape_by_key[new_key] = _Shape(new_key)
                    else:
                        sh = _IN_FULL
                    shape_of[jid] = sh
                if sh is not _IN_FULL:
                    if sh.serial == serial and sh.placed == placed_n:  # the fast path: waits as the last one did
                        memo = sh.memo
                        if memo.refused:
                            refusals.extend(self._refusals_of(memo, jid, factories, shared, shared_t))
                        waiting.append((jid, memo.why))
                        continue
                    shape = sh.key
                else:
                    shape, sh = None, None
                cands = shared
            else:
                cands = self.candidates(snapshot, view)
                shape = ((job.accelerator, job.gpus, job.tp_size, job.sovereignty, tuple(cands))
                         if job.carbon_budget_tco2 is None else None)
            memo = redo = None
            if shape is not None:
                memo = failed.get(shape)
                if memo is not None:
                    if memo.serial == serial:
                        redo = frozenset(touched[memo.placed:])
                    else:
                        redo = self._changed_since(memo, states, since)
                        if placed_n:
                            redo = redo.union(touched)
                    if redo:  # a factory the shape can never use refuses it again, for the same reason
                        redo = redo & self._possible_for(job, factories)
                if memo is not None and not redo:
                    if sh is not None:
                        sh.serial, sh.placed, sh.memo = serial, placed_n, memo
                    else:
                        clear[shape] = (placed_n, memo)
                    if memo.refused:
                        refusals.extend(self._refusals_of(memo, job.id, factories, cands, shared_t))
                    waiting.append((job.id, memo.why))
                    continue
            reasons: dict[int, str] = dict(memo.reasons) if memo is not None else {}
            refused = [(i, r) for i, r in memo.refused if i not in redo] if memo is not None and redo else []
            placed_at = -1
            for i in cands:
                if redo is not None and i not in redo:
                    continue
                f, st = factories[i], states[i]
                akey = (i, *shape[:4]) if shape is not None else None
                tv = tvers.get(i, 0)  # placements this plan made here so far
                if akey is not None:  # this factory's last answer, if it did not move since
                    got = at.get(akey)
                    if got is not None and ((got[1] == serial and got[2] == tv) or (
                            got[2] == 0 and tv == 0 and (got[0] is st or not _moved(got[0], st)))):
                        reasons[i] = got[3]
                        if got[4]:
                            refused.append((i, got[3]))
                        continue
                skey = (i, job.accelerator, job.gpus, job.sovereignty)
                sc = shapes.get(skey)
                if sc is None:
                    sc = shapes[skey] = shape_check(job, f)
                check = evaluate(view, f, st, it_power[i], shape=sc)
                if not check.ok:
                    reasons[i] = check.reason
                    audit = check.audit(job.id, f.id)
                    if audit is not None:
                        refused.append((i, audit[2]))
                    if akey is not None:
                        at[akey] = (st, serial, tv, check.reason, audit is not None)
                    continue
                extra_w = check.extra_it_w
                key = (i, job.accelerator)
                if key not in free_count:  # counted on the snapshot's bytes: placements so far touched other keys
                    kept = free_of.get(key)
                    if kept is not None and kept[0] is st:  # the same state object: the same bytes, the same count
                        free_count[key] = kept[1]
                    else:
                        raw = st.node_status
                        n_free = free_count[key] = sum(raw.count(NODE_FREE, c.node_offset, c.node_end)
                                                       for c in f.clusters_of(job.accelerator))
                        free_of[key] = (st, n_free)
                need = sc.nodes
                nodes = None
                if free_count[key] >= need:
                    if i not in status:
                        status[i] = np.frombuffer(st.node_status, dtype=np.uint8).copy()
                    nodes = tp_aligned_fit(f, status[i], job.accelerator, job.gpus, job.tp_size)
                if nodes is None:
                    reasons[i] = FULL
                    if akey is not None:
                        at[akey] = (st, serial, tv, FULL, False)
                    continue
                status[i][nodes_array(nodes)] = 1  # the array placement built the tuple from
                free_count[key] -= len(nodes)
                it_power[i] += extra_w
                actions.append(Place(job.id, f.id, nodes))
                touched.append(i)
                placed_n += 1
                tvers[i] = tv + 1
                placed_at = i
                break
            if memo is not None and refused:
                refused = _in_order(refused, cands)
            if placed_at >= 0:  # refusals of the factories tried before the one that took it
                before = set(cands[:cands.index(placed_at)]) if refused else set()
                refusals.extend((job.id, factories[i].id, r) for i, r in refused if i in before)
                continue
            refusals.extend((job.id, factories[i].id, r) for i, r in refused)
            why = memo.why if memo is not None and reasons == memo.reasons else _why(snapshot, job.accelerator,
                                                                                       reasons)
            waiting.append((job.id, why))
            if shape is not None:
                new = failed[shape] = _Failed(states, serial, len(actions), reasons, tuple(refused), why, shared_t)
                if sh is not None:
                    sh.serial, sh.placed, sh.memo = serial, placed_n, new
                else:
                    clear[shape] = (placed_n, new)
        return Plan(tuple(actions), tuple(waiting), tuple(refusals))

    @staticmethod
    def _refusals_of(memo: _Failed, job_id: str, factories: tuple[Factory, ...], cands: list[int],
                     shared_t: tuple[int, ...]) -> Sequence[tuple[str, str, str]]:
        """The hard-rule refusals of a job that waits as ``memo`` says, in candidate order."""
        if memo.order == shared_t:
            ref = memo.by_job.get(job_id)
            if ref is None:
                ref = memo.by_job[job_id] = tuple((job_id, factories[i].id, reason) for i, reason in memo.refused)
            return ref
        return [(job_id, factories[i].id, reason) for i, reason in _in_order(memo.refused, cands)]

    def _changed_since(self, memo: _Failed, states: tuple[FactoryState, ...],
                       since: dict[int, frozenset[int]]) -> frozenset[int]:
        """Factories whose state object differs from when ``memo`` was computed: the union of the recent
        decisions' changes when the log reaches back that far (kept in ``since`` for the rest of this decision:
        the memos of one decision share their serial), else a comparison of every factory."""
        log = self._log
        if log and log[0][0] <= memo.serial + 1:
            got = since.get(memo.serial)
            if got is None:
                out: set[int] = set()
                for s, changed in log:
                    if s > memo.serial:
                        out.update(changed)
                got = since[memo.serial] = frozenset(out)
            return got
        old = memo.states
        return frozenset(i for i in range(len(states)) if states[i] is not old[i] and _moved(old[i], states[i]))

    def _possible_for(self, job: TrainingJob, factories: tuple[Factory, ...]) -> frozenset[int]:
        """Factories where ``job``'s shape passes the static filters (accelerator and size, sovereignty)."""
        key = (job.accelerator, job.gpus, job.sovereignty)
        got = self._possible.get(key)
        if got is None:
            ok = []
            for i, f in enumerate(factories):
                skey = (i, job.accelerator, job.gpus, job.sovereignty)
                sc = self._shapes.get(skey)
                if sc is None:
                    sc = self._shapes[skey] = shape_check(job, f)
                if sc.refusal is None:
                    ok.append(i)
            got = self._possible[key] = frozenset(ok)
        return got


class _Shape:
    """A job shape with shared candidates (``key``: accelerator, GPUs, TP, data classes, None), one object per shape,
    and what the current decision found for it: in decision ``serial``, with ``placed`` placements made, its memo
    was (found) valid, so the next job of the shape waits the same while the plan places nothing more (issue 12,
    session 7: two attribute reads instead of hashing the shape tuple in a per-decision dict, per waiting job)."""

    __slots__ = ("key", "memo", "placed", "serial")

    def __init__(self, key: tuple[object, ...]) -> None:
        self.key = key
        self.serial = -1
        self.placed = -1
        self.memo: _Failed = _NO_MEMO


@dataclass(slots=True)
class _Failed:
    """A job shape's outcome where it fit nowhere: the snapshot states and the point of the plan (decision
    serial, placements made) it was computed at, every candidate's reason, the hard-rule refusals in candidate
    order, the waiting sentence, and the shared candidate order then (empty when candidates are per job)."""

    states: tuple[FactoryState, ...]
    serial: int
    placed: int
    reasons: dict[int, str]
    refused: tuple[tuple[int, str], ...]
    why: str
    order: tuple[int, ...]
    by_job: dict[str, tuple[tuple[str, str, str], ...]] = field(default_factory=dict)  # refusals per job id


_NO_MEMO = _Failed((), -1, -1, {}, (), "", ())
#: the shape of a job with a carbon budget: never kept (evaluated in full at every decision)
_IN_FULL = _Shape(())


def _moved(a: FactoryState, b: FactoryState) -> bool:
    """Whether a factory changed in what a placement's outcome depends on (up, IT power, node states); a new
    price or carbon intensity alone moves only the candidate order, which the planner handles itself."""
    return a.up != b.up or a.it_power_w != b.it_power_w or a.node_status != b.node_status


def _in_order(refused: Sequence[tuple[int, str]], cands: list[int]) -> list[tuple[int, str]]:
    """``refused`` (factory index, reason) sorted by the factories' positions in ``cands``."""
    pos = {i: k for k, i in enumerate(cands)}
    return sorted(refused, key=lambda e: pos[e[0]])


@register("greedy")
class GreedyCheapest(_FirstFitPlanner):
    """Cheapest feasible factory now (price x PUE), first-fit nodes; never migrates."""

    candidates_per_job = False

    def __init__(self) -> None:
        super().__init__()
        # (factories, every factory's price, the order): prices move hourly, decisions ~12x as often
        self._by_price: tuple[tuple[Factory, ...], list[float], list[int]] | None = None

    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        """Factories by price x PUE, then index (the same list object while the prices are the same: callers
        only read it)."""
        prices = [s.price_usd_per_mwh for s in snapshot.states]
        kept = self._by_price
        if kept is not None and kept[0] is snapshot.factories and kept[1] == prices:
            return kept[2]
        order = sorted(
            range(len(snapshot.factories)),
            key=lambda i: (snapshot.states[i].price_usd_per_mwh * snapshot.factories[i].pue, i),
        )
        self._by_price = (snapshot.factories, prices, order)
        return order


@register("home-region")
class HomeRegion(_FirstFitPlanner):
    """Each job runs only in the factory it was submitted to, queueing when it is full (price-blind)."""

    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        home = view.job.home_factory
        if home is None:
            return list(range(len(snapshot.factories)))
        return [snapshot.factory_index(home)]


@register("cheapest-static")
class CheapestStatic(_FirstFitPlanner):
    """Factory with the lowest average price so far (x PUE) first, first-fit nodes; ignores the hour."""

    candidates_per_job = False

    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        def avg(i: int) -> float:
            hist = snapshot.price_history.get(snapshot.factories[i].market, ())
            mean = sum(hist) / len(hist) if hist else snapshot.states[i].price_usd_per_mwh
            return mean * snapshot.factories[i].pue

        return sorted(range(len(snapshot.factories)), key=lambda i: (avg(i), i))
