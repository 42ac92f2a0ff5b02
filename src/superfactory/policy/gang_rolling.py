"""The rolling plan of the ``gang`` policy (``rolling_plan``, off by default): the clairvoyant planner of
:mod:`superfactory.policy.offline_schedule` run online, from one decision's snapshot (pure, numpy).

At a decision the plan sees what the policy knows, never future arrivals:

- **the domains as they are**: per NVLink domain, the nodes usable now (free, not spare, not on a probed-degraded
  domain, not promised to a preemptor), plus each running job's nodes from its expected end on (restart already
  paid: ``expected_run_s(job, progress) - restart_s``, as gang's reservations use);
- **the pending jobs** with their failure-free holds (``expected_run_s(job, progress)``) and gang shapes.

It then applies the offline planner's rules (:func:`~superfactory.policy.offline_schedule.plan_in_order`): the
*big gangs* (at least ``big_nodes`` nodes) are planned first, in submission order, by conservative backfill
inside a *lane* (the first ``lane_domains`` domains), so each takes its domains from the one before it; every
other job then goes, most node-seconds first, where it fits *for its whole hold* (in the lane only up to the
next planned big start), with no reservation. Only the plan's first slot matters to the policy (the sweep stops
there): :func:`rolling_plan` returns the jobs the plan starts now, with their units per domain, and the
planned start of the big gangs it starts later. The next decision plans again from the new snapshot.

:class:`GangRolling` is gang's side (``rolling_plan: true``): each job the plan starts now is placed on exactly
the plan's units per domain; every other job waits, with the plan's reason, and gets no reservation and no
preemption. Online the plan cannot see big gangs not yet released and its running jobs' ends slip, so two guards
are added: the lane is ``rolling_lane_slack`` wider than the widest big gang seen (down or degraded domains), and
the earliest planned big start is kept as a *promise* while that gang waits: other work may start in the lane
only if it ends by then, even when a later plan's big start slipped (else long work enters the lane and the
slip becomes permanent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from superfactory.domain.fleet import NODE_DOWN, FleetSnapshot, JobView, Place, Preempt, SwapNodes
from superfactory.domain.job import TrainingJob
from superfactory.domain.topology import FactoryTopology
from superfactory.policy.gang_lane import GangLane, choose_lane, lane_width
from superfactory.policy.gang_site import BoolArray, GangSite, expected_run_s
from superfactory.policy.gangfit import GangShape
from superfactory.policy.offline_schedule import OfflineJob, plan_in_order


@dataclass(frozen=True, slots=True)
class RollingPlan:
    """One decision's plan: ``now`` maps each job the plan starts now to its placement ((domain, units there),
    ...); ``later``
    maps each big gang planned to start later to its planned start (simulated s); ``ranked`` is the order the
    plan considered the jobs in (big gangs first, then most node-seconds)."""

    now: dict[str, tuple[tuple[int, int], ...]]
    later: dict[str, int]
    ranked: tuple[str, ...]


def rolling_plan(topo: FactoryTopology, per_domain: int, usable_now: BoolArray, running: Sequence[JobView],
                 pending: Sequence[JobView], shape: Callable[[TrainingJob], GangShape | None], now_s: int,
                 big_nodes: int, lane_domains: int, horizon_s: int = 86_400, slot_s: int = 60,
                 priority_first: bool = False, down_s: int = 3600, lane_last: bool = True,
                 lane: npt.NDArray[np.bool_] | None = None, lane_slack: float = 0.0, lane_pad_s: float = 0.0
                 ) -> RollingPlan | None:
    """Plan from the snapshot (see the module docstring). ``usable_now`` marks the nodes usable now; ``running``
    are the jobs holding nodes in this factory. ``None`` when the factory is not made of whole domains of
    ``per_domain`` nodes numbered from 0 (the plan's model), so the caller falls back to its own walk. With
    ``priority_first`` the jobs outside the lane go higher priority first, then most node-seconds. Nodes neither
    usable now nor held by a running job (down, draining, degraded, promised) count as back after ``down_s``
    (the plan is redone at every decision: an optimistic guess only moves the planned start of a big gang).
    ``lane_last``: the other jobs take domains outside the lane first. ``lane``: the lane's domains (a mask over
    domains, e.g. the healthiest: :func:`~superfactory.policy.gang_lane.choose_lane`); default the first
    ``lane_domains``. ``lane_slack``, ``lane_pad_s``: other jobs enter the lane only where they fit for a
    pessimistic hold (:func:`~superfactory.policy.offline_schedule.plan_in_order`)."""
    dom = topo.node_domain
    if per_domain <= 1 or dom.size == 0:
        return None
    counts = np.bincount(dom)
    if counts.min() != per_domain or counts.max() != per_domain:
        return None
    domains = counts.size
    n_slots = -(-horizon_s // slot_s)
    delta = np.zeros((domains, n_slots + 1), dtype=np.int32)
    delta[:, 0] = np.bincount(dom[usable_now], minlength=domains)
    other = ~usable_now.copy()
    for v in running:
        if not v.nodes:
            continue
        end_s = expected_run_s(v.job, v.progress_s) - v.job.recovery.restart_s
        s = min(n_slots, max(0, -(-int(np.ceil(end_s)) // slot_s)))
        delta[:, s] += np.bincount(dom[list(v.nodes)], minlength=domains)
        other[list(v.nodes)] = False
    delta[:, min(n_slots, -(-down_s // slot_s))] += np.bincount(dom[other], minlength=domains)
    free = np.clip(np.cumsum(delta, axis=1)[:, :n_slots], 0, per_domain).astype(np.int16)
    # the planner's lane is its first domains: put the chosen lane there (and map the placements back)
    perm = np.arange(domains)
    if lane is not None:
        if lane.shape != (domains,):
            raise ValueError(f"lane must be a mask over the {domains} domains")
        perm = np.concatenate([np.flatnonzero(lane), np.flatnonzero(~lane)])
        lane_domains = int(lane.sum())
        free = free[perm]
    jobs: list[OfflineJob] = []
    subs: list[tuple[int, str]] = []
    prio: list[int] = []
    for v in pending:
        sh = shape(v.job)
        if sh is None or sh.unit_nodes > per_domain:
            continue
        jobs.append(OfflineJob(v.job.id, 0, expected_run_s(v.job, v.progress_s), sh.units, sh.unit_nodes))
        subs.append((v.job.submit_s, v.job.id))
        prio.append(-v.job.priority if priority_first else 0)
    idx = range(len(jobs))
    big = sorted((i for i in idx if jobs[i].nodes >= big_nodes), key=lambda i: (subs[i], -jobs[i].nodes))
    rest = sorted((i for i in idx if jobs[i].nodes < big_nodes),
                  key=lambda i: (prio[i], -jobs[i].nodes * jobs[i].hold_s, subs[i]))
    p = plan_in_order(jobs, big, domains, per_domain, horizon_s, slot_s, "rolling", big_nodes,
                      min(lane_domains, domains), rest, initial_free=free, sweep_slots=1,
                      lane_last=lane_last, lane_slack=lane_slack, lane_pad_s=lane_pad_s)
    now = {s.job: tuple(sorted((int(perm[d]), u) for d, u in s.placement)) for s in p.starts if s.start_s == 0}
    later = {s.job: now_s + s.start_s for s in p.starts if s.start_s > 0}
    return RollingPlan(now, later, tuple(jobs[i].id for i in (*big, *rest)))


class GangRolling(GangLane):
    """The ``gang`` scheduler's use of the rolling plan (its knobs are set by
    :class:`superfactory.policy.gang.GangScheduler`'s constructor)."""

    rolling_plan: bool
    rolling_big_gpus: int
    rolling_horizon_s: int
    rolling_slot_s: int
    rolling_priority: bool
    rolling_down_s: int
    rolling_lane_last: bool
    rolling_lane_slack: float
    rolling_promise: bool
    rolling_healthy_lane: bool
    rolling_lane_pad_s: float
    rolling_lane_hold_slack: float
    rolling_promise_slip_s: float
    _lane_promise0_s: float
    _lane_domains: int
    _lane_promise_s: float

    def _rolling(self, snapshot: FleetSnapshot, sites: list[GangSite],
                 running_by_site: dict[int, list[JobView]]) -> RollingPlan | None:
        """This decision's rolling plan (:mod:`superfactory.policy.gang_rolling`), or ``None`` where its model
        does not apply (several factories or clusters, one-node domains): then gang walks its queue as usual."""
        if len(sites) != 1 or len(sites[0].factory.clusters) != 1:
            return None
        site = sites[0]
        system = site.factory.clusters[0].system
        per_domain = system.nodes_per_domain
        big_nodes = -(-self.rolling_big_gpus // system.gpus_per_node)
        for v in (*snapshot.pending, *snapshot.running):
            if v.job.gpus >= self.rolling_big_gpus:
                sh = self._shape(site, v.job)
                if sh is not None:
                    width = int(np.ceil(lane_width(sh, per_domain) * (1 + self.rolling_lane_slack)))
                    self._lane_domains = max(self._lane_domains, width)
                    self._lane_need = max(self._lane_need, sh.unit_nodes)
        usable = site.free & ~site.spare
        for nodes, _, _ in site.reserved:
            usable &= ~nodes
        if site.bad_domains:
            usable &= ~site.bad_nodes()
        lane = None
        if self.rolling_healthy_lane and self._lane_domains:  # the healthiest domains, latched (gang_lane)
            dom = site.topo.node_domain
            domains = int(dom.max()) + 1
            ok = site.status != NODE_DOWN
            if site.bad_domains:
                ok &= ~site.bad_nodes()
            held = np.zeros(domains, dtype=bool)
            for v in running_by_site.get(0, []):
                if v.job.gpus >= self.rolling_big_gpus and v.nodes:
                    held[dom[list(v.nodes)]] = True
            prev = self._lane_prev if self._lane_prev is not None and self._lane_prev.size == domains \
                else np.zeros(domains, dtype=bool)
            lane = self._lane_prev = choose_lane(np.bincount(dom[ok], minlength=domains), held, prev,
                                                 self._lane_domains, self._lane_need)
        plan = rolling_plan(site.topo, per_domain, usable, running_by_site.get(0, []), snapshot.pending,
                            lambda j: self._shape(site, j), snapshot.now_s, big_nodes, self._lane_domains,
                            self.rolling_horizon_s, self.rolling_slot_s, self.rolling_priority,
                            self.rolling_down_s, self.rolling_lane_last, lane, self.rolling_lane_hold_slack,
                            self.rolling_lane_pad_s)
        if plan is None:
            return None
        if not plan.later or any(v.job.gpus >= self.rolling_big_gpus for v in snapshot.pending
                                 if v.job.id in plan.now):
            self._lane_promise_s = float("inf")  # a big gang starts now (or none waits): the promise is kept
        if self._lane_promise_s <= snapshot.now_s:
            self._lane_promise_s = float("inf")  # overdue (the big gang slipped): renewed from this plan
        if plan.later:
            planned_s = float(min(plan.later.values()))
            if self._lane_promise_s == float("inf"):
                self._lane_promise0_s = planned_s
            # a bounded slip: the promise follows the plan, but never past the first promise + the slip
            self._lane_promise_s = min(planned_s, self._lane_promise0_s + self.rolling_promise_slip_s) \
                if self.rolling_promise_slip_s < float("inf") else min(self._lane_promise_s, planned_s)
        if self._lane_promise_s == float("inf") or not self.rolling_promise:
            return plan
        # other work starting in the lane must end by the promise, even if this plan's big start slipped
        pending = {v.job.id: v for v in snapshot.pending}
        now = {}
        for jid, placement in plan.now.items():
            v = pending[jid]
            if (v.job.gpus < self.rolling_big_gpus
                    and any((lane[d] if lane is not None else d < self._lane_domains) for d, _ in placement)
                    and snapshot.now_s + expected_run_s(v.job, v.progress_s) > self._lane_promise_s):
                continue
            now[jid] = placement
        return RollingPlan(now, plan.later, plan.ranked)

    def _place_planned(self, snapshot: FleetSnapshot, sites: list[GangSite], view: JobView, rolling: RollingPlan,
                       actions: list[Place | Preempt | SwapNodes], waiting: list[tuple[str, str]],
                       refusals: list[tuple[str, str, str]]) -> None:
        """Start ``view`` now on the plan's domains if the plan starts it now; else it waits, with the plan's
        reason (no reservation, no preemption: the plan times the big starts)."""
        jid = view.job.id
        domains = rolling.now.get(jid)
        if domains is None:
            at = rolling.later.get(jid)
            waiting.append((jid, f"rolling plan: planned start t={at} s in the big gangs' lane" if at is not None
                            else "rolling plan: no room for its whole run before the next planned big start"))
            return
        site, shape = sites[0], self._shape(sites[0], view.job)
        if shape is None:
            waiting.append((jid, "rolling plan: no gang shape in this factory"))
            return
        # exactly the plan's units per domain: a placement free to pack more units into a domain than the plan
        # gave it would take room the plan keeps for a later big start
        usable = self._usable(site, view.job, float("inf"))
        only = np.zeros(site.factory.nodes, dtype=bool)
        for d, units in domains:
            only[np.flatnonzero(usable & (site.topo.node_domain == d))[: units * shape.unit_nodes]] = True
        site.only = only
        site.misses.clear()
        try:
            placed, reason = self._place(snapshot, sites, view, refusals)
        finally:
            site.only = None
            site.misses.clear()
        if placed is None:
            waiting.append((jid, f"rolling plan: starts now on {len(domains)} domain(s), but {reason}"))
            return
        actions.append(placed)
        self.stats["placements"] += 1
