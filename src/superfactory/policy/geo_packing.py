"""Packing-aware geo (issue 18): hold a cheap factory's freed GPUs for a whole big gang, then move or start it.

Why: on real-2023 the hindsight bound's advantage over geo is that it fills the cheap GB200 sites' holes. Texas
and California had ~0.9k and ~2.8k free GPUs on average while 4,096- and 8,192-GPU gangs ran in dear Frankfurt
or waited; pending small work is only ~500 GPUs. Geo fills freed capacity with whatever pending work fits, so a
cheap site's holes rarely grow to a big gang's size.

What (opt-in, ``GeoPolicy(pack_big_gangs=True)``; with it off geo is unchanged, event for event):

- **a hold** (:class:`Hold`) reserves, at one factory, the nodes a *target* gang needs there: a running gang of at
  least ``min_gpus`` GPUs at a dearer factory (it will migrate), or a pending one that fits nowhere now (it will
  start). While the hold lasts, every other placement and move of geo sees that factory's free nodes less the
  held nodes (:meth:`GangPacker.free_nodes`: the rows of the full solve and of the cheap placement both read
  them), so freed capacity there is not backfilled with work that has other homes. Capacity beyond the held
  nodes is placed as before.
- **when it is made**: at a decision where some factory's free GPUs rose, or ``scan_s`` after the last scan. For
  each factory, cheapest 24-hour cost first, the candidate with the largest net value is held if its net value is
  positive and its expected fit time is at most ``max_hold_s``:

  - *expected fit time* ``t_fit``: the factory's free nodes now plus those of the running jobs there as their
    remaining work ends (shortest first), until the target's nodes are free (0 if they already are);
  - *saving*: the target's extra facility MW x (its alternative's 24-hour cost - this factory's) x the hours of
    its remaining work after ``t_fit``, less a move's one-off cost (drain, checkpoint transfer and restart in
    GPU-hours at the value of a GPU-hour, as geo's columns price it). The alternative is where a running gang
    runs; for a pending one, the mean of its other lawful factories (where it would otherwise start). A running
    gang's saving must also beat geo's ``hysteresis`` margin on this factory's rate;
  - *idle value*: the GPU-hours the hold keeps idle until ``t_fit`` (at each instant the free GPUs up to the
    target's, as they free) x the value of a GPU-hour of that accelerator (the catalog's capital rate, geo's
    ``lambda``);
  - net value = saving - idle value. It is re-checked at every scan; a hold whose net value is no longer positive
    is released.
- **release**: at the first decision at or after ``since + max_hold_s`` (the bound), or when the target has
  finished, started or moved elsewhere, is no longer movable, or the factory went down. Every hold made, released
  and used is logged in :attr:`GangPacker.log` (``(at_s, kind, job, factory)``).
- **use**: at a decision where the held factory has the target's nodes free (topology-aware
  :func:`~superfactory.policy.geo_plan.pick_nodes`) and the governor lets it move (rate limit, destination
  quota), the decision's plan is that one ``Migrate`` (or ``Place``) alone; the next decision places the rest.

Not built: consolidating small running jobs out of a cheap site's fragmented holes (moving them into one another)
so a big gang fits sooner.

Pure: no clock, no I/O; the policy passes the snapshot it decides on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from superfactory.domain.fleet import FleetSnapshot, JobView, Migrate, Place, Plan
from superfactory.domain.lifecycle import MOVABLE

if TYPE_CHECKING:
    from superfactory.policy.geo import GeoPolicy

HOUR_S = 3600


@dataclass(frozen=True, slots=True)
class PackingParams:
    """Knobs of the packing option (module docstring).

    Attributes:
        min_gpus: the smallest gang held for (GPUs).
        max_hold_s: the longest a hold lasts, and the longest expected fit time a hold is made for.
        scan_s: the longest time between two scans for new holds (a rise of free GPUs scans at once).
        pending: whether pending gangs that fit nowhere are targets too (running gangs always are).
        cooldown_s: a gang the packer moved or started is not a target again for this long.
        running: whether running gangs at dearer factories are targets (they migrate).
    """

    min_gpus: int = 2048
    max_hold_s: int = 6 * HOUR_S
    scan_s: int = 900
    pending: bool = True
    cooldown_s: int = 24 * HOUR_S
    running: bool = True

    def __post_init__(self) -> None:
        if self.min_gpus < 1:
            raise ValueError("pack_min_gpus must be >= 1")
        if self.max_hold_s <= 0:
            raise ValueError("pack_max_hold_s must be > 0")
        if self.scan_s <= 0:
            raise ValueError("pack_scan_s must be > 0")
        if self.cooldown_s < 0:
            raise ValueError("pack_cooldown_s must be >= 0")


@dataclass(slots=True)
class Hold:
    """Nodes of one factory held for one target gang (module docstring)."""

    factory: int
    accelerator: str
    job_id: str
    nodes: int  # the nodes the target needs in this factory
    gpus: int
    since_s: int
    until_s: int
    running: bool  # the target was running elsewhere (it migrates) or pending (it starts)
    saving_usd: float
    idle_usd: float


@dataclass(slots=True)
class GangPacker:
    """The holds of one geo policy and the rules that make, use and release them (module docstring)."""

    params: PackingParams
    raw_free_nodes: Callable[[FleetSnapshot, int, str], int]
    holds: dict[int, Hold] = field(default_factory=dict)  # factory index -> its hold
    log: list[tuple[int, str, str, str]] = field(default_factory=list)  # (at_s, kind, job, factory id)
    _last_scan_s: int = -(10**12)
    _last_free: list[int] = field(default_factory=list)
    _week: tuple[int, list[float]] = (-1, [])
    _expired: dict[tuple[str, int], int] = field(default_factory=dict)  # (job, factory) -> when its hold ran out
    _moved: dict[str, int] = field(default_factory=dict)  # job -> when the packer last moved or started it
    _fits: dict[tuple[int, str, int], tuple[float, float]] = field(default_factory=dict)  # (one scan's)

    def free_nodes(self, snap: FleetSnapshot, i: int, acc: str) -> int:
        """Free ``acc`` nodes of factory ``i`` as geo's other placements may use them: less the held nodes."""
        n = self.raw_free_nodes(snap, i, acc)
        h = self.holds.get(i)
        if h is not None and h.accelerator == acc:
            return max(0, n - h.nodes)
        return n

    def held_gpus(self) -> int:
        return sum(h.gpus for h in self.holds.values())

    # == one decision ========================================================================================
    def step(self, pol: GeoPolicy, snap: FleetSnapshot) -> Plan | None:
        """Release, make and use holds at this decision. Returns the plan of a target's move or start (the whole
        decision), or ``None`` (geo decides as usual, seeing the held nodes as taken)."""
        now = snap.now_s
        views = {v.job.id: v for v in snap.running}
        pend = {v.job.id: v for v in snap.pending}
        changed = self._release(snap, views, pend, now)
        free = pol._free_gpus(snap)
        rose = len(free) != len(self._last_free) or any(a > b for a, b in zip(free, self._last_free, strict=True))
        self._last_free = list(free)
        if pol._lam and (rose or now - self._last_scan_s >= self.params.scan_s):
            self._last_scan_s = now
            changed |= self._scan(pol, snap, views, pend)
        if changed:
            pol._last_quick = ()  # (geo's "nothing changed" shortcut assumed the old holds)
        return self._use(pol, snap, views, pend)

    def _release(self, snap: FleetSnapshot, views: dict[str, JobView], pend: dict[str, JobView], now: int) -> bool:
        changed = False
        for i, h in list(self.holds.items()):
            v = views.get(h.job_id) if h.running else pend.get(h.job_id)
            why = ""
            if now >= h.until_s:
                why = "expired"
            elif not snap.states[i].up:
                why = "down"
            elif v is None or (h.running and (v.factory_id == snap.factories[i].id or v.state not in MOVABLE)):
                why = "gone"
            if why:
                if why == "expired":
                    self._expired[(h.job_id, i)] = now
                del self.holds[i]
                self.log.append((now, f"release:{why}", h.job_id, snap.factories[i].id))
                changed = True
        return changed

    def _use(self, pol: GeoPolicy, snap: FleetSnapshot, views: dict[str, JobView], pend: dict[str, JobView]
             ) -> Plan | None:
        from superfactory.policy.geo_plan import pick_nodes  # (geo_plan imports geo's parts; kept local)

        now = snap.now_s
        for i, h in sorted(self.holds.items()):
            if self.raw_free_nodes(snap, i, h.accelerator) < h.nodes:
                continue
            f = snap.factories[i]
            v = views.get(h.job_id) if h.running else pend.get(h.job_id)
            if v is None:
                continue
            job = v.job
            if h.running and not (pol.governor.may_move(job.id, now) and pol.governor.quota_left_gpus(
                    f.id, f.gpus, now, False, job.gpus) >= job.gpus):
                continue
            nodes = pick_nodes(f, np.frombuffer(snap.states[i].node_status, dtype=np.uint8).copy(), job)
            if nodes is None:
                continue
            del self.holds[i]
            self._moved[job.id] = now
            self.log.append((now, "use" if h.running else "use:start", job.id, f.id))
            pol._last_quick = ()
            if h.running or (v.last_factory_id is not None and v.last_factory_id != f.id):
                pol.governor.record_move(job.id, f.id, job.gpus, now)
                pol._gpus[job.id] = job.gpus
            else:
                pol.governor.record_start(job.id, now)
            if h.running:
                act: Migrate | Place = Migrate(job.id, f.id, nodes, f"geo: packed into {f.id}'s held capacity")
            else:
                pol._paused.discard(job.id)
                act = Place(job.id, f.id, nodes)
            waiting = tuple((j, r) for j, r in sorted(pol._reasons.items()) if j in pend and j != job.id)
            return Plan((act,), waiting)
        return None

    # == making holds ========================================================================================
    def _scan(self, pol: GeoPolicy, snap: FleetSnapshot, views: dict[str, JobView], pend: dict[str, JobView]
              ) -> bool:
        """Re-check every hold's value and make new ones (module docstring); whether the holds changed."""
        now = snap.now_s
        rate24 = pol._rates[0]
        changed = False
        self._fits = {}
        targets = {h.job_id for h in self.holds.values()}
        order = sorted(range(len(snap.factories)), key=lambda i: (rate24[i], i))
        for i in order:
            f = snap.factories[i]
            if not snap.states[i].up:
                continue
            kept = self.holds.get(i)
            best: tuple[float, JobView, int, float, float, bool] | None = None
            for running, pool in ((True, views if self.params.running else {}),
                                  (False, pend if self.params.pending else {})):
                for v in pool.values():
                    job = v.job
                    if job.gpus < self.params.min_gpus or job.accelerator not in f.accelerators:
                        continue
                    if job.id in targets and (kept is None or kept.job_id != job.id):
                        continue
                    got = self._value(pol, snap, v, i, running)
                    if got is not None and (best is None or got[0] > best[0]):
                        best = (got[0], v, got[1], got[2], got[3], running)
            if kept is not None and (best is None or best[1].job.id != kept.job_id):
                # the kept target is no longer the best (or no longer worth holding for): release it
                del self.holds[i]
                targets.discard(kept.job_id)
                self.log.append((now, "release:value", kept.job_id, f.id))
                changed = True
                kept = None
            if best is None:
                continue
            _net, v, nodes, saving, idle, running = best
            if kept is not None:
                kept.saving_usd, kept.idle_usd = saving, idle
                continue
            self.holds[i] = Hold(i, v.job.accelerator, v.job.id, nodes, v.job.gpus, now,
                                 now + self.params.max_hold_s, running, saving, idle)
            targets.add(v.job.id)
            self.log.append((now, "hold", v.job.id, f.id))
            changed = True
        return changed

    def _value(self, pol: GeoPolicy, snap: FleetSnapshot, v: JobView, i: int, running: bool
               ) -> tuple[float, int, float, float] | None:
        """(net value, nodes, saving, idle value) of holding factory ``i`` for ``v``, or ``None`` when the hold
        is not lawful, not cheaper, not expected to fit within ``max_hold_s`` or not worth its idle GPUs."""
        job = v.job
        if snap.now_s - self._moved.get(job.id, -(10**12)) < self.params.cooldown_s:
            return None
        sites = pol._sites(snap, job)[0]
        here = next((s for s in sites if s[0] == i), None)
        if here is None:
            return None
        _i, nodes, _w, mw = here
        rate24 = pol._rates[0]
        lam = pol._lam.get(job.accelerator)
        if lam is None or not math.isfinite(lam) or lam >= 1e11:
            return None
        f = snap.factories[i]
        if running:
            if (v.factory_id is None or v.factory_id == f.id or v.state not in MOVABLE or not job.migratable
                    or not pol.migrate):
                return None
            j = snap.factory_index(v.factory_id)
            alt = next((s for s in sites if s[0] == j), None)
            if alt is None:
                return None
            others = [alt]
            alt_usd_h = alt[3] * rate24[j]
        else:
            if v.waiting_since_s < 0:
                return None
            others = [s for s in sites if s[0] != i and snap.states[s[0]].up]
            if any(self.raw_free_nodes(snap, s[0], job.accelerator) >= s[1] for s in others) or not others:
                return None  # it fits elsewhere now: geo places it this decision
            alt_usd_h = sum(s[3] * rate24[s[0]] for s in others) / len(others)
        here_usd_h = mw * rate24[i]
        gain_usd_h = alt_usd_h - here_usd_h
        if gain_usd_h <= (pol.hysteresis * abs(here_usd_h) if running else 0.0):
            return None
        # beyond the next 24 hours the gap is the trailing week's (a move is for the rest of the run: a cheap
        # day at a structurally dear site does not pay for it)
        week = self._week_rates(pol, snap)
        alt_week = sum(s[3] * week[s[0]] for s in others) / len(others)
        gain_week = alt_week - mw * week[i]
        if any(s[3] * week[s[0]] < mw * week[i] for s in sites if snap.states[s[0]].up):
            return None  # only towards the job's cheapest lawful factory over the week (no walks between sites)
        if gain_week <= (pol.hysteresis * abs(mw * week[i]) if running else 0.0):
            return None
        fk = (i, job.accelerator, nodes)
        fit = self._fits.get(fk)
        if fit is None:
            fit = self._fits[fk] = self._fit(snap, i, job.accelerator, nodes)
        t_fit_h, idle_gpu_h = fit
        if t_fit_h * HOUR_S > self.params.max_hold_s or (t_fit_h == 0.0 and not running):
            return None  # (a pending gang that fits here now is geo's own placement to make)
        if t_fit_h > 0.0 and snap.now_s - self._expired.get((job.id, i), -(10**12)) < self.params.max_hold_s:
            return None  # a hold that ran out is not renewed at once (the bound is per wait, not per hold)
        if running and not pol.governor.may_move(job.id, snap.now_s + int(t_fit_h * HOUR_S)):
            return None  # the governor's rate limit would bar the move when the nodes are free
        remaining_h = max(0.0, (job.work_s - v.progress_s) / HOUR_S - t_fit_h)
        first_h = min(remaining_h, 24.0)
        move_usd = 0.0
        if running:
            assert v.factory_id is not None
            ck = job.checkpoint
            bw = pol._bandwidth_gbps(snap, v.factory_id, f.id)
            drain_h = (ck.blocking_s + ck.async_write_s + job.recovery.restart_s) / HOUR_S
            move_usd = (drain_h + ck.size_bytes * 8 / (bw * 1e9) / HOUR_S) * job.gpus * lam
        saving = gain_usd_h * first_h + gain_week * (remaining_h - first_h) - move_usd
        idle = idle_gpu_h * lam
        net = saving - idle
        if net <= 0:
            return None
        return net, nodes, saving, idle

    def _week_rates(self, pol: GeoPolicy, snap: FleetSnapshot) -> list[float]:
        """Per factory: the effective cost (USD per facility MWh, geo's ``alpha`` x price + ``beta`` x carbon) over
        the trailing 168 hours and geo's next-24-hour forecast together (kept for the clock hour)."""
        hour = snap.now_s // HOUR_S
        if self._week[0] == hour and len(self._week[1]) == len(snap.factories):
            return self._week[1]
        out: list[float] = []
        for i, f in enumerate(snap.factories):
            ph = snap.price_history.get(f.market, ())[-168:]
            vals = [pol.alpha * p for p in ph]
            if pol.beta:
                ch = snap.carbon_history.get(f.grid, ())[-168:]
                vals = [a + pol.beta * c / 1000.0 for a, c in zip(vals, ch, strict=False)]
            n = len(vals)
            out.append((sum(vals) + 24 * pol._rates[0][i]) / (n + 24))
        self._week = (hour, out)
        return out

    def _fit(self, snap: FleetSnapshot, i: int, acc: str, nodes: int) -> tuple[float, float]:
        """(hours until ``nodes`` of ``acc`` are expected free in factory ``i``, GPU-hours a hold keeps idle
        until then): the free nodes now, then the running jobs there as their remaining work ends (shortest
        first); ``inf`` hours when they never add up."""
        f = snap.factories[i]
        cl = f.clusters_of(acc)
        per_node = cl[0].system.gpus_per_node if cl else 1
        free = self.raw_free_nodes(snap, i, acc)
        if free >= nodes:
            return 0.0, 0.0
        ends = sorted(((v.job.work_s - v.progress_s) / HOUR_S, len(v.nodes)) for v in snap.running
                      if v.factory_id == f.id and v.job.accelerator == acc)
        t = 0.0
        idle = 0.0
        for end_h, n in ends:
            idle += min(free, nodes) * per_node * max(0.0, end_h - t)
            t = max(t, end_h)
            free += n
            if free >= nodes:
                return t, idle
        return math.inf, math.inf
