"""Where the ``gang`` policy (:mod:`superfactory.policy.gang`) puts gangs: placement (smallest subtree, best fit,
TP groups inside NVLink domains, the all-reduce bandwidth check, backfill onto probed-degraded domains), hot swaps
of failure-requeued gangs, and running gangs taken off degraded domains (stay, hot-swap or move). Pure: no I/O."""

from __future__ import annotations

import numpy as np

from superfactory.domain.fleet import NODE_DOWN, FleetSnapshot, JobView, Place, Preempt, SwapNodes
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import JobLifecycle
from superfactory.models.collective import placement_throughput, probe_ratio
from superfactory.policy.degraded import choose_remedy, swap_plan
from superfactory.policy.feasibility import evaluate
from superfactory.policy.gang_reservations import GangReservations
from superfactory.policy.gang_site import CLAIM_S, RUNNING_STATES, BoolArray, GangSite, expected_run_s
from superfactory.policy.gangfit import GangShape, place_gang, units_available


class GangPlacement(GangReservations):
    """Placement, hot swap and degraded-domain remedies of the ``gang`` scheduler (its decision walk calls
    :meth:`_place`, :meth:`_hot_swap` and :meth:`_evacuations`)."""

    # == degraded domains ===================================================================================
    def _evacuations(self, snapshot: FleetSnapshot, sites: list[GangSite], backfilled: bool = False
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
            if self._room(site, snapshot.now_s, None) > 0:  # moves count against the rate limit
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
                site.reserved.append((mask, self.claim_start_s, v.job.id))
                self._evac[v.job.id] = (site.factory.id, target, snapshot.now_s + CLAIM_S)
                self.stats["evacuations"] += 1
                self.ledger.record(site.factory.id, v.job.id, snapshot.now_s)
                out.append(Preempt(v.job.id, f"evacuating {head}; moves to {len(target)} healthy nodes after a "
                                             "final checkpoint"))
        return out
    # == placement =========================================================================================
    def _place(self, snapshot: FleetSnapshot, sites: list[GangSite], view: JobView,
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
            hole = self._in_hole(site, shape, usable, end_s) if self.fill_reserved else None
            if hole is not None and (not self.bandwidth_check or probe_ratio(site.topo, hole, job, site.link_factor)[0]
                                     >= self.min_bandwidth_ratio):
                site.free[list(hole)] = False
                site.it_power_w += extra_w
                self.stats["hole_fills"] += 1
                return Place(job.id, f.id, hole), ""
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

    def _on_degraded(self, site: GangSite, job: TrainingJob, shape: GangShape, end_s: float) -> tuple[int, ...] | None:
        """Backfill onto probed-degraded NVLink domains (``degraded_backfill``): a gang with no healthy room now
        may run slow (0.6) entirely inside degraded domains rather than leave them idle. It is hot-swapped (or
        moved) off them when that pays, but only with healthy nodes left over after the queue walk (see
        ``_evacuations``), and speeds up anyway when the domain heals. Reservations are honoured as for any
        backfill."""
        if not self.degraded_backfill or not site.bad_domains or not site.slow_ok:
            return None
        pool = site.free & ~site.spare & site.accel_mask(job.accelerator) & site.bad_nodes()
        if site.only is not None:  # the rolling plan's nodes
            pool &= site.only
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

    def _why_not(self, site: GangSite, job: TrainingJob, shape: GangShape, usable: BoolArray) -> str:
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

    # == hot swap ============================================================================================
    def _hot_swap(self, snapshot: FleetSnapshot, sites: list[GangSite], view: JobView) -> Place | None:
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
