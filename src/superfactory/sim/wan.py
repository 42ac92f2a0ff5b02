"""The WAN fabric in the twin: links with capacity, a queue per link direction, traffic classes, and transfers
carried as fluid flows at their path's fair share.

Each WAN link is two directed arcs with the link's rate each way. A transfer (:class:`~superfactory.domain.
transfer.Transfer`) is carried by one or more *flows*, each along a path of arcs, as the ``wan`` role routed it
(:class:`~superfactory.domain.transfer.RouteTransfer`): a planned flow sends at most its planned rate in each of
its windows and nothing between them; a best-effort flow sends as fast as the links allow. Rates are max-min fair
(:func:`superfactory.models.wan_flow.max_min_fair`) in two strict tiers: restores first (a job waits on them),
then everything else — checkpoint replication, migrations, weight syncs and inference traffic — sharing fairly
per flow, as TCP flows on one fibre do. Inference is one flow per arc offering ``inference_share`` of the link;
when its share falls short a backlog builds, and the delay a request sees is the link's latency plus the time to
drain that backlog. A partition (or a factory outage) takes arcs down: flows across them stop and their
transfers ask for a new route.

Event-driven, never stepped: rates are constant between *changes* (a transfer added, routed, finished or
cancelled; a planned window opening or closing; a link going down or up; an inference backlog draining), so the
fabric advances every flow piecewise-linearly from one change to the next and schedules exactly one kernel
wake-up, at the next change (integer seconds, rounded up; a flow that finishes mid-second is done at the next
whole second). A quiet fabric costs nothing.

Signals: the checkpoint sync queue depth of a link direction (checkpoint transfers with data in flight through
it) is emitted as a ``CheckpointSyncQueueDepth`` event whenever it changes; every arrival is a
``TransferCompleted`` event with its lateness. :meth:`WanFabric.report` sums up a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from superfactory.domain.events import Event, EventKind
from superfactory.domain.factory import WanLink
from superfactory.domain.outcome import ActionOutcome, OutcomeStatus
from superfactory.domain.transfer import RouteTransfer, TrafficClass, Transfer, WanSettings, WanState
from superfactory.models.wan_flow import max_min_fair
from superfactory.sim.kernel import PRIO_JOB, PRIO_SIGNAL, Kernel

#: recomputation after changes at an instant: after the fleet's job events there, before the decision loop
PRIO_WAN = PRIO_JOB + 1
_EPS = 1e-6  # gigabits: less than this left is done
#: inference delay histogram: log-spaced bin edges, ms (1 ms .. 1 h; delays are capped at 1 h)
_DELAY_EDGES_MS = np.logspace(0, math.log10(3.6e6), 401)


@dataclass(slots=True)
class _Flow:
    arcs: tuple[int, ...]
    left: float
    windows: tuple[tuple[int, int, float], ...]  # (start_s, end_s, Gb/s); () = best effort
    rate: float = 0.0
    tail_flagged: bool = False  # its plan ended with data left: a new route was asked for

    def demand(self, t: int) -> float:
        if not self.windows:
            return math.inf
        for lo, hi, r in self.windows:
            if t < lo:
                return 0.0
            if t < hi:
                return r
        return math.inf  # the plan is used up with data left: best effort until re-routed

    def next_boundary(self, t: int) -> int | None:
        for lo, hi, _ in self.windows:
            if lo > t:
                return lo
            if hi > t:
                return hi
        return None


@dataclass(slots=True)
class _Open:
    tr: Transfer
    unrouted: float  # gigabits on no flow (not routed yet, or no path)
    on_arrival: Callable[[Transfer, int], None] | None
    flows: list[_Flow] = field(default_factory=list)

    def remaining(self) -> float:
        return self.unrouted + sum(f.left for f in self.flows)


@dataclass(frozen=True, slots=True)
class WanReport:
    """What the fabric did over a run.

    Attributes:
        transfers_completed: transfers whose last bit arrived.
        deadline_misses: transfers that arrived after their deadline, or were still open past it at the end.
        late_s: lateness of each late arrival, s.
        peak_queue_depth: most checkpoint transfers in flight through one link direction at once.
        congested_link_s: link-direction seconds with a checkpoint sync queue deeper than the alarm (> 5).
        inference_p99_delay_ms: 99th percentile over time and link directions of the delay a new inference
            request sees (latency + time to drain the inference backlog).
        peak_utilisation: highest load ÷ capacity of any up arc (<= 1 by construction).
        gbit_carried: gigabits delivered.
    """

    transfers_completed: int
    deadline_misses: int
    late_s: tuple[float, ...]
    peak_queue_depth: int
    congested_link_s: float
    inference_p99_delay_ms: float
    peak_utilisation: float
    gbit_carried: float


class WanFabric:
    """The twin's WAN: add transfers, route them (the ``wan`` role's actions), take links down and up."""

    def __init__(self, kernel: Kernel, links: Sequence[WanLink], settings: WanSettings,
                 emit: Callable[[Event], None]) -> None:
        self.k = kernel
        self.emit = emit
        self.settings = settings
        self.links = tuple(links)
        self.arc_src: list[str] = []
        self.arc_dst: list[str] = []
        self.arc_link: list[int] = []
        self.arc_of: dict[tuple[str, str], int] = {}
        for li, lk in enumerate(self.links):
            for a, b in ((lk.a, lk.b), (lk.b, lk.a)):
                self.arc_of.setdefault((a, b), len(self.arc_src))
                self.arc_src.append(a)
                self.arc_dst.append(b)
                self.arc_link.append(li)
        self.sites = frozenset(self.arc_src)
        self.cap = np.array([self.links[li].bandwidth_gbps for li in self.arc_link], dtype=float)
        self.lat_ms = np.array([self.links[li].latency_ms for li in self.arc_link], dtype=float)
        self.lam = settings.inference_share * self.cap
        self.inf_arcs = np.flatnonzero(self.lam > 0)
        self.backlog = np.zeros(self.inf_arcs.size)
        self.inf_rate = self.lam[self.inf_arcs].copy()
        self.link_down: dict[int, int] = {}  # link index -> outstanding outages (partitions may overlap)
        self.site_down: dict[str, int] = {}
        self.open: dict[str, _Open] = {}
        self.needs_route: set[str] = set()
        self.request_plan: Callable[[], None] = lambda: None  # the twin: loop.request(role="wan")
        self.depth = np.zeros(self.cap.size, dtype=np.int64)
        self._t = 0
        self._token = 0
        self._touch_at = -1
        # statistics
        self._completed = 0
        self._late: list[float] = []
        self._carried = 0.0
        self._peak_depth = 0
        self._congested_s = 0.0
        self._peak_util = 0.0
        self._delay_hist = np.zeros(_DELAY_EDGES_MS.size - 1)

    # == what the world and the wan role call ====================================================================
    def add(self, tr: Transfer, on_arrival: Callable[[Transfer, int], None] | None = None) -> None:
        """Open ``tr`` now (it waits for a route); ``on_arrival(tr, time_s)`` runs when its last bit arrives."""
        if tr.transfer_id in self.open:
            raise ValueError(f"transfer {tr.transfer_id!r} is already open")
        for site in (tr.src, tr.dst):
            if site not in self.sites:
                raise ValueError(f"transfer {tr.transfer_id!r}: factory {site!r} has no WAN link")
        self._advance(self.k.now_s())
        self.open[tr.transfer_id] = _Open(tr, tr.size_gbit, on_arrival)
        self.needs_route.add(tr.transfer_id)
        self._touch()
        self.request_plan()

    def cancel(self, transfer_id: str) -> None:
        """Stop carrying a transfer (its data is no longer wanted); unknown or finished ids are ignored."""
        if transfer_id in self.open:
            self._advance(self.k.now_s())
            del self.open[transfer_id]
            self.needs_route.discard(transfer_id)
            self._touch()

    def route(self, actions: Sequence[RouteTransfer]) -> list[ActionOutcome]:
        """Apply the ``wan`` role's routes; a route for a transfer that is no longer open is refused."""
        now = self.k.now_s()
        self._advance(now)
        out = []
        for a in actions:
            o = self.open.get(a.job_id)
            reason = "the transfer is no longer open (arrived or cancelled)" if o is None else self._set_route(o, a)
            status = OutcomeStatus.REFUSED if reason else OutcomeStatus.APPLIED
            out.append(ActionOutcome(a.action_id, status, a.job_id, o.tr.src if o else "", reason, now))
        self._touch()
        return out

    def set_link(self, a: str, b: str, up: bool) -> None:
        """Take the link between ``a`` and ``b`` down (or back up, once every outage of it has ended)."""
        for li, lk in enumerate(self.links):
            if {lk.a, lk.b} == {a, b}:
                self._outage(self.link_down, li, up)

    def set_site(self, factory_id: str, up: bool) -> None:
        """A factory went down (or came back): every link of it stops (or may carry again)."""
        self._outage(self.site_down, factory_id, up)

    def state(self) -> WanState:
        """The WAN as the ``wan`` role sees it now (see :class:`~superfactory.domain.transfer.WanState`)."""
        now = self.k.now_s()
        self._advance(now)
        up = self._up()
        links = tuple(lk for li, lk in enumerate(self.links) if up[2 * li])
        transfers = []
        for o in self.open.values():
            rem = o.remaining()
            if rem > _EPS:
                transfers.append(replace(o.tr, size_gbit=rem) if rem != o.tr.size_gbit else o.tr)
        bg = tuple((self.arc_src[a], self.arc_dst[a], float(self.lam[a])) for a in self.inf_arcs if up[a])
        egress: dict[str, float] = {}
        for a in np.flatnonzero(up):
            egress[self.arc_src[a]] = egress.get(self.arc_src[a], 0.0) + float(self.cap[a] - self.lam[a])
        return WanState(now, links, tuple(transfers), frozenset(self.needs_route), bg, self.settings.copies,
                        self.settings.critical_share, tuple(sorted(egress.items())))

    def close(self, until_s: int) -> None:
        """Account the fabric up to the end of the run."""
        self._advance(until_s)

    def report(self) -> WanReport:
        now = self.k.now_s()
        still_late = sum(1 for o in self.open.values() if o.tr.deadline_s < now)
        hist = self._delay_hist
        p99 = 0.0
        if hist.sum() > 0:
            i = int(np.searchsorted(np.cumsum(hist), 0.99 * hist.sum()))
            p99 = float(_DELAY_EDGES_MS[min(i + 1, hist.size)])  # upper edge of the bin: a bound within 2 %
        return WanReport(self._completed, len(self._late) + still_late, tuple(self._late), self._peak_depth,
                         self._congested_s, p99, self._peak_util, self._carried)

    # == internals ================================================================================================
    def _outage(self, counts: dict, key: object, up: bool) -> None:
        now = self.k.now_s()
        self._advance(now)
        before = self._up()
        counts[key] = counts.get(key, 0) + (-1 if up else 1)
        if counts[key] <= 0:
            del counts[key]
        after = self._up()
        lost = before & ~after
        for o in self.open.values():
            if any(lost[a] for f in o.flows for a in f.arcs):  # its path was cut: back to the wan role
                o.unrouted, o.flows = o.remaining(), []
                self.needs_route.add(o.tr.transfer_id)
            elif (after & ~before).any() and not o.flows:  # a link came back: a pathless transfer may now go
                self.needs_route.add(o.tr.transfer_id)
        self._touch()
        self.request_plan()

    def _up(self) -> np.ndarray:
        up = np.ones(self.cap.size, dtype=bool)
        for li in self.link_down:
            up[2 * li] = up[2 * li + 1] = False
        if self.site_down:
            for a in range(self.cap.size):
                if self.arc_src[a] in self.site_down or self.arc_dst[a] in self.site_down:
                    up[a] = False
        return up

    def _set_route(self, o: _Open, a: RouteTransfer) -> str:
        """Replace ``o``'s flows by route ``a``; returns a refusal reason or ``""``."""
        paths = [f.path for f in a.flows] + list(a.paths)
        for p in paths:
            if p[0] != o.tr.src or p[-1] != o.tr.dst:
                return f"path {'->'.join(p)} does not join {o.tr.src} to {o.tr.dst}"
            for i in range(len(p) - 1):
                if (p[i], p[i + 1]) not in self.arc_of:
                    return f"no WAN link {p[i]}-{p[i + 1]}"
        rem = o.remaining()
        self.needs_route.discard(o.tr.transfer_id)
        o.flows, o.unrouted = [], 0.0
        if a.flows:
            windows: dict[tuple[str, ...], list[tuple[int, int, float]]] = {}
            for pf in a.flows:
                lo = a.start_s + pf.slot * a.slot_s
                windows.setdefault(pf.path, []).append((lo, lo + a.slot_s, pf.gbit / a.slot_s))
            sizes = {p: sum((hi - lo) * r for lo, hi, r in w) for p, w in windows.items()}
            scale = min(1.0, rem / max(sum(sizes.values()), 1e-12))
            for p, w in windows.items():
                o.flows.append(_Flow(self._arcs(p), sizes[p] * scale, _merge(sorted(w), scale)))
            extra = rem - sum(f.left for f in o.flows)
            if extra > _EPS:  # what the plan leaves over rides at the end of its biggest flow
                max(o.flows, key=lambda f: f.left).left += extra
        elif a.paths:
            shares = np.asarray(a.shares if a.shares else [1.0] * len(a.paths), dtype=float)
            shares = shares / shares.sum()
            o.flows = [_Flow(self._arcs(p), rem * float(s), ()) for p, s in zip(a.paths, shares, strict=True)]
        else:
            o.unrouted = rem  # no path now: waits for a link to come back
        return ""

    def _arcs(self, path: Sequence[str]) -> tuple[int, ...]:
        return tuple(self.arc_of[(path[i], path[i + 1])] for i in range(len(path) - 1))

    def _touch(self) -> None:
        """Something changed now: recompute rates once, after every change at this instant."""
        now = self.k.now_s()
        if self._touch_at != now:
            self._touch_at = now
            self.k.at(now, PRIO_WAN, self._recompute_now)

    def _recompute_now(self) -> None:
        self._touch_at = -1
        now = self.k.now_s()
        self._advance(now)
        self._recompute(now)

    def _tick(self, token: int) -> None:
        if token == self._token:
            self._recompute_now()

    def _advance(self, now: int) -> None:
        """Carry every flow and the inference backlogs from the last change to ``now`` at the rates in force."""
        dt = now - self._t
        if dt <= 0:
            return
        self._t = now
        for o in self.open.values():
            for f in o.flows:
                if f.rate > 0:
                    sent = min(f.left, f.rate * dt)
                    f.left -= sent
                    self._carried += sent
                    if f.left < _EPS:
                        f.left = 0.0
        if self.inf_arcs.size:
            lam = self.lam[self.inf_arcs]
            d0 = self._delays_ms()
            self.backlog = np.maximum(0.0, self.backlog + (lam - self.inf_rate) * dt)
            d1 = self._delays_ms()
            for d in (d0, d1):
                idx = np.clip(np.searchsorted(_DELAY_EDGES_MS, d, side="right") - 1, 0, self._delay_hist.size - 1)
                np.add.at(self._delay_hist, idx, dt / 2.0)
        self._congested_s += float((self.depth > self.settings.queue_alarm).sum()) * dt
        for o in [o for o in self.open.values() if o.flows and o.remaining() <= _EPS]:
            if self.open.get(o.tr.transfer_id) is o:
                self._arrive(o, now)

    def _delays_ms(self) -> np.ndarray:
        got = self.inf_rate
        with np.errstate(divide="ignore", invalid="ignore"):
            drain_s = np.where(self.backlog > 0, np.where(got > 0, self.backlog / got, 3600.0), 0.0)
        return self.lat_ms[self.inf_arcs] + 1000.0 * np.minimum(drain_s, 3600.0)

    def _arrive(self, o: _Open, now: int) -> None:
        tr = o.tr
        del self.open[tr.transfer_id]
        self.needs_route.discard(tr.transfer_id)
        late = float(now - tr.deadline_s)
        self._completed += 1
        if late > 0:
            self._late.append(late)
        self.emit(Event(now, EventKind.TRANSFER_COMPLETED, tr.transfer_id, f"{tr.src}->{tr.dst}",
                        cause=tr.traffic_class.name.lower(), value=late))
        if o.on_arrival is not None:
            o.on_arrival(tr, now)

    def _recompute(self, now: int) -> None:
        """Fair-share rates from now on, queue depths, and the wake-up at the next change."""
        self._token += 1
        up = self._up()
        cap = np.where(up, self.cap, 0.0)
        flows = [(o, f) for o in self.open.values() for f in o.flows if f.left > 0]
        n, m = len(flows), self.inf_arcs.size
        inc = np.zeros((n + m, cap.size))
        demand = np.empty(n + m)
        restore = np.zeros(n + m, dtype=bool)
        for i, (o, f) in enumerate(flows):
            inc[i, list(f.arcs)] = 1.0
            demand[i] = f.demand(now)
            restore[i] = o.tr.traffic_class is TrafficClass.RESTORE
            if f.windows and now >= f.windows[-1][1] and not f.tail_flagged:
                f.tail_flagged = True  # its plan is used up with data left: ask for a new route
                self.needs_route.add(o.tr.transfer_id)
                self.request_plan()
        inc[n + np.arange(m), self.inf_arcs] = 1.0
        demand[n:] = np.where(self.backlog > _EPS, math.inf, self.lam[self.inf_arcs])
        rate = np.zeros(n + m)
        if restore.any():  # restores first, on the whole capacity
            rate[restore] = max_min_fair(inc[restore], cap, demand[restore])
            cap = np.maximum(0.0, cap - inc[restore].T @ rate[restore])
        rest = ~restore
        rate[rest] = max_min_fair(inc[rest], cap, demand[rest])
        for i, (_, f) in enumerate(flows):
            f.rate = float(rate[i])
        self.inf_rate = rate[n:]
        load = inc.T @ rate
        if self.cap.size:
            self._peak_util = max(self._peak_util, float((load / self.cap).max()))
        self._emit_depths(now, flows, demand, inc)
        self._schedule_next(now, flows)

    def _emit_depths(self, now: int, flows: list[tuple[_Open, _Flow]], demand: np.ndarray, inc: np.ndarray) -> None:
        depth = np.zeros(self.cap.size, dtype=np.int64)
        for i, (o, _) in enumerate(flows):
            if o.tr.traffic_class is TrafficClass.CHECKPOINT and demand[i] > 0:
                depth += inc[i].astype(np.int64)
        for a in np.flatnonzero(depth != self.depth):
            lk = self.links[self.arc_link[a]]
            self.emit(Event(now, EventKind.CHECKPOINT_SYNC_QUEUE_DEPTH, "", f"{lk.a}-{lk.b}",
                            cause=f"{self.arc_src[a]}->{self.arc_dst[a]}", value=float(depth[a])))
        self.depth = depth
        self._peak_depth = max(self._peak_depth, int(depth.max(initial=0)))

    def _schedule_next(self, now: int, flows: list[tuple[_Open, _Flow]]) -> None:
        nxt = math.inf
        for _, f in flows:
            if f.rate > 1e-12:
                nxt = min(nxt, now + f.left / f.rate)
            b = f.next_boundary(now)
            if b is not None:
                nxt = min(nxt, b)
        if self.inf_arcs.size:
            drain = self.inf_rate - self.lam[self.inf_arcs]
            ok = (self.backlog > _EPS) & (drain > 1e-12)
            if ok.any():
                nxt = min(nxt, now + float((self.backlog[ok] / drain[ok]).min()))
        if math.isfinite(nxt):
            self.k.at(max(now + 1, math.ceil(nxt - 1e-9)), PRIO_SIGNAL, self._tick, self._token)


def _merge(windows: list[tuple[int, int, float]], scale: float) -> tuple[tuple[int, int, float], ...]:
    """Scale planned windows and join back-to-back ones of equal rate (fewer wake-ups, same schedule)."""
    out: list[tuple[int, int, float]] = []
    for lo, hi, r in windows:
        r *= scale
        if out and out[-1][1] == lo and abs(out[-1][2] - r) <= 1e-9 * max(1.0, r):
            out[-1] = (out[-1][0], hi, r)
        else:
            out.append((lo, hi, r))
    return tuple(out)
