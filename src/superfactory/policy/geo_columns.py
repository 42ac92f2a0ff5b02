"""geo's columns: every option of every job as a cost rate over one span (:class:`GeoColumns`, a part of
:class:`~superfactory.policy.geo.GeoPolicy`; the cost model is in that module's docstring).

A job's columns: run in each lawful factory that is up (cleared by sovereignty and carbon budget, right
accelerator), or wait/pause. Running jobs also get staying (no capacity used) and moving (a migration's one-off
cost, the hysteresis margin, the governor's rate limit and backoff). Pending jobs' waits are aged towards
``max_wait_s``; a job past it waits at :data:`STARVED_USD_PER_GPU_H` (it runs wherever lawful capacity exists).
Also the free-capacity counts the columns and the rows read (recounted only when a factory's node bytes change).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_FREE, FleetSnapshot, JobView
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import MOVABLE
from superfactory.models.wan import route_bandwidth_gbps
from superfactory.policy.feasibility import carbon_budget_refusal, sovereignty_refusal
from superfactory.policy.geo_running import RunCtx, running_columns
from superfactory.policy.migration import MigrationGovernor
from superfactory.policy.nodes import nodes_needed

HOUR_S = 3600
_BIG = 1e12
#: wait cost (USD per GPU-hour) of a job that has waited for price past ``max_wait_s``: above any power cost,
#: so it runs wherever lawful capacity exists (a finite number keeps the LP well scaled)
STARVED_USD_PER_GPU_H = 1e4
_MOVABLE = MOVABLE  # states in which a world accepts Migrate and Preempt
#: ``_tnew(_Col, (job, factory, ...))`` is ``_Col(job, factory, ...)`` (what the named tuple's own ``__new__`` does,
#: without its Python-level call): for the kept columns re-read at every decision
_tnew = tuple.__new__


class _Col(NamedTuple):
    """One option of one job (a plain named tuple: a fleet-year builds millions of them)."""

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


def stays(cols: list[_Col]) -> bool:
    """Whether staying is strictly the cheapest of one running job's columns ``cols`` (its staying column: a
    factory and no nodes; every other column, pause included, costs more)."""
    stay: float | None = None
    best = math.inf
    for c in cols:
        if c.factory >= 0 and c.nodes == 0:
            stay = c.cost
        elif c.cost < best:
            best = c.cost
    return stay is not None and stay < best


class GeoColumns:
    """The column builder and free-capacity counts (module docstring); state lives on the policy."""

    migrate: bool
    governor: MigrationGovernor
    amortise_h: float
    hysteresis: float
    horizon_h: int
    restart_weight: float
    max_wait_s: int
    gamma: float
    _lam: dict[str, float]
    _sig_key: tuple[object, ...]
    _carbon_mean: list[float]
    _carbon_means: Callable[[], list[float]]  # (GeoSignals: forecast carbon per factory, made on first ask)
    _forced: set[str]
    _paused: set[str]
    _work_s: dict[str, tuple[float, float]]
    _cum: tuple[object, list[list[float]]]
    _col_cache: dict[str, tuple[tuple[object, ...], list[tuple[int, float, int, float, bool]], bool]]
    _pend_cache: dict[str, tuple[tuple[object, ...], list[tuple[int, float, int, float, bool]]]]
    _mig_cache: dict[str, tuple[tuple[object, ...], dict[int, float]]]
    _free: dict[tuple[int, str], tuple[bytes, int]]
    _cl_free: dict[int, tuple[bytes, Factory, list[int]]]  # factory index -> (node bytes, factory, free per cluster)
    _free_gpu_of: list[tuple[bytes, int]]
    # (snapshot, free nodes, up, answer per (interned sites, accelerator)) of one decision
    _fit_memo: tuple[object, dict[tuple[int, str], int], list[bool], dict[tuple[int, str], bool]]
    _site_intern: dict[tuple[tuple[int, int, float, float], ...], tuple[tuple[int, int, float, float], ...]]
    _sites_of: tuple[Factory, ...] | None
    _site_cache: dict[str, tuple[tuple[tuple[int, int, float, float], ...], tuple[tuple[str, str], ...]]]
    _fit_key: dict[str, tuple[int, str]]  # job -> its key in the fit memo (valid for the factories _sites_of)
    # (pending tuple, [(view, job id, fit key)] of its jobs): kept while the snapshot's pending tuple is the same
    # object (the twin rebuilds it only when the pending set changes); forgotten with the fit keys
    _fit_rows: tuple[object, list[tuple[JobView, str, int]]]
    # fit shapes (:meth:`_split_pending`): ((factory, nodes needed) per lawful site, accelerator) -> code, the shapes
    # by code, each job's code (all for the factories _sites_of), and the answers per code at one snapshot
    _fit_codes: dict[tuple[tuple[tuple[int, int], ...], str], int]
    _fit_shapes: list[tuple[tuple[tuple[int, int], ...], str]]
    _fit_job_code: dict[str, int]
    _fit_answers: tuple[object, dict[int, bool]]
    _pend_ids: tuple[object, tuple[str, ...], frozenset[str]]  # (pending tuple, its job ids; as a set)

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
            f = snap.factories[i]
            counts = self._cluster_free(f, i, b)
            if len(f.clusters) == 1:  # (one cluster: it is the accelerator's, or the factory has none of it)
                n = counts[0] if f.clusters[0].accelerator == acc else 0
            else:
                n = sum(counts[k] for k, c in enumerate(f.clusters) if c.accelerator == acc)
            hit = self._free[(i, acc)] = (b, n)
        return hit[1]

    def _cluster_free(self, f: Factory, i: int, b: bytes) -> list[int]:
        """Free nodes of each cluster of factory ``f`` (index ``i``) in its node bytes ``b``, counted once per
        bytes object for both :meth:`_free_nodes` (per accelerator) and :meth:`_free_gpus` (per factory)."""
        hit = self._cl_free.get(i)
        if hit is None or hit[0] is not b or hit[1] is not f:
            hit = self._cl_free[i] = (b, f, [b.count(NODE_FREE, c.node_offset, c.node_end) for c in f.clusters])
        return hit[2]

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

    def _new_factories(self, snap: FleetSnapshot) -> None:
        """Forget what was kept per job about the last set of factories (sites, interned tuples, fit keys)."""
        self._sites_of = snap.factories
        self._site_cache.clear()
        self._site_intern.clear()
        self._fit_key.clear()
        self._fit_rows = (None, [])
        self._fit_codes = {}
        self._fit_shapes = []
        self._fit_job_code = {}
        self._fit_answers = (None, {})

    def _sites(self, snap: FleetSnapshot, job: TrainingJob
               ) -> tuple[tuple[tuple[int, int, float, float], ...], tuple[tuple[str, str], ...]]:
        """Factories ``job`` may ever run in, as (index, nodes, extra IT W, extra facility MW), and the
        sovereignty refusals ``(factory id, rule)`` of the factories that have its accelerator but are not
        cleared for all its data classes (cached per job: factories, clearances and jobs never change)."""
        if self._sites_of is not snap.factories:
            self._new_factories(snap)
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
        st = tuple(sites)
        st = self._site_intern.setdefault(st, st)  # one object per distinct answer (the fit memo's key)
        out = (st, tuple(reasons))
        self._site_cache[job.id] = out
        return out

    def _columns(self, snap: FleetSnapshot, views: list[JobView], running: set[int],
                 paths: list[npt.NDArray[np.float64]], emergency: set[int], waiting: dict[str, str],
                 refusals: list[tuple[str, str, str]], settled: set[int] | None = None) -> list[_Col]:
        """Every option of every job in ``views`` (``running``: the indices of running jobs).

        ``settled`` (a full solve without WAN rows): a running job for which staying is strictly the cheapest
        of its columns (:func:`stays`) gets no columns here; its index is added to ``settled`` instead (the
        caller drops it, :meth:`~superfactory.policy.geo_plan.GeoPlanning._without_settled`). Its side effects
        (audit refusals, forced flags) happen as for any job.
        """
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
        governor = self.governor
        span_cap = min(self.amortise_h, 24)
        # every running job's backoffs, in one pass over them (asked per job, it was a pass per job)
        backs_of = governor.backoffs_by_job(now) if running and self.migrate else {}
        run_ctx: RunCtx | None = None
        for jx, v in enumerate(views):
            job = v.job
            start = len(cols)
            is_run = jx in running
            statics = work_of.get(job.id)
            if statics is None:  # the job's work and drain hours (computed properties of a frozen job)
                ck = job.checkpoint
                statics = work_of[job.id] = (
                    job.work_s, (ck.blocking_s + ck.async_write_s + job.recovery.restart_s) / HOUR_S)
            work_s, drain_h = statics
            # the span of its columns (explained below): the next min(remaining run, amortise_h, 24) hours; the
            # same value as max(1, int(min(amortise_h, 24, ceil(max(1.0, remaining_h))))), without the calls
            remaining_h = (work_s - v.progress_s) / HOUR_S
            if not remaining_h > 1.0:
                remaining_h = 1.0
            span_h = math.ceil(remaining_h)
            span = max(span_h if span_h < span_cap else int(span_cap), 1)
            if is_run and job.carbon_budget_tco2 is None:  # the lean path of most of a full solve's jobs
                if run_ctx is None:
                    if self._sites_of is not snap.factories:  # (what _sites checks: a new set of factories)
                        self._sites(snap, job)
                    run_ctx = RunCtx(snap, now, cum, up_now, fids, gbps, lat_ms, ups, backs_of, self._site_cache,
                                     {}, {})
                running_columns(self, run_ctx, jx, v, span, drain_h, cols, settled, _Col)
                continue
            # a running job may move this decision (its rate limit and, below, its backoffs allowing)
            may = is_run and self.migrate and job.migratable and governor.may_move(job.id, now)
            backs = backs_of.get(job.id, ()) if may else ()
            lam = self._lam.get(job.accelerator, _BIG)
            lam_eff = lam if lam < _BIG else 1.0
            ck = job.checkpoint
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
            k_max = min(span, self.horizon_h)
            home = job.home_factory
            # only a job that is computing can be moved or paused; one starting, draining, migrating or
            # detecting a failure keeps its nodes until the twin settles it
            locked = is_run and v.state not in _MOVABLE
            wait_rate = job.gpus * lam * (1.0 + 0.02 * job.priority)
            if not is_run and v.last_factory_id is not None and job.id not in self._paused:
                # a started job put off its nodes (a failure, an outage) is re-placed first; one geo paused
                # itself keeps the wait rate it was paused at, or it would be re-placed at once and pay the
                # drain and restart for nothing
                wait_rate *= self.restart_weight
            forced = False
            if not is_run and v.waiting_since_s >= 0:
                waited_s = now - v.waiting_since_s
                if waited_s >= self.max_wait_s or job.id in self._forced:
                    wait_rate = job.gpus * STARVED_USD_PER_GPU_H  # no more waiting for price: run where lawful
                    self._forced.add(job.id)
                    forced = True
                else:
                    wait_rate *= 1.0 + waited_s / self.max_wait_s  # ageing: waiting gets dearer as it lasts
            resume = cur  # where a paused or waiting job would run after its wait: where it is, else cheapest
            resume_mw = 0.0
            if is_run:
                for i, _nodes, _it_w, mw in sites:
                    if i == cur:
                        resume_mw = mw
                        lat = self.gamma * mw * self._latency_cached(snap, lat_ms, home, fids[i]) if self.gamma else 0.0
                        cols.append(_Col(jx, i, mw * cum[i][span] / span + lat, 0, 0.0, False))
            elif not forced:  # (a forced job waits at the starved rate below: where it would resume is not read)
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
            # a running job that is locked, or may not move and has no carbon budget to audit, gets no run
            # columns besides staying
            has_budget = job.carbon_budget_tco2 is not None
            skip_sites = is_run and (locked or (not may and not has_budget))
            pkey: tuple[object, ...] | None = None
            if not is_run and not has_budget:
                # a pending job's run columns are kept while what they are computed from is the same: the cost
                # signals, the factories up, the links, its span, where it last ran, whether it may move now
                # and whether it is an emergency (its wait column is priced afresh below: it ages)
                pkey = (self._sig_key, ups, links, span, v.last_factory_id,
                        v.last_factory_id is None or governor.may_move(job.id, now), jx in emergency)
                phit = self._pend_cache.get(job.id)
                if phit is not None and phit[0] == pkey:
                    cols.extend([_tnew(_Col, (jx, i, c, n, w, m)) for i, c, n, w, m in phit[1]])
                    skip_sites = True
                    pkey = None
            run_start = len(cols)
            # a running job's one-off move cost per destination, spread over the span: kept while its site, the
            # links, the value of its GPU-hours and its span are the same (hours pass, prices move: not these)
            mig_of: dict[int, float] | None = None
            if may and not skip_sites:
                mkey = (v.factory_id, links, lam_eff, span)
                mhit = self._mig_cache.get(job.id)
                if mhit is None or mhit[0] != mkey:
                    mhit = self._mig_cache[job.id] = (mkey, {})
                mig_of = mhit[1]
            for i, nodes, it_w, mw in () if skip_sites else sites:
                if locked or not up_now[i] or (is_run and i == cur):
                    continue
                f = snap.factories[i]
                if has_budget:
                    budget = carbon_budget_refusal(job, v.carbon_spent_tco2, v.progress_s, f,
                                                  self._carbon_means()[i])
                    if budget is not None:  # a hard rule like sovereignty: no column, and an audit record
                        refusals.append((job.id, f.id, budget))
                        if jx not in running:
                            waiting.setdefault(job.id, budget)
                        continue
                lat = self.gamma * mw * self._latency_cached(snap, lat_ms, home, f.id) if self.gamma else 0.0
                energy = mw * cum[i][span]
                run_rate = energy / span + lat
                if is_run:
                    if not may or f.id in backs:  # rate-limited, or backing off from this destination
                        continue
                    mig_span = mig_of.get(i) if mig_of is not None else None
                    if mig_span is None:
                        assert v.factory_id is not None
                        bw = gbps.get((v.factory_id, f.id))
                        if bw is None:
                            bw = gbps[(v.factory_id, f.id)] = self._bandwidth_gbps(snap, v.factory_id, f.id)
                        xfer_h = ck.size_bytes * 8 / (bw * 1e9) / HOUR_S
                        mig_usd = (drain_h + xfer_h) * job.gpus * lam_eff
                        mig_span = mig_usd / span
                        if mig_of is not None:
                            mig_of[i] = mig_span
                    margin = self.hysteresis * abs(energy) / span
                    cols.append(_Col(jx, i, run_rate + margin + mig_span, nodes, it_w, True))
                else:
                    moved = v.last_factory_id is not None and v.last_factory_id != f.id
                    if moved and not self.governor.may_move(job.id, now) and jx not in emergency:
                        continue
                    cols.append(_Col(jx, i, run_rate, nodes, it_w, moved and jx not in emergency))
            if pkey is not None:
                self._pend_cache[job.id] = (pkey, [(c.factory, c.cost, c.nodes, c.it_w, c.migrating)
                                                   for c in cols[run_start:]])
            # wait (pending) or pause (running) for the best k hours, then run at ``resume``
            restart_usd = drain_h * job.gpus * lam_eff if is_run else 0.0
            if forced:
                wait = 0.0  # (not read: its wait column is the starved rate)
            elif resume >= 0:
                cr = cum[resume]  # wait k = 1..k_max hours, then run for the rest of the span
                best = min([wait_rate * k - resume_mw * cr[k] for k in range(1, k_max + 1)])
                wait = (best + resume_mw * cr[span] + restart_usd) / span
            else:
                wait = wait_rate + restart_usd / span
            # (columns appended since ``start`` are this job's: it has one when the list grew)
            if is_run and job.id in self._forced and len(cols) > start:
                pass  # a job that already waited its bound for price runs on (it may still move)
            elif forced:
                cols.append(_Col(jx, -1, job.gpus * STARVED_USD_PER_GPU_H, 0, 0.0, False))
            elif not locked or len(cols) == start:
                cols.append(_Col(jx, -1, wait, 0, 0.0, False))
            if is_run and settled is not None and stays(cols[start:]):  # (a job with a carbon budget)
                del cols[start:]
                settled.add(jx)
            if not is_run and reasons:
                # every factory that would otherwise take the job but is not cleared for its data: an audit event
                refusals.extend((job.id, fid, rule) for fid, rule in reasons)
                if not sites:
                    waiting[job.id] = "; ".join(f"{fid}: {rule}" for fid, rule in reasons)
        return cols

    def _fits_somewhere(self, snap: FleetSnapshot, job: TrainingJob) -> bool:
        """Whether some lawful factory that is up has enough free nodes of the job's accelerator for it (the
        free counts are kept for the rest of the snapshot's decision: asked for every waiting job). Jobs with the
        same accelerator and lawful sites share one answer per snapshot; each job's key to it is kept in
        ``_fit_key`` (cleared with the per-job sites when the factories change)."""
        memo = self._fit_memo
        if memo[0] is snap:  # the fast path: this job's key, and its answer at this decision, are known
            key = self._fit_key.get(job.id)
            if key is not None:
                ans = memo[3].get(key)
                if ans is not None:
                    return ans
        else:
            if self._sites_of is not snap.factories:
                self._new_factories(snap)
            memo = self._fit_memo = (snap, {}, [st.up for st in snap.states], {})
        acc = job.accelerator
        sites = self._sites(snap, job)[0]
        key = (id(sites), acc)  # jobs with equal sites share one interned tuple (kept alive by the intern table)
        self._fit_key[job.id] = key
        ans = memo[3].get(key)
        if ans is not None:
            return ans
        ans = self._fits_at(snap, [(i, n) for i, n, _w, _mw in sites], acc, memo[1], memo[2])
        memo[3][key] = ans
        return ans

    def _fits_at(self, snap: FleetSnapshot, pairs: Sequence[tuple[int, int]], acc: str,
                 free: dict[tuple[int, str], int], up: list[bool]) -> bool:
        """Whether some (factory index, nodes needed) pair of ``pairs`` is up with at least that many free nodes
        of ``acc``; free counts are read from and kept in ``free`` (per decision)."""
        for i, n in pairs:
            if up[i]:
                got = free.get((i, acc))
                if got is None:
                    got = free[(i, acc)] = self._free_nodes(snap, i, acc)
                if got >= n:
                    return True
        return False

    def _pending_ids(self, snap: FleetSnapshot) -> tuple[tuple[str, ...], frozenset[str]]:
        """The ids of ``snap``'s pending jobs, in order and as a set (kept while the snapshot's pending tuple is
        the same object: the twin rebuilds it only when the pending set changes; the tuple is held, so its id
        cannot be reused while kept)."""
        hit = self._pend_ids
        if hit[0] is not snap.pending or type(snap.pending) is not tuple:  # (kept only for an immutable tuple)
            ids = tuple([v.job.id for v in snap.pending])
            hit = self._pend_ids = (snap.pending, ids, frozenset(ids))
        return hit[1], hit[2]

    def _split_pending(self, snap: FleetSnapshot, reasons: dict[str, str]) -> tuple[list[JobView], dict[str, str]]:
        """The pending jobs of ``snap`` to price at this decision, in pending order, and the waiting reasons
        (from ``reasons``, the last decision's) of the rest: a job with no reason yet is priced, one with a
        reason is priced only if it fits somewhere (some lawful factory that is up has enough free nodes of its
        accelerator), else it keeps its reason.

        The same answer as ``[v for v in snap.pending if v.job.id not in reasons or self._fits_somewhere(snap,
        v.job)]`` and the reasons of the others, in one pass. Whether a job fits depends only on its accelerator
        and its lawful sites' (factory, nodes needed) pairs (the fit shape: :meth:`_fits_somewhere`'s loop reads
        nothing else of the sites), so jobs of one shape share one answer per decision (many jobs of one size,
        few shapes), and each pending job's shape code is kept with the pending tuple (the twin keeps that tuple
        while the pending set is unchanged; the tuple is held, so its id is not reused). The codes are forgotten
        with the per-job sites when the set of factories changes."""
        if self._sites_of is not snap.factories:
            self._new_factories(snap)
        pend = snap.pending
        hit = self._fit_rows
        if hit[0] is pend and type(pend) is tuple:  # (kept only for an immutable tuple)
            rows = hit[1]
        else:
            job_code = self._fit_job_code
            codes = self._fit_codes
            rows = []
            for v in pend:
                job = v.job
                code = job_code.get(job.id)
                if code is None:
                    shape = (tuple([(i, n) for i, n, _w, _mw in self._sites(snap, job)[0]]), job.accelerator)
                    code = codes.get(shape)
                    if code is None:
                        code = codes[shape] = len(self._fit_shapes)
                        self._fit_shapes.append(shape)
                    job_code[job.id] = code
                rows.append((v, job.id, code))
            self._fit_rows = (pend, rows)
        memo = self._fit_memo
        if memo[0] is not snap:
            memo = self._fit_memo = (snap, {}, [st.up for st in snap.states], {})
        ans_of = self._fit_answers
        if ans_of[0] is not snap:
            ans_of = self._fit_answers = (snap, {})
        answers = ans_of[1]
        free, up = memo[1], memo[2]
        shapes = self._fit_shapes
        views: list[JobView] = []
        waiting: dict[str, str] = {}
        for v, jid, code in rows:
            why = reasons.get(jid)
            if why is None:
                views.append(v)
                continue
            ans = answers.get(code)
            if ans is None:  # (as _fits_somewhere: a site that is up with enough free nodes of the accelerator)
                pairs, acc = shapes[code]
                ans = answers[code] = self._fits_at(snap, pairs, acc, free, up)
            if ans:
                views.append(v)
            else:
                waiting[jid] = why
        return views, waiting

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
                for cl, n in zip(f.clusters, self._cluster_free(f, i, b), strict=True):
                    free += n * cl.system.gpus_per_node
                cache[i] = (b, free)
            out.append(cache[i][1])
        return out
