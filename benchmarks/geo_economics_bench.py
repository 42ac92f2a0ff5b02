"""geo against home-region on the real-data fleet (``real-2023``), month by month, with perfect-hindsight bounds.

For each month asked (``--months``), the first ``--days`` days of that month of 2023 (default: the whole month)
are simulated under ``home-region`` and ``geo`` (same seed, same jobs, real prices and carbon), one run after
the other in this process (``os.nice`` lowers its priority; the machine is shared). Printed per month and for
all months together ("year" = the sum over the simulated windows: all of 2023 with ``--months all`` and
``--days 31``, a sample of it otherwise; the output says which):

- ``power_cut``: 1 - geo's power cost per productive GPU-hour / home-region's;
- ``tco_cut``: the same for total cost (capital from the catalog + power, ``observe/tco.py``);
- ``carbon_cut``: the same for tCO2 per productive GPU-hour;
- ``throughput_ratio``: geo's productive GPU-hours / home-region's;
- ``pending_work_*_gpu_h``: work submitted and not done at the end (GPU-hours);
- ``max_price_wait_h``: geo's longest pending spell during which it said it waited for cheaper power;
- ``saving_captured``: on the busy-GPU part of the power bill (the part a schedule changes; the idle floor is the
  same fleet's), per productive GPU-hour: (home - geo) / (home - bound). The bound is
  :func:`superfactory.policy.hindsight.hindsight_bound` with the true prices, the same fleet and jobs, and the
  *same throughput as geo*: in every hour, as many busy GPUs of each accelerator type as geo had (a GB200-hour is
  not an H100-hour; busy GPU-hours include restarts and recomputation, which no schedule avoids), placed at the
  cheapest lawful sites with free moves and divisible jobs. Bound v3 (this figure; ``policy/hindsight_holds.py``)
  is v2 plus knapsack rows per pool-hour (the busy GPUs of jobs of >= S GPUs fit whole gangs of those sizes) and
  per-job busy-time caps (work at the slowest speed, restarts, checkpoint stalls, detection and rolled-back work
  per failure, drains, migrations' double holding) with the window's failures and the larger run's drains and
  migrations as budgets: it holds for every schedule with exact gangs and at most those drains and migrations
  (``v3_budgets``; ``--diagnose-v3`` adds a no-overhead variant that is not a bound). ``saving_captured_v2``:
  against bound v2, which limits each pool-hour to its
  *usable* GPUs, which every schedule of the twin on this fleet and seed obeys: nodes down (the run's failure
  events, identical in both runs: ``failures_identical``) and whole gangs (held GPUs are sums of gangs, multiples
  of the gcd of the lawful jobs' node-rounded sizes); a job may hold two gangs (a migration), and its busy
  GPU-hours are not capped by a guessed overhead factor (``policy/hindsight_fleet.py`` has the proof sketch);
- ``saving_captured_anytime``: the same against the looser bound that may also *shift work in time* (only the
  total busy GPU-hours per accelerator type are held, and work cannot run before it arrives);
- ``saving_captured_v1``, ``saving_captured_anytime_v1``: against the previous session's bounds (nameplate GPUs,
  one gang per job, busy GPU-hours at most ``OVERHEAD`` x a job's work), so the change reads side by side;
- ``bound_below_both``: both v2 bounds are at or below geo's busy cost and home-region's per productive GPU-hour;
  ``busy_within_usable``: neither run had more GPUs busy in a pool-hour than the usable capacity; ``exact_gangs``:
  neither run handed a job more nodes than its gang needs (so busy GPUs are throughput, the targets' unit);
- ``move_sensitivity``: how much the where-only bound would rise if every GPU entering a pool cost 5 min (the
  twin's restart) or 60 min of busy GPU time there: a sensitivity, not a bound (see ``move_sensitivity``).

``--frontier`` instead sweeps geo's value of a GPU-hour x carbon price on one window and prints throughput,
power cost, TCO and carbon per point (the table in docs/geo.md).

``--continuous DAYS`` instead runs real-2023 from 2023-01-01 for DAYS days in one run (365: the year, no
restart from the t=0 backlog each month) and prints the window's figures (not split by month).

``--v4`` also solves bound v4 (``policy/hindsight_jobs.py``: job level, time-indexed, each job continuous between
the events it is given) and reports it beside v3 (``v4`` per month): on 1-7 January and 1-7 June it equals v3 to
the dollar, so it is not the headline (docs/geo.md, "Bound v4"; ~150 CPU-s per 7-day window, far more per month).

Usage: python benchmarks/geo_economics_bench.py [--months 1,2,...|all] [--days 31] [--frontier] [--job-level] [--v4]
       [--out X.json] [--merge A.json --merge B.json ...] (months of earlier runs; --months "" to only merge)
       [--continuous DAYS] [--geo-params JSON]
(writes benchmarks/results/geo_economics.json, geo_economics_continuous.json or geo_frontier.json; needs
../shared/data, exits 0 without it)
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from superfactory.domain.events import EventKind
from superfactory.errors import PolicyError
from superfactory.loop.decision import DecisionLoop
from superfactory.observe.summary import summarize
from superfactory.policy.hindsight import hindsight_bound
from superfactory.policy.hindsight_fleet import (
    GANGS_HELD,
    Pool,
    down_spells,
    fleet_instance,
    fleet_pools,
    gang_granularity,
    lawful_pools,
    oversized_placements,
    usable_gpus_per_hour,
)
from superfactory.policy.hindsight_holds import failure_budget, hold_caps, knap_rows, schedule_moves
from superfactory.scenario import market_data
from superfactory.scenario.loader import builtin_text, parse_scenario
from superfactory.sim.twin import TwinResult, run_twin

HOUR_S = 3600
#: busy GPU-hours a job may take per GPU-hour of work in the bound: its work plus recomputation and restarts
#: (measured busy / productive is 1.05-1.07 on real-2023; 1.5 leaves room, so work availability never binds
#: tighter than the twin's own run did)
OVERHEAD = 1.5
#: --diagnose-v3: also solve v3's rows with each job busy exactly its gang x work (no restarts, no failures, one
#: gang): NOT a bound, a diagnosis of whether per-job volume caps could tighten v3 at all
OPTIONS = {"diagnose_v3": False, "v4": False}


def window_scenario(month: int, days: int) -> Any:
    days = min(days, calendar.monthrange(2023, month)[1])
    text = builtin_text("real-2023")
    whole = days == calendar.monthrange(2023, month)[1]
    window = f"2023-{month:02d}" if whole else f"2023-{month:02d}-01/2023-{month:02d}-{days + 1:02d}"
    text = re.sub(r"(?m)^window: .*$", f"window: {window}", text)
    text = re.sub(r"(?m)^duration: .*$", f"duration: {days}d", text)
    return parse_scenario(text, source=f"<real-2023 {month:02d} {days}d>")


def busy_cost_grid(sc: Any, r: TwinResult) -> tuple[np.ndarray, np.ndarray, list[Pool]]:
    """(USD per busy GPU-hour [pool, hour], busy GPU-hours [pool, hour], pools) from the run's hour rows."""
    pools = fleet_pools(sc.factories)
    hours = sc.duration_s // HOUR_S
    fx = {f.id: i for i, f in enumerate(sc.factories)}
    cost = np.zeros((len(pools), hours))
    busy = np.zeros((len(pools), hours))
    by_factory = defaultdict(list)
    for p, pl in enumerate(pools):
        by_factory[pl.factory].append(p)
    for row in r.hours:
        if row.hour >= hours:
            continue
        for p in by_factory[fx[row.factory]]:
            cost[p, row.hour] = pools[p].extra_w_per_gpu * row.price_usd_per_mwh / 1e6
            busy[p, row.hour] = row.busy_gpus_mean  # one pool per factory in real-2023
    return cost, busy, pools


