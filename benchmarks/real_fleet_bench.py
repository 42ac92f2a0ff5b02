"""The real-data fleet (``real-2023``, a month of real 2023 prices and carbon) against ``default``: twin wall time.

Goal (issue 17): the real-data fleet runs a month in the same time budget as ``default`` (the twin goal for
``default`` is < 30 s on the 2-core CI machines, issue 2). Both scenarios are run alternately in this process,
``--repeat`` times each, so machine noise hits both alike; the ratio of medians is the figure. CPU seconds of
this process (``time.process_time``) are reported beside wall seconds: on a shared machine other people's work
inflates wall time but not this process's CPU time. Scenario loading (which for ``real-2023`` reads and cleans
the CSV files) is timed separately.

Usage: python benchmarks/real_fleet_bench.py [--repeat 3]   (writes benchmarks/results/real_fleet.json;
needs ../shared/data for real-2023, exits 0 with a message without it)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from superfactory.scenario import market_data
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin

SCENARIOS = ("default", "real-2023")
DEFAULT_GOAL_S = 30.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "real_fleet.json")
    args = ap.parse_args()
    if market_data.data_root() is None:
        print("real_fleet_bench: ../shared/data/green-dcc-2023 is absent; nothing to measure")
        return 0
    load_s: dict[str, float] = {}
    scenarios = {}
    for name in SCENARIOS:
        market_data._cached.cache_clear()  # time the CSV reading too
        t0 = time.perf_counter()
        scenarios[name] = load_scenario(name)
        load_s[name] = time.perf_counter() - t0
    walls: dict[str, list[float]] = {n: [] for n in SCENARIOS}
    cpus: dict[str, list[float]] = {n: [] for n in SCENARIOS}
    facts: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for name in SCENARIOS:
            c0 = time.process_time()
            r = run_twin(scenarios[name])
            cpus[name].append(time.process_time() - c0)
            walls[name].append(r.wall_seconds)
            sc = scenarios[name]
            facts[name] = {"simulated_days": sc.duration_s / 86400, "gpus": sum(f.gpus for f in sc.factories),
                           "jobs": len(sc.jobs), "kernel_events": r.kernel_events}
    med = {n: statistics.median(w) for n, w in walls.items()}
    cpu = {n: statistics.median(c) for n, c in cpus.items()}
    ratio = med["real-2023"] / med["default"]
    per_day = {n: med[n] / facts[n]["simulated_days"] for n in SCENARIOS}
    print(f"{'scenario':10s} {'days':>5s} {'GPUs':>7s} {'jobs':>5s} {'load s':>7s} "
          f"{'wall s (median)':>16s} {'CPU s (median)':>15s} {'s/day':>6s}")
    for n in SCENARIOS:
        f = facts[n]
        print(f"{n:10s} {f['simulated_days']:5.0f} {f['gpus']:7,.0f} {f['jobs']:5.0f} {load_s[n]:7.2f} "
              f"{med[n]:16.2f} {cpu[n]:15.2f} {per_day[n]:6.3f}")
    print(f"real_over_default_wall={ratio:.2f}")
    print(f"real_over_default_per_simulated_day={per_day['real-2023'] / per_day['default']:.2f}")
    print(f"real_over_default_cpu={cpu['real-2023'] / cpu['default']:.2f}")
    print(f"real_within_default_goal={med['real-2023'] < DEFAULT_GOAL_S}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "repeat": args.repeat, "wall_s": walls, "wall_s_median": med, "cpu_s": cpus, "cpu_s_median": cpu,
        "load_s": load_s, "facts": facts, "real_over_default_cpu": cpu["real-2023"] / cpu["default"],
        "real_over_default_wall": ratio, "goal_s": DEFAULT_GOAL_S,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
