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

When: a full solve runs only when its inputs moved materially since the last one (:mod:`.geo_cadence`: at once
for a factory down or up or a current-hour cost spike; at most once per clock hour for a move of a factory's
24-hour cost or capacity freed at a site some job wants, the sites :meth:`GeoPolicy._note_wanted` reports after
each plan; or ``full_resolve_s`` since the last). A job reaching its wait bound is placed on the cheap path,
which prices its wait at the starved rate. A started job put off its nodes by a failure
or outage waits at ``restart_weight`` (2) x the value of a GPU-hour, so freed capacity goes to it before new work;
one geo paused itself keeps the rate it was paused at. In between (the twin calls the policy after every state
change and every ``cycle_s`` = 30 s), pending jobs that fit somewhere are priced with the same columns and placed
by the greedy of :mod:`.solver` over pending jobs only (running jobs stay), re-priced every ``resolve_s`` while
they wait; a pending job that fits nowhere keeps its last reason. Every (job, factory) pair
excluded by sovereignty is returned in ``Plan.refusals`` (the world records each once as an ``AuditRefusal``
event) and named in the job's waiting reason (prefixed ``sovereignty:``).

The policy is one class in four modules, by noun: this one (state, the decision cycle), :mod:`.geo_signals`
(forecast cost signals, the value of a GPU-hour), :mod:`.geo_columns` (the columns and free-capacity counts) and
:mod:`.geo_plan` (rows, the cheap placement, actions); :mod:`.geo_cadence` says when a full solve runs;
:mod:`.geo_packing` and :mod:`.geo_align` are opt-in options, off by default and measured as not helping on
real-2023 (docs/geo.md): holds of freed capacity for big gangs (``pack_big_gangs``), and a price on small jobs
that break a free big-gang block (``align_big_gangs``).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import FleetSnapshot, JobView, Plan
from superfactory.domain.outcome import ActionOutcome
from superfactory.policy import solver as S
from superfactory.policy.forecast import SeasonalForecaster
from superfactory.policy.geo_align import AlignParams, align_columns
from superfactory.policy.geo_cadence import SolveCadence
from superfactory.policy.geo_columns import HOUR_S, STARVED_USD_PER_GPU_H, _Col
from superfactory.policy.geo_packing import GangPacker, PackingParams
from superfactory.policy.geo_plan import GeoPlanning, pick_nodes
from superfactory.policy.geo_signals import GeoSignals
from superfactory.policy.migration import MigrationGovernor
from superfactory.policy.registry import PolicyBase, register

__all__ = ["HOUR_S", "STARVED_USD_PER_GPU_H", "GeoPolicy", "pick_nodes"]


