"""geo against home-region on the real-data fleet (``real-2023``), month by month, with a perfect-hindsight bound.

For each month asked (``--months``), the first ``--days`` days of that month of 2023 are simulated under
``home-region`` and ``geo`` (same seed, same jobs, real prices and carbon). Printed per month and for all months
together ("year" = the sum over the simulated windows; it is the whole of 2023 only with ``--days 31`` and all
twelve months, and a sample of it otherwise: the output says which):

- ``power_cut``: 1 - geo's power cost per productive GPU-hour / home-region's;
- ``tco_cut``: the same for total cost (capital from the catalog + power, ``observe/tco.py``);
- ``carbon_cut``: the same for tCO2 per productive GPU-hour;
- ``throughput_ratio``: geo's productive GPU-hours / home-region's;
- ``pending_work_*_gpu_h``: work submitted and not done at the end (GPU-hours);
- ``max_price_wait_h``: geo's longest pending spell during which it said it waited for cheaper power;
- ``saving_captured``: on the busy-GPU part of the power bill (the part a schedule changes; the idle floor is the
  same fleet's), per productive GPU-hour: (home - geo) / (home - bound), where the bound is
  :func:`superfactory.policy.hindsight.hindsight_bound` with the true prices, the same fleet and jobs, delivering
  geo's productive GPU-hours. ``bound_below_both`` checks that the bound is below both policies' busy cost.

``--frontier`` instead sweeps geo's value of a GPU-hour x carbon price on one window and prints throughput,
power cost, TCO and carbon per point (the table in docs/geo.md).

Usage: python benchmarks/geo_economics_bench.py [--months 1,2,...|all] [--days 7] [--frontier]
(writes benchmarks/results/geo_economics.json or geo_frontier.json; needs ../shared/data, exits 0 without it)
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from superfactory.domain.events import EventKind
from superfactory.observe.summary import summarize
from superfactory.policy.feasibility import sovereignty_refusal
from superfactory.policy.hindsight import HindsightInstance, HindsightJob, hindsight_bound
from superfactory.scenario import market_data
from superfactory.scenario.loader import builtin_text, parse_scenario
from superfactory.sim.twin import TwinResult, run_twin

HOUR_S = 3600


def window_scenario(month: int, days: int) -> Any:
    days = min(days, calendar.monthrange(2023, month)[1])
    text = builtin_text("real-2023")
    whole = days == calendar.monthrange(2023, month)[1]
    window = f"2023-{month:02d}" if whole else f"2023-{month:02d}-01/2023-{month:02d}-{days + 1:02d}"
    text = re.sub(r"(?m)^window: .*$", f"window: {window}", text)
    text = re.sub(r"(?m)^duration: .*$", f"duration: {days}d", text)
    return parse_scenario(text, source=f"<real-2023 {month:02d} {days}d>")


def _pools(sc: Any) -> list[tuple[int, str, float, int]]:
    """(factory index, accelerator, extra facility W per busy GPU, GPUs) per pool."""
    out = []
    for i, f in enumerate(sc.factories):
        for acc in f.accelerators:
            s = f.clusters_of(acc)[0].system
            extra_w = (s.training_power_per_node_w - s.idle_power_per_node_w) / s.gpus_per_node * f.pue
            out.append((i, acc, extra_w, f.gpus_of(acc)))
    return out


def busy_cost_grid(sc: Any, r: TwinResult) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, float, int]]]:
    """(USD per busy GPU-hour [pool, hour], busy GPU-hours [pool, hour], pools) from the run's hour rows."""
    pools = _pools(sc)
    hours = sc.duration_s // HOUR_S
    fx = {f.id: i for i, f in enumerate(sc.factories)}
    cost = np.zeros((len(pools), hours))
    busy = np.zeros((len(pools), hours))
    by_factory = defaultdict(list)
    for p, (i, _acc, _w, _g) in enumerate(pools):
        by_factory[i].append(p)
    for row in r.hours:
        if row.hour >= hours:
            continue
        for p in by_factory[fx[row.factory]]:
            cost[p, row.hour] = pools[p][2] * row.price_usd_per_mwh / 1e6
            busy[p, row.hour] = row.busy_gpus_mean  # one pool per factory in real-2023
    return cost, busy, pools


