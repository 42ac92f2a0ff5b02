"""The ``geo`` policy: place, keep, move or pause every training job across factories by forecast power price,
carbon, latency and law.

Each full cycle solves one assignment problem (:mod:`.solver`) over all pending and running jobs:

- **columns** of a job: run in factory ``f`` (cleared by sovereignty, right accelerator, up), or wait/pause.
  Every column is a cost *rate* over the same span, the next ``T`` = min(remaining run, ``amortise_h``, 24) hours
  (hour 0 at the realised price the snapshot shows, later hours *forecast* from history only, :mod:`.forecast`).
  Running in ``f`` costs ``alpha`` x energy cost + ``beta`` x carbon cost + ``gamma`` x latency penalty, where
  energy is the job's extra facility power (training minus idle, x PUE).
- **the value of a GPU-hour** ``lambda_a`` per accelerator type: by default what the hardware costs its owner
  per hour (the catalog's capital rate), or ``value_usd_per_gpu_hour``; a wave-1 quantile rule only for systems
  without a list price. Waiting or pausing costs the job's GPUs x ``lambda_a`` per hour for the best ``k`` <=
  ``horizon_h`` hours it would wait, then it runs again (so geo pauses through a dear spell only when the power
  saved beats the GPU-hours idled: scarcity hours), aged towards ``max_wait_s`` (no starvation).
- **running jobs**: staying costs the current site's rate; a move costs the destination's rate, plus
  ``hysteresis`` x that rate (no flapping between near-equal sites), plus the migration's one-off cost (final
  checkpoint + checkpoint size / WAN bandwidth + restart, in GPU-hours valued at ``lambda_a``) spread over ``T``;
  pausing adds drain + restart the same way. A price shock at a job's site therefore moves it to a site with
  room as soon as the shock, as forecast over the span, costs more than the move. Moves obey
  :class:`~.migration.MigrationGovernor` (once per hour per job, per-destination quota with a 20 % emergency
  reserve, one job of any size per window, exponential backoff on refusal).
- **rows**: free nodes per (factory, accelerator) and IT-power headroom per factory (power cap / PUE and
  cooling capacity), so no plan can exceed a cap; staying jobs hold their own nodes and power.

When: a full solve runs only when its inputs moved materially since the last one (:mod:`.geo_cadence`: a factory
down or up, a factory's 24-hour or current-hour cost moved, capacity freed at a site cheap enough to move into, a
waiting job at its wait bound, or ``full_resolve_s`` since the last). A started job put off its nodes by a failure
or outage waits at ``restart_weight`` (2) x the value of a GPU-hour, so freed capacity goes to it before new work;
one geo paused itself keeps the rate it was paused at. In between (the twin calls the policy after every state
change and every ``cycle_s`` = 30 s), pending jobs that fit somewhere are priced with the same columns and placed
by the greedy of :mod:`.solver` over pending jobs only (running jobs stay), re-priced every ``resolve_s`` while
they wait; a pending job that fits nowhere keeps its last reason. Every (job, factory) pair
excluded by sovereignty is returned in ``Plan.refusals`` (the world records each once as an ``AuditRefusal``
event) and named in the job's waiting reason (prefixed ``sovereignty:``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_DOWN, NODE_FREE, FleetSnapshot, JobView, Migrate, Place, Plan, Preempt
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import MOVABLE
from superfactory.domain.outcome import ActionOutcome
from superfactory.domain.topology import topology_of
from superfactory.models.tco import capital_usd_per_gpu_hour
from superfactory.models.wan import route_bandwidth_gbps
from superfactory.policy import solver as S
from superfactory.policy.assignment import EPS
from superfactory.policy.feasibility import carbon_budget_refusal, sovereignty_refusal
from superfactory.policy.forecast import SeasonalForecaster
from superfactory.policy.gangfit import place_gang, shape_of
from superfactory.policy.geo_cadence import SolveCadence
from superfactory.policy.migration import MigrationGovernor
from superfactory.policy.nodes import nodes_needed, tp_aligned_fit
from superfactory.policy.registry import PolicyBase, register
from superfactory.policy.wan_capacity import with_checkpoint_sync_rows

HOUR_S = 3600
_BIG = 1e12
#: wait cost (USD per GPU-hour) of a job that has waited for price past ``max_wait_s``: above any power cost,
#: so it runs wherever lawful capacity exists (a finite number keeps the LP well scaled)
STARVED_USD_PER_GPU_H = 1e4
_MOVABLE = MOVABLE  # states in which a world accepts Migrate and Preempt


@dataclass(frozen=True, slots=True)
class _Col:
    job: int
    factory: int  # -1 = wait / pause
    cost: float
    nodes: int
    it_w: float
    migrating: bool


def _system(f: Factory, acc: str) -> tuple[int, float] | None:
    """(GPUs per node, extra IT W per node when training) of ``acc`` in ``f``, or None."""
    cl = f.clusters_of(acc)
    if not cl:
        return None
    s = cl[0].system
    return s.gpus_per_node, s.training_power_per_node_w - s.idle_power_per_node_w


def pick_nodes(f: Factory, status: npt.NDArray[np.uint8], job: TrainingJob) -> tuple[int, ...] | None:
    """Topology-aware nodes for ``job`` in ``f`` (smallest subtree, TP groups inside NVLink domains, see
    :mod:`.gangfit`), falling back to TP-aligned first fit; ``None`` if no placement keeps every TP group inside
    one NVLink domain (a split group runs at a fraction of its speed: better to wait or go elsewhere)."""
    cl = f.clusters_of(job.accelerator)
    if not cl:
        return None
    s = cl[0].system
    usable = np.zeros(f.nodes, dtype=bool)
    for c in cl:
        usable[c.node_offset:c.node_end] = status[c.node_offset:c.node_end] == NODE_FREE
    nodes = place_gang(topology_of(f), usable, shape_of(job, s.gpus_per_node, s.nodes_per_domain))
    return nodes if nodes is not None else tp_aligned_fit(f, status, job.accelerator, job.gpus, job.tp_size)


@register("geo")
class GeoPolicy(PolicyBase):
    """Fleet-wide placement by forecast price, carbon, latency and sovereignty (LP + rounding + MILP)."""

    cycle_s = 30

    def __init__(self, alpha: float = 1.0, beta_usd_per_tco2: float = 0.0, gamma_usd_per_ms_mwh: float = 0.0,
                 horizon_h: int = 12, capacity_share: float = 0.8, hysteresis: float = 0.15,
                 amortise_h: float = 24.0, resolve_s: int = 900, migrate: bool = True,
                 quota_share: float = 0.25, milp_time_limit_s: float = 5.0,
                 value_usd_per_gpu_hour: float | None = None, max_wait_s: int = 6 * HOUR_S,
                 restart_weight: float = 2.0, min_move_interval_s: int = HOUR_S,
                 material_change: float = 0.05, capacity_change: float = 0.10, full_resolve_s: int = 4 * HOUR_S,
                 lns_pairs: int = 0) -> None:
        if not 0.0 < capacity_share <= 1.0:
            raise ValueError("capacity_share must be in (0, 1]")
        if value_usd_per_gpu_hour is not None and value_usd_per_gpu_hour < 0:
            raise ValueError("value_usd_per_gpu_hour must be >= 0 (or None for the catalog's capital rate)")
        if max_wait_s <= 0:
            raise ValueError("max_wait_s must be > 0")
        if min_move_interval_s < 0:
            raise ValueError("min_move_interval_s must be >= 0")
        self.value_usd_per_gpu_hour = value_usd_per_gpu_hour
        self.restart_weight = restart_weight
        self.max_wait_s = int(max_wait_s)
        self._next_deadline_s = 10**18  # earliest instant a job waiting for price reaches max_wait_s
        self._forced: set[str] = set()  # jobs that reached max_wait_s: never paused for price again
        self.alpha = alpha
        self.beta = beta_usd_per_tco2
        self.gamma = gamma_usd_per_ms_mwh
        self.horizon_h = max(1, int(horizon_h))
        self.capacity_share = capacity_share
        self.hysteresis = hysteresis
        self.amortise_h = amortise_h
        self.resolve_s = resolve_s
        self.migrate = migrate
        self.milp_time_limit_s = milp_time_limit_s
        # when a decision is a full solve (moves, pauses) rather than a placement of pending work only
        self.cadence = SolveCadence(material_change=material_change, capacity_change=capacity_change,
                                    full_resolve_s=int(full_resolve_s), move_margin=hysteresis)
        if lns_pairs < 0:
            raise ValueError("lns_pairs must be >= 0")
        self.lns_pairs = int(lns_pairs)
        self._work_s: dict[str, float] = {}  # job -> its work, s (a computed property of the job)
        self._cum: tuple[object, list[list[float]]] = (None, [])  # (paths, cumulative forecast per factory)
        self._col_cache: dict[str, tuple[tuple[object, ...], list[tuple[int, float, int, float, bool]]]] = {}
        self._paused: set[str] = set()  # jobs geo paused for price and has not placed since
        self._reasons: dict[str, str] = {}  # pending job -> the waiting reason the last decision gave it
        self._last_eval_s = -10**12  # last decision that re-evaluated the pending jobs (ageing)
        self._sig_key: tuple[object, ...] = ()
        self._paths: list[npt.NDArray[np.float64]] = []
        self._rates: tuple[list[float], list[float]] = ([], [])  # per factory: mean cost next 24 h, this hour
        self._free_gpu_of: list[tuple[bytes, int]] = []  # per factory: (node bytes, free GPUs) last counted
        # a job changes factory at most once per min_move_interval_s (from its start or last move): the
        # cascade guard; a live demo fleet whose jobs run minutes, not days, sets it to its own scale
        self.governor = MigrationGovernor(quota_share=quota_share, min_interval_s=int(min_move_interval_s))
        # five weeks: the weekly profile's four seasons and then some; the level's weights are < 1e-18 beyond
        self.forecaster = SeasonalForecaster(window_h=5 * 168)
        self.lp = S.PersistentLP()
        self._fc_cache: dict[tuple[str, str, int, float], tuple[float, npt.NDArray[np.float64]]] = {}
        self._last_solve_s = -10**12
        self._lam: dict[str, float] = {}
        self._carbon_mean: list[float] = []  # forecast gCO2/kWh per factory (horizon mean), for carbon budgets
        self._keys: dict[str, int] = {}
        self.solves = 0
        self._last_quick: tuple[object, ...] = ()
        self._last_wait_plan = Plan()
        self._any_pending = True  # until the first decision says otherwise
        self._gpus: dict[str, int] = {}  # GPUs of jobs whose moves the governor recorded (to cancel them)
        self._sites_of: tuple[Factory, ...] | None = None
        self._free: dict[tuple[int, str], tuple[bytes, int]] = {}
        self._site_cache: dict[str, tuple[tuple[tuple[int, int, float, float], ...], tuple[tuple[str, str], ...]]] = {}

    def observe(self, outcomes: Sequence[ActionOutcome]) -> None:
        """Moves recorded at decision time that did not take effect are cancelled in the governor (quota back,
        rate limit lifted); the next decision sees the job where the snapshot says it is."""
        for o in outcomes:
            if not o.in_force:
                if o.factory_id:
                    self.governor.cancel_move(o.job_id, o.factory_id, self._gpus.get(o.job_id, 0))
                self._last_quick = ()  # the cached "nothing changed" answer assumed this action happened
                self._any_pending = True  # something did not happen: worth looking again

    def wants_cycle(self, now_s: int) -> bool:
        """Whether a periodic cycle at ``now_s`` may change anything (asked before a snapshot is built).

        Every state change (arrival, failure, completion, outage, price tick or shock) already triggers a
        decision, so the only thing a quiet 30 s tick can bring is the ``resolve_s`` re-solve while jobs wait
        (a queue re-examined against a drifting value of a GPU-hour). Skipping the rest keeps a month of the
        default scenario from building ~86k snapshots.
        """
        if now_s >= self._next_deadline_s:
            return True  # a job waiting for price reaches its bound: it must be placed now
        return self._any_pending and now_s - self._last_eval_s >= self.resolve_s

    # == signals ===========================================================================================
    def _signal(self, kind: str, name: str, history: tuple[float, ...], now_value: float
                ) -> tuple[float, npt.NDArray[np.float64]]:
        """(mean over the next ``horizon_h`` hours, 24-hour path) of a signal, current hour = ``now_value``.

        Forecasts come from ``history`` (past and current hour only) and are cached per hour.
        """
        key = (kind, name, len(history), now_value)
        hit = self._fc_cache.get(key)
        if hit is not None:
            return hit
        if len(history) == 0:
            path = np.full(24, now_value)
        else:
            hist = list(history[-(5 * 168 + 1):])  # what the forecaster reads (its window_h), current hour last
            hist[-1] = now_value
            path = np.concatenate([[now_value], self.forecaster.forecast(hist, 23)])
        path = np.maximum(path, 0.0)
        out = (float(path[: self.horizon_h].mean()), path)
        if len(self._fc_cache) > 4096:
            self._fc_cache.clear()
        self._fc_cache[key] = out
        return out

    def _usd_per_mwh(self, snap: FleetSnapshot) -> tuple[list[float], list[npt.NDArray[np.float64]]]:
        """Per factory: forecast-mean effective cost (USD per facility MWh) and its 24 h path."""
        means: list[float] = []
        paths: list[npt.NDArray[np.float64]] = []
        self._carbon_mean.clear()
        for f, st in zip(snap.factories, snap.states, strict=True):
            pm, pp = self._signal("p", f.market, snap.price_history.get(f.market, ()), st.price_usd_per_mwh)
            cm, cp = self._signal("c", f.grid, snap.carbon_history.get(f.grid, ()), st.carbon_g_per_kwh)
            self._carbon_mean.append(cm)
            # carbon: g/kWh == kg/MWh -> t/MWh is /1000
            means.append(self.alpha * pm + self.beta * cm / 1000.0)
            paths.append(self.alpha * pp + self.beta * cp / 1000.0)
        return means, paths

    def _lambdas(self, snap: FleetSnapshot, paths: list[npt.NDArray[np.float64]]) -> dict[str, float]:
        """Value of a GPU-hour per accelerator (USD/GPU-h).

        ``value_usd_per_gpu_hour`` when set; otherwise what the hardware costs its owner per hour, the
        catalog's capital rate (:func:`~superfactory.models.tco.capital_usd_per_gpu_hour`: list price with
        networking and storage, straight line over the depreciation period), so an owned GPU idles only when
        its power costs more than its capital (scarcity hours). Only for a system without a list price does
        the wave-1 rule remain: a quantile of next-day forecast GPU-hour costs (``capacity_share``).
        """
        lam: dict[str, float] = {}
        accs = sorted({a for f in snap.factories for a in f.accelerators})
        demand: dict[str, int] = {}
        for a in accs:
            value = self._value_of(snap, a)
            if value is not None:
                lam[a] = value
                continue
            if not demand:  # the quantile rule only: GPUs asked for per accelerator
                demand = dict.fromkeys(accs, 0)
                for v in (*snap.pending, *snap.running):
                    demand[v.job.accelerator] = demand.get(v.job.accelerator, 0) + v.job.gpus
            costs: list[npt.NDArray[np.float64]] = []
            weights: list[float] = []
            for i, (f, st) in enumerate(zip(snap.factories, snap.states, strict=True)):
                sysinfo = _system(f, a)
                if sysinfo is None or not st.up:
                    continue
                gpn, dw = sysinfo
                status = np.frombuffer(st.node_status, dtype=np.uint8)
                healthy = sum(int((status[c.node_offset:c.node_end] != NODE_DOWN).sum()) for c in f.clusters_of(a))
                costs.append(paths[i] * dw / gpn * f.pue / 1e6)
                weights.append(float(healthy * gpn))
            cap = sum(weights)
            if cap <= 0:
                lam[a] = _BIG
                continue
            q = demand[a] / cap
            if q >= 1.0 and self.capacity_share >= 1.0:
                lam[a] = _BIG
                continue
            q = min(q * 1.05, self.capacity_share)  # a little slack above demand so queues drain
            c = np.concatenate(costs)
            w = np.repeat(np.asarray(weights) / 24.0, 24)
            order = np.argsort(c, kind="stable")
            cw = np.cumsum(w[order]) / w.sum()
            k = int(np.searchsorted(cw, q))
            lam[a] = float(c[order][min(k, c.size - 1)])
        return lam

    def _value_of(self, snap: FleetSnapshot, acc: str) -> float | None:
        """The configured or catalog (capital) value of a GPU-hour of ``acc``, or ``None`` if unknown."""
        if self.value_usd_per_gpu_hour is not None:
            return self.value_usd_per_gpu_hour
        rates = [r for f in snap.factories for c in f.clusters_of(acc)
                 if (r := capital_usd_per_gpu_hour(c.system)) is not None]
        return max(rates) if rates else None

    # == columns ===========================================================================================
    def _latency_ms(self, snap: FleetSnapshot, a: str | None, b: str) -> float:
        if a is None or a == b:
            return 0.0
        for lk in snap.links:
            if {lk.a, lk.b} == {a, b}:
                return lk.latency_ms
        return 100.0

    def _free_nodes(self, snap: FleetSnapshot, i: int, acc: str) -> int:
        """Free ``acc`` nodes of factory ``i`` in ``snap`` (recounted only when the factory's node bytes change:
        the twin reuses them while the factory is unchanged)."""
        b = snap.states[i].node_status
        hit = self._free.get((i, acc))
        if hit is None or hit[0] is not b:
            hit = self._free[(i, acc)] = (b, sum(b.count(NODE_FREE, c.node_offset, c.node_end)
                                                 for c in snap.factories[i].clusters_of(acc)))
        return hit[1]

    def _latency_cached(self, snap: FleetSnapshot, cache: dict[tuple[str | None, str], float], a: str | None,
                        b: str) -> float:
        hit = cache.get((a, b))
        if hit is None:
            hit = cache[(a, b)] = self._latency_ms(snap, a, b)
        return hit

    def _bandwidth_gbps(self, snap: FleetSnapshot, a: str, b: str) -> float:
        # the same routing the twin uses (direct, else best two-hop, else the internet) over the links the
        # snapshot shows up
        return route_bandwidth_gbps(snap.links, a, b)

    def _sites(self, snap: FleetSnapshot, job: TrainingJob
               ) -> tuple[tuple[tuple[int, int, float, float], ...], tuple[tuple[str, str], ...]]:
        """Factories ``job`` may ever run in, as (index, nodes, extra IT W, extra facility MW), and the
        sovereignty refusals ``(factory id, rule)`` of the factories that have its accelerator but are not
        cleared for all its data classes (cached per job: factories, clearances and jobs never change)."""
        if self._sites_of is not snap.factories:
            self._sites_of = snap.factories
            self._site_cache.clear()
        hit = self._site_cache.get(job.id)
        if hit is not None:
            return hit
        sites: list[tuple[int, int, float, float]] = []
        reasons: list[tuple[str, str]] = []
        for i, f in enumerate(snap.factories):
            sov = sovereignty_refusal(job, f)
            if sov is not None:
                if f.gpus_of(job.accelerator) >= job.gpus:
                    reasons.append((f.id, f"sovereignty: {sov}"))
                continue
            sysinfo = _system(f, job.accelerator)
            if sysinfo is None or f.gpus_of(job.accelerator) < job.gpus:
                continue
            nodes = nodes_needed(f, job.accelerator, job.gpus)
            it_w = nodes * sysinfo[1]
            sites.append((i, nodes, it_w, it_w * f.pue / 1e6))
        out = (tuple(sites), tuple(reasons))
        self._site_cache[job.id] = out
        return out

    def _columns(self, snap: FleetSnapshot, views: list[JobView], running: set[int],
                 paths: list[npt.NDArray[np.float64]], emergency: set[int], waiting: dict[str, str],
                 refusals: list[tuple[str, str, str]]) -> list[_Col]:
        now = snap.now_s
        cols: list[_Col] = []
        # cum[i, k]: forecast USD/MWh of factory i summed over the next k hours (k = 0..24; hour 0 is realised)
        if self._cum[0] is not paths:
            cum_a = np.zeros((len(paths), 25))
            if paths:
                np.cumsum(np.asarray(paths)[:, :24], axis=1, out=cum_a[:, 1:])
            self._cum = (paths, cum_a.tolist())  # plain floats: this loop runs for every job at every decision
        cum: list[list[float]] = self._cum[1]
        up_now = [st.up for st in snap.states]
        fids = [f.id for f in snap.factories]
        gbps: dict[tuple[str, str], float] = {}
        lat_ms: dict[tuple[str | None, str], float] = {}
        links = snap.links
        ups = tuple(up_now)
        work_of = self._work_s
        for jx, v in enumerate(views):
            job = v.job
            start = len(cols)
            work_s = work_of.get(job.id)
            if work_s is None:
                work_s = work_of[job.id] = job.work_s
            ckey: tuple[object, ...] | None = None
            if jx in running and job.carbon_budget_tco2 is None:
                # a running job's columns are kept while everything they are computed from is the same: the
                # cost signals (hour, prices), its site, span and state, and the governor's answers for it
                may = self.migrate and job.migratable and self.governor.may_move(job.id, now)
                ckey = (self._sig_key, ups, links, self._lam.get(job.accelerator), v.factory_id,
                        max(1, int(min(self.amortise_h, 24, math.ceil(max(1.0, (work_s - v.progress_s)
                                                                             / HOUR_S))))),
                        v.state not in _MOVABLE, may, job.id in self._forced,
                        self.governor.backoffs(job.id, now) if may else ())
                hit = self._col_cache.get(job.id)
                if hit is not None and hit[0] == ckey:
                    cols.extend(_Col(jx, f, c, n, w, m) for f, c, n, w, m in hit[1])
                    continue
            lam = self._lam.get(job.accelerator, _BIG)
            lam_eff = lam if lam < _BIG else 1.0
            remaining_h = max(1.0, (work_s - v.progress_s) / HOUR_S)
            ck = job.checkpoint
            drain_h = (ck.blocking_s + ck.async_write_s + job.recovery.restart_s) / HOUR_S
            cur = fids.index(v.factory_id) if v.factory_id is not None else -1
            sites, reasons = self._sites(snap, job)
            # Every column is a cost rate over the same span: the next T = min(remaining run, amortise_h, 24) hours,
            # hour 0 at the realised price, later hours forecast. Running at i costs mw x cum[i, T] / T; a move
            # adds its one-off cost (drain + checkpoint transfer + restart, GPU-hours at the value of a GPU-hour)
            # spread over T, and must beat staying by ``hysteresis`` of the destination's power cost; waiting or
            # pausing costs its GPUs x the value of a GPU-hour per hour for the k hours it waits (k <= horizon_h,
            # the best k: pause through a dear spell, then run again). So a price shock at a job's site, which the
            # forecast carries into the next hours, makes a move to a site with room win once the shock costs
            # more over the span than the move does.
            span = max(1, int(min(self.amortise_h, 24, math.ceil(remaining_h))))
            k_max = min(span, self.horizon_h)
            home = job.home_factory
            # only a job that is computing can be moved or paused; one starting, draining, migrating or
            # detecting a failure keeps its nodes until the twin settles it
            locked = jx in running and v.state not in _MOVABLE
            wait_rate = job.gpus * lam * (1.0 + 0.02 * job.priority)
            if jx not in running and v.last_factory_id is not None and job.id not in self._paused:
                # a started job put off its nodes (a failure, an outage) is re-placed first; one geo paused
                # itself keeps the wait rate it was paused at, or it would be re-placed at once and pay the
                # drain and restart for nothing
                wait_rate *= self.restart_weight
            forced = False
            if jx not in running and v.waiting_since_s >= 0:
                waited_s = now - v.waiting_since_s
                if waited_s >= self.max_wait_s or job.id in self._forced:
                    wait_rate = job.gpus * STARVED_USD_PER_GPU_H  # no more waiting for price: run where lawful
                    self._forced.add(job.id)
                    forced = True
                else:
                    wait_rate *= 1.0 + waited_s / self.max_wait_s  # ageing: waiting gets dearer as it lasts
            resume = cur  # where a paused or waiting job would run after its wait: where it is, else cheapest
            resume_mw = 0.0
            if jx in running:
                for i, _nodes, _it_w, mw in sites:
                    if i == cur:
                        resume_mw = mw
                        lat = self.gamma * mw * self._latency_cached(snap, lat_ms, home, fids[i]) if self.gamma else 0.0
                        cols.append(_Col(jx, i, mw * cum[i][span] / span + lat, 0, 0.0, False))
            else:
                # resume where it could start now: waiting for a dear site's neighbour to free up would bet on
                # capacity (running now and moving later costs a move, not hours of idle GPUs)
                # (and where it may start: a site the governor bars it from this hour is no place to resume)
                barred = (v.last_factory_id is not None and jx not in emergency
                          and not self.governor.may_move(job.id, now))
                up = [(mw * cum[i][span], i, mw) for i, n, _w, mw in sites
                      if up_now[i] and self._free_nodes(snap, i, job.accelerator) >= n
                      and not (barred and fids[i] != v.last_factory_id)]
                if up:
                    _c, resume, resume_mw = min(up)
            for i, nodes, it_w, mw in sites:
                if locked or not up_now[i] or (jx in running and i == cur):
                    continue
                f = snap.factories[i]
                budget = carbon_budget_refusal(job, v.carbon_spent_tco2, v.progress_s, f, self._carbon_mean[i])
                if budget is not None:  # a hard rule like sovereignty: no column, and an audit record
                    refusals.append((job.id, f.id, budget))
                    if jx not in running:
                        waiting.setdefault(job.id, budget)
                    continue
                lat = self.gamma * mw * self._latency_cached(snap, lat_ms, home, f.id) if self.gamma else 0.0
                run_rate = mw * cum[i][span] / span + lat
                if jx in running:
                    if not (self.migrate and job.migratable and self.governor.may_move(job.id, now)):
                        continue
                    if self.governor.backing_off(job.id, f.id, now):
                        continue
                    assert v.factory_id is not None
                    bw = gbps.get((v.factory_id, f.id))
                    if bw is None:
                        bw = gbps[(v.factory_id, f.id)] = self._bandwidth_gbps(snap, v.factory_id, f.id)
                    xfer_h = ck.size_bytes * 8 / (bw * 1e9) / HOUR_S
                    mig_usd = (drain_h + xfer_h) * job.gpus * lam_eff
                    margin = self.hysteresis * abs(mw * cum[i][span]) / span
                    cols.append(_Col(jx, i, run_rate + margin + mig_usd / span, nodes, it_w, True))
                else:
                    moved = v.last_factory_id is not None and v.last_factory_id != f.id
                    if moved and not self.governor.may_move(job.id, now) and jx not in emergency:
                        continue
                    cols.append(_Col(jx, i, run_rate, nodes, it_w, moved and jx not in emergency))
            # wait (pending) or pause (running) for the best k hours, then run at ``resume``
            restart_usd = drain_h * job.gpus * lam_eff if jx in running else 0.0
            if resume >= 0:
                cr = cum[resume]  # wait k = 1..k_max hours, then run for the rest of the span
                best = min(wait_rate * k - resume_mw * cr[k] for k in range(1, k_max + 1))
                wait = (best + resume_mw * cr[span] + restart_usd) / span
            else:
                wait = wait_rate + restart_usd / span
            if jx in running and job.id in self._forced and any(c.job == jx for c in cols[-1:]):
                pass  # a job that already waited its bound for price runs on (it may still move)
            elif forced:
                cols.append(_Col(jx, -1, job.gpus * STARVED_USD_PER_GPU_H, 0, 0.0, False))
            elif not locked or not any(c.job == jx for c in cols[-1:]):
                cols.append(_Col(jx, -1, wait, 0, 0.0, False))
            if ckey is not None:
                self._col_cache[job.id] = (ckey, [(c.factory, c.cost, c.nodes, c.it_w, c.migrating)
                                                  for c in cols[start:]])
            if jx not in running and reasons:
                # every factory that would otherwise take the job but is not cleared for its data: an audit event
                refusals.extend((job.id, fid, rule) for fid, rule in reasons)
                if not sites:
                    waiting[job.id] = "; ".join(f"{fid}: {rule}" for fid, rule in reasons)
        return cols

    # == decide ============================================================================================
    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        snap = snapshot
        now = snap.now_s
        self._any_pending = bool(snap.pending)
        ups = tuple(s.up for s in snap.states)
        key = (now // HOUR_S, tuple(s.price_usd_per_mwh for s in snap.states),
               tuple(s.carbon_g_per_kwh for s in snap.states))
        if key != self._sig_key:  # forecasts move only with the hour or a price/carbon change
            self._sig_key = key
            self._paths = self._usd_per_mwh(snap)[1]
            self._rates = ([float(p[:24].mean()) for p in self._paths], [float(p[0]) for p in self._paths])
        paths = self._paths
        rate24, rate0 = self._rates
        free_gpus = self._free_gpus(snap)
        full = now >= self._next_deadline_s or self.cadence.due(
            now, ups, rate24, rate0, free_gpus, [f.gpus for f in snap.factories])
        if not full:
            # between full solves only new pending jobs, freed capacity or a waiting job's ageing (re-examined
            # every resolve_s) can change the answer; running jobs stay where they are
            if not snap.pending:
                return self._last_wait_plan
            quick = (tuple(v.job.id for v in snap.pending), tuple(hash(st.node_status) for st in snap.states))
            if quick == self._last_quick and now - self._last_eval_s < self.resolve_s:
                return self._last_wait_plan
            self._last_quick = quick
        self._last_eval_s = now
        if full:
            self._lam = self._lambdas(snap, paths)
            self._last_solve_s = now
            self.cadence.solved(now, ups, rate24, rate0, free_gpus)
            self.solves += 1
            # a pending job that fits nowhere now cannot be placed by this plan either (the rows hold only the
            # nodes free in the snapshot): it keeps its reason, as between full solves
            views = list(snap.running) + [v for v in snap.pending if v.job.id not in self._reasons
                                          or self._fits_somewhere(snap, v.job)]
            running = set(range(len(snap.running)))
            self._last_quick = ()
        else:
            # a pending job that fits nowhere now keeps the reason it was given (it can only wait); the rest,
            # and every job not yet seen, are priced afresh
            views = [v for v in snap.pending if v.job.id not in self._reasons or self._fits_somewhere(snap, v.job)]
            running = set()
        emergency = ({jx for jx, v in enumerate(views) if jx not in running and v.last_factory_id is not None
                      and not ups[snap.factory_index(v.last_factory_id)]} if not all(ups) else set())
        waiting: dict[str, str] = {}
        if len(views) < len(snap.pending) + (len(running) if full else 0):
            priced = {v.job.id for v in views}
            waiting.update((v.job.id, self._reasons[v.job.id]) for v in snap.pending if v.job.id not in priced)
        refusals: list[tuple[str, str, str]] = []
        cols = self._columns(snap, views, running, paths, emergency, waiting, refusals)
        if full and snap.wan is None:
            views, running, cols = self._without_settled(views, running, cols)
        if not full and snap.wan is None:
            chosen = self._greedy_pending(snap, views, cols)  # S.greedy's answer, without building arrays
        else:
            problem, col_list = self._problem(snap, views, cols, emergency)
            if full:
                sol = S.solve(problem, self.milp_time_limit_s, self.lp, use_milp=self.lns_pairs > 0,
                              max_neighbourhoods=self.lns_pairs)
            else:
                sol = S.Assignment(S.greedy(problem), 0.0, float("-inf"), "greedy")
            chosen = [col_list[int(c)] for c in sol.choice]
        plan = self._actions(snap, views, running, chosen, cols, rng, waiting)
        plan = Plan(plan.actions, plan.waiting, tuple(refusals))
        if full:
            live = {v.job.id for v in (*snap.pending, *snap.running)}
            self.governor.forget(live)
            self._forced &= live
            self._paused &= {v.job.id for v in snap.pending}
            for gone in [k for k in self._col_cache if k not in live]:
                del self._col_cache[gone]
            for gone in [k for k in self._work_s if k not in live]:
                del self._work_s[gone]
        self._last_wait_plan = Plan((), plan.waiting) if not plan.actions else Plan()
        self._reasons = dict(plan.waiting)
        placed = {a.job_id for a in plan.actions}
        self._next_deadline_s = min((v.waiting_since_s + self.max_wait_s for v in snap.pending
                                     if v.job.id not in placed and v.waiting_since_s >= 0
                                     and v.waiting_since_s + self.max_wait_s > now), default=10**18)
        return plan

    @staticmethod
    def _without_settled(views: list[JobView], running: set[int], cols: list[_Col]
                         ) -> tuple[list[JobView], set[int], list[_Col]]:
        """Drop the running jobs for which staying is strictly the cheapest column: staying uses no capacity, so
        every plan (integer or fractional) that moved or paused such a job costs more than the same plan with
        it staying; they stay, and the assignment is solved over the rest (the same optimum, a smaller LP).
        Only without WAN rows (a staying job's checkpoint sync is counted against its site's egress there)."""
        best_other: dict[int, float] = {}
        stay: dict[int, float] = {}
        for c in cols:
            if c.job in running and c.factory >= 0 and c.nodes == 0:
                stay[c.job] = c.cost
            elif c.job in running:
                best_other[c.job] = min(best_other.get(c.job, math.inf), c.cost)
        settled = {j for j, cost in stay.items() if cost < best_other.get(j, math.inf)}
        if not settled:
            return views, running, cols
        new_ix: dict[int, int] = {}
        kept: list[JobView] = []
        for jx, v in enumerate(views):
            if jx not in settled:
                new_ix[jx] = len(kept)
                kept.append(v)
        return (kept, {new_ix[j] for j in running if j not in settled},
                [_Col(new_ix[c.job], c.factory, c.cost, c.nodes, c.it_w, c.migrating) for c in cols
                 if c.job not in settled])

    def _greedy_pending(self, snap: FleetSnapshot, views: list[JobView], cols: list[_Col]) -> list[_Col]:
        """The plan :func:`~superfactory.policy.solver.greedy` finds for pending jobs only (rows: free nodes per
        factory and accelerator, IT-power headroom, migration quota; no WAN rows), on plain Python values: the
        cheap placement between full solves. Same order and tie-breaks as the array version (tested)."""
        by_job: list[list[_Col]] = [[] for _ in views]
        for c in sorted(cols, key=lambda c: (c.job, c.factory)):
            by_job[c.job].append(c)
        biggest = [0] * len(snap.factories)
        for c in cols:
            if c.migrating and c.factory >= 0:
                biggest[c.factory] = max(biggest[c.factory], views[c.job].job.gpus)
        nodes_left: dict[tuple[int, str], float] = {}
        head = [max(0.0, min(f.power_cap_w / f.pue, f.cooling_capacity_w) - st.it_power_w)
                for f, st in zip(snap.factories, snap.states, strict=True)]
        quota: dict[int, float] = {}
        regret = []
        for js in by_job:
            cs = sorted(c.cost for c in js)
            regret.append(cs[1] - cs[0] if len(cs) > 1 else 0.0)
        eps = EPS
        chosen: list[_Col | None] = [None] * len(views)
        for j in sorted(range(len(views)), key=lambda j: -regret[j]):
            acc = views[j].job.accelerator
            gpus = views[j].job.gpus
            for c in sorted(by_job[j], key=lambda c: c.cost):
                if c.factory < 0:
                    chosen[j] = c
                    break
                i = c.factory
                nk = (i, acc)
                if nk not in nodes_left:
                    nodes_left[nk] = float(self._free_nodes(snap, i, acc))
                if c.migrating and i not in quota:
                    f = snap.factories[i]
                    quota[i] = self.governor.quota_left_gpus(f.id, f.gpus, snap.now_s, False, biggest[i])
                if (c.nodes <= nodes_left[nk] + eps and c.it_w <= head[i] + eps
                        and (not c.migrating or gpus <= quota[i] + eps)):
                    nodes_left[nk] -= c.nodes
                    head[i] -= c.it_w
                    if c.migrating:
                        quota[i] -= gpus
                    chosen[j] = c
                    break
        out = [c for c in chosen if c is not None]
        assert len(out) == len(views), "every pending job has a wait column"
        return out

    def _fits_somewhere(self, snap: FleetSnapshot, job: TrainingJob) -> bool:
        """Whether some lawful factory that is up has enough free nodes of the job's accelerator for it."""
        return any(snap.states[i].up and self._free_nodes(snap, i, job.accelerator) >= n
                   for i, n, _w, _mw in self._sites(snap, job)[0])

    def _free_gpus(self, snap: FleetSnapshot) -> list[int]:
        """Free GPUs per factory, recounted only for factories whose node bytes changed (the twin reuses a
        factory's state while it is unchanged)."""
        cache = self._free_gpu_of
        if len(cache) != len(snap.states):
            cache[:] = [(b"", 0)] * len(snap.states)
        out: list[int] = []
        for i, (f, st) in enumerate(zip(snap.factories, snap.states, strict=True)):
            b = st.node_status
            if cache[i][0] is not b:
                free = 0
                for cl in f.clusters:
                    free += b.count(NODE_FREE, cl.node_offset, cl.node_end) * cl.system.gpus_per_node
                cache[i] = (b, free)
            out.append(cache[i][1])
        return out

    def _problem(self, snap: FleetSnapshot, views: list[JobView], cols: list[_Col], emergency: set[int]
                 ) -> tuple[S.AssignmentProblem, list[_Col]]:
        nf = len(snap.factories)
        accs = sorted({a for f in snap.factories for a in f.accelerators})
        acc_ix = {a: k for k, a in enumerate(accs)}
        # rows: [free nodes per (factory, acc)] [IT headroom per factory, W] [migration quota per factory]
        free = np.zeros(nf * len(accs))
        for i, f in enumerate(snap.factories):
            for acc in f.accelerators:
                free[i * len(accs) + acc_ix[acc]] = self._free_nodes(snap, i, acc)
        head = np.array([max(0.0, min(f.power_cap_w / f.pue, f.cooling_capacity_w) - st.it_power_w)
                         for f, st in zip(snap.factories, snap.states, strict=True)])
        biggest = [0] * nf  # largest job a planned move would bring to each factory
        for c in cols:
            if c.migrating and c.factory >= 0:
                biggest[c.factory] = max(biggest[c.factory], views[c.job].job.gpus)
        quota = np.array([self.governor.quota_left_gpus(f.id, f.gpus, snap.now_s, False, biggest[i])
                          for i, f in enumerate(snap.factories)])
        row_cap = np.concatenate([free, head, quota])
        cols_sorted = sorted(cols, key=lambda c: (c.job, c.factory))
        ptr = np.zeros(len(views) + 1, dtype=np.int64)
        np.cumsum(np.bincount([c.job for c in cols_sorted], minlength=len(views)), out=ptr[1:])
        k = len(cols_sorted)
        col_rows = np.full((k, 3), -1, dtype=np.int64)
        col_use = np.zeros((k, 3))
        current = np.full(len(views), -1, dtype=np.int64)
        for n, c in enumerate(cols_sorted):
            v = views[c.job]
            if c.factory < 0:
                continue
            if c.nodes == 0:  # staying where it runs
                current[c.job] = n
                continue
            col_rows[n, 0] = c.factory * len(accs) + acc_ix[v.job.accelerator]
            col_use[n, 0] = c.nodes
            col_rows[n, 1] = len(free) + c.factory
            col_use[n, 1] = c.it_w
            if c.migrating:
                col_rows[n, 2] = len(free) + nf + c.factory
                col_use[n, 2] = v.job.gpus
        keys = np.array([self._key(v.job.id) for v in views], dtype=np.int64)
        problem = S.AssignmentProblem(ptr, np.array([c.factory for c in cols_sorted], dtype=np.int64),
                                      np.array([c.cost for c in cols_sorted]), col_rows, col_use, row_cap, keys,
                                      current)
        return with_checkpoint_sync_rows(problem, snap, views), cols_sorted  # WAN egress rows (issue 16)

    def _key(self, job_id: str) -> int:
        k = self._keys.get(job_id)
        if k is None:
            k = self._keys[job_id] = len(self._keys)
        return k

    def _wait_reason(self, snap: FleetSnapshot, v: JobView, chosen: _Col, cols: list[_Col]) -> str:
        """Why a pending job waits, with the figures compared: its cheapest lawful run (USD per hour of power,
        carbon and latency) against the value of waiting (its GPUs x the value of a GPU-hour, aged)."""
        wait_usd_h = chosen.cost
        runs = [c for c in cols if c.job == chosen.job and c.factory >= 0]
        lam = self._lam.get(v.job.accelerator, math.inf)
        if not runs:
            return "geo: no lawful factory with room for it is up"
        best = min(runs, key=lambda c: c.cost)
        site = snap.factories[best.factory].id
        if best.cost <= wait_usd_h:
            return (f"geo: waiting for free capacity (running in {site} costs {best.cost:.2f} USD/h <= waiting "
                    f"{wait_usd_h:.2f} USD/h; value of a GPU-hour {lam:.3f} USD)")
        return (f"geo: waiting for cheaper power (running in {site} costs {best.cost:.2f} USD/h > waiting "
                f"{wait_usd_h:.2f} USD/h; value of a GPU-hour {lam:.3f} USD; since {v.waiting_since_s} s, at most "
                f"{self.max_wait_s / HOUR_S:.1f} h)")

    def _actions(self, snap: FleetSnapshot, views: list[JobView], running: set[int], chosen: list[_Col],
                 cols: list[_Col], rng: np.random.Generator, waiting: dict[str, str]) -> Plan:
        now = snap.now_s
        copies: dict[int, npt.NDArray[np.uint8]] = {}

        def status(i: int) -> npt.NDArray[np.uint8]:  # node status of factory i, as this plan fills it
            got = copies.get(i)
            if got is None:
                got = copies[i] = np.frombuffer(snap.states[i].node_status, dtype=np.uint8).copy()
            return got
        actions: list[Place | Migrate | Preempt] = []
        best_move: dict[int, _Col] = {}
        for c in cols:
            if c.migrating and c.job in running and (c.job not in best_move or c.cost < best_move[c.job].cost):
                best_move[c.job] = c
        for c in sorted(chosen, key=lambda c: (-views[c.job].job.priority, views[c.job].job.submit_s, c.job)):
            v = views[c.job]
            job = v.job
            if c.job in running:
                cur = snap.factory_index(v.factory_id) if v.factory_id is not None else -1
                if c.factory == cur:
                    # a cheaper move the quota refused: back off before trying that destination again
                    bm = best_move.get(c.job)
                    if bm is not None and bm.cost < c.cost and self.governor.quota_left_gpus(
                            snap.factories[bm.factory].id, snap.factories[bm.factory].gpus, now, False,
                            job.gpus) < job.gpus:
                        self.governor.refuse(job.id, snap.factories[bm.factory].id, now, rng)
                    continue
                if c.factory < 0:
                    self._paused.add(job.id)
                    actions.append(Preempt(job.id, "geo: paused, running here costs more than the value of a "
                                                   "GPU-hour over the forecast horizon"))
                    continue
                f = snap.factories[c.factory]
                nodes = pick_nodes(f, status(c.factory), job)
                if nodes is None:
                    continue
                status(c.factory)[list(nodes)] = 1
                self.governor.record_move(job.id, f.id, job.gpus, now)
                self._gpus[job.id] = job.gpus
                actions.append(Migrate(job.id, f.id, nodes, "geo: cheaper forecast power"))
                continue
            if c.factory < 0:
                waiting.setdefault(job.id, self._wait_reason(snap, v, c, cols))
                continue
            f = snap.factories[c.factory]
            nodes = pick_nodes(f, status(c.factory), job)
            if nodes is None:
                waiting[job.id] = f"{f.id}: not enough free {job.accelerator} nodes"
                continue
            status(c.factory)[list(nodes)] = 1
            if c.migrating or (v.last_factory_id is not None and v.last_factory_id != f.id):
                self.governor.record_move(job.id, f.id, job.gpus, now)
                self._gpus[job.id] = job.gpus
            else:
                self.governor.record_start(job.id, now)
            waiting.pop(job.id, None)
            self._paused.discard(job.id)
            actions.append(Place(job.id, f.id, nodes))
        pending_ids = {v.job.id for v in snap.pending}
        return Plan(tuple(actions), tuple(sorted((j, r) for j, r in waiting.items() if j in pending_ids)))