def usable_capacity(sc: Any, r: TwinResult) -> np.ndarray:
    """GPUs any schedule on this fleet and seed can have busy per pool and hour: nodes down (from the run's
    failure events, the same in every schedule) and whole gangs (``policy/hindsight_fleet.py``)."""
    pools = fleet_pools(sc.factories)
    hours = sc.duration_s // HOUR_S
    spells = down_spells(r.events, sc.factories, sc.duration_s)
    gran = gang_granularity(sc.jobs, pools, sc.factories)
    return np.array([usable_gpus_per_hour(pl.gpus, gran[p], spells[pl.factory], hours)
                     for p, pl in enumerate(pools)])


def failure_events(r: TwinResult) -> list[tuple[int, str, str, int]]:
    return [(e.time_s, e.kind.name, e.factory, e.node) for e in r.events
            if e.kind in (EventKind.NODE_FAILED, EventKind.NODE_REPAIRED, EventKind.FACTORY_LOST,
                          EventKind.FACTORY_RESTORED)]


def hindsight(sc: Any, cost: np.ndarray, pools: list[Pool], busy: np.ndarray, aggregate: bool = True,
              capacity: np.ndarray | None = None, v1: bool = False) -> tuple[float | None, float | None, np.ndarray]:
    """(where-only bound, when-and-where bound, where-only GPU-hours per pool and hour) on the busy-GPU power
    cost of delivering ``busy`` (GPU-hours per pool and hour of a run) per accelerator type: the same busy GPUs
    per type in every hour, resp. the same busy GPU-hours per type over the window.

    ``capacity``: GPUs per pool and hour (default nameplate). ``v1``: the previous session's bound (nameplate,
    a job's busy GPU-hours at most ``OVERHEAD`` x its work, one gang per job), kept for comparison; otherwise
    every limit is one the twin provably obeys (``policy/hindsight_fleet.py``)."""
    inst = fleet_instance(sc.factories, sc.jobs, sc.duration_s, cost, None if v1 else capacity,
                          OVERHEAD if v1 else None)
    groups = defaultdict(list)
    for p, pl in enumerate(pools):
        groups[pl.accelerator].append(p)
    totals = [(tuple(ps), float(busy[ps].sum())) for ps in groups.values()]
    hourly = [(tuple(ps), busy[ps].sum(axis=0)) for ps in groups.values()]
    held = 1.0 if v1 else GANGS_HELD
    where = hindsight_bound(inst, totals, aggregate=aggregate, hourly_gpus=hourly, gangs_held=held)
    anytime = hindsight_bound(inst, totals, aggregate=aggregate, gangs_held=held).cost_usd
    return where.cost_usd, anytime, where.gpu_h


