"""Sweep throughput: N runs of a short scenario on local Ray, Ray's start-up included, against the same runs one
after another in one process — same machine, same benchmark run.

The short scenario is the built-in ``default`` fleet (~97k GPUs, five sites) cut to ``--duration`` (10 days) with
its scripted events removed, under ``greedy``; the runs differ by seed (0..N-1). The sequential baseline parses
the scenario once and runs ``run_twin`` + ``summarize`` in a loop in this process (the least overhead a
sequential loop can have). The sweep is ``run_sweep`` with ``runner="ray"`` into a fresh folder: ``ray.init``,
every batch in its own worker process, the Parquet table, ``ray.shutdown`` — all inside the timing.

- ``sweep_speedup`` = sequential wall time / sweep wall time (goal: >= 0.8 x cores).
- ``sweep_overhead_per_run_s`` = (sweep wall time x cores - sequential wall time) / runs: the core-seconds each
  run costs beyond its own simulation (Ray start-up and shutdown, process starts, imports, scheduling, the
  table), assuming the cores were ours alone.
- ``results_identical``: each seed's summary from the sweep equals the sequential one (timing fields aside).

The machine is shared and noisy: the load average at start and end is printed next to the figures.

It runs on a snapshot of the superfactory package taken at start (``--no-snapshot``: on the live tree).

Usage: python benchmarks/sweep_bench.py [--runs 64] [--duration 10d] [--also-local]
       (writes benchmarks/results/sweep.json)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from superfactory.observe.summary import summarize
from superfactory.scenario.loader import builtin_text, parse_scenario
from superfactory.sim.twin import run_twin
from superfactory.sweep.cells import apply_fields
from superfactory.sweep.engine import run_sweep
from superfactory.sweep.runners import ProcessRunner, RayRunner, cores
from superfactory.sweep.spec import SweepSpec
from superfactory.sweep.store import read_table, timing_column
from superfactory.sweep.worker import summary_fields

SNAPSHOT_ENV = "SWEEP_BENCH_CODE"


def sequential(duration: str, policy: str, seeds: list[int]) -> tuple[float, dict[int, dict[str, Any]]]:
    """Wall time of the runs one after another in this process, and each seed's summary."""
    t0 = time.perf_counter()
    text = apply_fields(builtin_text("default"), (("duration", duration), ("events", [])))
    sc = parse_scenario(text, source="<built-in default>")
    out = {}
    for seed in seeds:
        out[seed] = summary_fields(summarize(run_twin(sc, seed=seed, policy=policy)))
    return time.perf_counter() - t0, out


def swept(duration: str, policy: str, seeds: list[int], runner: str) -> dict[str, Any]:
    """The same runs as a sweep: wall time with the runner's start-up and shutdown included (each also given
    on its own), the outcome and the table's rows."""
    spec = SweepSpec(scenarios=("default",), policies=(policy,), seeds=tuple(seeds),
                     fields={"duration": [duration], "events": [[]]}, name="bench")
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        t0 = time.perf_counter()
        r = RayRunner() if runner == "ray" else ProcessRunner()
        t1 = time.perf_counter()
        try:
            outcome = run_sweep(spec, Path(tmp), r, progress=False)
        finally:
            t2 = time.perf_counter()
            r.close()
        t3 = time.perf_counter()
        rows = read_table(outcome.table)
    return {"wall_s": t3 - t0, "start_s": t1 - t0, "sweep_s": t2 - t1, "shutdown_s": t3 - t2,
            "outcome": outcome, "rows": rows}


