"""Reservations and preemption of the ``gang`` policy (:mod:`superfactory.policy.gang`): EASY-style reservations
(sticky node sets, latest-fit placement, a starving gang's deadline) and preemption only when it pays
(:mod:`superfactory.policy.preemption`), within rate limits. Pure: no I/O."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from superfactory.domain.fleet import NODE_DOWN, FleetSnapshot, JobView, Preempt
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import JobLifecycle
from superfactory.policy.feasibility import Verdict, evaluate
from superfactory.policy.gang_site import (
    CLAIM_S,
    RECHECK_S,
    RUNNING_STATES,
    BoolArray,
    GangBase,
    GangSite,
    expected_run_s,
)
from superfactory.policy.gangfit import GangShape, place_gang, units_available


class GangReservations(GangBase):
    """Reservations, backfill protection and preemption for blocked gangs."""

    # == reservations & preemption =========================================================================
    def _reserve_or_preempt(self, snapshot: FleetSnapshot, sites: list[GangSite],
                            running_by_site: dict[int, list[JobView]], view: JobView,
                            victims: set[str], deadline_s: float = -1.0, reserve: bool = True
                            ) -> tuple[str, list[Preempt]]:
        """Preempt for ``view`` when that pays, else reserve nodes for it. Backfill may use the reserved nodes
        if it is expected to end before the reservation's start, or before ``deadline_s`` if that is later (a
        starving gang's deadline: ``guard_deadline_s``)."""
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
            if res is not None and not reserve:
                self._sticky.pop(job.id, None)
                return "no reservation yet (it may still start as nodes free up)", []
            if job.id in self._cuts:
                return "waiting for the gangs preempted to cut its drain to finish their checkpoints", []
            if res is not None and self.drain_cut_gpus and job.gpus >= self.drain_cut_gpus:
                cut = self._cut_drain(site, running, view, res[0], res[1], victims, snapshot.now_s)
                if cut:
                    return (f"cutting its drain: preempting {', '.join(p.job_id for p in cut)} (they end last on "
                            "its reserved nodes; they checkpoint first)"), cut
            if res is not None:
                nodes, start_s = res
                site.reserved.append((nodes, max(start_s, deadline_s), job.id))
                wait_h = (start_s - snapshot.now_s) / 3600
                note = (f"reservation {job.id}@{site.factory.id}: {int(nodes.sum())} nodes, expected start "
                        f"t={int(start_s)} s (~{wait_h:.1f} h, when running gangs are expected to end)")
                if deadline_s > start_s:
                    note += f"; starving: open to backfill that ends by its deadline t={int(deadline_s)} s"
                return (f"{note}; not preempting: {declined}" if declined else note), []
        return "", []

    def _reservation(self, snapshot: FleetSnapshot, site: GangSite, running: list[JobView], job: TrainingJob,
                     shape: GangShape) -> tuple[BoolArray, float] | None:
        """Nodes and expected start of ``job``'s reservation in ``site`` (running jobs end as expected)."""
        base = site.free & ~site.spare & site.accel_mask(job.accelerator)
        for nodes, _, owner in site.reserved:
            if owner != job.id:
                base &= ~nodes
        if site.bad_domains:
            base &= ~site.bad_nodes()
        lane = self._lane_of(site, job)
        if lane is not None:  # a big gang is reserved inside the lane only
            base &= lane
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
            if (not (held & (site.status == NODE_DOWN)).any() and not (held & ~base & site.free).any()
                    and (lane is None or not (held & ~lane).any())):
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
        if lane is not None:
            taken |= ~lane
        hypo = base.copy()
        freed: list[npt.NDArray[np.intp]] = []  # nodes of the running jobs, in the order they are expected to end
        for end_s, _, job_nodes in ends:
            idx = np.asarray(job_nodes, dtype=np.intp)
            idx = idx[(site.status[idx] != NODE_DOWN) & ~taken[idx] & ~site.spare[idx]]
            hypo[idx] = True
            freed.append(idx)
            if int(hypo.sum()) < shape.nodes or units_available(site.topo, hypo, shape) < shape.units:
                continue
            chosen = (self._latest_fit(site, freed, shape) if self.latest_fit else None) \
                or place_gang(site.topo, hypo, shape)
            if chosen is None:
                continue
            start_s = max(float(snapshot.now_s), end_s)
            if self.handoff and job.gpus >= self.handoff_min_gpus:
                chosen, start_s = self._handoff(snapshot, site, ends, taken, shape, chosen, start_s)
            mask = np.zeros(site.factory.nodes, dtype=bool)
            mask[list(chosen)] = True
            self._sticky[job.id] = (site.factory.id, chosen)
            return mask, start_s
        return None

    def _cut_drain(self, site: GangSite, running: list[JobView], view: JobView, nodes: BoolArray, start_s: float,
                   victims: set[str], now_s: int) -> list[Preempt]:
        """Drain-cutting preemption (``drain_cut_gpus``): a reserved gang's nodes sit idle from when each frees
        up until its start ``start_s`` (the drain: ``sum(start - free_at)`` over its nodes). The running job
        that ends last on those nodes sets the start; preempting it (a final checkpoint, then requeued with
        its progress kept) moves the start to the next-latest end. Victims are taken latest-ending first while
        each saves more idle node-seconds than ``drain_cut_margin`` x what it costs (its nodes x (checkpoint +
        restart)), within the factory's rate limit; any priority may be a victim (no work is lost, and the top
        class's first-start waits are untouched), but never a gang the guard started, one cooling down, a
        non-preemptible one, or one in a hot swap. The gang then holds its nodes as a claim (no backfill)."""
        room = self._room(site, now_s, None)
        if room <= 0:
            return []
        free_at = np.full(site.factory.nodes, float(now_s))
        over: list[tuple[float, JobView]] = []
        for v in running:
            if not v.nodes:
                continue
            end_s = max(float(now_s), now_s + expected_run_s(v.job, v.progress_s) - v.job.recovery.restart_s)
            free_at[list(v.nodes)] = end_s
            if nodes[list(v.nodes)].any():
                over.append((end_s, v))
        over.sort(key=lambda e: (-e[0], e[1].job.id))
        idx = np.flatnonzero(nodes)

        def drain(t_s: float) -> float:
            return float(np.clip(t_s - free_at[idx], 0.0, None).sum())

        chosen: list[JobView] = []
        t_s = start_s
        for k, (end_s, v) in enumerate(over):
            if end_s < t_s or len(chosen) >= room:
                break
            ck = v.job.checkpoint
            stop_s = float(ck.blocking_s + ck.async_write_s)
            if (not v.job.preemptible or v.state not in RUNNING_STATES or v.job.id in victims
                    or v.job.id in self._guarded or self.ledger.cooling(v.job.id, now_s)):
                break
            before = drain(t_s)
            kept = free_at[list(v.nodes)].copy()
            free_at[list(v.nodes)] = now_s + stop_s
            rest = [e for e, w in over[k + 1:] if w not in chosen]
            t_new = max([now_s + stop_s, *rest[:1]])
            saved = before - drain(t_new)
            cost = len(v.nodes) * (stop_s + v.job.recovery.restart_s)
            if saved < self.drain_cut_margin * cost:
                free_at[list(v.nodes)] = kept
                break
            chosen.append(v)
            t_s = t_new
        if not chosen:
            return []
        site.reserved.append((nodes.copy(), float("-inf"), view.job.id))  # withheld from every other job
        self._cuts[view.job.id] = (site.factory.id, tuple(int(n) for n in idx), now_s + CLAIM_S)
        victims.update(v.job.id for v in chosen)
        self._victim_of.update((v.job.id, view.job.id) for v in chosen)
        self.stats["preemptions"] += len(chosen)
        self.stats["drain_cuts"] = self.stats.get("drain_cuts", 0) + len(chosen)
        for v in chosen:
            self.ledger.record(site.factory.id, v.job.id, now_s)
        return [Preempt(v.job.id, f"preempted to cut the drain of {view.job.id}'s reservation (it ends last on "
                                  f"its nodes; start ~{(t_s - now_s) / 60:.0f} min instead of "
                                  f"~{(start_s - now_s) / 60:.0f} min)") for v in chosen]

    def _hold_sticky(self, snapshot: FleetSnapshot, sites: list[GangSite]) -> list[tuple[BoolArray, float, str]]:
        """Enter every waiting gang's sticky reservation (its nodes from the last decision) in its site's
        ``reserved`` list, starting when the running jobs on those nodes are expected to end, and return the
        entries added (``swaps_honour_reservations``: the degraded-domain swaps run before the walk re-makes the
        reservations, and would otherwise take a drain window's free nodes, pushing the big start back)."""
        added: list[tuple[BoolArray, float, str]] = []
        node_end: dict[str, npt.NDArray[np.float64]] = {}
        for v in snapshot.running:
            if v.factory_id is None or not v.nodes:
                continue
            site = sites[snapshot.factory_index(v.factory_id)]
            ends = node_end.setdefault(v.factory_id, np.full(site.factory.nodes, float(snapshot.now_s)))
            ends[list(v.nodes)] = snapshot.now_s + expected_run_s(v.job, v.progress_s) - v.job.recovery.restart_s
        for jid, (fid, nodes) in self._sticky.items():
            if not any(f.id == fid for f in snapshot.factories):
                continue
            site = sites[snapshot.factory_index(fid)]
            mask = np.zeros(site.factory.nodes, dtype=bool)
            mask[list(nodes)] = True
            fid_ends = node_end.get(fid)
            start_s = float(fid_ends[list(nodes)].max()) if fid_ends is not None else float(snapshot.now_s)
            entry = (mask, start_s, jid)
            site.reserved.append(entry)
            added.append(entry)
        return added

    def _handoff(self, snapshot: FleetSnapshot, site: GangSite, ends: list[tuple[float, str, tuple[int, ...]]],
                 taken: BoolArray, shape: GangShape, chosen: tuple[int, ...], start_s: float
                 ) -> tuple[tuple[int, ...], float]:
        """Chained hand-off (``handoff``): the reservation of a large waiting gang (>= ``handoff_min_gpus``) is
        chosen among candidate node sets by its **drain cost**, not only by the earliest start.

        Candidates: the earliest-fit set (start ``t1``, nodes as :meth:`_latest_fit` picks them), and for every
        running gang holding at least a quarter of the waiter's nodes that is expected to end at ``T`` in
        ``(t1, t1 + handoff_window_s]``: that gang's nodes plus the fewest extra nodes that free up latest before
        ``T`` (:meth:`_latest_fit` over the jobs ending by ``T``), starting at ``T``. A candidate's cost is the
        node-seconds its nodes sit free before its start, ``sum(start - max(now, free_at(node)))`` (the drain),
        plus ``handoff_delay_weight x nodes x (start - t1)`` (the waiter's extra wait, priced as a share of its
        node-seconds). The cheapest wins (ties: the earliest). So a gang that can take over a large gang's nodes
        the moment they free up does, and nothing else has to drain for it; big gangs run in chained "lanes" and
        small work fills the rest."""
        now = float(snapshot.now_s)
        free_at = np.full(site.factory.nodes, now)
        for end_s, _, job_nodes in ends:
            free_at[list(job_nodes)] = max(now, end_s)

        def cost(nodes: tuple[int, ...], t_s: float) -> float:
            drain = float(np.clip(t_s - free_at[list(nodes)], 0.0, None).sum())
            return drain + self.handoff_delay_weight * shape.nodes * (t_s - start_s)

        best = (cost(chosen, start_s), start_s, chosen)
        freed: list[npt.NDArray[np.intp]] = []
        for end_s, _, job_nodes in ends:
            if end_s > start_s + self.handoff_window_s:
                break
            idx = np.asarray(job_nodes, dtype=np.intp)
            idx = idx[(site.status[idx] != NODE_DOWN) & ~taken[idx] & ~site.spare[idx]]
            freed.append(idx)
            if end_s <= start_s or 4 * idx.size < shape.nodes:
                continue
            cand = self._latest_fit(site, freed, shape)
            if cand is not None:
                c = cost(cand, end_s)
                if c < best[0]:
                    best = (c, end_s, cand)
        self.stats["handoffs"] += best[2] is not chosen
        return best[2], best[1]

    @staticmethod
    def _in_hole(site: GangSite, shape: GangShape, usable: BoolArray, end_s: float) -> tuple[int, ...] | None:
        """Time-aware backfill (``fill_reserved``): a job expected to end by ``end_s`` goes first into the free
        nodes of a reservation that starts after it ends (the drain window of a waiting gang), the one that
        starts soonest after ``end_s`` first, then into all such holes together; ``None`` if it fits in none.
        Backfill that lands on unreserved nodes instead leaves the drain window empty and takes nodes longer
        work could use; filling the window costs the waiting gang nothing (the job ends before it starts)."""
        holes = sorted((start_s, i) for i, (_, start_s, _) in enumerate(site.reserved)
                       if end_s <= start_s < float("inf"))
        union = np.zeros(site.factory.nodes, dtype=bool)
        for _, i in holes:
            pool = usable & site.reserved[i][0]
            union |= pool
            if int(pool.sum()) >= shape.nodes and units_available(site.topo, pool, shape) >= shape.units:
                got = place_gang(site.topo, pool, shape)
                if got is not None:
                    return got
        if len(holes) > 1 and int(union.sum()) >= shape.nodes:
            return place_gang(site.topo, union, shape)
        return None

    @staticmethod
    def _latest_fit(site: GangSite, freed: list[npt.NDArray[np.intp]], shape: GangShape) -> tuple[int, ...] | None:
        """A reservation that blocks the least capacity while it waits (``latest_fit``): the gang's start ``t_r``
        is when the last job in ``freed`` ends; among placements that start then, prefer nodes that free up
        *latest* (nodes of the jobs ending just before ``t_r`` first, earlier-ending ones only as needed) and no
        node that is free now, so what is free now stays open to every job and reserved nodes idle the least.
        ``None`` when no placement avoids the free nodes (the caller then uses them too)."""
        late = np.zeros(site.factory.nodes, dtype=bool)
        for idx in reversed(freed):
            late[idx] = True
            if int(late.sum()) < shape.nodes or units_available(site.topo, late, shape) < shape.units:
                continue
            chosen = place_gang(site.topo, late, shape)
            if chosen is not None:
                return chosen
        return None

    def _preempt_for(self, site: GangSite, running: list[JobView], view: JobView, shape: GangShape,
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

    def _room(self, site: GangSite, now_s: int, promoted: int | None) -> int:
        """Victims ``site`` may still take: the whole ledger for a promoted (starving) gang, else all but the
        guard's own budget."""
        room = self.ledger.room(site.factory.id, now_s)
        return room if promoted is not None else max(0, room - self.guard_preemptions)

    def _search_victims(self, site: GangSite, running: list[JobView], view: JobView, shape: GangShape,
                        victims: set[str], now_s: int, start_s: float) -> tuple[list[Preempt] | None, str]:
        job = view.job
        priority = self._promoted[1] if self._promoted is not None and self._promoted[0] == job.id else None
        room = self._room(site, now_s, priority)
        cands = [v for v in running if v.job.preemptible and v.job.priority < (priority or job.priority)
                 and v.job.id not in self._guarded
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
        lane = self._lane_of(site, job)
        if lane is not None:  # a big gang preempts inside the lane only
            healthy = healthy & lane
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
                site.reserved.append((mask, self.claim_start_s, job.id))
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
        ok, why = self.costs.pays(view, [(v, expected_run_s(v.job, v.progress_s)) for v in chosen], sooner_s,
                                  priority)
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
        site.reserved.append((mask, self.claim_start_s, job.id))  # see claims_withhold
        self._claims[job.id] = (site.factory.id, target, now_s + CLAIM_S)
        victims.update(v.job.id for v in chosen)
        self._victim_of.update((v.job.id, job.id) for v in chosen)
        self.stats["preemptions"] += len(chosen)
        if priority is not None:
            self._guarded.add(job.id)
        for v in chosen:
            self.ledger.record(site.factory.id, v.job.id, now_s)
        rank = f"priority {job.priority}" if priority is None else f"starving: preempts as priority {priority}"
        return [Preempt(v.job.id, f"preempted by {job.id} ({rank} > {v.job.priority}; {why})")
                for v in chosen], why