def hindsight_v3(sc: Any, cost: np.ndarray, pools: list[Pool], busy: np.ndarray, capacity: np.ndarray,
                 runs: tuple[TwinResult, ...]) -> tuple[float | None, float | None, np.ndarray, dict[str, Any]]:
    """Bound v3 (``policy/hindsight_holds.py``): v2 plus knapsack rows per pool-hour over the job sizes >= S and
    per-job busy-time caps with failure / drain / migration budgets; valid for every schedule with exact gangs,
    at most the drains and migrations of the larger of ``runs`` (the budgets it states)."""
    hours = sc.duration_s // HOUR_S
    spells = down_spells(runs[0].events, sc.factories, sc.duration_s)
    rows = knap_rows(sc.factories, sc.jobs, spells, hours)
    inst = hold_caps(sc.factories, sc.jobs, sc.duration_s, cost, capacity, sc.links)
    moves = [schedule_moves(r.events) for r in runs]
    budget = (float(failure_budget(runs[0].events, sc.factories, sc.jobs)), float(max(d for d, _ in moves)),
              float(max(m for _, m in moves)))
    groups = defaultdict(list)
    for p, pl in enumerate(pools):
        groups[pl.accelerator].append(p)
    totals = [(tuple(ps), float(busy[ps].sum())) for ps in groups.values()]
    hourly = [(tuple(ps), busy[ps].sum(axis=0)) for ps in groups.values()]
    kw = {"gangs_held": GANGS_HELD, "knap_rows": rows, "interruptions": budget}
    where = hindsight_bound(inst, totals, hourly_gpus=hourly, **kw)
    anytime = hindsight_bound(inst, totals, **kw).cost_usd
    info: dict[str, Any] = {"failures": budget[0], "drains": budget[1], "migrations": budget[2], "knap_rows": len(rows),
            "status": where.status}
    if OPTIONS["diagnose_v3"]:  # NOT a bound: each job busy exactly gang x work, one gang, no events (docs/geo.md)
        from superfactory.policy.hindsight import HindsightInstance, HindsightJob

        tight = tuple(HindsightJob(j.gpus, j.gpus * sj.work_s / HOUR_S, j.submit_h, j.pools) for j, sj in
                      zip(inst.jobs, [x for x in sc.jobs if x.submit_s < sc.duration_s
                                      and lawful_pools(x, pools, sc.factories)], strict=True))
        no_slack = HindsightInstance(inst.capacity_gpus, inst.usd_per_gpu_h, tight)
        info["where_no_overhead_one_gang_usd"] = hindsight_bound(
            no_slack, totals, hourly_gpus=hourly, gangs_held=1.0, knap_rows=rows, interruptions=(0, 0, 0)).cost_usd
    return where.cost_usd, anytime, where.gpu_h, info


def hindsight_v4(sc: Any, cost: np.ndarray, pools: list[Pool], busy: np.ndarray, capacity: np.ndarray,
                 runs: tuple[TwinResult, ...]) -> dict[str, Any]:
    """``--v4``: bound v4 (``policy/hindsight_jobs.py``: every job its own, time-indexed, continuous between the
    failures, drains, migrations and repairs it is given), where-only, with v3's caps, knapsack rows and budgets
    (drains and migrations the larger run's), solved by HiGHS's interior point. Also, NOT bounds, diagnoses of
    where its slack is: the same LP with no events at all (no job ever restarts or moves) and the share of each
    pool's busy GPU-hours the LP runs in gang slices (0.02 < x < 0.98 of a gang in an hour)."""
    from superfactory.policy.hindsight_jobs import EventBudget, job_level_bound
    from superfactory.policy.hindsight_jobs_fleet import event_budget, job_level_inputs

    hours = sc.duration_s // HOUR_S
    spells = down_spells(runs[0].events, sc.factories, sc.duration_s)
    rows = knap_rows(sc.factories, sc.jobs, spells, hours)
    ji = job_level_inputs(sc.factories, sc.jobs, sc.duration_s, cost, capacity, sc.links)
    budget = event_budget(runs[0].events, [r.events for r in runs], sc.factories, sc.jobs)
    groups = defaultdict(list)
    for p, pl in enumerate(pools):
        groups[pl.accelerator].append(p)
    totals = [(tuple(ps), float(busy[ps].sum())) for ps in groups.values()]
    hourly = [(tuple(ps), busy[ps].sum(axis=0)) for ps in groups.values()]
    c0 = time.process_time()
    where = job_level_bound(ji.inst, ji.gangs, totals, hourly, rows, budget, ji.hold_h, solver="ipm")
    cpu = time.process_time() - c0
    still = job_level_bound(ji.inst, ji.gangs, totals, hourly, rows, EventBudget(), ji.hold_h, solver="ipm")
    return {"where_busy_usd": where.cost_usd, "status": where.status, "cpu_s": cpu, "jobs": len(ji.inst.jobs),
            "budget": {"failures": budget.failures, "drains": budget.drains, "migrations": budget.migrations,
                       "repair_units": round(budget.repair_units, 3)},
            "where_no_events_usd": still.cost_usd,
            "slice_share_by_pool": [round(float(x), 3) for x in where.slice_share]}


def move_sensitivity(cost: np.ndarray, pools: list[Pool], busy: np.ndarray, capacity: np.ndarray,
                     charge_h: float) -> float:
    """How much the where-only bound would rise (relative) if every GPU entering a pool from one hour to the
    next cost ``charge_h`` busy GPU-hours there (a move's drain + restart; the twin's restart is 5 min). A
    sensitivity, not a bound: per accelerator type, without job classes, prices below 0 charged at 0."""
    base = charged = 0.0
    groups = defaultdict(list)
    for p, pl in enumerate(pools):
        groups[pl.accelerator].append(p)
    for ps in groups.values():
        need = busy[ps].sum(axis=0)
        base += _type_lp(cost[ps], capacity[ps], need, 0.0)
        charged += _type_lp(cost[ps], capacity[ps], need, charge_h)
    return charged / base - 1 if base > 0 else float("nan")


