"""geo's columns of a running job without a carbon budget, on a lean path (issue 12).

At a full solve these are almost every job geo prices (fleet-year: ~120 running jobs at each of ~40 full solves a
day), and for ~98 % of them staying is strictly the cheapest column, so the plan drops them
(:meth:`~superfactory.policy.geo_plan.GeoPlanning._without_settled`). :func:`running_columns` builds exactly the
columns the general builder (:meth:`~superfactory.policy.geo_columns.GeoColumns._columns`, whose docstring and
module docstring hold the cost model) builds for such a job, with the same floating-point operations in the same
order, and without the branches that only pending jobs or carbon budgets take:

- **stay** in its factory: ``mw x cum[cur][T] / T`` (+ latency);
- **move** to every other lawful factory that is up, when the governor lets it move and it is computing:
  the destination's rate, plus ``hysteresis`` x that rate, plus the one-off move cost over ``T``;
- **pause** for the best ``k <= horizon_h`` hours then run on where it is (drain and restart over ``T``).

A job whose columns were built from the same inputs (:data:`RunCtx` and the job's key) reuses them; a settled job
(staying strictly cheapest) adds only its index to ``settled`` when the caller drops settled jobs. At a full solve
without a latency price, :func:`_settles` first asks whether the job is settled without building any column (the
same float expressions, stopping at the first column not dearer than staying); its answer is shared at that
decision by every running job of the same class (``RunCtx.settles_of``), ~3 in 4 running jobs on fleet-year.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from superfactory.domain.fleet import FleetSnapshot, JobView
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import MOVABLE

if TYPE_CHECKING:
    from superfactory.policy.geo_columns import GeoColumns, _Col

HOUR_S = 3600
_BIG = 1e12  # the same "no value of a GPU-hour" marker as geo_columns
_MOVABLE = MOVABLE

#: one column as the caches keep it: (factory, cost, nodes, IT W, migrating)
ColTuple = tuple[int, float, int, float, bool]


class RunCtx(NamedTuple):
    """What every running job's columns at one decision share (built once per decision by the caller)."""

    snap: FleetSnapshot
    now: int
    cum: list[list[float]]  # cum[i][k]: forecast USD/MWh of factory i summed over the next k hours
    up_now: list[bool]
    fids: list[str]
    gbps: dict[tuple[str, str], float]  # per-decision route bandwidth cache
    lat_ms: dict[tuple[str | None, str], float]  # per-decision latency cache
    ups: tuple[bool, ...]
    backs_of: dict[str, tuple[str, ...]]  # the governor's backoffs per job at ``now``
    site_table: dict[str, tuple[tuple[tuple[int, int, float, float], ...], tuple[tuple[str, str], ...]]]
    wait_best: dict[tuple[int, float, float, int], float]  # best pause per (site, wait rate, MW, hours)
    settles_of: dict[tuple[object, ...], bool]  # the quick settled test's answer per class of running job


def _move_costs(pol: GeoColumns, jid: str, mkey: tuple[object, ...]) -> dict[int, float]:
    """The job's one-off move costs per destination, kept in ``pol._mig_cache`` while ``mkey`` (its site, the
    links, its value of a GPU-hour, its span) is unchanged; a new key starts an empty table."""
    mhit = pol._mig_cache.get(jid)
    if mhit is None or mhit[0] != mkey:
        mhit = pol._mig_cache[jid] = (mkey, {})
    return mhit[1]


