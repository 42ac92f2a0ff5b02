"""Twin speed: wall time, events/s and simulated-seconds per wall-second for the built-in scenarios.

Baseline measured in the same run: a bare heap-driven event loop (the kernel with no-op callbacks) processing
the same number of events, so ``kernel_overhead`` = twin events/s / bare-kernel events/s says how much of
the raw event rate the fleet model keeps, independent of how fast this machine is today.

Goals (issue 2): llama3-405b < 0.5 s, default < 30 s on the 2-core CI machines.

Output: a table, then one ``key=value`` line per scenario (``<scenario>_wall_s=...``), and the JSON.

Usage: python benchmarks/twin_bench.py [--repeat N]   (writes benchmarks/results/twin.json)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from superfactory.scenario.loader import load_scenario
from superfactory.sim.kernel import Kernel
from superfactory.sim.twin import run_twin

GOALS_S = {"llama3-405b": 0.5, "default": 30.0}


def bare_kernel_events_per_s(n: int) -> float:
    """Events/s of the kernel alone: n no-op callbacks that each schedule the next (a chain)."""
    k = Kernel()
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] < n:
            k.after(7, 20, tick)

    k.at(0, 20, tick)
    t0 = time.perf_counter()
    k.run(10**15)
    return n / (time.perf_counter() - t0)


def _decision_fleet(finished: int) -> tuple[object, object]:
    """A fleet after ``finished`` small jobs ran to completion, then 60 big jobs arrived (40 run, 20 wait): the
    pending and running sets are the same whatever ``finished`` is. Returns (fleet, greedy policy)."""
    import yaml

    from superfactory.policy.registry import make_policy
    from superfactory.scenario.loader import parse_scenario
    from superfactory.sim import fleet as fleet_mod

    facs = [{"id": f, "region": "r", "market": "PJM", "power_cap": "200MW", "cooling_capacity": "200MW", "pue": 1.2,
             "systems": [{"system": "dgx-h100", "nodes": 160}]} for f in ("a", "b")]
    jobs = [{"id": "small", "accelerator": "H100-SXM", "gpus": 8, "work": "10min"},
            {"id": "big", "accelerator": "H100-SXM", "gpus": 64, "work": "30d", "submit": "2d"}]
    sc = parse_scenario(yaml.safe_dump({"name": "decision-cost", "duration": "3d", "seed": 1, "factories": facs,
                                        "jobs": jobs, "failures": {"rate_scale": 0.0, "planned": False}}))
    small, big = sc.jobs  # templates: copies with new ids (parsing 30k jobs from YAML would dominate the bench)
    sc = dataclasses.replace(sc, jobs=tuple(
        [dataclasses.replace(small, id=f"s{i}", submit_s=(i * 86_000) // max(finished, 1)) for i in range(finished)]
        + [dataclasses.replace(big, id=f"b{i}") for i in range(60)]))
    captured: list[object] = []
    orig = fleet_mod.SimulatedFleet.start

    def start(self: object) -> None:  # keep a handle on the twin's fleet
        captured.append(self)
        orig(self)  # type: ignore[arg-type]

    fleet_mod.SimulatedFleet.start = start  # type: ignore[method-assign]
    try:
        run_twin(sc, policy="greedy")
    finally:
        fleet_mod.SimulatedFleet.start = orig  # type: ignore[method-assign]
    return captured[0], make_policy("greedy")


def decision_cost_s(finished: int, repeat: int = 200) -> tuple[float, int, int]:
    """Mean wall time of one decision (snapshot + greedy decide) with ``finished`` finished jobs; also returns the
    pending and running counts (which must not depend on ``finished``)."""
    import numpy as np

    fleet, policy = _decision_fleet(finished)
    rng = np.random.default_rng(0)
    snap = fleet.snapshot()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for _ in range(repeat):
        policy.decide(fleet.snapshot(), rng)  # type: ignore[attr-defined]
    return (time.perf_counter() - t0) / repeat, len(snap.pending), len(snap.running)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "twin.json")
    args = ap.parse_args()
    rows = []
    for name, goal_s in GOALS_S.items():
        sc = load_scenario(name)
        walls, result = [], None
        for _ in range(args.repeat):
            result = run_twin(sc)
            walls.append(result.wall_seconds)
        assert result is not None
        wall = statistics.median(walls)
        eps = result.kernel_events / wall
        bare = bare_kernel_events_per_s(result.kernel_events)
        rows.append({
            "scenario": name, "wall_s_median": wall, "wall_s_all": walls, "goal_s": goal_s,
            "meets_goal": wall < goal_s, "kernel_events": result.kernel_events,
            "domain_events": len(result.events), "events_per_s": eps, "bare_kernel_events_per_s": bare,
            "kernel_overhead": eps / bare, "sim_s_per_wall_s": sc.duration_s / wall,
        })
    print(f"{'scenario':<13} {'wall s':>8} {'goal s':>7} {'events':>9} {'events/s':>10} {'vs bare':>8} "
          f"{'sim-s/wall-s':>13}")
    for r in rows:
        print(f"{r['scenario']:<13} {r['wall_s_median']:>8.3f} {r['goal_s']:>7.1f} {r['kernel_events']:>9,} "
              f"{r['events_per_s']:>10,.0f} {r['kernel_overhead']:>8.3f} {r['sim_s_per_wall_s']:>13,.0f}")
    few_s, p1, r1 = decision_cost_s(1_000)
    many_s, p2, r2 = decision_cost_s(30_000)
    assert (p1, r1) == (p2, r2), "the pending and running sets must be the same"
    ratio = many_s / few_s
    print(f"decision with 1k finished jobs {few_s * 1e3:.3f} ms, with 30k {many_s * 1e3:.3f} ms "
          f"({p1} pending, {r1} running)")
    print(f"decision_cost_ratio={ratio:.3f} decision_ms_1k_finished={few_s * 1e3:.3f} "
          f"decision_ms_30k_finished={many_s * 1e3:.3f}")
    for r in rows:  # machine-readable lines (grep/awk in CI)
        key = r["scenario"].replace("-", "_")
        print(f"{key}_wall_s={r['wall_s_median']:.4f} {key}_kernel_events={r['kernel_events']} "
              f"{key}_domain_events={r['domain_events']} {key}_events_per_s={r['events_per_s']:.0f} "
              f"{key}_kernel_overhead={r['kernel_overhead']:.4f} {key}_meets_goal={int(r['meets_goal'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "twin", "rows": rows, "decision_cost_ratio": ratio,
                                    "decision_s_1k_finished": few_s, "decision_s_30k_finished": many_s},
                                   indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