def _type_lp(cost: np.ndarray, cap: np.ndarray, need: np.ndarray, charge_h: float) -> float:
    """min sum cost*y + charge_h*max(cost, 0)*m  s.t. sum_p y[p, h] >= need[h], y <= cap, m >= y[h] - y[h-1]."""
    import highspy

    from superfactory.policy.hindsight import _set_matrix
    from superfactory.policy.relaxation import new_highs

    n, hours = cost.shape
    ny = n * hours
    iy = np.arange(ny).reshape(n, hours)
    r_need = np.repeat(np.arange(hours)[None, :], n, axis=0).ravel()
    r_move = hours + np.arange(ny)
    later = iy[:, 1:].ravel()
    rows = np.concatenate([r_need, r_move, r_move, hours + later])
    cols = np.concatenate([np.arange(ny), np.arange(ny), ny + np.arange(ny), later - 1])
    vals = np.concatenate([np.ones(ny), np.ones(ny), -np.ones(ny), -np.ones(later.size)])
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = 2 * ny, hours + ny
    lp.col_cost_ = np.concatenate([cost.ravel(), charge_h * np.maximum(cost, 0).ravel()])
    lp.col_lower_ = np.zeros(2 * ny)
    lp.col_upper_ = np.concatenate([cap.ravel(), np.full(ny, highspy.kHighsInf)])
    lp.row_lower_ = np.concatenate([np.minimum(need, cap.sum(axis=0)), np.full(ny, -highspy.kHighsInf)])
    lp.row_upper_ = np.concatenate([np.full(hours, highspy.kHighsInf), np.zeros(ny)])
    _set_matrix(lp, rows.astype(np.int64), cols.astype(np.int64), vals, 2 * ny)
    h = new_highs(None)
    h.passModel(lp)
    h.run()
    return float(h.getInfo().objective_function_value)


def pending_work_gpu_h(r: TwinResult) -> float:
    return sum(jr.job.gpus * max(0.0, jr.job.work_s - jr.progress_s) / HOUR_S for jr in r.jobs
               if jr.submitted and jr.completed_s < 0)


def max_price_wait_h(r: TwinResult) -> float:
    """Longest time a job spent pending with 'cheaper power' as its current reason, within one pending spell
    (submission/preemption/interruption -> placement or end): each reason holds until the next one or the spell's
    end, so a spell that starts as a price wait and goes on as a wait for free capacity counts only the first
    part (``DecisionLoop.MAX_REASONS_PER_JOB`` is raised in :func:`run` so that no reason is dropped)."""
    end = r.scenario.duration_s
    since: dict[str, int] = {}
    spells: list[tuple[str, int, int]] = []
    for e in r.events:
        if e.kind in (EventKind.JOB_SUBMITTED, EventKind.JOB_PREEMPTED, EventKind.JOB_INTERRUPTED):
            since.setdefault(e.job, e.time_s)
        elif e.kind is EventKind.JOB_PLACED and e.job in since:
            spells.append((e.job, since.pop(e.job), e.time_s))
        elif e.kind is EventKind.JOB_COMPLETED:
            since.pop(e.job, None)
    spells += [(j, t, end) for j, t in since.items()]
    worst = 0
    for j, a, b in spells:
        reasons = [(t, why) for t, why in r.reason_history.get(j, []) if a <= t < b]
        waited = sum((reasons[k + 1][0] if k + 1 < len(reasons) else b) - t
                     for k, (t, why) in enumerate(reasons) if "cheaper power" in why)
        worst = max(worst, waited)
    return worst / HOUR_S


def run(sc: Any, policy: str, params: dict[str, Any] | None = None) -> tuple[TwinResult, dict[str, Any], float]:
    DecisionLoop.MAX_REASONS_PER_JOB = 10**6  # every reason change, for max_price_wait_h
    c0 = time.process_time()
    r = run_twin(sc, policy=policy, policy_params=params or {})
    cpu = time.process_time() - c0
    return r, summarize(r), cpu


def _per(x: float, prod: float) -> float:
    return x / prod if prod else float("nan")


def _captured(uh: float, ug: float, ub: float) -> float:
    return (uh - ug) / (uh - ub) if uh - ub > 0 else float("nan")


def compare_window(sc: Any, job_level: bool = False, geo_params: dict[str, Any] | None = None) -> dict[str, Any]:
    w0 = time.perf_counter()
    rh, sh, cpu_h = run(sc, "home-region")
    rg, sg, cpu_g = run(sc, "geo", geo_params)
    out = measure(sc, (rh, sh, cpu_h), (rg, sg, cpu_g), job_level)
    out["wall_s"] = time.perf_counter() - w0
    return out