def hindsight(sc: Any, cost: np.ndarray, pools: list[tuple[int, str, float, int]], target_gpu_h: float
              ) -> float | None:
    jobs = []
    for j in sc.jobs:
        ok = tuple(p for p, (i, acc, _w, g) in enumerate(pools)
                   if acc == j.accelerator and g >= j.gpus and sovereignty_refusal(j, sc.factories[i]) is None)
        if ok and j.submit_s < sc.duration_s:
            jobs.append(HindsightJob(j.gpus, j.gpus * j.work_s / HOUR_S, j.submit_s // HOUR_S, ok))
    cap = np.array([[g] * cost.shape[1] for (_i, _a, _w, g) in pools], dtype=float)
    return hindsight_bound(HindsightInstance(cap, cost, tuple(jobs)), target_gpu_h).cost_usd


def pending_work_gpu_h(r: TwinResult) -> float:
    return sum(jr.job.gpus * max(0.0, jr.job.work_s - jr.progress_s) / HOUR_S for jr in r.jobs
               if jr.submitted and jr.completed_s < 0)


def max_price_wait_h(r: TwinResult) -> float:
    """Longest pending spell (submission/preemption/interruption -> placement or end) in which the policy gave
    'cheaper power' as the reason."""
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
        if any(a <= t < b and "cheaper power" in why for t, why in r.reason_history.get(j, [])):
            worst = max(worst, b - a)
    return worst / HOUR_S


def run(sc: Any, policy: str, params: dict[str, Any] | None = None) -> tuple[TwinResult, dict[str, Any], float]:
    c0 = time.process_time()
    r = run_twin(sc, policy=policy, policy_params=params or {})
    cpu = time.process_time() - c0
    return r, summarize(r), cpu


def _per(x: float, prod: float) -> float:
    return x / prod if prod else float("nan")


def compare_window(sc: Any) -> dict[str, Any]:
    rh, sh, cpu_h = run(sc, "home-region")
    rg, sg, cpu_g = run(sc, "geo")
    cost, busy_h, pools = busy_cost_grid(sc, rh)
    _cost_g, busy_g, _ = busy_cost_grid(sc, rg)
    ph, pg = sh["training_throughput"], sg["training_throughput"]
    busy_cost_h, busy_cost_g = float((cost * busy_h).sum()), float((cost * busy_g).sum())
    bound = hindsight(sc, cost, pools, pg)
    uh, ug = _per(busy_cost_h, ph), _per(busy_cost_g, pg)
    ub = _per(bound, pg) if bound is not None else float("nan")
    return {
        "days": sc.duration_s / 86400,
        "power_cut": 1 - _per(sg["power_cost_usd"], pg) / _per(sh["power_cost_usd"], ph),
        "tco_cut": 1 - sg["total_usd_per_productive_gpu_hour"] / sh["total_usd_per_productive_gpu_hour"],
        "carbon_cut": 1 - _per(sg["carbon_tco2"], pg) / _per(sh["carbon_tco2"], ph),
        "throughput_ratio": pg / ph if ph else float("nan"),
        "pending_work_home_gpu_h": pending_work_gpu_h(rh),
        "pending_work_geo_gpu_h": pending_work_gpu_h(rg),
        "max_price_wait_h": max_price_wait_h(rg),
        "saving_captured": (uh - ug) / (uh - ub) if uh - ub > 0 else float("nan"),
        "bound_below_both": bool(bound is not None and bound <= busy_cost_g + 1e-6
                                 and bound * ph / pg <= busy_cost_h + 1e-6),
        # raw sums, for the year line
        "home": {"power_usd": sh["power_cost_usd"], "total_usd": sh["total_cost_usd"], "tco2": sh["carbon_tco2"],
                 "prod_gpu_h": ph, "busy_usd": busy_cost_h, "ettr": sh["ettr"], "cpu_s": cpu_h,
                 "failure_ettr": sh["failure_ettr"], "policy_wait_share": sh["policy_wait_share"]},
        "geo": {"power_usd": sg["power_cost_usd"], "total_usd": sg["total_cost_usd"], "tco2": sg["carbon_tco2"],
                "prod_gpu_h": pg, "busy_usd": busy_cost_g, "ettr": sg["ettr"], "cpu_s": cpu_g,
                "failure_ettr": sg["failure_ettr"], "policy_wait_share": sg["policy_wait_share"],
                "migrations": sg["migrations"], "preemptions": sg["preemptions"]},
        "bound_busy_usd": bound,
    }


def year_line(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    h = {k: sum(r["home"][k] for r in rows.values()) for k in ("power_usd", "total_usd", "tco2", "prod_gpu_h",
                                                               "busy_usd")}
    g = {k: sum(r["geo"][k] for r in rows.values()) for k in h}
    b = sum(r["bound_busy_usd"] or float("nan") for r in rows.values())
    uh, ug, ub = h["busy_usd"] / h["prod_gpu_h"], g["busy_usd"] / g["prod_gpu_h"], b / g["prod_gpu_h"]
    return {
        "days": sum(r["days"] for r in rows.values()),
        "power_cut": 1 - (g["power_usd"] / g["prod_gpu_h"]) / (h["power_usd"] / h["prod_gpu_h"]),
        "tco_cut": 1 - (g["total_usd"] / g["prod_gpu_h"]) / (h["total_usd"] / h["prod_gpu_h"]),
        "carbon_cut": 1 - (g["tco2"] / g["prod_gpu_h"]) / (h["tco2"] / h["prod_gpu_h"]),
        "throughput_ratio": g["prod_gpu_h"] / h["prod_gpu_h"],
        "pending_work_home_gpu_h": sum(r["pending_work_home_gpu_h"] for r in rows.values()),
        "pending_work_geo_gpu_h": sum(r["pending_work_geo_gpu_h"] for r in rows.values()),
        "max_price_wait_h": max(r["max_price_wait_h"] for r in rows.values()),
        "saving_captured": (uh - ub and (uh - ug) / (uh - ub)),
        "months_tco_not_above_home": sum(r["tco_cut"] >= 0 for r in rows.values()),
        "months": len(rows),
    }


KEYS = ("power_cut", "tco_cut", "carbon_cut", "throughput_ratio", "pending_work_home_gpu_h",
        "pending_work_geo_gpu_h", "max_price_wait_h", "saving_captured")


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


def _point(s: dict[str, Any]) -> dict[str, Any]:
    return {"prod_gpu_h": round(s["training_throughput"]), "power_usd": round(s["power_cost_usd"]),
            "power_usd_per_prod_gpu_h": round(s["power_cost_usd"] / s["training_throughput"], 4),
            "total_usd_per_prod_gpu_h": round(s["total_usd_per_productive_gpu_hour"], 4),
            "kgco2_per_prod_gpu_h": round(1000 * s["carbon_tco2"] / s["training_throughput"], 3),
            "ettr": round(s["ettr"], 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", default="all", help="comma-separated months 1-12, or 'all'")
    ap.add_argument("--days", type=int, default=7, help="days simulated from the 1st of each month (max 31)")
    ap.add_argument("--frontier", action="store_true", help="sweep value of a GPU-hour x carbon price instead")
    ap.add_argument("--frontier-month", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if market_data.data_root() is None:
        print("geo_economics_bench: ../shared/data/green-dcc-2023 is absent; nothing to measure")
        return 0
    try:
        months = list(range(1, 13)) if args.months == "all" else [int(m) for m in args.months.split(",")]
        if not months or any(not 1 <= m <= 12 for m in months) or not 1 <= args.days <= 31:
            raise ValueError
    except ValueError:
        print("geo_economics_bench: --months takes 'all' or months 1-12 separated by commas; --days 1-31",
              file=sys.stderr)
        return 2
    results = Path(__file__).parent / "results"
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
    rows: dict[str, dict[str, Any]] = {}
    for m in months:
        sc = window_scenario(m, args.days)
        rows[f"2023-{m:02d}"] = r = compare_window(sc)
        print(f"month=2023-{m:02d} days={r['days']:g} " + " ".join(f"{k}={r[k]:.4g}" for k in KEYS)
              + f" bound_below_both={r['bound_below_both']} cpu_s_home={r['home']['cpu_s']:.1f} "
              f"cpu_s_geo={r['geo']['cpu_s']:.1f}", flush=True)
    y = year_line(rows)
    print(f"year=2023 sample_days={y['days']:g} months={y['months']} " + " ".join(f"{k}={y[k]:.4g}" for k in KEYS)
          + f" months_tco_not_above_home={y['months_tco_not_above_home']}")
    out = args.out or results / "geo_economics.json"
    out.write_text(json.dumps({"days": args.days, "months": months, "by_month": rows, "year": y}, indent=1,
                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