def running_columns(pol: GeoColumns, ctx: RunCtx, jx: int, v: JobView, span: int, drain_h: float,
                    cols: list[_Col], settled: set[int] | None, col: type[_Col]) -> None:
    """Append the columns of running job ``views[jx] = v`` (no carbon budget) to ``cols``, or, when ``settled``
    is given and staying is strictly its cheapest column, add ``jx`` to ``settled`` instead. ``span``: the
    hours its columns are priced over; ``drain_h``: its drain + restart hours; ``col``: the column type."""
    job = v.job
    jid = job.id
    now = ctx.now
    may = pol.migrate and job.migratable and pol.governor.may_move(jid, now)
    backs = ctx.backs_of.get(jid, ()) if may else ()
    locked = v.state not in _MOVABLE  # starting, draining, migrating or failing: it keeps its nodes
    forced_run = jid in pol._forced
    fid = v.factory_id
    if settled is not None and fid is not None and not pol.gamma:
        # the quick settled test (no columns built), its answer shared at this decision by every running job of
        # the same class: what _settles reads of a job is its sites, where it runs, span, accelerator, GPUs,
        # priority, drain hours, checkpoint size, whether it may move, whether it may pause, and its backoffs
        site_hit = ctx.site_table.get(jid)
        if site_hit is not None:
            acc = job.accelerator
            movable = may and not locked
            skey = (id(site_hit[0]), fid, span, acc, job.gpus, job.priority, drain_h, job.checkpoint.size_bytes,
                    movable, forced_run or locked, backs if movable else ())
            ans = ctx.settles_of.get(skey)
            if ans is None:
                lam_q = pol._lam.get(acc, _BIG)
                ans = ctx.settles_of[skey] = _settles(pol, ctx, job, site_hit[0], ctx.fids.index(fid), span, drain_h,
                                                      lam_q, lam_q if lam_q < _BIG else 1.0, may, locked,
                                                      forced_run, backs)
            if ans:
                settled.add(jx)
                return
    lam_of = pol._lam
    ckey = (pol._sig_key, ctx.ups, ctx.snap.links, lam_of.get(job.accelerator), fid, span, locked, may,
            forced_run, backs)
    hit = pol._col_cache.get(jid)
    if hit is not None and hit[0] == ckey:
        if settled is not None and hit[2]:
            settled.add(jx)
        else:
            cols.extend([col(jx, f, c, n, w, m) for f, c, n, w, m in hit[1]])
        return
    lam = lam_of.get(job.accelerator, _BIG)
    lam_eff = lam if lam < _BIG else 1.0
    fids = ctx.fids
    cur = fids.index(fid) if fid is not None else -1
    snap = ctx.snap
    site_hit = ctx.site_table.get(jid)  # the policy's per-job site cache (valid for ctx.snap's factories)
    sites = site_hit[0] if site_hit is not None else pol._sites(snap, job)[0]
    cum = ctx.cum
    gamma = pol.gamma
    home = job.home_factory
    gpus = job.gpus
    out: list[ColTuple] = []
    resume_mw = 0.0
    stay: float | None = None  # its staying cost and its cheapest other column (what geo_columns.stays finds)
    best_other = float("inf")
    for i, _nodes, _it_w, mw in sites:  # staying where it runs
        if i == cur:
            resume_mw = mw
            lat = gamma * mw * pol._latency_cached(snap, ctx.lat_ms, home, fids[i]) if gamma else 0.0
            stay = mw * cum[i][span] / span + lat
            out.append((i, stay, 0, 0.0, False))
    if may and not locked:  # moving: each other lawful factory that is up and not backed off from
        mig_of = _move_costs(pol, jid, (fid, snap.links, lam_eff, span))
        up_now = ctx.up_now
        hysteresis = pol.hysteresis
        for i, nodes, it_w, mw in sites:
            if not up_now[i] or i == cur:
                continue
            dest = fids[i]
            if dest in backs:
                continue
            lat = gamma * mw * pol._latency_cached(snap, ctx.lat_ms, home, dest) if gamma else 0.0
            energy = mw * cum[i][span]
            run_rate = energy / span + lat
            mig_span = mig_of.get(i)
            if mig_span is None:
                assert fid is not None
                bw = ctx.gbps.get((fid, dest))
                if bw is None:
                    bw = ctx.gbps[(fid, dest)] = pol._bandwidth_gbps(snap, fid, dest)
                xfer_h = job.checkpoint.size_bytes * 8 / (bw * 1e9) / HOUR_S
                mig_usd = (drain_h + xfer_h) * gpus * lam_eff
                mig_span = mig_of[i] = mig_usd / span
            margin = hysteresis * abs(energy) / span
            cost = run_rate + margin + mig_span
            if nodes == 0:  # (never: a move takes nodes; kept so the rule is exactly geo_columns.stays)
                stay = cost
            elif cost < best_other:
                best_other = cost
            out.append((i, cost, nodes, it_w, True))
    # pausing for the best k hours, then running on where it is
    wait_rate = gpus * lam * (1.0 + 0.02 * job.priority)
    restart_usd = drain_h * gpus * lam_eff
    if cur >= 0:
        cr = cum[cur]
        best = min([wait_rate * k - resume_mw * cr[k] for k in range(1, min(span, pol.horizon_h) + 1)])
        wait = (best + resume_mw * cr[span] + restart_usd) / span
    else:
        wait = wait_rate + restart_usd / span
    if forced_run and out:
        pass  # a job that already waited its bound for price runs on (it may still move)
    elif not locked or not out:
        best_other = min(best_other, wait)
        out.append((-1, wait, 0, 0.0, False))
    settles = stay is not None and stay < best_other  # geo_columns.stays(out), built alongside
    pol._col_cache[jid] = (ckey, out, settles)
    if settled is not None and settles:
        settled.add(jx)
    else:
        cols.extend([col(jx, f, c, n, w, m) for f, c, n, w, m in out])