def measure(sc: Any, home: tuple[TwinResult, dict[str, Any], float], geo: tuple[TwinResult, dict[str, Any], float],
            job_level: bool = False) -> dict[str, Any]:
    """The figures of one window from its two runs (see the module docstring)."""
    (rh, sh, cpu_h), (rg, sg, cpu_g) = home, geo
    cost, busy_h, pools = busy_cost_grid(sc, rh)
    _cost_g, busy_g, _ = busy_cost_grid(sc, rg)
    ph, pg = sh["training_throughput"], sg["training_throughput"]
    busy_cost_h, busy_cost_g = float((cost * busy_h).sum()), float((cost * busy_g).sum())
    c0 = time.process_time()
    usable = usable_capacity(sc, rg)
    where, anytime, where_gpu_h = hindsight(sc, cost, pools, busy_g, capacity=usable)
    where_v1, anytime_v1, _ = hindsight(sc, cost, pools, busy_g, v1=True)
    cpu_b = time.process_time() - c0
    c0 = time.process_time()
    where_v3, anytime_v3, where_v3_gpu_h, v3_info = hindsight_v3(sc, cost, pools, busy_g, usable, (rg, rh))
    cpu_b3 = time.process_time() - c0
    c0 = time.process_time()
    moves = {f"{round(60 * h)}min": move_sensitivity(cost, pools, busy_g, usable, h) for h in (5 / 60, 1.0)}
    cpu_m = time.process_time() - c0
    uh, ug = _per(busy_cost_h, ph), _per(busy_cost_g, pg)

    def per(x: float | None) -> float:
        return _per(x, pg) if x is not None else float("nan")

    nameplate = np.array([pl.gpus for pl in pools], dtype=float)
    out = {
        "days": sc.duration_s / 86400,
        "power_cut": 1 - _per(sg["power_cost_usd"], pg) / _per(sh["power_cost_usd"], ph),
        "tco_cut": 1 - sg["total_usd_per_productive_gpu_hour"] / sh["total_usd_per_productive_gpu_hour"],
        "carbon_cut": 1 - _per(sg["carbon_tco2"], pg) / _per(sh["carbon_tco2"], ph),
        "throughput_ratio": pg / ph if ph else float("nan"),
        "pending_work_home_gpu_h": pending_work_gpu_h(rh),
        "pending_work_geo_gpu_h": pending_work_gpu_h(rg),
        "max_price_wait_h": max_price_wait_h(rg),
        "saving_captured": _captured(uh, ug, per(where_v3)),
        "saving_captured_anytime": _captured(uh, ug, per(anytime_v3)),
        "saving_captured_v2": _captured(uh, ug, per(where)),
        "saving_captured_anytime_v2": _captured(uh, ug, per(anytime)),
        "saving_captured_v1": _captured(uh, ug, per(where_v1)),
        "saving_captured_anytime_v1": _captured(uh, ug, per(anytime_v1)),
        "bound_below_both": bool(where is not None and anytime is not None and anytime <= where + 1e-6
                                 and where <= busy_cost_g + 1e-6 and per(where) <= uh + 1e-9),
        # v3 is a bound on both runs too, and never below v2 (it only adds rows and tightens work)
        "v3_below_both": bool(where_v3 is not None and anytime_v3 is not None and anytime_v3 <= where_v3 + 1e-6
                              and where_v3 <= busy_cost_g + 1e-6 and per(where_v3) <= uh + 1e-9),
        "v3_above_v2": bool(where_v3 is not None and where is not None and where_v3 >= where - 1e-6 * abs(where)),
        "v3_budgets": v3_info,
        "fill_bound_v3": (where_v3_gpu_h.mean(axis=1) / nameplate).round(4).tolist(),
        # the usable capacity is a fact of the fleet and seed: both runs saw the same failures, and neither run
        # had more GPUs busy in any pool-hour than it allows
        "failures_identical": failure_events(rh) == failure_events(rg),
        # ... and their busy GPUs are gang GPUs (no job was handed more nodes than its gang needs)
        "exact_gangs": not (oversized_placements(rh.events, sc.jobs, sc.factories)
                            or oversized_placements(rg.events, sc.jobs, sc.factories)),
        "busy_within_usable": bool((busy_g <= usable + 1e-6).all() and (busy_h <= usable + 1e-6).all()),
        "usable_share_of_nameplate": (usable.mean(axis=1) / nameplate).round(4).tolist(),
        "fill_geo": (busy_g.mean(axis=1) / nameplate).round(4).tolist(),
        "fill_bound": (where_gpu_h.mean(axis=1) / nameplate).round(4).tolist(),
        "pools": [f"{sc.factories[pl.factory].id}:{pl.accelerator}" for pl in pools],
        "move_sensitivity": moves,
        # where geo's busy cost exceeds the where-only bound's, pool by pool (sums to geo - bound): positive where
        # geo kept GPUs busy in hours the bound moved them elsewhere
        "gap_by_pool_usd": (cost * (busy_g - where_gpu_h)).sum(axis=1).round(0).tolist(),
        # raw sums, for the year line
        "home": {"power_usd": sh["power_cost_usd"], "total_usd": sh["total_cost_usd"], "tco2": sh["carbon_tco2"],
                 "prod_gpu_h": ph, "busy_usd": busy_cost_h, "ettr": sh["ettr"], "cpu_s": cpu_h,
                 "failure_ettr": sh["failure_ettr"], "policy_wait_share": sh["policy_wait_share"]},
        "geo": {"power_usd": sg["power_cost_usd"], "total_usd": sg["total_cost_usd"], "tco2": sg["carbon_tco2"],
                "prod_gpu_h": pg, "busy_usd": busy_cost_g, "ettr": sg["ettr"], "cpu_s": cpu_g,
                "failure_ettr": sg["failure_ettr"], "policy_wait_share": sg["policy_wait_share"],
                "migrations": sg["migrations"], "preemptions": sg["preemptions"]},
        "bound_where_busy_usd": where,
        "bound_anytime_busy_usd": anytime,
        "bound_where_v3_busy_usd": where_v3,
        "bound_anytime_v3_busy_usd": anytime_v3,
        "bound_v3_cpu_s": cpu_b3,
        "bound_where_v1_busy_usd": where_v1,
        "bound_anytime_v1_busy_usd": anytime_v1,
        "bound_cpu_s": cpu_b,
        "move_sensitivity_cpu_s": cpu_m,
    }
    if OPTIONS["v4"]:
        c0 = time.process_time()
        out["v4"] = v4 = hindsight_v4(sc, cost, pools, busy_g, usable, (rg, rh))
        v4["saving_captured"] = _captured(uh, ug, per(v4["where_busy_usd"]))
        v4["saving_captured_no_events"] = _captured(uh, ug, per(v4["where_no_events_usd"]))
        v4["cpu_total_s"] = time.process_time() - c0
    if job_level:  # every job its own class: never below the aggregated bound, and as costly to solve as it gets
        c0 = time.process_time()
        jw, ja, _ = hindsight(sc, cost, pools, busy_g, aggregate=False, capacity=usable)
        out["job_level"] = {"where_busy_usd": jw, "anytime_busy_usd": ja, "cpu_s": time.process_time() - c0}
    return out


