"""Geo placement solver benchmark: optimality gap and cycle time of the HiGHS pipeline (highspy only).

Instances (``synthetic_instance``, deterministic in the seed): ``m`` factories, each with one or two
accelerator pools (of 4 types) of 2k-20k GPUs (a GPU row per pool), a market price (USD/MWh, log-normal
around 45, sigma 0.35), a carbon intensity (20-500 gCO2/kWh, priced at $50/t), a PUE (1.08-1.35) and a
facility power cap (a power row: IT load x PUE, 85-100 % of what its GPUs would draw). ``n`` training jobs of
8-4096 GPUs of one accelerator type (GPU demand per accelerator), scaled so demand is ~1.1x capacity (capacity
binds, some jobs must wait); 30 % run somewhere now (staying is free, moving costs a migration of 5 $/MWh-
equivalent); 10 % carry a data class that only the ~1/3 cleared factories may host (sovereignty: the
infeasible pairs have no column). Column cost = energy of the next 6 h at the factory's price (+-3 % latency/
site noise) + carbon; the wait column costs a queueing penalty of 60-140 $/MWh-equivalent x 1.35.

Measured (all in one process, single-threaded HiGHS):
- 1k x 20 (3 seeds): greedy, LP-guided rounding, + repair, + neighbourhood MILPs (the pipeline), and the
  single restricted MILP of the first version, against the exact MILP: HiGHS on the full model with
  ``mip_rel_gap = 0``, started from the pipeline's plan, under a time limit; its status says whether
  optimality was proven, and the gap is also reported against its proven dual bound (a rigorous upper bound
  on the distance to the optimum).
- 10k x 50: one cold cycle, then warm cycles after a typical change (prices of 5 factories move +-20 %,
  1 % of jobs leave and 1 % arrive) on a :class:`PersistentLP`; cycle time is wall clock of the whole
  ``solve`` call; gap vs the LP bound.
- 100k x 50: one cold and one warm cycle (reported, no goal).

Run: ``.venv/bin/python benchmarks/geo_solver_bench.py [--quick]``; writes benchmarks/results/geo_solver.json.
``--quick`` (one 1k seed, exact limited to 20 s, 2 warm cycles, no 100k) is a smoke test of well under 1 min.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import highspy
import numpy as np
import numpy.typing as npt

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


def exact_milp(p: S.AssignmentProblem, start: npt.NDArray[np.int64], time_limit_s: float) -> dict[str, object]:
    """The exact MILP (HiGHS, relative gap 0) on the same model the pipeline solves, started from ``start``."""
    h = highspy.Highs()
    h.silent()
    h.setOptionValue("threads", 1)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("time_limit", time_limit_s)
    lp = S._model(p)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * p.n_cols
    h.passModel(lp)
    sol = highspy.HighsSolution()
    v = np.zeros(p.n_cols)
    v[start] = 1.0
    sol.col_value = v.tolist()
    sol.value_valid = True
    h.setSolution(sol)
    t0 = time.perf_counter()
    h.run()
    info = h.getInfo()
    return {"objective": float(info.objective_function_value), "dual_bound": float(info.mip_dual_bound),
            "status": h.modelStatusToString(h.getModelStatus()), "proven_optimal":
            h.getModelStatus() == highspy.HighsModelStatus.kOptimal, "time_s": time.perf_counter() - t0,
            "time_limit_s": time_limit_s, "nodes": int(info.mip_node_count)}


def _pct(obj: float, ref: float) -> float:
    return 100.0 * (obj - ref) / abs(ref)


def small(seed: int, exact_s: float, milp_s: float) -> list[dict[str, object]]:
    """Every method on one 1k x 20 instance, with gaps vs the exact MILP and vs the LP bound."""
    p = synthetic_instance(1_000, 20, seed)
    rows: list[dict[str, object]] = []
    t0 = time.perf_counter()
    g = S.greedy(p)
    rows.append({"method": "greedy", "time_s": time.perf_counter() - t0, "objective": p.objective(g)})
    t0 = time.perf_counter()
    sol = S.solve(p, milp_s, target_gap=0.0)
    t_pipe = time.perf_counter() - t0
    assert p.is_feasible(sol.choice)
    stage = dict(sol.stages)
    rows.append({"method": "lp-rounding", "time_s": float("nan"), "objective": stage["rounding"]})
    rows.append({"method": "+repair", "time_s": float("nan"), "objective": stage["repair"]})
    rows.append({"method": "pipeline (+lns)", "time_s": t_pipe, "objective": sol.objective})
    lp = S.lp_relaxation(p)
    assert lp is not None
    t0 = time.perf_counter()
    old = S.restricted_milp(p, lp.x, S.round_lp(p, lp.x), milp_s)
    old_obj = p.objective(old) if old is not None else stage["rounding"]
    rows.append({"method": f"restricted MILP {milp_s:g}s", "time_s": time.perf_counter() - t0, "objective": old_obj})
    ex = exact_milp(p, sol.choice, exact_s)
    for r in rows:
        r.update(instance="1k x 20", seed=seed, lp_bound=sol.lp_bound,
                 gap_vs_lp_pct=_pct(float(r["objective"]), sol.lp_bound),  # type: ignore[arg-type]
                 gap_vs_exact_pct=_pct(float(r["objective"]), float(ex["objective"])),  # type: ignore[arg-type]
                 gap_vs_exact_bound_pct=_pct(float(r["objective"]), float(ex["dual_bound"])))  # type: ignore[arg-type]
    rows.append({"method": "exact MILP", "instance": "1k x 20", "seed": seed, **ex, "lp_bound": sol.lp_bound,
                 "gap_vs_lp_pct": _pct(float(ex["objective"]), sol.lp_bound)})  # type: ignore[arg-type]
    return rows


def big(n: int, m: int, warm_cycles: int, milp_s: float) -> list[dict[str, object]]:
    """A cold cycle and ``warm_cycles`` warm ones on a persistent LP; wall-clock time of the whole solve."""
    p = synthetic_instance(n, m, 42)
    persistent = S.PersistentLP()
    rows: list[dict[str, object]] = []
    for c in range(warm_cycles + 1):
        if c:
            p = perturb(p, 100 + c)
        t0 = time.perf_counter()
        sol = S.solve(p, milp_s, persistent)
        dt = time.perf_counter() - t0
        assert p.is_feasible(sol.choice)
        stage = dict(sol.stages)
        rows.append({"instance": f"{n // 1000}k x {m}", "method": "cold" if c == 0 else f"warm{c}", "time_s": dt,
                     "objective": sol.objective, "lp_bound": sol.lp_bound, "gap_vs_lp_pct": 100 * sol.gap,
                     "rounding_gap_pct": _pct(stage["rounding"], sol.lp_bound),
                     "repair_gap_pct": _pct(stage["repair"], sol.lp_bound), "final_stage": sol.method,
                     "lp_iterations": persistent.last_iterations, "columns": p.n_cols})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one 1k seed, exact limited to 20 s, no 100k x 50")
    ap.add_argument("--exact-s", type=float, default=None, help="time limit of the exact MILP (default 100 s)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "geo_solver.json"))
    args = ap.parse_args()
    exact_s = args.exact_s if args.exact_s is not None else (20.0 if args.quick else 100.0)
    if exact_s <= 0:
        print("--exact-s must be > 0", file=sys.stderr)
        raise SystemExit(2)
    rows: list[dict[str, object]] = []
    for seed in range(1 if args.quick else 3):
        rows += small(seed, exact_s, milp_s=10.0)
    rows += big(10_000, 50, 2 if args.quick else 4, milp_s=0.2)
    if not args.quick:
        rows += big(100_000, 50, 1, milp_s=1.0)

    print(f"{'instance':<10} {'seed':>4} {'method':<22} {'time s':>8} {'objective':>13} {'vs LP %':>8} "
          f"{'vs exact %':>10} {'vs bound %':>10}")
    def fmt(r: dict[str, object], k: str, spec: str) -> str:
        v = r.get(k)
        return format(v, spec) if isinstance(v, float) and not math.isnan(v) else "-"

    for r in rows:
        def f(k: str, spec: str, r: dict[str, object] = r) -> str:
            return fmt(r, k, spec)
        extra = f"  [{r['status']}]" if "status" in r else ""
        print(f"{r['instance']!s:<10} {r.get('seed', '-')!s:>4} {r['method']!s:<22} {f('time_s', '8.3f'):>8} "
              f"{f('objective', '13.1f'):>13} {f('gap_vs_lp_pct', '8.4f'):>8} {f('gap_vs_exact_pct', '10.4f'):>10} "
              f"{f('gap_vs_exact_bound_pct', '10.4f'):>10}{extra}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "exact_time_limit_s": exact_s, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
