"""The ``wan`` role: policies that route and time WAN transfers, on the decision loop after training.

A world that models its WAN shows it in ``FleetSnapshot.wan`` (:class:`~superfactory.domain.transfer.WanState`:
links up, open transfers with what is left of them, the ones that need a route, the inference forecast) and
asks the ``wan`` role to decide when transfers need routes (``loop.request(role="wan")``). A policy answers with
one :class:`~superfactory.domain.transfer.RouteTransfer` per transfer it routes (its id is the action's
``job_id``); transfers that cannot make their deadline are named in ``Plan.waiting`` with the figures.

- ``wan-planner`` — the deadline-aware planner (:mod:`.wan_planner`): every open transfer re-planned over paths
  and time slots whenever a transfer needs a route or the links changed, inference traffic reserved. Restores
  (a job waits on them to restart) are not slotted: each goes at once on its first path, best effort, which the
  fabric serves before every other class, and the planner reserves their expected load (their path's
  bottleneck until they are done) the way it reserves inference, planning everything else around them.
- ``wan-naive`` — what happens without a plan: each transfer starts at once on its direct link (the
  lowest-latency path when there is none); links share fairly.
- ``wan-overlay`` — routing without deadlines: each transfer striped at once over its ``k`` shortest overlay
  paths (via relay sites) in proportion to their bottlenecks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from superfactory.domain.fleet import FleetSnapshot, Plan
from superfactory.domain.transfer import RouteTransfer, TrafficClass, Transfer, WanState
from superfactory.policy.registry import PolicyBase, register, register_role
from superfactory.policy.wan_paths import Fabric, dijkstra_tree, path_from_tree, shortest_paths
from superfactory.policy.wan_planner import PlannerConfig, plan_transfers

#: the role of WAN transfer scheduling; after training (20), so a decision sees the checkpoints just written
WAN = register_role("wan", 30)


def _fabric(w: WanState) -> Fabric:
    sites = sorted({s for lk in w.links for s in (lk.a, lk.b)} | {s for t in w.transfers for s in (t.src, t.dst)})
    return Fabric.from_links(w.links, sites)


def _first_path(fab: Fabric, tr: Transfer) -> tuple[tuple[str, ...], ...]:
    """The direct link if there is one, else the lowest-latency path (none when the sites are cut apart)."""
    src, dst = fab.site_index(tr.src), fab.site_index(tr.dst)
    if (src, dst) in fab.arc_index():
        return ((tr.src, tr.dst),)
    dist, pred = dijkstra_tree(fab.out_arcs(), fab.arc_dst, np.asarray(fab.latency_ms) + 1e-3, src)
    path = path_from_tree(pred, fab.arc_src, src, dst) if np.isfinite(dist[dst]) else None
    return () if path is None else (tuple(fab.sites[i] for i in path),)


class _WanPolicy(PolicyBase):
    event_driven = False  # the world wakes the role itself when transfers need routes (request(role="wan"))

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        """Route the transfers that need a route now (:meth:`_route`); an empty plan when none does."""
        del rng  # deterministic
        w = snapshot.wan
        if w is None or not w.needs_route:
            return Plan()
        return Plan(tuple(self._route(w, _fabric(w), [t for t in w.transfers if t.transfer_id in w.needs_route])))

    def _route(self, w: WanState, fab: Fabric, transfers: list[Transfer]) -> list[RouteTransfer]:
        """The routes for ``transfers``: the hook the per-transfer WAN policies (naive, overlay) implement; the
        planner overrides :meth:`decide` instead. ``_WanPolicy`` itself is never registered, so this base is never
        called (not an ABC method, since the planner has no ``_route``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _route")


@register("wan-naive", role=WAN)
class WanNaive(_WanPolicy):
    """Every transfer at once on its direct link (else the lowest-latency path); links shared fairly."""

    def _route(self, w: WanState, fab: Fabric, transfers: list[Transfer]) -> list[RouteTransfer]:
        return [RouteTransfer(t.transfer_id, w.now_s, paths=_first_path(fab, t)) for t in transfers]


@register("wan-overlay", role=WAN)
class WanOverlay(_WanPolicy):
    """Every transfer at once, striped over its k shortest overlay paths by bottleneck (routing, no deadlines)."""

    def __init__(self, k: int = 3, max_hops: int = 3) -> None:
        self.k = k
        self.max_hops = max_hops

    def _route(self, w: WanState, fab: Fabric, transfers: list[Transfer]) -> list[RouteTransfer]:
        actions = []
        for t in transfers:
            paths = shortest_paths(fab, fab.site_index(t.src), fab.site_index(t.dst), self.k, self.max_hops)
            if not paths:
                actions.append(RouteTransfer(t.transfer_id, w.now_s, paths=_first_path(fab, t)))
                continue
            idx = fab.arc_index()
            bott = [min(fab.capacity_gbps[idx[(p[i], p[i + 1])]] for i in range(len(p) - 1)) for p in paths]
            actions.append(RouteTransfer(t.transfer_id, w.now_s, paths=tuple(tuple(fab.sites[i] for i in p)
                                                                              for p in paths),
                                         shares=tuple(b / sum(bott) for b in bott)))
        return actions


@register("wan-planner", role=WAN)
class WanPlanner(_WanPolicy):
    """Deadline-aware transfer plan: path LP on HiGHS over time slots, inference reserved (docs/wan.md)."""

    def __init__(self, slot_s: int = 30, horizon_s: int = 1800, paths_per_transfer: int = 3, max_hops: int = 3,
                 pricing_rounds: int = 2) -> None:
        if slot_s <= 0 or horizon_s < slot_s:
            raise ValueError(f"wan-planner needs 0 < slot_s <= horizon_s, got slot_s={slot_s}, horizon_s={horizon_s}")
        self.config = PlannerConfig(slot_s=slot_s, horizon_s=horizon_s, paths_per_transfer=paths_per_transfer,
                                    max_hops=max_hops, pricing_rounds=pricing_rounds, prove_bound=False)
        self._links: object = None
        self.plans = 0  # re-plans made (for reports)

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng
        w = snapshot.wan
        if w is None or (not w.needs_route and w.links == self._links) or not w.transfers:
            return Plan()
        self._links = w.links
        cfg = self.config
        now = w.now_s
        fab = _fabric(w)
        restores = [t for t in w.transfers if t.traffic_class is TrafficClass.RESTORE]
        actions = [RouteTransfer(t.transfer_id, now, paths=_first_path(fab, t)) for t in restores
                   if t.transfer_id in w.needs_route]
        # a transfer whose deadline is (nearly) past is late already: plan it as soon as possible
        soon = now + 2 * cfg.slot_s
        transfers = [t if t.deadline_s >= soon else Transfer(t.transfer_id, t.src, t.dst, t.size_gbit,
                                                            min(t.release_s, now), now + cfg.horizon_s,
                                                            t.traffic_class, t.gpus)
                     for t in w.transfers if t.traffic_class is not TrafficClass.RESTORE]
        if not transfers:
            return Plan(tuple(actions))
        # plan only as far as the latest deadline (all of them when it lies within the horizon): fewer slots
        last = max(t.deadline_s for t in transfers) - now
        cfg = dataclasses.replace(cfg, horizon_s=min(cfg.horizon_s, max(1, -(-last // cfg.slot_s)) * cfg.slot_s))
        bg = np.zeros((fab.n_arcs, cfg.slots))
        pair = {(fab.sites[s], fab.sites[d]): a for a, (s, d) in enumerate(zip(fab.arc_src, fab.arc_dst,
                                                                              strict=True))}
        for src, dst, gbps in w.background_gbps:
            if (src, dst) in pair:
                bg[pair[(src, dst)], :] = gbps
        _reserve_restores(fab, restores, now, cfg.slot_s, bg)
        plan = plan_transfers(fab, transfers, now, cfg, bg)
        self.plans += 1
        for tr, sch in zip(transfers, plan.schedules, strict=True):
            if sch.flows:
                actions.append(RouteTransfer(tr.transfer_id, now, cfg.slot_s, sch.flows))
            else:  # nothing fits in its window (or no path): best effort on the first path, if any
                actions.append(RouteTransfer(tr.transfer_id, now, paths=_first_path(fab, tr)))
        return Plan(tuple(actions), waiting=plan.infeasible)


def _reserve_restores(fab: Fabric, restores: list[Transfer], now_s: int, slot_s: int, bg: np.ndarray) -> None:
    """Add the load of open restores to the reserved background ``bg`` (arcs × slots, Gb/s, in place): each at its
    first path's bottleneck (its fair share of it where restores share an arc), for the slots it needs to finish.
    The fabric serves restores first on the whole capacity, so this is what is left for everything else."""
    if not restores:
        return
    idx = fab.arc_index()
    routes = []
    for t in restores:
        paths = _first_path(fab, t)
        if paths:
            p = [fab.site_index(s) for s in paths[0]]
            routes.append((t, [idx[(p[i], p[i + 1])] for i in range(len(p) - 1)]))
    sharing = np.zeros(fab.n_arcs)
    for _, arcs in routes:
        sharing[arcs] += 1
    cap = np.asarray(fab.capacity_gbps, dtype=float)
    for t, arcs in routes:
        rate = float(min(cap[a] / sharing[a] for a in arcs))
        if rate <= 0:
            continue
        slots = min(bg.shape[1], int(np.ceil(t.size_gbit / rate / slot_s)) + max(0, (t.release_s - now_s) // slot_s))
        bg[arcs, :slots] += rate
