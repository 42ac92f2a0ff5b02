"""Geo placement solver benchmark: optimality gap and cycle time of the HiGHS pipeline.

Instances (``synthetic_instance``): ``m`` factories, each with one or two accelerator pools (4 types) of
2k-20k GPUs, a market price (USD/MWh, log-normal around 45), a PUE and a power cap; ``n`` training jobs of
8-4096 GPUs, 30 % of them running somewhere now (their current column is free to keep, moving costs a
migration), 10 % carrying a data class only a third of the factories are cleared for. Column cost = energy
cost of the next ``horizon`` hours + carbon + latency + migration; the wait column costs the job's queueing
penalty. Demand is ~1.1x capacity so capacity binds and some jobs wait.

Measured:
- 1k x 20: the pipeline (LP -> rounding -> restricted MILP) against the exact MILP (HiGHS, gap 0).
- 10k x 50: cold cycle, then warm cycles after a typical change (prices of 5 factories move +-20 %, 1 % of
  jobs leave and 1 % arrive), gap vs the LP bound.
- 100k x 50: one cold and one warm cycle (reported, no goal).

Run: ``.venv/bin/python benchmarks/geo_solver_bench.py [--quick]``; writes benchmarks/results/geo_solver.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import highspy
import numpy as np

from superfactory.policy import solver as S

ACCELS = 4


def synthetic_instance(n: int, m: int, seed: int) -> S.AssignmentProblem:
    rng = np.random.default_rng(seed)
    f_acc = [rng.choice(ACCELS, size=int(rng.integers(1, 3)), replace=False) for _ in range(m)]
    pool_gpus = {(f, int(a)): int(rng.integers(2_000, 20_000)) for f in range(m) for a in f_acc[f]}
    pool_row = {k: i for i, k in enumerate(sorted(pool_gpus))}
    n_pool = len(pool_row)
    price = rng.lognormal(np.log(45.0), 0.35, m)
    pue = rng.uniform(1.08, 1.35, m)
    carbon = rng.uniform(20, 500, m)
    cleared = rng.random(m) < 0.33
    cleared[0] = True
    kw_per_gpu = 1.2
    cap_gpu = np.array([pool_gpus[k] for k in sorted(pool_gpus)], dtype=float)
    power_cap_kw = np.zeros(m)
    for (f, _a), g in pool_gpus.items():
        power_cap_kw[f] += g * kw_per_gpu * pue[f]
    power_cap_kw *= rng.uniform(0.85, 1.0, m)  # some factories are power-limited below their GPU count
    sizes = np.array([8, 64, 256, 512, 1024, 2048, 4096])
    weights = np.array([20, 20, 20, 15, 12, 8, 5], dtype=float)
    gpus = rng.choice(sizes, size=n, p=weights / weights.sum()).astype(float)
    demand_scale = 1.1 * cap_gpu.sum() / gpus.sum()
    gpus = np.maximum(8, np.round(gpus * demand_scale / 8) * 8)
    accel = rng.integers(0, ACCELS, n)
    # make every job's accelerator exist somewhere
    present = sorted({int(a) for f in range(m) for a in f_acc[f]})
    accel = np.array(present)[accel % len(present)]
    sovereign = rng.random(n) < 0.10
    horizon_h = 6.0
    job_ptr = [0]
    col_bin: list[int] = []
    col_cost: list[float] = []
    col_rows: list[tuple[int, int]] = []
    col_use: list[tuple[float, float]] = []
    current = np.full(n, -1, dtype=np.int64)
    for j in range(n):
        a = int(accel[j])
        feas = [f for f in range(m) if (f, a) in pool_gpus and pool_gpus[(f, a)] >= gpus[j]
                and (cleared[f] or not sovereign[j])]
        running = rng.random() < 0.3 and feas
        cur = int(rng.choice(feas)) if running else -1
        mw = gpus[j] * kw_per_gpu / 1000.0
        for f in feas:
            usd_per_mwh = price[f] * rng.uniform(0.97, 1.03) + carbon[f] * 0.05  # carbon at $50/t
            cost = mw * pue[f] * horizon_h * usd_per_mwh
            if running and f != cur:
                cost += mw * horizon_h * 5.0  # migration: checkpoint transfer + restart
            if running and f == cur:
                current[j] = len(col_bin)
            col_bin.append(f)
            col_cost.append(cost)
            col_rows.append((pool_row[(f, a)], n_pool + f))
            col_use.append((gpus[j], gpus[j] * kw_per_gpu * pue[f]))
        col_bin.append(-1)
        col_cost.append(mw * 1.35 * horizon_h * rng.uniform(60, 140))  # queueing penalty per job
        col_rows.append((-1, -1))
        col_use.append((0.0, 0.0))
        job_ptr.append(len(col_bin))
    return S.AssignmentProblem(
        np.array(job_ptr, dtype=np.int64), np.array(col_bin, dtype=np.int64), np.array(col_cost),
        np.array(col_rows, dtype=np.int64), np.array(col_use), np.concatenate([cap_gpu, power_cap_kw]),
        np.arange(n, dtype=np.int64), current,
    )


def perturb(p: S.AssignmentProblem, seed: int, n_factories_moved: int = 5, churn: float = 0.01,
            ) -> S.AssignmentProblem:
    """A typical change between cycles: some prices move, ``churn`` of jobs leave and as many arrive."""
    rng = np.random.default_rng(seed)
    m = int(p.col_bin.max()) + 1
    factor = np.ones(m + 1)
    moved = rng.choice(m, size=min(n_factories_moved, m), replace=False)
    factor[moved] = rng.uniform(0.8, 1.2, moved.size)
    cost = p.col_cost * factor[p.col_bin]  # col_bin -1 -> factor[-1] = 1 (wait column unchanged)
    n = p.n_jobs
    k = max(1, int(churn * n))
    leave = np.sort(rng.choice(n, size=k, replace=False))
    keep_job = np.ones(n, dtype=bool)
    keep_job[leave] = False
    col_job = p.col_job()
    keep_col = keep_job[col_job]
    # arrivals: copies of k random jobs (same shapes and feasible factories) with new identities
    src = np.sort(rng.choice(n, size=k, replace=False))
    src_cols = np.concatenate([np.arange(p.job_ptr[j], p.job_ptr[j + 1]) for j in src])
    cols = np.concatenate([np.flatnonzero(keep_col), src_cols])
    new_ptr = np.zeros(int(keep_job.sum()) + k + 1, dtype=np.int64)
    np.cumsum(np.concatenate([np.diff(p.job_ptr)[keep_job], np.diff(p.job_ptr)[src]]), out=new_ptr[1:])
    n_kept_cols = int(keep_col.sum())
    cur_old = p.current[keep_job]
    cur = np.full(new_ptr.size - 1, -1, dtype=np.int64)
    has = np.flatnonzero(cur_old >= 0)
    cur[has] = np.searchsorted(cols[:n_kept_cols], cur_old[has])
    keys = np.concatenate([p.job_keys[keep_job], int(p.job_keys.max()) + 1 + np.arange(k)])
    return S.AssignmentProblem(new_ptr, p.col_bin[cols], cost[cols], p.col_rows[cols], p.col_use[cols],
                               p.row_cap, keys, cur)


def exact_milp(p: S.AssignmentProblem, time_limit_s: float = 600.0) -> tuple[float, float]:
    """The exact MILP optimum (HiGHS, relative gap 0): (objective, proven dual bound)."""
    h = highspy.Highs()
    h.silent()
    h.setOptionValue("threads", 1)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("time_limit", time_limit_s)
    lp = S._model(p)  # the same model the pipeline solves
    lp.integrality_ = [highspy.HighsVarType.kInteger] * p.n_cols
    h.passModel(lp)
    h.run()
    info = h.getInfo()
    return float(info.objective_function_value), float(info.mip_dual_bound)


def timed_cycle(p: S.AssignmentProblem, persistent: S.PersistentLP | None, milp_s: float) -> dict[str, float]:
    t0 = time.perf_counter()
    res = persistent.solve(p) if persistent is not None else S.solve_lp(p)
    t1 = time.perf_counter()
    assert res is not None
    x, bound = res
    choice = S.round_lp(p, x)
    t2 = time.perf_counter()
    rounded = p.objective(choice)
    better = S.restricted_milp(p, x, choice, milp_s) if milp_s > 0 else None
    t3 = time.perf_counter()
    final = better if better is not None else choice
    assert p.is_feasible(final)
    obj = p.objective(final)
    return {"lp_s": t1 - t0, "rounding_s": t2 - t1, "milp_s": t3 - t2, "cycle_s": t3 - t0,
            "lp_bound": bound, "rounded_obj": rounded, "objective": obj,
            "rounding_gap_pct": 100 * (rounded - bound) / abs(bound),
            "gap_pct": 100 * (obj - bound) / abs(bound)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip 100k x 50")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "geo_solver.json"))
    args = ap.parse_args()
    results: dict[str, object] = {}

    rows_small = []
    for seed in range(3):
        p = synthetic_instance(1_000, 20, seed)
        t0 = time.perf_counter()
        opt, exact_bound = exact_milp(p, 120.0)
        t_exact = time.perf_counter() - t0
        cyc = timed_cycle(p, None, milp_s=2.0)
        g = p.objective(S.greedy(p))
        rows_small.append({"seed": seed, "exact_obj": opt, "exact_dual_bound": exact_bound, "exact_s": t_exact, **cyc,
                           "gap_vs_exact_pct": 100 * (cyc["objective"] - opt) / abs(opt),
                           "greedy_gap_vs_exact_pct": 100 * (g - opt) / abs(opt)})
    results["1k_x_20"] = rows_small

    def big(n: int, m: int, warm_cycles: int) -> dict[str, object]:
        p = synthetic_instance(n, m, 42)
        persistent = S.PersistentLP()
        cold = timed_cycle(p, persistent, milp_s=1.0)
        warm = []
        for c in range(warm_cycles):
            p = perturb(p, 100 + c)
            warm.append(timed_cycle(p, persistent, milp_s=1.0))
        cold_lp = timed_cycle(p, None, milp_s=0.0)["lp_s"]
        return {"jobs": n, "factories": m, "columns": p.n_cols, "cold": cold, "warm": warm,
                "cold_lp_same_instance_s": cold_lp}

    results["10k_x_50"] = big(10_000, 50, 3)
    if not args.quick:
        results["100k_x_50"] = big(100_000, 50, 1)

    print(f"{'instance':<12} {'stage':<6} {'cycle s':>8} {'LP s':>7} {'round s':>8} {'MILP s':>7} "
          f"{'gap vs LP %':>11} {'gap vs exact %':>14}")
    for r in rows_small:
        print(f"{'1k x 20':<12} {'s' + str(r['seed']):<6} {r['cycle_s']:>8.3f} {r['lp_s']:>7.3f} "
              f"{r['rounding_s']:>8.3f} {r['milp_s']:>7.3f} {r['gap_pct']:>11.4f} "
              f"{r['gap_vs_exact_pct']:>14.4f}")
    for name in ("10k_x_50", "100k_x_50"):
        if name not in results:
            continue
        b = results[name]
        assert isinstance(b, dict)
        for label, cyc in [("cold", b["cold"])] + [(f"warm{i}", w) for i, w in enumerate(b["warm"])]:
            print(f"{name.replace('_', ' '):<12} {label:<6} {cyc['cycle_s']:>8.3f} {cyc['lp_s']:>7.3f} "
                  f"{cyc['rounding_s']:>8.3f} {cyc['milp_s']:>7.3f} {cyc['gap_pct']:>11.4f} {'':>14}")
        print(f"{'':<12} cold LP on the last instance: {b['cold_lp_same_instance_s']:.3f} s "
              f"(warm/cold LP ratio {b['warm'][-1]['lp_s'] / b['cold_lp_same_instance_s']:.2f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
