"""geo's pending columns between full solves (issue 12, session 9): a pending job that has waited past its bound
(forced: its wait column is the starved rate) no longer computes where it would resume after a wait, nor the wait
it would not use. Its columns, and every other job's, must equal the old builder's (a reference copy of
``GeoColumns._columns`` as of bdee95a below), on random queues with forced, ageing and restarted jobs, a factory
down and busy nodes, over two decisions (the kept run columns answer the second)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.fleet import NODE_BUSY, NODE_FREE, FactoryState, FleetSnapshot, JobView
from superfactory.policy.feasibility import carbon_budget_refusal
from superfactory.policy.geo import GeoPolicy
from superfactory.policy.geo_columns import _BIG, _MOVABLE, HOUR_S, STARVED_USD_PER_GPU_H, _Col, stays
from superfactory.policy.geo_running import RunCtx, running_columns
from superfactory.scenario.loader import load_scenario

_SC = load_scenario("default")
_FACTORIES = tuple(_SC.factories)
_JOBS = tuple(_SC.jobs[::3])


class _Old(GeoPolicy):
    """GeoPolicy with the column builder as it was before session 9."""


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
                    cols.extend([_Col(jx, i, c, n, w, m) for i, c, n, w, m in phit[1]])
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
            if resume >= 0:
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


def _snap(now: int, seed: int, busy_p: float, down: int, views: tuple[JobView, ...]) -> FleetSnapshot:
    rng = np.random.default_rng(seed)
    states = tuple(FactoryState(f.id, i != down, bytes(np.where(rng.random(f.nodes) < busy_p, NODE_BUSY,
                                                                 NODE_FREE).astype(np.uint8)), 50.0, 300.0, 0.0)
                   for i, f in enumerate(_FACTORIES))
    return FleetSnapshot(now, _FACTORIES, states, (), views, ())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_JOBS) - 1), st.integers(-1, 40 * 3600), st.integers(-1, 4),
                          st.floats(0.0, 1.0)), min_size=1, max_size=25),
       st.integers(0, 2**31), st.floats(0.0, 1.0), st.integers(-1, 4), st.lists(st.floats(5.0, 400.0), min_size=25,
                                                                                max_size=25))
def test_pending_columns_equal_the_old_builder(jobs: list[tuple[int, int, int, float]], seed: int, busy_p: float,
                                               down: int, prices: list[float]) -> None:
    now = 40 * 3600
    views = []
    for k, (jx, since, last, progress) in enumerate(jobs):
        job = dataclasses.replace(_JOBS[jx], id=f"j{k}")
        last_id = _FACTORIES[last].id if last >= 0 else None  # a started job put off its nodes: restart weight
        views.append(JobView(job, None, (), progress * job.work_s, since, last_factory_id=last_id))
    paths = [np.array(prices) * (1.0 + 0.1 * i) for i in range(len(_FACTORIES))]
    new, old = GeoPolicy(), _Old()
    for pol in (new, old):
        pol._lam = {"GB200": 2.5, "H100-SXM": 1.8}
        pol._sig_key = (1, 2)
        pol._paused = {"j1"}
    for step in range(2):  # the second decision reads the kept run columns
        snap = _snap(now + step * 600, seed + step, busy_p, down, tuple(views))
        emergency = {jx for jx, v in enumerate(views) if v.last_factory_id is not None and down >= 0
                     and v.last_factory_id == _FACTORIES[down].id}
        got_w: dict[str, str] = {}
        want_w: dict[str, str] = {}
        got_r: list[tuple[str, str, str]] = []
        want_r: list[tuple[str, str, str]] = []
        got = new._columns(snap, list(views), set(), paths, emergency, got_w, got_r)
        want = old._columns(snap, list(views), set(), paths, emergency, want_w, want_r)
        assert got == want
        assert (got_w, got_r, new._forced) == (want_w, want_r, old._forced)
