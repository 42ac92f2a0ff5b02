"""A clairvoyant offline gang schedule: evidence of what occupancy is achievable, not a policy (pure, numpy).

The planner knows every job in advance: its release (submit) time, its gang shape (``units`` TP units of
``unit_nodes`` nodes, each unit whole inside one NVLink domain of ``per_domain`` nodes, the gang whole) and its
hold time at full speed without failures (:func:`~superfactory.policy.gang_site.expected_run_s` from no progress:
restart + work + checkpoint stalls, what the twin holds a job's nodes for on a failure-free run). It plans a
schedule on ``domains`` identical domains over ``[0, horizon_s)`` that maximises held node-time, with no
failures and no preemption:

- **Conservative backfill with exact runtimes over a per-domain availability profile.** Time is cut into slots
  of ``slot_s``; ``free[d, s]`` is the nodes of domain ``d`` free during slot ``s``. Jobs are taken in a list
  order; each goes to the earliest slot at or after its release where, for its whole hold (clipped at the
  horizon: what runs past it needs no room beyond), enough domains have room for its units: per domain
  ``min_s free // unit_nodes`` units. Starts are slot boundaries and holds are rounded up to whole slots in the
  profile, so the plan stays valid at exact times (it only leaves a little unused). Units go to the tightest
  domains first (least free room over the window, then lowest index): a best fit that keeps empty domains for
  gangs of 16-node units. Later jobs fill holes earlier in time (backfill), never delaying planned ones.
- **List orders** (:func:`plan`): ``release`` (release time, then largest first: gang's queue order with perfect
  knowledge), ``big_first`` (gangs of at least ``big_nodes`` nodes first), ``size_desc`` (largest first),
  ``work_desc`` (most node-seconds first). Plain conservative backfill in any of them stays below 0.96 on the
  Kalos day: every job reserves, so mid-size gangs drain too.
- **The lane plan** (:func:`lane_plan`, what :func:`best_plan` builds). The big gangs (at least ``big_nodes``
  nodes) are planned first, by conservative backfill in release order, inside a *lane*: the fewest domains that
  hold the largest of them (64 of 128 for a 1,024-node gang), so each big gang takes its domains from the one
  before it (a hand-off) instead of draining the whole factory. Every other job is then placed by a *greedy time
  sweep* (:func:`plan_in_order`'s ``sweep``): at each slot where room frees up or a job is released, the waiting
  jobs, in the sweep order, start there if they fit for their whole hold, inside or outside the lane (in the
  lane only up to the next planned big start: exact runtimes), and never reserve (so they never drain).
  :func:`best_plan` tries two big-gang thresholds and the sweep orders of :data:`SWEEPS`, then swaps of two big
  gangs in the order.

:func:`check_plan` validates a plan at exact times (capacity per domain at every instant, whole units inside
domains, whole gangs, releases, hold lengths, starts inside the horizon) and returns the violations found.
Occupancy is held node-seconds within the horizon over ``domains * per_domain * horizon_s`` (every node has the
same GPUs, so it equals the twin's GPU occupancy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from superfactory.domain.job import TrainingJob
from superfactory.policy.gang_site import expected_run_s
from superfactory.policy.gangfit import shape_of

ORDERS = ("release", "big_first", "size_desc", "work_desc")
#: the orders :func:`best_plan` tries for the time sweep of the jobs outside the big gangs' lane
SWEEPS = ("work_desc", "size_desc", "release")


@dataclass(frozen=True, slots=True)
class OfflineJob:
    """A job as the planner sees it: ``units`` TP units of ``unit_nodes`` nodes, released at ``release_s``,
    holding its nodes ``hold_s`` seconds once started."""

    id: str
    release_s: int
    hold_s: float
    units: int
    unit_nodes: int

    @property
    def nodes(self) -> int:
        return self.units * self.unit_nodes


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """One start of the plan: ``job`` runs on ``placement`` ((domain, units there), ...) from ``start_s`` for its
    hold."""

    job: str
    start_s: int
    placement: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class OfflinePlan:
    """A plan: its starts, the order that built it, and its occupancy (held node-s / node-s in the horizon)."""

    starts: tuple[PlannedJob, ...]
    order: str
    held_node_s: float
    occupancy: float


def offline_jobs(jobs: Sequence[TrainingJob], gpus_per_node: int, per_domain: int,
                 hold: Callable[[TrainingJob], float] = lambda j: expected_run_s(j, 0.0)) -> list[OfflineJob]:
    """The planner's view of ``jobs`` on domains of ``per_domain`` nodes of ``gpus_per_node`` GPUs (their gang
    shapes as the policy places them, :func:`~superfactory.policy.gangfit.shape_of`)."""
    out = []
    for j in jobs:
        s = shape_of(j, gpus_per_node, per_domain)
        out.append(OfflineJob(j.id, max(0, int(j.submit_s)), float(hold(j)), s.nodes // s.unit_nodes, s.unit_nodes))
    return out


def _window_min(free: npt.NDArray[np.int16], width: int) -> npt.NDArray[np.int16]:
    """``out[d, s] = min(free[d, s:s + width])`` (``free`` must have ``width - 1`` padding columns at its end);
    the result has ``free.shape[1] - width + 1`` columns. Doubling: log2(width) vectorised minima."""
    out = free.copy()
    span = 1
    while span * 2 <= width:
        out = np.minimum(out[:, :-span], out[:, span:])
        span *= 2
    if span < width:
        out = np.minimum(out[:, : out.shape[1] - (width - span)], out[:, width - span:])
    return out[:, : free.shape[1] - width + 1]


def _order(jobs: Sequence[OfflineJob], order: str, big_nodes: int) -> list[int]:
    idx = range(len(jobs))
    if order == "release":
        return sorted(idx, key=lambda i: (jobs[i].release_s, -jobs[i].nodes, i))
    if order == "big_first":
        return sorted(idx, key=lambda i: (jobs[i].nodes < big_nodes, jobs[i].release_s, -jobs[i].nodes, i))
    if order == "size_desc":
        return sorted(idx, key=lambda i: (-jobs[i].nodes, jobs[i].release_s, i))
    if order == "work_desc":
        return sorted(idx, key=lambda i: (-jobs[i].nodes * jobs[i].hold_s, i))
    raise ValueError(f"unknown order {order!r}; choose from {', '.join(ORDERS)}")


def plan_in_order(jobs: Sequence[OfflineJob], sequence: Sequence[int], domains: int, per_domain: int,
                  horizon_s: int, slot_s: int = 60, label: str = "custom", big_nodes: int = 512,
                  lane_domains: int = 0, sweep: Sequence[int] = (),
                  initial_free: npt.NDArray[np.int16] | None = None, sweep_slots: int | None = None,
                  lane_last: bool = False, lane_slack: float = 0.0, lane_pad_s: float = 0.0) -> OfflinePlan:
    """Conservative backfill of ``jobs`` taken in ``sequence`` (indices into ``jobs``; see the module docstring),
    then a greedy time sweep of ``sweep`` (indices not in ``sequence``): at each slot where room frees up, the
    released jobs not yet started, in ``sweep`` order, start there if they fit for their whole hold (never a
    reservation, so they never drain). With ``lane_domains`` > 0, jobs of at least ``big_nodes`` nodes only use
    the first ``lane_domains`` domains (when they fit there). Jobs that cannot start before the horizon, or
    whose unit does not fit a domain, are left out. ``initial_free`` (``domains`` x ``ceil(horizon_s / slot_s)``
    nodes free per domain and slot, each in ``[0, per_domain]``) starts the plan from domains already partly
    held (running jobs with their expected ends: the rolling plan of :mod:`superfactory.policy.gang_rolling`);
    ``sweep_slots`` stops the sweep after that many slots (the rolling plan only acts on the first); with
    ``lane_last`` the jobs below ``big_nodes`` take domains outside the lane first (online, where big gangs not
    yet released cannot be planned, this keeps the lane for them). ``lane_slack`` and ``lane_pad_s``: a job
    below ``big_nodes`` may use a lane domain only where it has room for a *pessimistic* hold,
    ``hold x (1 + lane_slack) + lane_pad_s`` (online, holds overrun: failures, slow domains), so it ends before the
    next planned big start even when it runs late (its profile is still charged its expected hold)."""
    if domains <= 0 or per_domain <= 0 or horizon_s <= 0 or slot_s <= 0:
        raise ValueError("domains, per_domain, horizon_s and slot_s must be > 0")
    n_slots = -(-horizon_s // slot_s)
    if lane_slack < 0 or lane_pad_s < 0:
        raise ValueError("lane_slack and lane_pad_s must be >= 0")
    widths = [min(n_slots, max(1, -(-int(np.ceil(j.hold_s)) // slot_s))) for j in jobs]
    padded = lane_domains > 0 and (lane_slack > 0 or lane_pad_s > 0)
    lane_widths = [min(n_slots, max(1, -(-int(np.ceil(j.hold_s * (1 + lane_slack) + lane_pad_s)) // slot_s)))
                   for j in jobs] if padded else widths
    # padding past the horizon is unconstrained: a job running past it needs no room there
    free = np.full((domains, n_slots + max(lane_widths, default=1)), per_domain, dtype=np.int16)
    if initial_free is not None:
        if initial_free.shape != (domains, n_slots) or initial_free.min(initial=0) < 0 \
                or initial_free.max(initial=0) > per_domain:
            raise ValueError(f"initial_free must be {domains} x {n_slots} counts in [0, {per_domain}]")
        free[:, :n_slots] = initial_free
    starts: list[PlannedJob] = []
    held = 0.0

    def room_of(i: int, first: int, last: int) -> npt.NDArray[np.int16]:
        j, width = jobs[i], widths[i]
        room = _window_min(free[:, first: last + width - 1], width)
        if 0 < lane_domains < domains and j.nodes >= big_nodes and j.units <= lane_domains * (per_domain
                                                                                              // j.unit_nodes):
            room[lane_domains:] = 0  # the big gangs' lane: they run only on the first lane_domains domains
        elif padded and j.nodes < big_nodes and lane_widths[i] > width:  # room in the lane for a late end
            late = _window_min(free[:lane_domains, first: last + lane_widths[i] - 1], lane_widths[i])
            room[:lane_domains] = np.minimum(room[:lane_domains], late)
        return room

    def start(i: int, s: int, col_room: npt.NDArray[np.int16]) -> None:
        nonlocal held
        j = jobs[i]
        col_fit = col_room // j.unit_nodes
        need, placement = j.units, []
        in_lane = np.arange(domains) < (lane_domains if lane_last and j.nodes < big_nodes else 0)
        # (lane_last: outside the lane first), then the tightest domain, then the lowest index
        for d in np.lexsort((np.arange(domains), col_room, in_lane)):
            if col_fit[d] <= 0:
                continue
            take = int(min(col_fit[d], need))
            placement.append((int(d), take))
            free[d, s: min(s + widths[i], n_slots)] -= take * j.unit_nodes
            need -= take
            if need == 0:
                break
        start_s = s * slot_s
        starts.append(PlannedJob(j.id, start_s, tuple(sorted(placement))))
        held += j.nodes * (min(start_s + j.hold_s, horizon_s) - start_s)

    def usable(j: OfflineJob) -> bool:
        return 0 < j.unit_nodes <= per_domain and j.units > 0 and -(-j.release_s // slot_s) < n_slots

    for i in sequence:
        j = jobs[i]
        if not usable(j):
            continue
        first = -(-j.release_s // slot_s)
        room = room_of(i, first, n_slots)
        ok = np.flatnonzero((room // j.unit_nodes).sum(axis=0) >= j.units)
        if ok.size:
            start(i, first + int(ok[0]), room[:, int(ok[0])])
    waiting = [i for i in sweep if usable(jobs[i])]
    releases = {-(-jobs[i].release_s // slot_s) for i in waiting}
    for s in range(n_slots if sweep_slots is None else min(n_slots, sweep_slots)):
        if not waiting or (s and s not in releases and not (free[:, s] > free[:, s - 1]).any()):
            continue  # nothing freed up and nothing released
        left = []
        for i in waiting:
            j = jobs[i]
            if -(-j.release_s // slot_s) > s or (free[:, s] // j.unit_nodes).sum() < j.units:
                left.append(i)
                continue
            room = room_of(i, s, s + 1)[:, 0]
            if (room // j.unit_nodes).sum() >= j.units:
                start(i, s, room)
            else:
                left.append(i)
        waiting = left
    return OfflinePlan(tuple(starts), label, held, held / (domains * per_domain * horizon_s))


def plan(jobs: Sequence[OfflineJob], domains: int, per_domain: int, horizon_s: int, order: str = "release",
         slot_s: int = 60, big_nodes: int = 512) -> OfflinePlan:
    """Plain conservative backfill (:func:`plan_in_order`, no lane, no sweep) in one of :data:`ORDERS`."""
    return plan_in_order(jobs, _order(jobs, order, big_nodes), domains, per_domain, horizon_s, slot_s, order,
                         big_nodes)


def lane_plan(jobs: Sequence[OfflineJob], big_sequence: Sequence[int], domains: int, per_domain: int,
              horizon_s: int, slot_s: int = 60, big_nodes: int = 512, sweep_order: str = "size_desc",
              label: str = "lane") -> OfflinePlan:
    """The big gangs (at least ``big_nodes`` nodes) in ``big_sequence`` planned first by conservative backfill
    inside a lane of the fewest domains that holds the largest of them (so they hand their domains on to each
    other instead of draining the whole factory), then every other job by the greedy time sweep in
    ``sweep_order`` (``release`` or ``size_desc``) of :func:`plan_in_order`."""
    lane = max((-(-jobs[i].units // max(1, per_domain // jobs[i].unit_nodes)) for i in big_sequence), default=0)
    rest = [i for i in _order(jobs, sweep_order, big_nodes) if jobs[i].nodes < big_nodes]
    return plan_in_order(jobs, big_sequence, domains, per_domain, horizon_s, slot_s, label, big_nodes,
                         min(lane, domains), rest)


def best_plan(jobs: Sequence[OfflineJob], domains: int, per_domain: int, horizon_s: int, slot_s: int = 60,
              big_nodes: int = 512, max_swaps: int = 12) -> OfflinePlan:
    """The best clairvoyant plan this module finds: :func:`lane_plan` with the big gangs in release order, for a
    big-gang threshold of ``big_nodes`` and of twice that, and each sweep order of :data:`SWEEPS`; then a local
    search over the best one's big-gang order (swaps of two big gangs, first improvement, at most ``max_swaps``
    plans tried). The plan with the most held node-time wins; ties keep the earlier. Its ``order`` names the
    threshold, the sweep and the swaps kept."""
    plans, keys = [], []
    for threshold in (big_nodes, 2 * big_nodes):
        big = [i for i in _order(jobs, "release", threshold) if jobs[i].nodes >= threshold]
        for sw in SWEEPS:
            plans.append(lane_plan(jobs, big, domains, per_domain, horizon_s, slot_s, threshold, sw,
                                   f"lane of gangs >= {threshold} nodes, {sw} sweep"))
            keys.append((threshold, sw, big))
    best = max(plans, key=lambda p: p.held_node_s)  # max keeps the first of equals
    threshold, sweep, big = keys[plans.index(best)]
    tried = kept = 0
    for a in range(len(big)):
        for b in range(a + 1, len(big)):
            if tried >= max_swaps:
                break
            seq = list(big)
            seq[a], seq[b] = seq[b], seq[a]
            tried += 1
            p = lane_plan(jobs, seq, domains, per_domain, horizon_s, slot_s, threshold, sweep,
                          f"lane of gangs >= {threshold} nodes, {sweep} sweep, {kept + 1} swap(s) of big gangs")
            if p.held_node_s > best.held_node_s:
                best, big, kept = p, seq, kept + 1
    return best


def check_plan(plan: OfflinePlan, jobs: Sequence[OfflineJob], domains: int, per_domain: int,
               horizon_s: int) -> list[str]:
    """Every way ``plan`` breaks the model, at exact times (empty: valid): an unknown or repeated job, a start
    before its release or not inside ``[0, horizon_s)``, a domain out of range, units that do not add up to the
    gang, a domain holding more than ``per_domain`` nodes at some instant of the horizon; and a held node-time
    that differs from the plan's own figure."""
    by_id = {j.id: j for j in jobs}
    bad: list[str] = []
    seen: set[str] = set()
    deltas: dict[int, list[tuple[float, int]]] = {}
    held = 0.0
    for p in plan.starts:
        j = by_id.get(p.job)
        if j is None:
            bad.append(f"{p.job}: not a job of the workload")
            continue
        if p.job in seen:
            bad.append(f"{p.job}: started twice")
        seen.add(p.job)
        if p.start_s < j.release_s:
            bad.append(f"{p.job}: starts at {p.start_s} s before its release at {j.release_s} s")
        if not 0 <= p.start_s < horizon_s:
            bad.append(f"{p.job}: starts at {p.start_s} s, outside [0, {horizon_s})")
        if sum(u for _, u in p.placement) != j.units or any(u <= 0 for _, u in p.placement):
            bad.append(f"{p.job}: placement {p.placement} is not its {j.units} whole units")
        end = min(p.start_s + j.hold_s, horizon_s)  # past the horizon the plan holds nothing
        for d, u in p.placement:
            if not 0 <= d < domains:
                bad.append(f"{p.job}: domain {d} out of range")
                continue
            deltas.setdefault(d, []).extend([(p.start_s, u * j.unit_nodes), (end, -u * j.unit_nodes)])
        held += j.nodes * (end - p.start_s)
    for d, ev in deltas.items():
        used = 0
        for t, x in sorted(ev, key=lambda e: (e[0], e[1])):  # ends before starts at the same instant
            used += x
            if used > per_domain:
                bad.append(f"domain {d}: {used} nodes held at {t:.0f} s > {per_domain}")
                break
    if abs(held - plan.held_node_s) > 1e-6 * max(1.0, held):
        bad.append(f"held node-time {held:.0f} differs from the plan's {plan.held_node_s:.0f}")
    return bad