def _settles(pol: GeoColumns, ctx: RunCtx, job: TrainingJob, sites: tuple[tuple[int, int, float, float], ...],
             cur: int, span: int, drain_h: float, lam: float, lam_eff: float, may: bool, locked: bool,
             forced_run: bool, backs: tuple[str, ...]) -> bool:
    """Whether staying is strictly the cheapest column of a running job at factory ``cur`` (no latency
    price), found without building its columns: each cost is the same floating-point expression
    :func:`running_columns` evaluates, and the first column that is not dearer than staying ends the test
    (False: the caller builds the columns). The best pause of a job is kept per decision for every job with the
    same site, wait rate, power and pause hours (``ctx.wait_best``)."""
    stay = -1.0
    resume_mw = 0.0
    for i, _nodes, _it_w, mw in sites:
        if i == cur:
            resume_mw = mw
            stay = mw * ctx.cum[i][span] / span
            break
    else:
        return False  # (no staying column)
    cum = ctx.cum
    if may and not locked:
        fids = ctx.fids
        fid = fids[cur]
        snap = ctx.snap
        mig_of = _move_costs(pol, job.id, (fid, snap.links, lam_eff, span))  # (shared with running_columns)
        up_now = ctx.up_now
        hysteresis = pol.hysteresis
        for i, nodes, _it_w, mw in sites:
            if not up_now[i] or i == cur:
                continue
            dest = fids[i]
            if dest in backs:
                continue
            if nodes == 0:
                return False  # (never: a move takes nodes)
            mig_span = mig_of.get(i)
            if mig_span is None:
                bw = ctx.gbps.get((fid, dest))
                if bw is None:
                    bw = ctx.gbps[(fid, dest)] = pol._bandwidth_gbps(snap, fid, dest)
                xfer_h = job.checkpoint.size_bytes * 8 / (bw * 1e9) / HOUR_S
                mig_usd = (drain_h + xfer_h) * job.gpus * lam_eff
                mig_span = mig_of[i] = mig_usd / span
            energy = mw * cum[i][span]
            run_rate = energy / span + 0.0
            margin = hysteresis * abs(energy) / span
            if not stay < run_rate + margin + mig_span:
                return False
    if forced_run or locked:
        return True  # (a staying column exists: no pause column)
    gpus = job.gpus
    wait_rate = gpus * lam * (1.0 + 0.02 * job.priority)
    restart_usd = drain_h * gpus * lam_eff
    k_max = min(span, pol.horizon_h)
    wkey = (cur, wait_rate, resume_mw, k_max)
    best = ctx.wait_best.get(wkey)
    if best is None:
        cr = cum[cur]
        best = ctx.wait_best[wkey] = min([wait_rate * k - resume_mw * cr[k] for k in range(1, k_max + 1)])
    return stay < (best + resume_mw * cum[cur][span] + restart_usd) / span