def differences(seq: dict[int, dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """Where the sweep's rows differ from the sequential summaries (timing fields and nested values aside)."""
    by_seed = {r["seed"]: r for r in rows if r["status"] == "ok"}
    if set(by_seed) != set(seq):
        return [f"seeds ok in the sweep: {sorted(by_seed)}; failed: "
                f"{[r.get('error') for r in rows if r['status'] != 'ok'][:2]}"]
    return [f"seed {s} {k}: {seq[s][k]!r} vs {by_seed[s].get(k)!r}" for s in seq for k in seq[s]
            if not timing_column(k) and not isinstance(seq[s][k], dict | list) and by_seed[s].get(k) != seq[s][k]]


def run_on_a_snapshot() -> None:
    """Re-run this script on a copy of the superfactory package (and exit), so that code edited while the
    benchmark runs — a shared working tree — cannot give the sequential runs and the sweep's workers different
    code (workers import it afresh). The workers inherit the copy through PYTHONPATH."""
    import shutil
    import subprocess
    import sys

    import superfactory

    if os.environ.get(SNAPSHOT_ENV) or "--no-snapshot" in sys.argv:
        return
    tmp = tempfile.mkdtemp(prefix="sweep-bench-code-")
    shutil.copytree(Path(superfactory.__file__).parent, Path(tmp) / "superfactory",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, SNAPSHOT_ENV: tmp,
           "PYTHONPATH": os.pathsep.join(p for p in (tmp, os.environ.get("PYTHONPATH", "")) if p)}
    try:
        rc = subprocess.call([sys.executable, __file__, *sys.argv[1:]], env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(rc)


def main() -> None:
    run_on_a_snapshot()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=64)
    ap.add_argument("--duration", default="10d")
    ap.add_argument("--policy", default="greedy")
    ap.add_argument("--also-local", action="store_true", help="also time the local-process runner")
    ap.add_argument("--no-snapshot", action="store_true", help="run on the working tree's code as it changes")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep.json")
    args = ap.parse_args()
    n_cores = cores()
    seeds = list(range(args.runs))
    load_before = os.getloadavg()[0]
    seq_s, seq = sequential(args.duration, args.policy, seeds)
    runs: dict[str, dict[str, Any]] = {"ray": swept(args.duration, args.policy, seeds, "ray")}
    if args.also_local:
        runs["local"] = swept(args.duration, args.policy, seeds, "local")
    load_after = os.getloadavg()[0]

    import superfactory

    print(f"code: {Path(superfactory.__file__).parent} (commit {_commit()} and the working tree at start)")
    print(f"{args.runs} runs of default cut to {args.duration} (no scripted events), policy {args.policy}, "
          f"{n_cores} cores, load average {load_before:.1f} -> {load_after:.1f}")
    print(f"{'how':<26}{'wall s':>10}{'speedup':>10}{'per core':>10}{'overhead/run s':>16}{'batches':>9}")
    print(f"{'one process, sequential':<26}{seq_s:>10.1f}{1.0:>10.2f}{1.0 / n_cores:>10.2f}{0.0:>16.3f}{'-':>9}")
    result: dict[str, Any] = {"commit": _commit(), "runs": args.runs, "duration": args.duration,
                              "policy": args.policy, "cores": n_cores,
                              "sequential_s": seq_s, "load_average_before": load_before,
                              "load_average_after": load_after, "sequential_mean_run_s": seq_s / args.runs}
    for kind, run in runs.items():
        wall, outcome = run["wall_s"], run["outcome"]
        speedup = seq_s / wall
        overhead = (wall * n_cores - seq_s) / args.runs
        diffs = differences(seq, run["rows"])
        same = not diffs
        for line in diffs[:5]:
            print(f"  differs ({kind}): {line}  (was the code edited during the benchmark?)")
        label = "local Ray (start included)" if kind == "ray" else "local processes"
        print(f"{label:<26}{wall:>10.1f}{speedup:>10.2f}{speedup / n_cores:>10.2f}{overhead:>16.3f}"
              f"{outcome.batches:>9}")
        result[kind] = {"wall_s": wall, "speedup": speedup, "speedup_per_core": speedup / n_cores,
                        "overhead_per_run_s": overhead, "batches": outcome.batches, "failed": outcome.failed,
                        "results_identical": same, "runner": outcome.runner, "start_s": run["start_s"],
                        "sweep_s": run["sweep_s"], "shutdown_s": run["shutdown_s"]}
    ray = result["ray"]
    print(f"sweep_speedup={ray['speedup']:.2f}")
    print(f"sweep_speedup_per_core={ray['speedup_per_core']:.2f}  (goal >= 0.8)")
    print(f"sweep_overhead_per_run_s={ray['overhead_per_run_s']:.3f}")
    print(f"sequential_s={seq_s:.1f}")
    print(f"ray_wall_s={ray['wall_s']:.1f}")
    print(f"ray_start_s={ray['start_s']:.1f}")
    print(f"ray_shutdown_s={ray['shutdown_s']:.1f}")
    print(f"results_identical={str(ray['results_identical']).lower()}")
    if "local" in result:
        print(f"local_speedup={result['local']['speedup']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                              cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