@register("geo")
class GeoPolicy(GeoSignals, GeoPlanning, PolicyBase):
    """Fleet-wide placement by forecast price, carbon, latency and sovereignty (LP + rounding + MILP)."""

    cycle_s = 30

    def __init__(self, alpha: float = 1.0, beta_usd_per_tco2: float = 0.0, gamma_usd_per_ms_mwh: float = 0.0,
                 horizon_h: int = 12, capacity_share: float = 0.8, hysteresis: float = 0.15,
                 amortise_h: float = 24.0, resolve_s: int = 900, migrate: bool = True,
                 quota_share: float = 0.25, milp_time_limit_s: float = 5.0,
                 value_usd_per_gpu_hour: float | None = None, max_wait_s: int = 6 * HOUR_S,
                 restart_weight: float = 2.0, min_move_interval_s: int = HOUR_S,
                 material_change: float = 0.05, capacity_change: float = 0.10, full_resolve_s: int = 4 * HOUR_S,
                 lns_pairs: int = 0, pack_big_gangs: bool = False, pack_min_gpus: int = 2048,
                 pack_max_hold_s: int = 6 * HOUR_S, pack_scan_s: int = 900, pack_pending: bool = True,
                 pack_running: bool = True, pack_cooldown_s: int = 24 * HOUR_S, align_big_gangs: bool = False,
                 align_min_gpus: int = 4096, align_weight: float = 1.0) -> None:
        if not 0.0 < capacity_share <= 1.0:
            raise ValueError("capacity_share must be in (0, 1]")
        if value_usd_per_gpu_hour is not None and value_usd_per_gpu_hour < 0:
            raise ValueError("value_usd_per_gpu_hour must be >= 0 (or None for the catalog's capital rate)")
        if max_wait_s <= 0:
            raise ValueError("max_wait_s must be > 0")
        if min_move_interval_s < 0:
            raise ValueError("min_move_interval_s must be >= 0")
        if hysteresis < 0 or amortise_h < 1:
            raise ValueError("hysteresis must be >= 0 and amortise_h >= 1")
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
                                    full_resolve_s=int(full_resolve_s))
        if lns_pairs < 0:
            raise ValueError("lns_pairs must be >= 0")
        self.lns_pairs = int(lns_pairs)
        # packing-aware option (:mod:`.geo_packing`, off by default): hold a cheap factory's freed nodes for a big
        # gang; every placement then reads free nodes less the held ones
        packing = PackingParams(int(pack_min_gpus), int(pack_max_hold_s), int(pack_scan_s), bool(pack_pending),
                                int(pack_cooldown_s), bool(pack_running))
        self._packer: GangPacker | None = None
        # size-aligned option (:mod:`.geo_align`, off by default): a small job pays for breaking a free gang block
        align = AlignParams(int(align_min_gpus), float(align_weight))
        self._align: AlignParams | None = align if align_big_gangs else None
        if pack_big_gangs:
            self._packer = GangPacker(packing, self._free_nodes)
            self._free_nodes = self._packer.free_nodes  # type: ignore[method-assign]
        self._work_s: dict[str, tuple[float, float]] = {}  # job -> (its work, s; its drain, h): job properties
        self._cum: tuple[object, list[list[float]]] = (None, [])  # (paths, cumulative forecast per factory)
        self._col_cache: dict[str, tuple[tuple[object, ...], list[tuple[int, float, int, float, bool]], bool]] = {}
        # pending job -> (what its run columns are computed from, those columns): they are re-priced at every
        # decision while the job waits, mostly from the same inputs
        self._pend_cache: dict[str, tuple[tuple[object, ...], list[tuple[int, float, int, float, bool]]]] = {}
        # running job -> (its site, links, value of a GPU-hour, span; its move cost per destination / span)
        self._mig_cache: dict[str, tuple[tuple[object, ...], dict[int, float]]] = {}
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
        self._carbon_of: FleetSnapshot | None = None  # (made lazily when carbon has no price: _carbon_means)
        self._keys: dict[str, int] = {}
        self.solves = 0
        self._last_quick: tuple[object, ...] = ()
        self._last_wait_plan = Plan()
        self._any_pending = True  # until the first decision says otherwise
        self._gpus: dict[str, int] = {}  # GPUs of jobs whose moves the governor recorded (to cancel them)
        self._sites_of: tuple[Factory, ...] | None = None
        self._factory_gpus: tuple[object, list[int]] = (None, [])  # (factories, their GPUs)
        self._free: dict[tuple[int, str], tuple[bytes, int]] = {}
        self._cl_free: dict[int, tuple[bytes, Factory, list[int]]] = {}
        self._fit_memo: tuple[object, dict[tuple[int, str], int], list[bool], dict[tuple[int, str], bool]] = (
            None, {}, [], {})
        self._site_intern: dict[tuple[tuple[int, int, float, float], ...],
                                tuple[tuple[int, int, float, float], ...]] = {}
        self._pick_memo: dict[tuple[str, int], tuple[bytes, Factory, tuple[int, ...] | None]] = {}
        self._site_cache: dict[str, tuple[tuple[tuple[int, int, float, float], ...], tuple[tuple[str, str], ...]]] = {}
        self._fit_key: dict[str, tuple[int, str]] = {}  # job -> its key in _fit_memo's answers (_fits_somewhere)
        self._fit_rows: tuple[object, list[tuple[JobView, str, int]]] = (None, [])
        self._fit_codes: dict[tuple[tuple[tuple[int, int], ...], str], int] = {}
        self._fit_shapes: list[tuple[tuple[tuple[int, int], ...], str]] = []
        self._fit_job_code: dict[str, int] = {}
        self._fit_answers: tuple[object, dict[int, bool]] = (None, {})
        self._pend_ids: tuple[object, tuple[str, ...], frozenset[str]] = (None, (), frozenset())
        # (pending tuple, max_wait_s, [(bound, job id)] ascending, the bounds): _set_deadline
        self._dues: tuple[object, int, list[tuple[int, str]], list[int]] = (None, 0, [], [])
        self._dues_seen: object = None  # the last pending tuple _set_deadline saw (sorted only when seen again)
        self._it_caps: tuple[object, list[float]] = (None, [])
        self._reason_memo: dict[str, tuple[tuple[object, ...], str]] = {}

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

    # == decide ============================================================================================
    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        snap = snapshot
        now = snap.now_s
        self._any_pending = bool(snap.pending)
        states = snap.states  # (list displays, not generators: the same tuples, made at every decision)
        ups = tuple([s.up for s in states])
        key = (now // HOUR_S, tuple([s.price_usd_per_mwh for s in states]),
               tuple([s.carbon_g_per_kwh for s in states]))
        if key != self._sig_key:  # forecasts move only with the hour or a price/carbon change
            self._sig_key = key
            self._paths = self._usd_per_mwh(snap)[1]
            self._rates = ([float(p[:24].mean()) for p in self._paths], [float(p[0]) for p in self._paths])
        paths = self._paths
        rate24, rate0 = self._rates
        if self._factory_gpus[0] is not snap.factories:  # (a property summing clusters: asked at every decision)
            self._factory_gpus = (snap.factories, [f.gpus for f in snap.factories])
        if self._packer is not None:  # (the option: a held gang's move or start is the whole decision)
            packed = self._packer.step(self, snap)
            if packed is not None:
                self._last_wait_plan = Plan()
                return packed
        # (free GPUs per factory are counted only when the answer depends on them)
        full = self.cadence.due(now, ups, rate24, rate0, lambda: self._free_gpus(snap), self._factory_gpus[1])
        if not full:
            # between full solves only new pending jobs, freed capacity or a waiting job's ageing (re-examined
            # every resolve_s, and when one reaches its wait bound) can change the answer; running jobs stay
            # where they are
            if not snap.pending:
                return self._last_wait_plan
            quick = (self._pending_ids(snap)[0], tuple([hash(st.node_status) for st in states]))
            if (quick == self._last_quick and now - self._last_eval_s < self.resolve_s
                    and now < self._next_deadline_s):
                return self._last_wait_plan
            self._last_quick = quick
        self._last_eval_s = now
        if full:
            self._lam = self._lambdas(snap, paths)
            self._last_solve_s = now
            self.cadence.solved(now, ups, rate24, rate0, self._free_gpus(snap))
            self.solves += 1
            # a pending job that fits nowhere now cannot be placed by this plan either (the rows hold only the
            # nodes free in the snapshot): it keeps its reason, as between full solves
            pviews, waiting = self._split_pending(snap, self._reasons)
            views = list(snap.running) + pviews
            running = set(range(len(snap.running)))
            self._last_quick = ()
        else:
            # a pending job that fits nowhere now keeps the reason it was given (it can only wait); the rest,
            # and every job not yet seen, are priced afresh
            views, waiting = self._split_pending(snap, self._reasons)
            running = set()
        emergency = ({jx for jx, v in enumerate(views) if jx not in running and v.last_factory_id is not None
                      and not ups[snap.factory_index(v.last_factory_id)]} if not all(ups) else set())
        if not views:  # (between full solves, nothing to price: every pending job keeps its reason)
            if len(waiting) != len(self._reasons):
                self._reasons = dict(sorted(waiting.items()))
            # (else every job with a reason is still pending and keeps it: the same reasons, already sorted by job;
            # _reasons is only ever made from a sorted list)
            self._last_wait_plan = Plan((), tuple(self._reasons.items()))
            self._set_deadline(snap, now, set())
            return self._last_wait_plan
        refusals: list[tuple[str, str, str]] = []
        # a full solve without WAN rows drops the running jobs for which staying is strictly cheapest: their
        # columns are not even built (settled)
        settled: set[int] | None = set() if full and snap.wan is None else None
        cols = self._columns(snap, views, running, paths, emergency, waiting, refusals, settled)
        if settled is not None:
            views, running, cols = self._without_settled(views, running, cols, frozenset(settled))
        if self._align is not None:  # (the option: a block-breaking run column pays the block's power gap)
            cols = align_columns(self, self._align, snap, views, cols, rate24)
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
        self._note_wanted(views, running, chosen, cols, plan)
        if full:
            live = {v.job.id for v in (*snap.pending, *snap.running)}
            self.governor.forget(live)
            self._forced &= live
            self._paused &= {v.job.id for v in snap.pending}
            for gone in [k for k in self._col_cache if k not in live]:
                del self._col_cache[gone]
            for gone in [k for k in self._mig_cache if k not in live]:
                del self._mig_cache[gone]
            pending_ids = {v.job.id for v in snap.pending}
            for gone in [k for k in self._pend_cache if k not in pending_ids]:
                del self._pend_cache[gone]
            for gone in [k for k in self._work_s if k not in live]:
                del self._work_s[gone]
            for pk in [pk for pk in self._pick_memo if pk[0] not in pending_ids]:
                del self._pick_memo[pk]  # (kept for waiting jobs: the ones asked again)
        self._last_wait_plan = Plan((), plan.waiting) if not plan.actions else Plan()
        self._reasons = dict(plan.waiting)
        self._set_deadline(snap, now, {a.job_id for a in plan.actions})
        return plan

    def _set_deadline(self, snap: FleetSnapshot, now: int, placed: set[str]) -> None:
        """The next instant a pending job not ``placed`` now reaches its wait bound (``wants_cycle`` asks then)."""
        bound_s = self.max_wait_s
        pend = snap.pending
        hit = self._dues
        if hit[0] is not pend or hit[1] != bound_s or type(pend) is not tuple:
            if self._dues_seen is not pend or type(pend) is not tuple:
                # a pending tuple seen for the first time (most are seen once): one plain pass, the job's id looked
                # up only for a bound that would be the new minimum
                self._dues_seen = pend
                best = 10**18
                for v in pend:
                    since = v.waiting_since_s
                    if since >= 0:
                        due = since + bound_s
                        if now < due < best and v.job.id not in placed:
                            best = due
                self._next_deadline_s = best
                return
            # seen again: every waiting job's bound, ascending (kept while the pending tuple is the same object: the
            # twin rebuilds it only when the pending set changes, and a job's waiting_since_s is in its view)
            dues = sorted([(v.waiting_since_s + bound_s, v.job.id) for v in pend if v.waiting_since_s >= 0])
            hit = self._dues = (pend, bound_s, dues, [d for d, _j in dues])
        dues, keys = hit[2], hit[3]
        # the earliest bound after now of a job not placed now: the first such in ascending order (the plain min)
        k = bisect_right(keys, now)
        while k < len(dues) and dues[k][1] in placed:
            k += 1
        self._next_deadline_s = dues[k][0] if k < len(dues) and dues[k][0] < 10**18 else 10**18

    def _note_wanted(self, views: list[JobView], running: set[int], chosen: list[_Col], cols: list[_Col],
                     plan: Plan) -> None:
        """Tell the cadence where freed capacity would pay for a full solve (:meth:`SolveCadence.want`): the
        factories to which a running job the plan left in place had a move cheaper than staying (no room or no
        quota there), and those cheaper, by the hysteresis margin, than the one a pending job was started in
        (they were full: a move may pay once the job may move)."""
        acted = {a.job_id for a in plan.actions}
        placed = {jx for jx, c in enumerate(chosen) if c.factory >= 0 and jx not in running
                  and views[jx].job.id in acted}
        if not running and not placed:
            return
        stay: dict[int, float] = {}
        for c in cols:
            if c.job in running and c.factory >= 0 and c.nodes == 0:
                stay[c.job] = c.cost
        for jx in placed:
            stay[jx] = chosen[jx].cost / (1.0 + self.hysteresis)
        want = self.cadence.want
        for c in cols:
            jx = c.job
            if c.factory >= 0 and c.cost < stay.get(jx, -math.inf):
                if jx in placed:
                    if c.factory != chosen[jx].factory:
                        want(c.factory, views[jx].job.gpus)
                elif c.migrating and views[jx].job.id not in acted:
                    want(c.factory, views[jx].job.gpus)
