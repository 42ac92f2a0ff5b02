"""The topology-aware gang scheduler (policy ``gang``): all-or-nothing gangs inside a factory.

One decision first deals with running gangs on NVLink domains the probes read degraded (stay, hot-swap with
:class:`~superfactory.domain.fleet.SwapNodes`, or move: :mod:`superfactory.policy.degraded`), then walks the
queue once (priority first, then submission, then id; but the job waiting longest goes first once it has waited
``starve_after_s``, a starvation guard):

1. **Hot-swap** (first, for jobs a failure just requeued): keep every healthy node of the job and replace each
   failed one with a free node in the same NVLink domain (required when a TP group spans nodes), else the same
   rack, else the same leaf group (the job's network position is unchanged). Spare-pool nodes are used first.
   The twin charges ``RecoverySpec.hot_swap_s`` instead of a full restart. No spare -> the job is requeued
   and placed like any other gang (a full restart from its last checkpoint).
2. **Placement**: :func:`superfactory.policy.gangfit.place_gang` (smallest subtree, best fit, TP groups
   inside domains, fragments first). Before a placement is emitted the simulated all-reduce probe of
   :mod:`superfactory.models.collective` compares effective bandwidth with what the topology should give; below
   ``min_bandwidth_ratio`` the placement is rejected, the domains that failed are avoided, and it is redone.
3. **Reservations and backfill** (EASY-style, topology-aware): the first ``reservations`` gangs that do not fit
   get a reservation: the nodes they will take and the time ``t_r`` they will be free, from running jobs'
   expected ends. A later job may use reserved nodes only if it is expected to finish before ``t_r``; so big
   gangs do not starve and small ones still fill the holes.
4. **Preemption**: a blocked gang may evict *preemptible* running gangs of strictly lower priority. Victims are
   chosen greedily by lowest priority, then least lost work (GPUs x (drain + restart) time: the twin drains
   each victim with a final checkpoint, so no progress is lost) and pruned to a minimal set; the freed nodes are
   reserved for the preemptor. Only when it pays (:mod:`superfactory.policy.preemption`), within rate limits.
5. **Degraded backfill** (``degraded_backfill``): a gang with no healthy room may run slow entirely inside
   probed-degraded domains rather than leave them idle; after the walk, healthy nodes nobody waits for are used
   to hot-swap such gangs back to full speed.

Every job left waiting gets a reason a user can read (``--explain``). Knobs (``policy_params``):
``reservations``, ``backfill``, ``preemption``, ``preempt_after_s`` (a gang preempts only after waiting that
long, so short waits never cost a checkpoint-and-restart), ``hot_swap``, ``spare_pool`` (nodes per NVLink
domain kept for hot swaps when a domain has several nodes, else per leaf group), ``bandwidth_check``,
``min_bandwidth_ratio``, ``max_preemptions_per_day``, ``victim_cooldown_s``, ``preempt_margin``,
``priority_base``, ``evacuate_degraded``, ``probe_cycle_s``, ``starve_after_s``, ``degraded_backfill``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import (
    NODE_DOWN,
    NODE_FREE,
    FleetSnapshot,
    JobView,
    Place,
    Plan,
    Preempt,
    SwapNodes,
)
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import MOVABLE, JobLifecycle
from superfactory.domain.outcome import ActionOutcome
from superfactory.domain.topology import FactoryTopology, topology_of
from superfactory.models.collective import placement_throughput, probe_ratio
from superfactory.policy.degraded import choose_remedy, swap_plan
from superfactory.policy.feasibility import ShapeCheck, Verdict, evaluate, shape_check
from superfactory.policy.gangfit import GangShape, place_gang, shape_of, units_available
from superfactory.policy.preemption import PreemptionCosts, PreemptionLedger
from superfactory.policy.registry import PolicyBase, register

BoolArray = npt.NDArray[np.bool_]
RUNNING_STATES = MOVABLE
CLAIM_S = 3600  # how long nodes freed by preemption stay promised to the preemptor
RECHECK_S = 900  # a declined preemption is not re-evaluated for the same gang before this (the search is costly)


def queue_order(pending: tuple[JobView, ...], now_s: int = 0, starve_after_s: float = float("inf")
                ) -> list[JobView]:
    """Higher priority first, then earlier submission (a requeued job keeps its place), then id; except that the
    job waiting longest since its submission goes first once that wait reaches ``starve_after_s`` (one at a time:
    a starvation guard, so it gets the first reservation; at a load above capacity strict priority would never
    start a low-priority gang that needs a large share of the factory)."""
    order = sorted(pending, key=lambda v: (-v.job.priority, v.job.submit_s, v.job.id))
    if order and starve_after_s < float("inf"):
        oldest = min(order, key=lambda v: (v.job.submit_s, v.job.id))
        if now_s - oldest.job.submit_s >= starve_after_s:
            order.remove(oldest)
            order.insert(0, oldest)
    return order


def expected_run_s(job: TrainingJob, progress_s: float) -> float:
    """Wall seconds a job needs from (re)start to finish: restart + remaining work + checkpoint stalls."""
    ck = job.checkpoint
    remaining = max(0.0, job.work_s - progress_s)
    return job.recovery.restart_s + remaining * (1.0 + ck.blocking_s / ck.interval_s)


@dataclass(slots=True)
class _Site:
    """Working state of one factory during one decision."""

    index: int
    factory: Factory
    topo: FactoryTopology
    status: npt.NDArray[np.uint8]
    free: BoolArray  # free and not yet given away in this plan
    spare: BoolArray  # withheld for hot swaps
    bad_domains: set[int]
    link_factor: dict[int, float]
    it_power_w: float
    reserved: list[tuple[BoolArray, float, str]] = field(default_factory=list)  # (nodes, start_s, job id)
    # per-decision caches: the nodes of ``bad_domains`` (keyed by that set), running jobs' expected ends, and
    # placements that failed: (accelerator, shape) -> (earliest expected end that failed, reason)
    _bad_key: frozenset[int] = frozenset()
    _bad_mask: BoolArray | None = None
    ends: list[tuple[float, str, tuple[int, ...]]] | None = None
    misses: dict[tuple[str, GangShape], tuple[float, str]] = field(default_factory=dict)

    def bad_nodes(self) -> BoolArray:
        """Nodes on ``bad_domains`` (cached until that set changes)."""
        key = frozenset(self.bad_domains)
        if self._bad_mask is None or key != self._bad_key:
            self._bad_key = key
            self._bad_mask = np.isin(self.topo.node_domain, list(key))
        return self._bad_mask

    def accel_mask(self, accelerator: str) -> BoolArray:
        m = np.zeros(self.factory.nodes, dtype=bool)
        for c in self.factory.clusters_of(accelerator):
            m[c.node_offset : c.node_end] = True
        return m


def _hold_claims(claims: dict[str, tuple[str, tuple[int, ...], int]], live_ids: set[str],
                 snapshot: FleetSnapshot, sites: list[_Site]) -> None:
    """Reserve, on this decision's ``sites``, the nodes each claim ``job -> (factory, nodes, expires_s)`` holds;
    drop (in place) the claims whose job is not in ``live_ids`` or that expired."""
    for jid, (fid, nodes, expires_s) in list(claims.items()):
        if jid not in live_ids or snapshot.now_s >= expires_s:
            del claims[jid]
            continue
        site = sites[snapshot.factory_index(fid)]
        mask = np.zeros(site.factory.nodes, dtype=bool)
        mask[list(nodes)] = True
        site.reserved.append((mask, float("inf"), jid))


@register("gang")
class GangScheduler(PolicyBase):
    """Topology-aware gang scheduling: NVLink-domain TP groups, leaf/spine packing, reservations, backfill,
    preemption, hot-swap and an all-reduce bandwidth check."""

    name = "gang"

    def __init__(self, reservations: int = 2, backfill: bool = True, preemption: bool = True,
                 hot_swap: bool = True, spare_pool: int = 0, bandwidth_check: bool = True,
                 min_bandwidth_ratio: float = 0.9, preempt_after_s: int = 1800,
                 max_preemptions_per_day: int = 16, victim_cooldown_s: int = 12 * 3600,
                 preempt_margin: float = 1.5, priority_base: float = 4.0, evacuate_degraded: bool = True,
                 probe_cycle_s: int = 60, starve_after_s: float = 6 * 3600,
                 degraded_backfill: bool = True) -> None:
        if reservations < 0 or spare_pool < 0 or not 0 < min_bandwidth_ratio <= 1:
            raise ValueError("reservations and spare_pool must be >= 0, min_bandwidth_ratio in (0, 1]")
        self.reservations = reservations
        self.backfill = backfill
        self.preemption = preemption
        self.hot_swap = hot_swap
        self.spare_pool = spare_pool
        self.bandwidth_check = bandwidth_check
        self.min_bandwidth_ratio = min_bandwidth_ratio
        self.preempt_after_s = preempt_after_s
        self.costs = PreemptionCosts(priority_base=priority_base, margin=preempt_margin)
        self.ledger = PreemptionLedger(max_per_day=max_preemptions_per_day, victim_cooldown_s=victim_cooldown_s)
        self.evacuate_degraded = evacuate_degraded
        self.starve_after_s = float(starve_after_s)  # see queue_order
        self.degraded_backfill = degraded_backfill  # see _on_degraded
        # a periodic cycle at the probe period, so a sweep that reveals a degraded domain is acted on at once
        self.cycle_s = probe_cycle_s if evacuate_degraded else 0
        # jobs draining off a degraded domain: (factory id, nodes promised to them, expiry)
        self._evac: dict[str, tuple[str, tuple[int, ...], int]] = {}
        # gangs whose preemption was declined: (re-evaluate after, why)
        self._declined: dict[str, tuple[int, str]] = {}
        self._victim_of: dict[str, str] = {}  # victim job id -> the gang it is draining for
        # nodes a preemptor was promised (factory id, nodes, expiry): withheld from everyone else until it starts
        self._claims: dict[str, tuple[str, tuple[int, ...], int]] = {}
        # reservations stick to their nodes across decisions, so backfill cannot keep pushing their start back
        self._sticky: dict[str, tuple[str, tuple[int, ...]]] = {}
        #: counters a benchmark or report may read: placements, hot_swaps, bandwidth_rejections, preemptions
        self.stats: dict[str, int] = {"placements": 0, "hot_swaps": 0, "bandwidth_rejections": 0,
                                      "preemptions": 0, "preemptions_declined": 0, "evacuations": 0,
                                      "degraded_hot_swaps": 0, "degraded_backfills": 0}
        # static per (job, factory): gang shapes and the shape/sovereignty part of the feasibility pipeline
        self._shapes: dict[tuple[str, str], GangShape | None] = {}
        self._checks: dict[tuple[str, str], ShapeCheck] = {}
        self._slow_by_choice: set[str] = set()  # jobs backfilled onto degraded domains: left there
        self._no_swap: set[str] = set()  # jobs whose hot swap a world refused: moved, never swapped again
        self._swapping: set[str] = set()  # jobs given a SwapNodes in the last decision

    # == decision ===========================================================================================
    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng  # deterministic
        sites = [self._site(snapshot, i) for i in range(len(snapshot.factories))]
        self._swapping.clear()
        pending_ids = {v.job.id for v in snapshot.pending}
        for jid in [j for j in self._sticky if j not in pending_ids]:
            del self._sticky[jid]
        for jid in [j for j in self._declined if j not in pending_ids]:
            del self._declined[jid]
        # promises are rebuilt from the snapshot: a victim no longer held, or a preemptor no longer waiting, is done
        held_ids = {v.job.id for v in snapshot.running}
        self._slow_by_choice &= held_ids
        for vid in [v for v, p in self._victim_of.items() if v not in held_ids or p not in pending_ids]:
            del self._victim_of[vid]
        _hold_claims(self._claims, pending_ids, snapshot, sites)
        actions: list[Place | Preempt | SwapNodes] = []
        _hold_claims(self._evac, pending_ids | held_ids, snapshot, sites)
        if self.evacuate_degraded:
            actions.extend(self._evacuations(snapshot, sites))
        waiting: list[tuple[str, str]] = []
        refusals: list[tuple[str, str, str]] = []
        running_by_site: dict[int, list[JobView]] = {}
        for v in snapshot.running:
            if v.factory_id is not None:
                running_by_site.setdefault(snapshot.factory_index(v.factory_id), []).append(v)
        victims: set[str] = set()
        reserved_jobs = 0
        head: str | None = None  # with backfill off, the first blocked job blocks the rest
        for view in queue_order(snapshot.pending, snapshot.now_s, self.starve_after_s):
            if head is not None:
                waiting.append((view.job.id, f"queued behind {head} (strict priority order, backfill off)"))
                continue
            if view.interrupted and self.hot_swap:
                swap = self._hot_swap(snapshot, sites, view)
                if swap is not None:
                    actions.append(swap)
                    self.stats["hot_swaps"] += 1
                    continue
            placed, reason = self._place(snapshot, sites, view, refusals)
            if placed is not None:
                actions.append(placed)
                self.stats["placements"] += 1
                continue
            if reserved_jobs < self.reservations:
                reserved_jobs += 1
                note, evict = self._reserve_or_preempt(snapshot, sites, running_by_site, view, victims)
                actions.extend(evict)
                reason = f"{reason}; {note}" if note else reason
            elif self.reservations:
                reason += "; behind the reserved gangs (may backfill when it fits and ends before them)"
            waiting.append((view.job.id, reason))
            if not self.backfill:
                head = view.job.id
        if self.evacuate_degraded and self._slow_by_choice:
            actions.extend(self._evacuations(snapshot, sites, backfilled=True))
        return Plan(tuple(actions), tuple(waiting), tuple(refusals))

    def observe(self, outcomes: Sequence[ActionOutcome]) -> None:
        """A preemption that did not take effect frees its preemptor's promise: the claim and the victim links
        are dropped, and the preemptor is considered afresh at the next decision (nothing assumed done)."""
        for o in outcomes:
            swapped = o.job_id in self._swapping
            if o.in_force:
                continue
            if swapped:  # a world that cannot hot-swap: the gang is only ever moved (or stays) from now on
                self._no_swap.add(o.job_id)
            self.ledger.forget(o.job_id)
            self._evac.pop(o.job_id, None)
            preemptor = self._victim_of.pop(o.job_id, None)
            if preemptor is not None:
                self._claims.pop(preemptor, None)
                for v in [v for v, p in self._victim_of.items() if p == preemptor]:
                    del self._victim_of[v]

    # == degraded domains ===================================================================================
    def _evacuations(self, snapshot: FleetSnapshot, sites: list[_Site], backfilled: bool = False
                     ) -> list[Preempt | SwapNodes]:
        """Take running gangs off NVLink domains the probes found degraded: stay, hot-swap or move, by what pays
        (:func:`superfactory.policy.degraded.choose_remedy`).

        A gang whose TP traffic rides a degraded domain runs at ``placement_throughput`` (< 1) of nominal. A
        **hot swap** moves only its TP groups on degraded domains to free healthy nodes (each group inside one
        domain), pausing it ``hot_swap_s`` with its progress kept; a **move** drains it (final checkpoint) and
        restarts it on a healthy placement that exists *now* (free nodes plus its own healthy ones), promised to
        it so the move never turns a slow gang into a waiting one. The cheaper one is done when it costs less
        than staying (``remaining x (1/speed - 1)``). Moves count against the factory's preemption rate limit;
        hot swaps do not (nothing is stopped or requeued). A gang whose hot swap a world refused is only moved.

        ``backfilled``: consider only the gangs this policy itself backfilled onto degraded domains
        (``_on_degraded``); they are considered *after* the queue walk, so they speed up only with the healthy
        nodes no waiting gang could use (they never jump the queue). Otherwise consider the others."""
        out: list[Preempt | SwapNodes] = []
        for v in snapshot.running:
            if (v.factory_id is None or v.state not in RUNNING_STATES or v.job.id in self._evac
                    or (v.job.id in self._slow_by_choice) != backfilled):
                continue
            site = sites[snapshot.factory_index(v.factory_id)]
            if not site.bad_domains or not site.bad_domains.intersection(site.topo.node_domain[list(v.nodes)].tolist()):
                continue
            speed = placement_throughput(site.topo, v.nodes, v.job, site.link_factor)
            if speed >= self.min_bandwidth_ratio:
                continue
            shape = self._shape(site, v.job)
            if shape is None:
                continue
            remaining_s = expected_run_s(v.job, v.progress_s) - v.job.recovery.restart_s
            usable = self._usable(site, v.job, snapshot.now_s + remaining_s)
            swaps = None
            if self.hot_swap and v.state is JobLifecycle.RUNNING and v.job.id not in self._no_swap:
                swaps = swap_plan(site.topo, usable, v.nodes, shape.unit_nodes, site.bad_domains)
            target = None
            if self.ledger.room(site.factory.id, snapshot.now_s) > 0:  # moves count against the rate limit
                strict = self._usable(site, v.job, float("inf"))
                own = np.asarray(v.nodes, dtype=np.intp)
                strict[own] = ~np.isin(site.topo.node_domain[own], list(site.bad_domains))
                target = place_gang(site.topo, strict, shape) if int(strict.sum()) >= shape.nodes else None
            remedy = choose_remedy(remaining_s, speed,
                                   float(v.job.recovery.hot_swap_s) if swaps is not None else None,
                                   self.costs.overhead_s(v) if target is not None else None)
            bad = sorted(site.bad_domains.intersection(site.topo.node_domain[list(v.nodes)].tolist()))
            head = (f"degraded NVLink domain(s) {bad} of {site.factory.id}: runs at {speed:.2f} of nominal, "
                    f"{remaining_s / 3600:.1f} h left; {remedy.why}")
            if remedy.kind == "swap" and swaps is not None:
                new = [n for _, n in swaps]
                site.free[new] = False
                self.stats["degraded_hot_swaps"] += 1
                self._swapping.add(v.job.id)
                out.append(SwapNodes(v.job.id, site.factory.id, swaps,
                                     f"hot-swapping {len(swaps)} node(s) off {head}"))
            elif remedy.kind == "move" and target is not None:
                mask = np.zeros(site.factory.nodes, dtype=bool)
                mask[list(target)] = True
                site.free &= ~mask
                site.reserved.append((mask, float("inf"), v.job.id))
                self._evac[v.job.id] = (site.factory.id, target, snapshot.now_s + CLAIM_S)
                self.stats["evacuations"] += 1
                self.ledger.record(site.factory.id, v.job.id, snapshot.now_s)
                out.append(Preempt(v.job.id, f"evacuating {head}; moves to {len(target)} healthy nodes after a "
                                             "final checkpoint"))
        return out

    # == per-factory state ===================================================================================
    def _site(self, snapshot: FleetSnapshot, i: int) -> _Site:
        f, st = snapshot.factories[i], snapshot.states[i]
        topo = topology_of(f)
        status = np.frombuffer(st.node_status, dtype=np.uint8)
        free = status == NODE_FREE
        spare = np.zeros(f.nodes, dtype=bool)
        if self.spare_pool > 0 and f.nodes:
            spare = self._spares(f, topo, free)
        link_factor = st.link_factors  # what the probes measured (with their age), never the hidden truth
        bad = {d for d, x in link_factor.items() if x < self.min_bandwidth_ratio}
        return _Site(i, f, topo, status, free.copy(), spare, bad, link_factor, st.it_power_w)

    def _spares(self, f: Factory, topo: FactoryTopology, free: BoolArray) -> BoolArray:
        """The last ``spare_pool`` free nodes of every multi-node domain (else of every leaf group)."""
        spare = np.zeros(f.nodes, dtype=bool)
        for c in f.clusters:
            sl = slice(c.node_offset, c.node_end)
            group = topo.node_domain[sl] if c.system.nodes_per_domain > 1 else topo.node_leaf[sl]
            idx = np.flatnonzero(free[sl])[::-1]
            g = group[idx]
            # rank of each free node within its group, counting from the group's highest-numbered free node
            order = np.argsort(g, kind="stable")
            gs = g[order]
            first = np.r_[0, np.flatnonzero(gs[1:] != gs[:-1]) + 1]
            rank = np.arange(gs.size) - np.repeat(first, np.diff(np.r_[first, gs.size]))
            chosen = idx[order][rank < self.spare_pool]
            spare[c.node_offset + chosen] = True
        return spare

    def _candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        if len(snapshot.factories) == 1:
            return [0]
        first = view.last_factory_id or view.job.home_factory
        order = list(range(len(snapshot.factories)))
        if first is not None and any(f.id == first for f in snapshot.factories):
            fi = snapshot.factory_index(first)
            order.remove(fi)
            order.insert(0, fi)
        return order

    # == placement ===========================================================================================
    def _usable(self, site: _Site, job: TrainingJob, end_s: float) -> BoolArray:
        usable = site.free & ~site.spare & site.accel_mask(job.accelerator)
        for nodes, start_s, owner in site.reserved:
            if end_s > start_s and owner != job.id:
                usable &= ~nodes
        if site.bad_domains:
            usable &= ~site.bad_nodes()
        return usable

    def _shape(self, site: _Site, job: TrainingJob) -> GangShape | None:
        """The job's :class:`GangShape` in ``site``'s factory (static: cached per job and factory)."""
        key = (job.id, site.factory.id)
        if key in self._shapes:
            return self._shapes[key]
        clusters = site.factory.clusters_of(job.accelerator)
        shape = None
        if clusters:
            s = clusters[0].system
            shape = shape_of(job, s.gpus_per_node, s.nodes_per_domain)
        self._shapes[key] = shape
        return shape

    def _static_check(self, site: _Site, job: TrainingJob, shape: GangShape | None) -> ShapeCheck:
        """:func:`~superfactory.policy.feasibility.shape_check` of the job in ``site`` (static: cached)."""
        key = (job.id, site.factory.id)
        sc = self._checks.get(key)
        if sc is None:
            sc = self._checks[key] = shape_check(job, site.factory, shape.nodes if shape is not None else None)
        return sc

    def _place(self, snapshot: FleetSnapshot, sites: list[_Site], view: JobView,
               refusals: list[tuple[str, str, str]]) -> tuple[Place | None, str]:
        job = view.job
        end_s = snapshot.now_s + expected_run_s(job, view.progress_s)
        reasons: list[str] = []
        for i in self._candidates(snapshot, view):
            site = sites[i]
            f, st = site.factory, snapshot.states[i]
            shape = self._shape(site, job)
            check = evaluate(view, f, st, site.it_power_w, shape=self._static_check(site, job, shape))
            if not check.ok or shape is None:
                reasons.append(check.reason or f"{f.id} has no {job.accelerator}")
                audit = check.audit(job.id, f.id)
                if audit is not None:
                    refusals.append(audit)
                continue
            extra_w = check.extra_it_w
            # (a job that owns reserved nodes here, e.g. a preemptor's claim, may use them: never cached)
            cacheable = not any(owner == job.id for _, _, owner in site.reserved)
            miss = site.misses.get((job.accelerator, shape)) if cacheable else None
            if miss is not None and end_s >= miss[0]:
                # a gang of this shape ending no earlier found no room earlier in this decision, and room only
                # shrinks as the walk goes on (nodes given away, reservations added): it cannot fit either
                slow = self._on_degraded(site, job, shape, end_s)
                if slow is not None:
                    site.it_power_w += extra_w
                    return Place(job.id, f.id, slow), ""
                reasons.append(miss[1])
                continue
            usable = self._usable(site, job, end_s)
            nodes: tuple[int, ...] | None = None
            capacity_miss = True
            for _attempt in range(4):
                if int(usable.sum()) < shape.nodes:
                    break
                nodes = place_gang(site.topo, usable, shape)
                if nodes is None or not self.bandwidth_check:
                    break
                ratio, bad = probe_ratio(site.topo, nodes, job, site.link_factor)
                if ratio >= self.min_bandwidth_ratio:
                    break
                # rejected: avoid the domains whose probe fell short and redo the placement
                self.stats["bandwidth_rejections"] += 1
                site.bad_domains.update(bad)
                usable &= ~np.isin(site.topo.node_domain, list(bad))
                nodes = None
                capacity_miss = False
            if nodes is None:
                why = self._why_not(site, job, shape, usable)
                reasons.append(why)
                if capacity_miss and cacheable:
                    site.misses[(job.accelerator, shape)] = (end_s, why)
                slow = self._on_degraded(site, job, shape, end_s)
                if slow is not None:
                    site.it_power_w += extra_w
                    return Place(job.id, f.id, slow), ""
                continue
            site.free[list(nodes)] = False
            site.it_power_w += extra_w
            return Place(job.id, f.id, nodes), ""
        return None, "; ".join(reasons) or "no candidate factory"

    def _on_degraded(self, site: _Site, job: TrainingJob, shape: GangShape, end_s: float) -> tuple[int, ...] | None:
        """Backfill onto probed-degraded NVLink domains (``degraded_backfill``): a gang with no healthy room now
        may run slow (0.6) entirely inside degraded domains rather than leave them idle. It is hot-swapped (or
        moved) off them when that pays, but only with healthy nodes left over after the queue walk (see
        ``_evacuations``), and speeds up anyway when the domain heals. Reservations are honoured as for any
        backfill."""
        if not self.degraded_backfill or not site.bad_domains:
            return None
        pool = site.free & ~site.spare & site.accel_mask(job.accelerator) & site.bad_nodes()
        for nodes, start_s, owner in site.reserved:
            if end_s > start_s and owner != job.id:
                pool &= ~nodes
        if int(pool.sum()) < shape.nodes:
            return None
        got = place_gang(site.topo, pool, shape)
        if got is not None:
            site.free[list(got)] = False
            self._slow_by_choice.add(job.id)
            self.stats["degraded_backfills"] += 1
        return got

    def _why_not(self, site: _Site, job: TrainingJob, shape: GangShape, usable: BoolArray) -> str:
        f = site.factory
        unit = f"{shape.unit_nodes}-node TP groups in one NVLink domain" if shape.unit_nodes > 1 else "whole nodes"
        acc = site.accel_mask(job.accelerator)
        free_now = int((site.free & acc).sum())
        held = free_now - int(usable.sum())
        parts = [f"{f.id}: needs {shape.nodes} {job.accelerator} nodes as {unit}; {free_now} free"]
        if held > 0:
            parts.append(f"{held} of them held for spares, reservations of higher-priority gangs or failed "
                         "bandwidth checks")
        avail = units_available(site.topo, usable, shape) * shape.unit_nodes
        if avail < free_now - held:
            parts.append(f"only {avail} usable in whole TP groups (fragmented domains)")
        return ", ".join(parts)

    # == reservations & preemption =========================================================================
    def _reserve_or_preempt(self, snapshot: FleetSnapshot, sites: list[_Site],
                            running_by_site: dict[int, list[JobView]], view: JobView,
                            victims: set[str]) -> tuple[str, list[Preempt]]:
        job = view.job
        for i in self._candidates(snapshot, view):
            site = sites[i]
            shape = self._shape(site, job)
            check = evaluate(view, site.factory, snapshot.states[i], site.it_power_w, shape.nodes if shape else None)
            if shape is None or check.verdict in (Verdict.INFEASIBLE, Verdict.REFUSED) or check.rule == "down":
                continue
            running = running_by_site.get(i, [])
            waited_s = snapshot.now_s - view.waiting_since_s if view.waiting_since_s >= 0 else 0
            res = self._reservation(snapshot, site, running, job, shape)
            start_s = res[1] if res is not None else float("inf")
            declined = ""
            if self.preemption and waited_s >= self.preempt_after_s:
                evict, declined = self._preempt_for(site, running, view, shape, victims, snapshot.now_s, start_s)
                if evict:
                    return (f"preempting {', '.join(p.job_id for p in evict)} (lower priority; they checkpoint "
                            f"first; {declined})"), evict
                if evict is not None:
                    return "waiting for the gangs it preempted to finish their checkpoints", []
            if res is not None:
                nodes, start_s = res
                site.reserved.append((nodes, start_s, job.id))
                wait_h = (start_s - snapshot.now_s) / 3600
                note = (f"reservation {job.id}@{site.factory.id}: {int(nodes.sum())} nodes, expected start "
                        f"t={int(start_s)} s (~{wait_h:.1f} h, when running gangs are expected to end)")
                return (f"{note}; not preempting: {declined}" if declined else note), []
        return "", []

    def _reservation(self, snapshot: FleetSnapshot, site: _Site, running: list[JobView], job: TrainingJob,
                     shape: GangShape) -> tuple[BoolArray, float] | None:
        """Nodes and expected start of ``job``'s reservation in ``site`` (running jobs end as expected)."""
        base = site.free & ~site.spare & site.accel_mask(job.accelerator)
        for nodes, _, owner in site.reserved:
            if owner != job.id:
                base &= ~nodes
        if site.bad_domains:
            base &= ~site.bad_nodes()
        if site.ends is None:  # the same for every gang of this decision
            site.ends = sorted(
                (snapshot.now_s + expected_run_s(v.job, v.progress_s) - v.job.recovery.restart_s, v.job.id, v.nodes)
                for v in running
            )
        ends = site.ends
        sticky = self._sticky.get(job.id)
        if sticky is not None and sticky[0] == site.factory.id:
            held = np.zeros(site.factory.nodes, dtype=bool)
            held[list(sticky[1])] = True
            if not (held & (site.status == NODE_DOWN)).any() and not (held & ~base & site.free).any():
                start_s = float(snapshot.now_s)
                for end_s, _, job_nodes in ends:
                    if held[list(job_nodes)].any():
                        start_s = max(start_s, end_s)
                return held, start_s
            del self._sticky[job.id]
        taken = np.zeros(site.factory.nodes, dtype=bool)
        for nodes, _, owner in site.reserved:
            if owner != job.id:
                taken |= nodes
        hypo = base.copy()
        for end_s, _, job_nodes in ends:
            idx = np.asarray(job_nodes, dtype=np.intp)
            idx = idx[(site.status[idx] != NODE_DOWN) & ~taken[idx] & ~site.spare[idx]]
            hypo[idx] = True
            if int(hypo.sum()) < shape.nodes or units_available(site.topo, hypo, shape) < shape.units:
                continue
            chosen = place_gang(site.topo, hypo, shape)
            if chosen is None:
                continue
            mask = np.zeros(site.factory.nodes, dtype=bool)
            mask[list(chosen)] = True
            self._sticky[job.id] = (site.factory.id, chosen)
            return mask, max(float(snapshot.now_s), end_s)
        return None

    def _preempt_for(self, site: _Site, running: list[JobView], view: JobView, shape: GangShape,
                     victims: set[str], now_s: int, start_s: float) -> tuple[list[Preempt] | None, str]:
        """Preempt actions that make room for ``view`` (and why); ``[]`` if victims already draining suffice
        (their nodes are then reserved for it); ``None`` if preemption cannot make room, does not pay
        (:class:`~superfactory.policy.preemption.PreemptionCosts`) or the factory's rate limit is spent.
        ``start_s``: when it would start without preempting (its reservation), ``inf`` if unknown."""
        job = view.job
        declined = self._declined.get(job.id)
        if declined is not None and now_s < declined[0]:
            return None, declined[1]
        none, why = self._search_victims(site, running, view, shape, victims, now_s, start_s)
        if none is None and why:
            self._declined[job.id] = (now_s + RECHECK_S, why)
        return none, why

    def _search_victims(self, site: _Site, running: list[JobView], view: JobView, shape: GangShape,
                        victims: set[str], now_s: int, start_s: float) -> tuple[list[Preempt] | None, str]:
        job = view.job
        room = self.ledger.room(site.factory.id, now_s)
        cands = [v for v in running if v.job.preemptible and v.job.priority < job.priority
                 and v.state in RUNNING_STATES and v.job.id not in victims
                 and v.job.accelerator == job.accelerator and not self.ledger.cooling(v.job.id, now_s)]
        if not cands:
            return None, "no preemptible lower-priority gang outside its cooldown"

        def lost_gpu_s(v: JobView) -> float:
            ck = v.job.checkpoint
            return v.job.gpus * (ck.blocking_s + ck.async_write_s + v.job.recovery.restart_s)

        cands.sort(key=lambda v: (v.job.priority, lost_gpu_s(v) / max(1, len(v.nodes)), v.job.id))
        if job.id in self._claims:
            return [], ""  # it already preempted: wait for its claim rather than evict again
        usable = site.free & ~site.spare & site.accel_mask(job.accelerator)
        for nodes, _, owner in site.reserved:
            if owner != job.id:
                usable &= ~nodes
        healthy = site.status != NODE_DOWN
        if site.bad_domains:
            healthy = healthy & ~site.bad_nodes()
        usable &= healthy
        # victims already draining for this gang count as free: never evict twice for one gang
        for v in running:
            if self._victim_of.get(v.job.id) == job.id and v.state is JobLifecycle.DRAINING:
                usable[list(v.nodes)] = healthy[list(v.nodes)]
        if units_available(site.topo, usable, shape) >= shape.units:
            target = place_gang(site.topo, usable, shape)
            if target is not None:
                mask = np.zeros(site.factory.nodes, dtype=bool)
                mask[list(target)] = True
                site.reserved.append((mask, float("inf"), job.id))
                return [], ""
        chosen: list[JobView] = []
        hypo = usable.copy()
        for v in cands:
            chosen.append(v)
            hypo[list(v.nodes)] = healthy[list(v.nodes)]
            if units_available(site.topo, hypo, shape) >= shape.units:
                break
        else:
            return None, "preempting every candidate would still not make room"
        # prune: drop the costliest victims that are not needed
        for v in sorted(chosen, key=lost_gpu_s, reverse=True):
            trial = usable.copy()
            for w in chosen:
                if w is not v:
                    trial[list(w.nodes)] = healthy[list(w.nodes)]
            if units_available(site.topo, trial, shape) >= shape.units:
                chosen.remove(v)
        if len(chosen) > room:
            self.stats["preemptions_declined"] += 1
            return None, f"rate limit: {site.factory.id} may preempt {room} more gang(s) in this 24 h window"
        drain_s = max(v.job.checkpoint.blocking_s + v.job.checkpoint.async_write_s for v in chosen)
        sooner_s = start_s - (now_s + drain_s)
        ok, why = self.costs.pays(view, [(v, expected_run_s(v.job, v.progress_s)) for v in chosen], sooner_s)
        if not ok:
            self.stats["preemptions_declined"] += 1
            return None, why
        hypo = usable.copy()
        for v in chosen:
            hypo[list(v.nodes)] = healthy[list(v.nodes)]
        target = place_gang(site.topo, hypo, shape)
        if target is None:
            return None, "no placement after preempting"
        mask = np.zeros(site.factory.nodes, dtype=bool)
        mask[list(target)] = True
        site.reserved.append((mask, float("inf"), job.id))  # nobody backfills onto the preemptor's nodes
        self._claims[job.id] = (site.factory.id, target, now_s + CLAIM_S)
        victims.update(v.job.id for v in chosen)
        self._victim_of.update((v.job.id, job.id) for v in chosen)
        self.stats["preemptions"] += len(chosen)
        for v in chosen:
            self.ledger.record(site.factory.id, v.job.id, now_s)
        return [Preempt(v.job.id, f"preempted by {job.id} (priority {job.priority} > {v.job.priority}; {why})")
                for v in chosen], why

    # == hot swap ============================================================================================
    def _hot_swap(self, snapshot: FleetSnapshot, sites: list[_Site], view: JobView) -> Place | None:
        if view.last_factory_id is None or not view.last_nodes:
            return None
        i = snapshot.factory_index(view.last_factory_id)
        site = sites[i]
        if not snapshot.states[i].up:
            return None
        last = np.asarray(view.last_nodes, dtype=np.intp)
        down = site.status[last] == NODE_DOWN
        if not np.all(site.free[last[~down]]) or not down.any():
            return None  # a healthy node was taken meanwhile, or nothing failed (e.g. a factory outage)
        shape = self._shape(site, view.job)
        if shape is None:
            return None
        topo = site.topo
        pool = site.free & site.accel_mask(view.job.accelerator)
        if site.bad_domains:
            pool &= ~site.bad_nodes()
        pool[last] = False
        new = last.copy()
        for pos in np.flatnonzero(down):
            node = int(last[pos])
            levels = [topo.node_domain]
            if shape.unit_nodes == 1:
                levels += [topo.node_rack, topo.node_leaf]
            spare = -1
            for level in levels:
                cand = np.flatnonzero(pool & (level == level[node]))
                if cand.size:
                    pref = cand[site.spare[cand]]  # spare-pool nodes first
                    spare = int(pref[0] if pref.size else cand[0])
                    break
            if spare < 0:
                return None
            new[pos] = spare
            pool[spare] = False
        site.free[new] = False
        return Place(view.job.id, site.factory.id, tuple(new.tolist()), hot_swap=True)
