"""The ``wan`` role: policies that route and time WAN transfers, on the decision loop after training.

A world that models its WAN shows it in ``FleetSnapshot.wan`` (:class:`~superfactory.domain.transfer.WanState`:
links up, open transfers with what is left of them, the ones that need a route, the inference forecast) and
asks the ``wan`` role to decide when transfers need routes (``loop.request(role="wan")``). A policy answers with
one :class:`~superfactory.domain.transfer.RouteTransfer` per transfer it routes (its id is the action's
``job_id``); transfers that cannot make their deadline are named in ``Plan.waiting`` with the figures.

- ``wan-planner`` — the deadline-aware planner (:mod:`.wan_planner`): every open transfer re-planned over paths
  and time slots whenever a transfer needs a route or the links changed, inference traffic reserved.
- ``wan-naive`` — what happens without a plan: each transfer starts at once on its direct link (the
  lowest-latency path when there is none); links share fairly.
- ``wan-overlay`` — routing without deadlines: each transfer striped at once over its ``k`` shortest overlay
  paths (via relay sites) in proportion to their bottlenecks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from superfactory.domain.fleet import FleetSnapshot, Plan
from superfactory.domain.transfer import RouteTransfer, Transfer, WanState
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


@register("wan-naive", role=WAN)
class WanNaive(_WanPolicy):
    """Every transfer at once on its direct link (else the lowest-latency path); links shared fairly."""

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng
        w = snapshot.wan
        if w is None or not w.needs_route:
            return Plan()
        fab = _fabric(w)
        return Plan(tuple(RouteTransfer(t.transfer_id, w.now_s, paths=_first_path(fab, t))
                          for t in w.transfers if t.transfer_id in w.needs_route))


@register("wan-overlay", role=WAN)
class WanOverlay(_WanPolicy):
    """Every transfer at once, striped over its k shortest overlay paths by bottleneck (routing, no deadlines)."""

    def __init__(self, k: int = 3, max_hops: int = 3) -> None:
        self.k = k
        self.max_hops = max_hops

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng
        w = snapshot.wan
        if w is None or not w.needs_route:
            return Plan()
        fab = _fabric(w)
        actions = []
        for t in w.transfers:
            if t.transfer_id not in w.needs_route:
                continue
            paths = shortest_paths(fab, fab.site_index(t.src), fab.site_index(t.dst), self.k, self.max_hops)
            if not paths:
                actions.append(RouteTransfer(t.transfer_id, w.now_s, paths=_first_path(fab, t)))
                continue
            idx = fab.arc_index()
            bott = [min(fab.capacity_gbps[idx[(p[i], p[i + 1])]] for i in range(len(p) - 1)) for p in paths]
            actions.append(RouteTransfer(t.transfer_id, w.now_s, paths=tuple(tuple(fab.sites[i] for i in p)
                                                                              for p in paths),
                                         shares=tuple(b / sum(bott) for b in bott)))
        return Plan(tuple(actions))


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
        # a transfer whose deadline is (nearly) past is late already: plan it as soon as possible
        soon = now + 2 * cfg.slot_s
        transfers = [t if t.deadline_s >= soon else Transfer(t.transfer_id, t.src, t.dst, t.size_gbit,
                                                            min(t.release_s, now), now + cfg.horizon_s,
                                                            t.traffic_class, t.gpus)
                     for t in w.transfers]
        # plan only as far as the latest deadline (all of them when it lies within the horizon): fewer slots
        last = max(t.deadline_s for t in transfers) - now
        cfg = dataclasses.replace(cfg, horizon_s=min(cfg.horizon_s, max(1, -(-last // cfg.slot_s)) * cfg.slot_s))
        bg = np.zeros((fab.n_arcs, cfg.slots))
        pair = {(fab.sites[s], fab.sites[d]): a for a, (s, d) in enumerate(zip(fab.arc_src, fab.arc_dst,
                                                                              strict=True))}
        for src, dst, gbps in w.background_gbps:
            if (src, dst) in pair:
                bg[pair[(src, dst)], :] = gbps
        plan = plan_transfers(fab, transfers, now, cfg, bg)
        self.plans += 1
        actions = []
        for tr, sch in zip(transfers, plan.schedules, strict=True):
            if sch.flows:
                actions.append(RouteTransfer(tr.transfer_id, now, cfg.slot_s, sch.flows))
            else:  # nothing fits in its window (or no path): best effort on the first path, if any
                actions.append(RouteTransfer(tr.transfer_id, now, paths=_first_path(fab, tr)))
        return Plan(tuple(actions), waiting=plan.infeasible)
