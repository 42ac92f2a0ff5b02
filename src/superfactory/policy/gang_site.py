"""Working state of the ``gang`` policy (:mod:`superfactory.policy.gang`): queue order and the starvation guard,
expected run times, the per-factory state of one decision (:class:`GangSite`) and :class:`GangBase`, the
scheduler's state and its per-factory helpers (sites, spare pools, candidate factories, usable nodes, shapes).
Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_FREE, FleetSnapshot, JobView
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import MOVABLE
from superfactory.domain.topology import FactoryTopology, topology_of
from superfactory.policy.feasibility import ShapeCheck, shape_check
from superfactory.policy.gangfit import GangShape, shape_of
from superfactory.policy.preemption import PreemptionCosts, PreemptionLedger
from superfactory.policy.registry import PolicyBase

BoolArray = npt.NDArray[np.bool_]

RUNNING_STATES = MOVABLE
CLAIM_S = 3600  # how long nodes freed by preemption stay promised to the preemptor
RECHECK_S = 900  # a declined preemption is not re-evaluated for the same gang before this (the search is costly)


def queue_order(pending: tuple[JobView, ...], now_s: int = 0, starve_after_s: float = float("inf"),
                guard_behind_top: bool = False, largest_first: bool = False,
                largest_first_min_gpus: int = 0) -> list[JobView]:
    """Higher priority first, then earlier submission (a requeued job keeps its place), then id; except that the
    job waiting longest since its submission is moved up once that wait reaches ``starve_after_s`` (one at a
    time: a starvation guard; at a load above capacity strict priority would never start a low-priority gang
    that needs a large share of the factory): to the head of the queue, or with ``guard_behind_top`` just
    behind the jobs of the highest priority present (so the top class keeps its place and picks its
    reservations' nodes first). With ``largest_first``, jobs of equal priority *and* submission time go
    largest first (first-fit decreasing: on a backlog released at once into an empty factory the largest gangs
    start at once, with no drain, and smaller work fills around them); only jobs of at least
    ``largest_first_min_gpus`` move, the others keep their id order among themselves, behind them."""
    if largest_first:
        order = sorted(pending, key=lambda v: (-v.job.priority, v.job.submit_s,
                                               -v.job.gpus if v.job.gpus >= largest_first_min_gpus else 0, v.job.id))
    else:
        order = sorted(pending, key=lambda v: (-v.job.priority, v.job.submit_s, v.job.id))
    guard = starving(order, now_s, starve_after_s)
    if guard is not None:
        order.remove(guard)
        top = order[0].job.priority if order else guard.job.priority
        at = sum(1 for v in order if v.job.priority >= top) if guard_behind_top and guard.job.priority < top else 0
        order.insert(at, guard)
    return order


def starving(pending: Sequence[JobView], now_s: int, starve_after_s: float) -> JobView | None:
    """The job waiting longest since its submission, if that wait reached ``starve_after_s`` (else ``None``)."""
    if not pending or starve_after_s == float("inf"):
        return None
    oldest = min(pending, key=lambda v: (v.job.submit_s, v.job.id))
    return oldest if now_s - oldest.job.submit_s >= starve_after_s else None


def expected_run_s(job: TrainingJob, progress_s: float) -> float:
    """Wall seconds a job needs from (re)start to finish: restart + remaining work + checkpoint stalls."""
    ck = job.checkpoint
    remaining = max(0.0, job.work_s - progress_s)
    return job.recovery.restart_s + remaining * (1.0 + ck.blocking_s / ck.interval_s)


@dataclass(slots=True)
class GangSite:
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
    only: BoolArray | None = None  # when set, placements use only these nodes (the rolling plan's domains)
    lane: BoolArray | None = None  # the big gangs' lane (``lane``, policy/gang_lane.py): their only nodes
    slow_ok: bool = True  # whether a placement may fall back to probed-degraded domains (``_on_degraded``)
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


def hold_claims(claims: dict[str, tuple[str, tuple[int, ...], int]], live_ids: set[str],
                 snapshot: FleetSnapshot, sites: list[GangSite], start_s: float = float("inf")) -> None:
    """Reserve, on this decision's ``sites``, the nodes each claim ``job -> (factory, nodes, expires_s)`` holds;
    drop (in place) the claims whose job is not in ``live_ids`` or that expired. ``start_s`` is the reservation's
    start as ``GangSite.reserved`` reads it: other jobs ending before it may still use the nodes, so ``inf``
    keeps them out of other gangs' reservations only, and ``-inf`` withholds them from every other job."""
    for jid, (fid, nodes, expires_s) in list(claims.items()):
        if jid not in live_ids or snapshot.now_s >= expires_s:
            del claims[jid]
            continue
        site = sites[snapshot.factory_index(fid)]
        mask = np.zeros(site.factory.nodes, dtype=bool)
        mask[list(nodes)] = True
        site.reserved.append((mask, start_s, jid))


class GangBase(PolicyBase):
    """The ``gang`` scheduler's state (set by :class:`superfactory.policy.gang.GangScheduler`'s constructor) and
    its per-factory helpers."""

    reservations: int
    backfill: bool
    preemption: bool
    hot_swap: bool
    spare_pool: int
    bandwidth_check: bool
    min_bandwidth_ratio: float
    preempt_after_s: int
    costs: PreemptionCosts
    ledger: PreemptionLedger
    guard_preemptions: int
    evacuate_degraded: bool
    starve_after_s: float
    degraded_backfill: bool
    latest_fit: bool
    guard_behind_top: bool
    guard_deadline_s: float
    handoff: bool
    handoff_min_gpus: int
    handoff_window_s: float
    handoff_delay_weight: float
    fill_reserved: bool
    largest_first: bool
    largest_first_min_gpus: int
    reserve_after_s: float
    reserve_mix_share: float
    lane_min_gpus: int
    drain_cut_gpus: int
    claim_start_s: float
    swaps_honour_reservations: bool
    _cuts: dict[str, tuple[str, tuple[int, ...], int]]
    drain_cut_margin: float
    _evac: dict[str, tuple[str, tuple[int, ...], int]]
    _declined: dict[str, tuple[int, str]]
    _victim_of: dict[str, str]
    _claims: dict[str, tuple[str, tuple[int, ...], int]]
    _sticky: dict[str, tuple[str, tuple[int, ...]]]
    _promoted: tuple[str, int] | None
    _guarded: set[str]
    stats: dict[str, int]
    _shapes: dict[tuple[str, str], GangShape | None]
    _checks: dict[tuple[str, str], ShapeCheck]
    _slow_by_choice: set[str]
    _no_swap: set[str]
    _swapping: set[str]

    # == per-factory state ===================================================================================
    def _site(self, snapshot: FleetSnapshot, i: int) -> GangSite:
        f, st = snapshot.factories[i], snapshot.states[i]
        topo = topology_of(f)
        status = np.frombuffer(st.node_status, dtype=np.uint8)
        free = status == NODE_FREE
        spare = np.zeros(f.nodes, dtype=bool)
        if self.spare_pool > 0 and f.nodes:
            spare = self._spares(f, topo, free)
        link_factor = st.link_factors  # what the probes measured (with their age), never the hidden truth
        bad = {d for d, x in link_factor.items() if x < self.min_bandwidth_ratio}
        return GangSite(i, f, topo, status, free.copy(), spare, bad, link_factor, st.it_power_w)

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
    def _usable(self, site: GangSite, job: TrainingJob, end_s: float) -> BoolArray:
        usable = site.free & ~site.spare & site.accel_mask(job.accelerator)
        for nodes, start_s, owner in site.reserved:
            if end_s > start_s and owner != job.id:
                usable &= ~nodes
        if site.bad_domains:
            usable &= ~site.bad_nodes()
        if site.only is not None:
            usable &= site.only
        return usable

    def _lane_of(self, site: GangSite, job: TrainingJob) -> BoolArray | None:
        """The lane's nodes if ``job`` is a big gang confined to it (``lane``, policy/gang_lane.py), else None."""
        return site.lane if site.lane is not None and job.gpus >= self.lane_min_gpus else None

    def _shape(self, site: GangSite, job: TrainingJob) -> GangShape | None:
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

    def _static_check(self, site: GangSite, job: TrainingJob, shape: GangShape | None) -> ShapeCheck:
        """:func:`~superfactory.policy.feasibility.shape_check` of the job in ``site`` (static: cached)."""
        key = (job.id, site.factory.id)
        sc = self._checks.get(key)
        if sc is None:
            sc = self._checks[key] = shape_check(job, site.factory, shape.nodes if shape is not None else None)
        return sc