def year_line(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    h = {k: sum(r["home"][k] for r in rows.values()) for k in ("power_usd", "total_usd", "tco2", "prod_gpu_h",
                                                               "busy_usd")}
    g = {k: sum(r["geo"][k] for r in rows.values()) for k in h}
    def bound(key: str) -> float:
        return sum(r.get(key) or float("nan") for r in rows.values())

    bw3, ba3 = bound("bound_where_v3_busy_usd"), bound("bound_anytime_v3_busy_usd")
    bw, ba = bound("bound_where_busy_usd"), bound("bound_anytime_busy_usd")
    bw1, ba1 = bound("bound_where_v1_busy_usd"), bound("bound_anytime_v1_busy_usd")
    uh, ug = h["busy_usd"] / h["prod_gpu_h"], g["busy_usd"] / g["prod_gpu_h"]
    return {
        "days": sum(r["days"] for r in rows.values()),
        "power_cut": 1 - (g["power_usd"] / g["prod_gpu_h"]) / (h["power_usd"] / h["prod_gpu_h"]),
        "tco_cut": 1 - (g["total_usd"] / g["prod_gpu_h"]) / (h["total_usd"] / h["prod_gpu_h"]),
        "carbon_cut": 1 - (g["tco2"] / g["prod_gpu_h"]) / (h["tco2"] / h["prod_gpu_h"]),
        "throughput_ratio": g["prod_gpu_h"] / h["prod_gpu_h"],
        "pending_work_home_gpu_h": sum(r["pending_work_home_gpu_h"] for r in rows.values()),
        "pending_work_geo_gpu_h": sum(r["pending_work_geo_gpu_h"] for r in rows.values()),
        "max_price_wait_h": max(r["max_price_wait_h"] for r in rows.values()),
        "saving_captured": _captured(uh, ug, bw3 / g["prod_gpu_h"]),
        "saving_captured_anytime": _captured(uh, ug, ba3 / g["prod_gpu_h"]),
        "saving_captured_v2": _captured(uh, ug, bw / g["prod_gpu_h"]),
        "saving_captured_anytime_v2": _captured(uh, ug, ba / g["prod_gpu_h"]),
        "saving_captured_v1": _captured(uh, ug, bw1 / g["prod_gpu_h"]),
        "saving_captured_anytime_v1": _captured(uh, ug, ba1 / g["prod_gpu_h"]),
        "months_tco_not_above_home": sum(r["tco_cut"] >= 0 for r in rows.values()),
        "months_throughput_ok": sum(r["throughput_ratio"] >= 0.99 for r in rows.values()),
        "months_pending_ok": sum(r["pending_work_geo_gpu_h"] <= r["pending_work_home_gpu_h"] for r in rows.values()),
        "months": len(rows),
        "cpu_s": sum(r["home"]["cpu_s"] + r["geo"]["cpu_s"] + r["bound_cpu_s"] + r.get("move_sensitivity_cpu_s", 0)
                     for r in rows.values()),
        "cpu_s_geo": sum(r["geo"]["cpu_s"] for r in rows.values()),
        "cpu_s_home": sum(r["home"]["cpu_s"] for r in rows.values()),
        "cpu_s_bounds": sum(r["bound_cpu_s"] + r.get("bound_v3_cpu_s", 0) for r in rows.values()),
        "wall_s": sum(r["wall_s"] for r in rows.values()),
    }


KEYS = ("power_cut", "tco_cut", "carbon_cut", "throughput_ratio", "pending_work_home_gpu_h",
        "pending_work_geo_gpu_h", "max_price_wait_h", "saving_captured", "saving_captured_v2", "saving_captured_v1",
        "saving_captured_anytime", "saving_captured_anytime_v2", "saving_captured_anytime_v1")


def frontier(month: int, days: int) -> list[dict[str, Any]]:
    sc = window_scenario(month, days)
    out = []
    _rh, sh, _ = run(sc, "home-region")
    out.append({"policy": "home-region", "value": "-", "carbon_usd_per_t": "-", **_point(sh)})
    for value in (0.02, 0.1, 0.5, None, 10.0):
        for carbon in (0.0, 100.0):
            _, s, _ = run(sc, "geo", {"value_usd_per_gpu_hour": value, "beta_usd_per_tco2": carbon})
            out.append({"policy": "geo", "value": "capital" if value is None else value,
                        "carbon_usd_per_t": carbon, **_point(s)})
            print(" ".join(f"{k}={v}" for k, v in out[-1].items()), flush=True)
    return out


def year_scenario(days: int) -> Any:
    """real-2023 over ``days`` days from 2023-01-01 in one run (365: the whole year)."""
    text = builtin_text("real-2023")
    window = "'2023'" if days == 365 else f"2023-01-01/{_date(days)}"  # quoted: YAML reads 2023 as a number
    text = re.sub(r"(?m)^window: .*$", f"window: {window}", text)
    text = re.sub(r"(?m)^duration: .*$", f"duration: {days}d", text)
    return parse_scenario(text, source=f"<real-2023 continuous {days}d>")


def _date(days: int) -> str:
    import datetime

    return (datetime.date(2023, 1, 1) + datetime.timedelta(days=days)).isoformat()


def continuous(days: int, out: Path) -> int:
    """One continuous run (no restart from the t=0 backlog each month): the window's figures only (productive
    GPU-hours are not split by month in a run's summary)."""
    sc = year_scenario(days)
    w0 = time.perf_counter()
    home, geo = run(sc, "home-region"), run(sc, "geo")
    r = measure(sc, home, geo)
    r["wall_s"] = time.perf_counter() - w0
    print(f"continuous=2023 days={r['days']:g} " + " ".join(f"{k}={r[k]:.4g}" for k in KEYS)
          + f" bound_below_both={r['bound_below_both']} failures_identical={r['failures_identical']} "
          f"busy_within_usable={r['busy_within_usable']} exact_gangs={r['exact_gangs']} "
          f"cpu_s_home={r['home']['cpu_s']:.1f} "
          f"cpu_s_geo={r['geo']['cpu_s']:.1f} cpu_s_bound={r['bound_cpu_s']:.1f} wall_s={r['wall_s']:.0f}")
    out.write_text(json.dumps({"continuous_days": days, "window": r}, indent=1, default=str))
    return 0


def _point(s: dict[str, Any]) -> dict[str, Any]:
    return {"prod_gpu_h": round(s["training_throughput"]), "power_usd": round(s["power_cost_usd"]),
            "power_usd_per_prod_gpu_h": round(s["power_cost_usd"] / s["training_throughput"], 4),
            "total_usd_per_prod_gpu_h": round(s["total_usd_per_productive_gpu_hour"], 4),
            "kgco2_per_prod_gpu_h": round(1000 * s["carbon_tco2"] / s["training_throughput"], 3),
            "ettr": round(s["ettr"], 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", default="all", help="comma-separated months 1-12, or 'all'")
    ap.add_argument("--days", type=int, default=31, help="days simulated from the 1st of each month (31 = all)")
    ap.add_argument("--job-level", action="store_true", help="also solve the job-level bounds (slower)")
    ap.add_argument("--nice", type=int, default=5, help="lower this process's priority by this much (shared host)")
    ap.add_argument("--continuous", type=int, default=0, metavar="DAYS",
                    help="instead: one continuous run of DAYS days from 2023-01-01 (365 = the year)")
    ap.add_argument("--frontier", action="store_true", help="sweep value of a GPU-hour x carbon price instead")
    ap.add_argument("--frontier-month", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--geo-params", default="{}", metavar="JSON",
                    help='geo\'s parameters for the monthly windows, e.g. \'{"capacity_change": 0.02}\' (a variant)')
    ap.add_argument("--diagnose-v3", action="store_true",
                    help="also solve v3's rows with no overhead at all (not a bound; v3_budgets."
                         "where_no_overhead_one_gang_usd)")
    ap.add_argument("--v4", action="store_true",
                    help="also solve bound v4 (job level, continuity; minutes per 7-day window) and its no-event "
                         "diagnosis; reported, not the headline")
    ap.add_argument("--merge", type=Path, action="append", default=[],
                    help="JSON of an earlier run whose months are taken as measured (repeatable)")
    args = ap.parse_args()
    if market_data.data_root() is None:
        print("geo_economics_bench: ../shared/data/green-dcc-2023 is absent; nothing to measure")
        return 0
    try:
        months = list(range(1, 13)) if args.months == "all" else [int(m) for m in args.months.split(",") if m]
        if (not (months or args.merge) or any(not 1 <= m <= 12 for m in months) or not 1 <= args.days <= 31
                or not 0 <= args.continuous <= 365):
            raise ValueError
        geo_params = json.loads(args.geo_params)
        if not isinstance(geo_params, dict):
            raise ValueError
    except ValueError:
        print("geo_economics_bench: --months takes 'all' or months 1-12 separated by commas; --days 1-31; "
              "--continuous 1-365; --geo-params a JSON object of geo's parameters",
              file=sys.stderr)
        return 2
    OPTIONS["diagnose_v3"] = args.diagnose_v3
    OPTIONS["v4"] = args.v4
    results = Path(__file__).parent / "results"
    if args.nice > 0:
        os.nice(args.nice)
    if args.frontier:
        pts = frontier(args.frontier_month, args.days)
        print("| policy | value $/GPU-h | carbon $/t | productive GPU-h | power $/prod GPU-h | TCO $/prod GPU-h "
              "| kgCO2/prod GPU-h | ETTR |\n|---|---|---|---|---|---|---|---|")
        for p in pts:
            print(f"| {p['policy']} | {p['value']} | {p['carbon_usd_per_t']} | {p['prod_gpu_h']:,} | "
                  f"{p['power_usd_per_prod_gpu_h']} | {p['total_usd_per_prod_gpu_h']} | {p['kgco2_per_prod_gpu_h']} "
                  f"| {p['ettr']} |")
        out = args.out or results / "geo_frontier.json"
        out.write_text(json.dumps({"month": args.frontier_month, "days": args.days, "points": pts}, indent=1))
        return 0
    if args.continuous:
        return continuous(args.continuous, args.out or results / "geo_economics_continuous.json")
    out = args.out or results / "geo_economics.json"
    rows: dict[str, dict[str, Any]] = {}
    for part in args.merge:  # months measured by earlier runs (e.g. two halves of the year)
        rows.update(json.loads(part.read_text())["by_month"])
    for m in months:
        if f"2023-{m:02d}" in rows:
            continue
        sc = window_scenario(m, args.days)
        try:
            rows[f"2023-{m:02d}"] = r = compare_window(sc, args.job_level, geo_params)
        except (PolicyError, ValueError) as e:  # a parameter geo does not take, or a value it refuses
            print(f"geo_economics_bench: --geo-params: {e}", file=sys.stderr)
            return 2
        # after every month, so an interrupted run keeps what it measured (--merge reads it back)
        out.write_text(json.dumps({"days": args.days, "months": months, "by_month": rows}, indent=1, default=str))
        print(f"month=2023-{m:02d} days={r['days']:g} " + " ".join(f"{k}={r[k]:.4g}" for k in KEYS)
              + f" bound_below_both={r['bound_below_both']} v3_below_both={r['v3_below_both']} "
              f"v3_above_v2={r['v3_above_v2']} failures_identical={r['failures_identical']} "
              f"busy_within_usable={r['busy_within_usable']} exact_gangs={r['exact_gangs']} move_sensitivity_5min="
              f"{r['move_sensitivity']['5min']:.4f} move_sensitivity_60min={r['move_sensitivity']['60min']:.4f} "
              f"cpu_s_home={r['home']['cpu_s']:.1f} "
              f"cpu_s_geo={r['geo']['cpu_s']:.1f} cpu_s_bound={r['bound_cpu_s']:.1f} wall_s={r['wall_s']:.0f}"
              + (f" job_level_where_usd={r['job_level']['where_busy_usd']:.0f} where_usd="
                 f"{r['bound_where_busy_usd']:.0f} job_level_cpu_s={r['job_level']['cpu_s']:.1f}"
                 if "job_level" in r else "")
              + (f" v4_where_usd={r['v4']['where_busy_usd']:.0f} v3_where_usd={r['bound_where_v3_busy_usd']:.0f} "
                 f"saving_captured_v4={r['v4']['saving_captured']:.4g} v4_no_events_usd="
                 f"{r['v4']['where_no_events_usd']:.0f} saving_captured_v4_no_events="
                 f"{r['v4']['saving_captured_no_events']:.4g} v4_slice_share={r['v4']['slice_share_by_pool']} "
                 f"v4_cpu_s={r['v4']['cpu_s']:.1f}" if "v4" in r else ""), flush=True)
    rows = dict(sorted(rows.items()))
    y = year_line(rows)
    whole = args.days >= 31 and len(rows) == 12
    print(f"year=2023 {'whole_year' if whole else 'sample'}_days={y['days']:g} months={y['months']} "
          + " ".join(f"{k}={y[k]:.4g}" for k in KEYS)
          + f" months_tco_not_above_home={y['months_tco_not_above_home']} months_throughput_ok="
          f"{y['months_throughput_ok']} months_pending_ok={y['months_pending_ok']} cpu_s={y['cpu_s']:.0f} "
          f"wall_s={y['wall_s']:.0f}")
    print("\n| month | power cut | TCO cut | carbon cut | throughput ratio | pending home / geo (M GPU-h) "
          "| max price wait h | saving captured (bound v3 / v2 / v1) | anytime (v3 / v2 / v1) "
          "| geo migrations / pauses |\n"
          + "|---" * 10 + "|")
    for name, r in [*rows.items(), ("year", {**y, "geo": {"migrations": sum(x["geo"]["migrations"] for x in
                                                                              rows.values()),
                                                          "preemptions": sum(x["geo"]["preemptions"] for x in
                                                                             rows.values())}})]:
        print(f"| {name} | {r['power_cut']:.1%} | {r['tco_cut']:.1%} | {r['carbon_cut']:.1%} | "
              f"{r['throughput_ratio']:.3f} | {r['pending_work_home_gpu_h'] / 1e6:.2f} / "
              f"{r['pending_work_geo_gpu_h'] / 1e6:.2f} | {r['max_price_wait_h']:.1f} | {r['saving_captured']:.2f} / "
              f"{r['saving_captured_v2']:.2f} / {r['saving_captured_v1']:.2f} | {r['saving_captured_anytime']:.2f} / "
              f"{r['saving_captured_anytime_v2']:.2f} / {r['saving_captured_anytime_v1']:.2f} | "
              f"{r['geo']['migrations']} / {r['geo']['preemptions']} |")
    out.write_text(json.dumps({"days": args.days, "months": sorted(rows), "by_month": rows, "year": y}, indent=1,
                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
