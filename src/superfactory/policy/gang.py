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
   gangs do not starve and small ones still fill the holes. With ``latest_fit`` the reserved nodes are those
   that free up *latest* before ``t_r`` (no node free now unless needed), so reserved nodes idle the least and
   free ones stay open to everyone. The starving gang (guard) may get its own reservation
   (``guard_behind_top``), a deadline up to which backfill may use its nodes (``guard_deadline_s``) and its own
   preemption budget (``guard_preemptions_per_day``); a gang the guard started is never a victim.
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
``priority_base``, ``evacuate_degraded``, ``probe_cycle_s``, ``starve_after_s``, ``degraded_backfill``,
``latest_fit``, ``guard_behind_top``, ``guard_deadline_s``, ``guard_preemptions_per_day``, ``largest_first``
(default on: jobs of equal priority and submission time go largest first, so on a backlog released into an
empty factory the largest gangs start at once, with no drain; ``largest_first_min_gpus``: only from that
size), ``handoff``, ``handoff_min_gpus``, ``handoff_window_s``, ``handoff_delay_weight`` (chained hand-off: a
large gang's reservation is chosen by drain cost, see ``GangReservations._handoff``; off) and
``fill_reserved`` (backfill into reserved holes first; off), ``reserve_after_s`` and ``reserve_mix_share``
(adaptive reservations: on a small-gang mix, where gangs of >= 1/16 of the fleet carry less than that share of
the work seen, a gang that never ran is reserved, i.e. drained for, only after waiting ``reserve_after_s``;
on such a mix the starving gang also queues just behind the top class, as with ``guard_behind_top``; see
:meth:`GangScheduler._drain_worthy`; ``reserve_after_s`` 0 turns both off; ``reserve_mix_band``: the mode,
set at the first work seen, changes only when the share leaves ``reserve_mix_share`` +- the band, hysteresis),
``rolling_plan`` (off; the clairvoyant planner's rules online, :mod:`superfactory.policy.gang_rolling`: at each
decision the snapshot is planned, big gangs of at least ``rolling_big_gpus`` in a lane, the rest most work first
where it fits for its whole run; only the plan's starts for now are placed, on its units per domain, and the
waiting jobs get no reservation and no preemption; ``rolling_horizon_s``, ``rolling_slot_s``,
``rolling_priority``, ``rolling_down_s``, ``rolling_lane_last``, ``rolling_lane_slack``, ``rolling_promise``;
``rolling_healthy_lane``: the lane is the healthiest domains, :func:`~superfactory.policy.gang_lane.choose_lane`;
``rolling_lane_hold_slack``, ``rolling_lane_pad_s``: other work enters the lane only if a pessimistic hold ends
before the planned big start; ``rolling_promise_slip_s``: the promise may slip that far). Session 8, all off
and measured (docs/gang.md): ``lane`` (a lane for gangs of ``lane_min_gpus``, ``lane_spare`` domains more than
the widest needs, the healthiest; other work outside it first, ``lane_last``; :mod:`~superfactory.policy.gang_lane`),
``drain_cut_gpus`` (a reserved gang that large preempts the jobs ending last on its nodes while each saves
``drain_cut_margin`` x its cost in drained node-time: ``GangReservations._cut_drain``), ``claims_withhold`` (a
preemptor's and an evacuee's promised nodes are withheld from every other job; by default only from other
gangs' reservations) and ``save_short_s`` (work expected to run that long or less, below the top class, waits up
to ``save_short_wait_s`` for a drain window instead of taking other free nodes: ``GangLane._place_saving``)
and ``swaps_honour_reservations`` (the waiting gangs' sticky reservations are entered before the degraded-domain
swaps, which run before the walk, so a swap cannot take a drain window: ``GangReservations._hold_sticky``).

Code: this module (the decision walk), :mod:`superfactory.policy.gang_placement` (placement, hot swap,
degraded domains), :mod:`superfactory.policy.gang_reservations` (reservations, preemption),
:mod:`superfactory.policy.gang_rolling` (the rolling plan), :mod:`superfactory.policy.gang_lane` (the lane,
short work saved for drain windows),
:mod:`superfactory.policy.gang_site` (queue order, per-factory state, helpers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from superfactory.domain.fleet import FleetSnapshot, JobView, Place, Plan, Preempt, SwapNodes
from superfactory.domain.outcome import ActionOutcome
from superfactory.policy.feasibility import ShapeCheck
from superfactory.policy.gang_rolling import GangRolling
from superfactory.policy.gang_site import GangSite, expected_run_s, hold_claims, queue_order, starving
from superfactory.policy.gangfit import GangShape
from superfactory.policy.preemption import PreemptionCosts, PreemptionLedger
from superfactory.policy.registry import register

__all__ = ["GangScheduler", "GangSite", "expected_run_s", "queue_order", "starving"]

# The mix rule's record of job ids (GangScheduler._drain_worthy): an id is kept while its job was pending or
# running within the last day, and the record is pruned hourly. A job leaves the snapshots only when it ends,
# so dropping its id never counts its work twice; the record stays the size of a day's jobs in a long live run.
_SEEN_KEEP_S = 86_400
_SEEN_PRUNE_S = 3_600


@register("gang")
class GangScheduler(GangRolling):
    """Topology-aware gang scheduling: NVLink-domain TP groups, leaf/spine packing, reservations, backfill,
    preemption, hot-swap and an all-reduce bandwidth check."""

    name = "gang"

    def __init__(self, reservations: int = 2, backfill: bool = True, preemption: bool = True,
                 hot_swap: bool = True, spare_pool: int = 0, bandwidth_check: bool = True,
                 min_bandwidth_ratio: float = 0.9, preempt_after_s: int = 1800,
                 max_preemptions_per_day: int = 16, victim_cooldown_s: int = 12 * 3600,
                 preempt_margin: float = 1.5, priority_base: float = 4.0, evacuate_degraded: bool = True,
                 probe_cycle_s: int = 60, starve_after_s: float = 6 * 3600,
                 degraded_backfill: bool = True, latest_fit: bool = True, guard_behind_top: bool = False,
                 guard_deadline_s: float = float("inf"), guard_preemptions_per_day: int = 0,
                 handoff: bool = False, handoff_min_gpus: int = 2048, handoff_window_s: float = 4 * 3600,
                 handoff_delay_weight: float = 0.5, fill_reserved: bool = False,
                 largest_first: bool = True, largest_first_min_gpus: int = 0,
                 reserve_after_s: float = 3600.0, reserve_mix_share: float = 0.4,
                 reserve_mix_band: float = 0.05, rolling_plan: bool = False, rolling_big_gpus: int = 2048,
                 rolling_horizon_s: int = 86_400, rolling_slot_s: int = 60,
                 rolling_priority: bool = False, rolling_down_s: int = 86_400, rolling_lane_last: bool = True,
                 rolling_lane_slack: float = 0.125, rolling_promise: bool = False, lane: bool = False,
                 lane_min_gpus: int = 4096, lane_spare: int = 8, lane_last: bool = True,
                 rolling_healthy_lane: bool = False, rolling_lane_hold_slack: float = 0.0,
                 rolling_lane_pad_s: float = 0.0, rolling_promise_slip_s: float = float("inf"),
                 drain_cut_gpus: int = 0, drain_cut_margin: float = 2.0, claims_withhold: bool = False,
                 save_short_s: float = 0.0, save_short_wait_s: float = 2 * 3600,
                 swaps_honour_reservations: bool = False) -> None:
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
        # the starving gang (guard) may preempt as if it had the top priority present, from a budget of its own
        # on top of ``max_preemptions_per_day`` (which the other preemptions and moves share)
        self.guard_preemptions = max(0, guard_preemptions_per_day)
        self.ledger = PreemptionLedger(max_per_day=max_preemptions_per_day + self.guard_preemptions,
                                       victim_cooldown_s=victim_cooldown_s)
        self._promoted: tuple[str, int] | None = None  # (guarded job, the priority it preempts with)
        # gangs the starvation guard started (or preempted for): never a victim, so the guard is not undone
        self._guarded: set[str] = set()
        self.evacuate_degraded = evacuate_degraded
        self.starve_after_s = float(starve_after_s)  # see queue_order
        self.degraded_backfill = degraded_backfill  # see _on_degraded
        self.latest_fit = latest_fit  # see _latest_fit
        self.guard_behind_top = guard_behind_top  # see queue_order; the guarded job always gets a reservation
        # a guarded job's reservation admits backfill that ends before submit + this (its deadline), not only
        # before its expected start: the slack up to the stated wait bound goes to the other classes
        self.guard_deadline_s = float(guard_deadline_s)
        # chained hand-off: a large gang's reservation is chosen by its drain cost (see _handoff)
        if handoff_window_s < 0 or handoff_delay_weight < 0:
            raise ValueError("handoff_window_s and handoff_delay_weight must be >= 0")
        self.handoff = handoff
        self.handoff_min_gpus = handoff_min_gpus
        self.handoff_window_s = float(handoff_window_s)
        self.handoff_delay_weight = float(handoff_delay_weight)
        self.fill_reserved = fill_reserved  # backfill goes into reserved holes first (see _in_hole)
        self.largest_first = largest_first  # see queue_order
        self.largest_first_min_gpus = largest_first_min_gpus
        # adaptive reservations (see _drain_worthy): on a mix where large gangs carry little of the demand, a
        # blocked gang that never ran gets its reservation (a drain) only after waiting reserve_after_s
        self.reserve_after_s = float(reserve_after_s)
        self.reserve_mix_share = float(reserve_mix_share)
        if reserve_mix_band < 0:
            raise ValueError("reserve_mix_band must be >= 0")
        self.reserve_mix_band = float(reserve_mix_band)
        self._large_mix: bool | None = None  # the mix's mode, latched with hysteresis (see _drain_worthy)
        if rolling_big_gpus <= 0 or rolling_horizon_s <= 0 or rolling_slot_s <= 0:
            raise ValueError("rolling_big_gpus, rolling_horizon_s and rolling_slot_s must be > 0")
        self.rolling_plan = rolling_plan  # see superfactory.policy.gang_rolling
        self.rolling_big_gpus = rolling_big_gpus
        self.rolling_horizon_s = rolling_horizon_s
        self.rolling_slot_s = rolling_slot_s
        self.rolling_priority = rolling_priority
        self.rolling_down_s = rolling_down_s
        self.rolling_lane_last = rolling_lane_last
        self.rolling_lane_slack = max(0.0, rolling_lane_slack)  # extra lane domains (down or degraded ones)
        self.rolling_promise = rolling_promise
        if rolling_lane_hold_slack < 0 or rolling_lane_pad_s < 0 or rolling_promise_slip_s < 0:
            raise ValueError("rolling_lane_hold_slack, rolling_lane_pad_s and rolling_promise_slip_s must be >= 0")
        self.rolling_healthy_lane = rolling_healthy_lane  # the lane: the healthiest domains (gang_lane.choose_lane)
        self.rolling_lane_hold_slack = rolling_lane_hold_slack  # other work enters the lane only if it ends in time
        self.rolling_lane_pad_s = rolling_lane_pad_s  # ... with its hold x (1 + slack) + pad (a pessimistic end)
        self.rolling_promise_slip_s = rolling_promise_slip_s  # the promise may slip this far past its first value
        self._lane_promise0_s = float("inf")
        if drain_cut_gpus < 0 or drain_cut_margin < 0:
            raise ValueError("drain_cut_gpus and drain_cut_margin must be >= 0")
        self.drain_cut_gpus = drain_cut_gpus  # 0: off; else gangs this large cut their drains by preempting
        self.drain_cut_margin = float(drain_cut_margin)
        self._cuts: dict[str, tuple[str, tuple[int, ...], int]] = {}  # drain cuts' claims (always withheld)
        # a preemptor's (and an evacuee's) promised nodes: with claims_withhold no other job may use them until it
        # starts; without (the old behaviour) a job ending before... any time may still backfill onto them
        self.claim_start_s = float("-inf") if claims_withhold else float("inf")
        if save_short_s < 0 or save_short_wait_s < 0:
            raise ValueError("save_short_s and save_short_wait_s must be >= 0")
        self.save_short_s = float(save_short_s)  # 0: off; short work is saved for drain windows (gang_lane)
        self.save_short_wait_s = float(save_short_wait_s)
        self._hole_misses = {}
        self.swaps_honour_reservations = swaps_honour_reservations  # see _hold_sticky
        self._lane_domains = 0  # the rolling plan's lane: the widest big gang seen, latched
        # the rolling plan's promise: the earliest planned start of a waiting big gang, kept while it waits, so a
        # later plan that slipped cannot let long work into the lane past it (a self-fulfilling delay)
        self._lane_promise_s = float("inf")
        if lane_min_gpus <= 0 or lane_spare < 0:
            raise ValueError("lane_min_gpus must be > 0 and lane_spare >= 0")
        self.lane = lane  # the big gangs' lane (superfactory.policy.gang_lane)
        self.lane_min_gpus = lane_min_gpus
        self.lane_spare = lane_spare
        self.lane_last = lane_last
        self._lane_width = self._lane_need = 0
        self._lane_prev = None
        self._outside_misses = {}
        # job id -> when it was last pending or running; its work is counted once, on first sight. Ids unseen for
        # _SEEN_KEEP_S are dropped (hourly), so a long live run keeps only recent jobs' ids, not every job's
        self._seen_s: dict[str, int] = {}
        self._seen_pruned_s = 0
        self._large_gpu_s = self._all_gpu_s = 0.0
        # a periodic cycle at the probe period, so a sweep that reveals a degraded domain is acted on at once
        self.cycle_s = probe_cycle_s if evacuate_degraded else 0
        # jobs draining off a degraded domain: (factory id, nodes promised to them, expiry)
        self._evac: dict[str, tuple[str, tuple[int, ...], int]] = {}
        # gangs whose preemption was declined: (re-evaluate after, why)
        self._declined: dict[str, tuple[int, str]] = {}
        self._victim_of: dict[str, str] = {}  # victim job id -> the gang it is draining for
        # nodes a preemptor was promised (factory id, nodes, expiry) until it starts: kept out of other gangs'
        # reservations; backfill may still use them unless claims_withhold (measured in docs/gang.md)
        self._claims: dict[str, tuple[str, tuple[int, ...], int]] = {}
        # reservations stick to their nodes across decisions, so backfill cannot keep pushing their start back
        self._sticky: dict[str, tuple[str, tuple[int, ...]]] = {}
        #: counters a benchmark or report may read: placements, hot_swaps, bandwidth_rejections, preemptions
        self.stats: dict[str, int] = {"placements": 0, "hot_swaps": 0, "bandwidth_rejections": 0,
                                      "preemptions": 0, "preemptions_declined": 0, "evacuations": 0,
                                      "degraded_hot_swaps": 0, "degraded_backfills": 0, "handoffs": 0,
                                      "hole_fills": 0}
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
        self._guarded &= held_ids | pending_ids
        for vid in [v for v, p in self._victim_of.items() if v not in held_ids or p not in pending_ids]:
            del self._victim_of[vid]
        hold_claims(self._claims, pending_ids, snapshot, sites, self.claim_start_s)
        hold_claims(self._cuts, pending_ids, snapshot, sites, float("-inf"))
        actions: list[Place | Preempt | SwapNodes] = []
        hold_claims(self._evac, pending_ids | held_ids, snapshot, sites, self.claim_start_s)
        if self.evacuate_degraded:
            # the waiting gangs' reservations are entered only later, in the walk: with swaps_honour_reservations
            # their last nodes are entered here too, so a swap off a degraded domain cannot take a drain window
            added = self._hold_sticky(snapshot, sites) if self.swaps_honour_reservations else []
            actions.extend(self._evacuations(snapshot, sites))
            if added:
                for site in sites:
                    site.reserved = [r for r in site.reserved if not any(r is a for a in added)]
        waiting: list[tuple[str, str]] = []
        refusals: list[tuple[str, str, str]] = []
        running_by_site: dict[int, list[JobView]] = {}
        for v in snapshot.running:
            if v.factory_id is not None:
                running_by_site.setdefault(snapshot.factory_index(v.factory_id), []).append(v)
        victims: set[str] = set()
        reserved_jobs = 0
        head: str | None = None  # with backfill off, the first blocked job blocks the rest
        guard = starving(snapshot.pending, snapshot.now_s, self.starve_after_s)
        self._promoted = None
        if guard is not None and self.guard_preemptions and guard.last_factory_id is None:  # never ran yet
            top = max(v.job.priority for v in (*snapshot.pending, *snapshot.running))
            self._promoted = (guard.job.id, top) if top > guard.job.priority else None
        drain_worthy = self.reserve_after_s <= 0 or self._drain_worthy(snapshot)
        # on a small-gang mix the top class goes first: the starving gang waits just behind it
        behind_top = self.guard_behind_top or not drain_worthy
        order = queue_order(snapshot.pending, snapshot.now_s, self.starve_after_s, behind_top,
                            self.largest_first, self.largest_first_min_gpus)
        rolling = self._rolling(snapshot, sites, running_by_site) if self.rolling_plan else None
        if self.lane and rolling is None:
            self._set_lane(snapshot, sites)
            self._outside_misses = {}
        if rolling is not None:  # the plan's order, so its starts are placed as it placed them
            rank = {jid: k for k, jid in enumerate(rolling.ranked)}
            order.sort(key=lambda v: rank.get(v.job.id, len(rank)))
        self._hole_misses = {}
        top = max((v.job.priority for v in snapshot.pending), default=0)
        for view in order:
            if head is not None:
                waiting.append((view.job.id, f"queued behind {head} (strict priority order, backfill off)"))
                continue
            if view.interrupted and self.hot_swap:
                swap = self._hot_swap(snapshot, sites, view)
                if swap is not None:
                    actions.append(swap)
                    self.stats["hot_swaps"] += 1
                    continue
            if rolling is not None:
                self._place_planned(snapshot, sites, view, rolling, actions, waiting, refusals)
                continue
            saved = self._place_saving(snapshot, sites, view, refusals, top) if self.save_short_s else None
            if saved is not None and saved[0] is None:
                waiting.append((view.job.id, saved[1]))
                continue
            placed, reason = saved if saved is not None else (
                self._place_lane(snapshot, sites, view, refusals) if sites and sites[0].lane is not None
                else self._place(snapshot, sites, view, refusals))
            if placed is not None:
                if view is guard:
                    self._guarded.add(view.job.id)
                actions.append(placed)
                self.stats["placements"] += 1
                continue
            extra = behind_top and view is guard and self.reservations > 0  # always reserved
            if reserved_jobs < self.reservations or extra:
                reserve = (drain_worthy or view is guard or view.job.id in self._sticky
                           or view.last_factory_id is not None
                           or snapshot.now_s - view.waiting_since_s >= self.reserve_after_s)
                reserved_jobs += not extra and reserve
                note, evict = self._reserve_or_preempt(snapshot, sites, running_by_site, view, victims,
                                                       view.job.submit_s + self.guard_deadline_s
                                                       if view is guard and self.guard_deadline_s < float("inf")
                                                       else -1.0, reserve)
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

    def _drain_worthy(self, snapshot: FleetSnapshot) -> bool:
        """Whether the workload seen so far is a *large-gang mix*: gangs of at least 1/16 of the fleet's GPUs
        carry at least ``reserve_mix_share`` of the GPU-seconds of work of every job seen (pending or running at
        some decision). Then drains are what keeps the factory busy (without them the small work runs out and
        the large gangs never start), so a blocked gang is reserved at once. Otherwise (many small gangs: the
        queue always holds work that fills any free node) a reservation's drain idles nodes that small work
        would have used, so a gang that never ran waits ``reserve_after_s`` for room before it gets one; the
        starving gang (guard), a gang that ran before (requeued by a failure or preempted: its wall time is
        already running, ETTR) and a gang that holds a reservation keep theirs at once. And on such a mix the
        top class goes first: the guard is queued just behind it (as with ``guard_behind_top``), still with a
        reservation of its own. The mode is latched: the first work seen sets it at ``reserve_mix_share``, and
        it changes only when the share falls below the threshold minus ``reserve_mix_band`` or rises to the
        threshold plus the band, so a share wandering around the threshold does not flip it back and forth."""
        large_gpus = sum(f.gpus for f in snapshot.factories) / 16
        now_s, seen = snapshot.now_s, self._seen_s
        for v in (*snapshot.pending, *snapshot.running):
            if v.job.id not in seen:
                gpu_s = v.job.gpus * v.job.work_s
                self._all_gpu_s += gpu_s
                self._large_gpu_s += gpu_s if v.job.gpus >= large_gpus else 0.0
            seen[v.job.id] = now_s
        if now_s - self._seen_pruned_s >= _SEEN_PRUNE_S:
            self._seen_pruned_s = now_s
            self._seen_s = {j: t for j, t in seen.items() if now_s - t < _SEEN_KEEP_S}
        if self._all_gpu_s <= 0:
            return True
        share = self._large_gpu_s / self._all_gpu_s
        if self._large_mix is None:  # the first work seen sets the mode at the threshold itself
            self._large_mix = share >= self.reserve_mix_share
        elif self._large_mix and share < self.reserve_mix_share - self.reserve_mix_band:
            self._large_mix = False
        elif not self._large_mix and share >= self.reserve_mix_share + self.reserve_mix_band:
            self._large_mix = True
        return self._large_mix

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
                self._cuts.pop(preemptor, None)
                for v in [v for v, p in self._victim_of.items() if p == preemptor]:
                    del self._victim_of[v]
