"""Twin speed: wall time, events/s and simulated-seconds per wall-second for the built-in scenarios.

Baseline measured in the same run: a bare heap-driven event loop (the kernel with no-op callbacks) processing
the same number of events, so ``kernel_overhead`` = twin events/s / bare-kernel events/s says how much of
the raw event rate the fleet model keeps, independent of how fast this machine is today.

Goals (issue 2): llama3-405b < 0.5 s, default < 30 s on the 2-core CI machines. Issue 12: ``fleet-year``
(365 days, ~26k jobs) <= 60 s and ``fleet-200`` (200 factories, ~1M GPUs, 30 days) <= 300 s under greedy.

The fleet scenarios are slow, so they run only with ``--fleet``, each once, in a child process under a wall-clock
limit (``--fleet-timeout``), which reports its own peak RSS (``ru_maxrss``). A run that does not finish in time is
reported as such (``<key>_timed_out=1``, no wall figure) and the scenario is run again cut to its first
``--fleet-cut-days`` days (jobs submitted and events scheduled before the cut), giving simulated days per wall
second at this scale.

Output: a table, then one ``key=value`` line per scenario (``<scenario>_wall_s=...``), and the JSON.

``--table`` runs every built-in scenario once under its own policy, each in a child process, and prints one table:
simulated days, wall and CPU seconds, kernel events, events per wall second, simulated seconds per wall second and
peak RSS (``benchmarks/results/twin_scenarios.json``). ``--geo`` also runs ``fleet-year`` under ``geo`` (issue 12
asks for its figure, goal <= 120 s: ``fleet_year_geo_wall_s=``). CPU time is reported beside wall time because the
shared CI machines are loaded: wall time there measures the neighbours as much as the twin.

Usage: python benchmarks/twin_bench.py [--repeat N] [--fleet [--fleet-only] [--fleet-timeout S] [--geo]]
       [--table] (writes benchmarks/results/twin.json)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from superfactory.scenario.loader import load_scenario
from superfactory.sim.kernel import Kernel
from superfactory.sim.twin import run_twin

GOALS_S = {"llama3-405b": 0.5, "default": 30.0}
#: issue 12: scenario -> (key of its wall figure, goal s, days of the cut run used when the full run times out)
FLEET_GOALS = {"fleet-year": ("fleet_year_wall_s", 60.0, 30), "fleet-200": ("fleet200_month_wall_s", 300.0, 1)}


def run_cut(name: str, days: int | None, policy: str | None = "greedy") -> dict[str, float | str]:
    """Run built-in ``name`` under ``policy`` (None: the scenario's own) in this process, cut to its first
    ``days`` days when given (jobs submitted and events scheduled before the cut). Returns wall and CPU seconds
    of the run (scenario loading excluded), events, simulated seconds and peak RSS."""
    t0 = time.process_time()
    sc = load_scenario(name)
    load_cpu_s = time.process_time() - t0
    if days is not None and days * 86_400 < sc.duration_s:
        cut = days * 86_400
        sc = dataclasses.replace(sc, duration_s=cut, jobs=tuple(j for j in sc.jobs if j.submit_s < cut),
                                 events=tuple(e for e in sc.events if e.at_s < cut))
    t0 = time.process_time()
    result = run_twin(sc, policy=policy)
    return {"wall_s": result.wall_seconds, "cpu_s": time.process_time() - t0, "load_cpu_s": load_cpu_s,
            "policy": result.policy, "kernel_events": result.kernel_events, "decisions": result.decisions,
            "domain_events": len(result.events), "sim_s": sc.duration_s, "jobs": len(sc.jobs),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(name: str, days: int | None, timeout_s: float, policy: str = "greedy") -> dict[str, float] | None:
    """``run_cut`` in a fresh interpreter (its own peak RSS) under a wall-clock limit; None when it timed out.
    ``policy`` "" runs the scenario's own."""
    cmd = ([sys.executable, __file__, "--child", name, "--child-policy", policy]
           + ([] if days is None else ["--child-days", str(days)]))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"{name}: the child run failed:\n{e.stderr[-3000:]}") from e
    return json.loads(out.stdout.strip().splitlines()[-1])


def fleet_rows(timeout_s: float, cut_days: int | None, geo: bool = False) -> list[dict[str, object]]:
    """One row per fleet scenario: the full run, or (timed out) a cut run's rate."""
    rows: list[dict[str, object]] = []
    goals = [(name, "greedy", *g) for name, g in FLEET_GOALS.items()]
    if geo:
        goals.append(("fleet-year", "geo", "fleet_year_geo_wall_s", 120.0, 30))
    for name, policy, key, goal_s, default_cut in goals:
        full = _child(name, None, timeout_s, policy)
        row: dict[str, object] = {"scenario": name, "key": key, "goal_s": goal_s, "timeout_s": timeout_s,
                                  "timed_out": full is None}
        if full is not None:
            row.update(full, meets_goal=full["wall_s"] <= goal_s)
        else:
            days = cut_days or default_cut
            cut = _child(name, days, timeout_s, policy)
            row.update(meets_goal=False, cut_days=days)
            if cut is not None:
                row.update({f"cut_{k}": v for k, v in cut.items()})
                row["cut_sim_days_per_wall_s"] = cut["sim_s"] / 86_400 / cut["wall_s"]
        rows.append(row)
    return rows


def print_fleet(rows: list[dict[str, object]]) -> None:
    print(f"{'scenario':<11} {'wall s':>9} {'goal s':>7} {'jobs':>7} {'events':>10} {'events/s':>9} "
          f"{'sim-d/wall-s':>12} {'peak RSS MiB':>12}")
    for r in rows:
        src = r if not r["timed_out"] else {k[4:]: v for k, v in r.items() if k.startswith("cut_")}
        if not src:
            print(f"{r['scenario']:<11} timed out after {r['timeout_s']:.0f} s (the cut run too)")
            continue
        wall = float(src["wall_s"])  # type: ignore[arg-type]
        label = f"{r['scenario']}" + (f" ({r['cut_days']}d cut)" if r["timed_out"] else "")
        print(f"{label:<11} {wall:>9.1f} {r['goal_s']:>7.0f} {src['jobs']:>7,} {src['kernel_events']:>10,} "
              f"{float(src['kernel_events']) / wall:>9,.0f} {float(src['sim_s']) / 86_400 / wall:>12.3f} "  # type: ignore[arg-type]
              f"{float(src['peak_rss_mib']):>12,.0f}")  # type: ignore[arg-type]
    for r in rows:
        key, stem = str(r["key"]), str(r["key"]).removesuffix("_wall_s")
        if not r["timed_out"]:
            print(f"{key}={float(r['wall_s']):.2f} {stem}_cpu_s={float(r['cpu_s']):.2f} "  # type: ignore[arg-type]
                  f"{stem}_peak_rss_mib={float(r['peak_rss_mib']):.0f} "  # type: ignore[arg-type]
                  f"{stem}_events_per_s={float(r['kernel_events']) / float(r['wall_s']):.0f} "  # type: ignore[arg-type]
                  f"{stem}_meets_goal={int(bool(r['meets_goal']))}")
        else:
            line = f"{stem}_timed_out=1 {stem}_timeout_s={float(r['timeout_s']):.0f} {stem}_meets_goal=0"  # type: ignore[arg-type]
            if "cut_wall_s" in r:
                line += (f" {stem}_cut_days={r['cut_days']} {stem}_cut_wall_s={float(r['cut_wall_s']):.2f} "  # type: ignore[arg-type]
                         f"{stem}_cut_cpu_s={float(r['cut_cpu_s']):.2f} "  # type: ignore[arg-type]
                         f"{stem}_cut_sim_days_per_wall_s={float(r['cut_sim_days_per_wall_s']):.4f} "  # type: ignore[arg-type]
                         f"{stem}_cut_peak_rss_mib={float(r['cut_peak_rss_mib']):.0f}")  # type: ignore[arg-type]
            print(line)


def scenario_table(timeout_s: float, fleet: bool) -> list[dict[str, object]]:
    """Every built-in scenario once under its own policy, each in a child process (``fleet-*`` only with
    ``fleet``; they take minutes). A run over ``timeout_s`` is listed as timed out."""
    from superfactory.scenario.loader import builtin_names

    rows: list[dict[str, object]] = []
    for name in builtin_names():
        if name.startswith("fleet-") and not fleet:
            continue
        got = _child(name, None, timeout_s, "")
        rows.append({"scenario": name, "timed_out": got is None, **(got or {})})
    print(f"{'scenario':<22} {'policy':<12} {'sim d':>6} {'wall s':>8} {'CPU s':>8} {'events':>10} {'events/s':>9} "
          f"{'sim-s/wall-s':>12} {'peak RSS MiB':>12}")
    for r in rows:
        if r["timed_out"]:
            print(f"{r['scenario']:<22} timed out after {timeout_s:.0f} s")
            continue
        wall, ev = float(r["wall_s"]), float(r["kernel_events"])  # type: ignore[arg-type]
        print(f"{r['scenario']:<22} {r['policy']:<12} {float(r['sim_s']) / 86_400:>6.1f} {wall:>8.2f} "  # type: ignore[arg-type]
              f"{float(r['cpu_s']):>8.2f} {ev:>10,.0f} {ev / wall:>9,.0f} "  # type: ignore[arg-type]
              f"{float(r['sim_s']) / wall:>12,.0f} {float(r['peak_rss_mib']):>12,.0f}")  # type: ignore[arg-type]
    for r in rows:
        if not r["timed_out"]:
            k = str(r["scenario"]).replace("-", "_")
            wall = float(r["wall_s"])  # type: ignore[arg-type]
            print(f"table_{k}_wall_s={wall:.3f} table_{k}_cpu_s={float(r['cpu_s']):.3f} "  # type: ignore[arg-type]
                  f"table_{k}_events_per_s={float(r['kernel_events']) / wall:.0f} "  # type: ignore[arg-type]
                  f"table_{k}_sim_s_per_wall_s={float(r['sim_s']) / wall:.0f} "  # type: ignore[arg-type]
                  f"table_{k}_peak_rss_mib={float(r['peak_rss_mib']):.0f}")  # type: ignore[arg-type]
    return rows


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


def decision_cost_s(rounds: int = 7, repeat: int = 2000) -> tuple[float, float, float, int, int]:
    """Mean time of one decision (snapshot + greedy decide) with 1k and with 30k finished jobs, in CPU seconds of
    this process (on an idle core the same as wall; on the shared, loaded machines wall time measures the
    neighbours). The two fleets are measured in alternation, ``rounds`` times ``repeat`` decisions each, so both
    see the same load; returns (median ratio 30k/1k, median s with 1k, median s with 30k, pending, running). The
    pending and running sets are the same in both fleets."""
    import numpy as np

    fleets = [_decision_fleet(n) for n in (1_000, 30_000)]
    snaps = [f.snapshot() for f, _ in fleets]  # type: ignore[attr-defined]
    counts = {(len(s.pending), len(s.running)) for s in snaps}
    assert len(counts) == 1, "the pending and running sets must be the same"
    rng = np.random.default_rng(0)
    times: list[list[float]] = [[], []]
    for _ in range(rounds):
        for k, (fleet, policy) in enumerate(fleets):
            t0 = time.process_time()
            for _ in range(repeat):
                policy.decide(fleet.snapshot(), rng)  # type: ignore[attr-defined]
            times[k].append((time.process_time() - t0) / repeat)
    ratio = statistics.median(b / a for a, b in zip(times[0], times[1], strict=True))
    (pending, running), = counts
    return ratio, statistics.median(times[0]), statistics.median(times[1]), pending, running


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "twin.json")
    ap.add_argument("--fleet", action="store_true", help="also run fleet-year and fleet-200 (slow)")
    ap.add_argument("--fleet-only", action="store_true", help="only the fleet scenarios (implies --fleet)")
    ap.add_argument("--fleet-timeout", type=float, default=900.0, help="wall-clock limit of each fleet run, s")
    ap.add_argument("--fleet-cut-days", type=int, default=None,
                    help="days of the cut run after a timeout (default: 30 for fleet-year, 1 for fleet-200)")
    ap.add_argument("--geo", action="store_true", help="with --fleet: also fleet-year under geo (goal 120 s)")
    ap.add_argument("--table", action="store_true",
                    help="only the table of every built-in scenario under its own policy (with --fleet: fleet-* too)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-days", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-policy", default="greedy", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_cut(args.child, args.child_days, args.child_policy or None)))
        return
    if args.table:
        trows = scenario_table(args.fleet_timeout, args.fleet or args.fleet_only)
        out = args.out.with_name("twin_scenarios.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "twin-scenarios", "rows": trows}, indent=2) + "\n")
        print(f"wrote {out}")
        return
    if args.fleet_only:
        frows = fleet_rows(args.fleet_timeout, args.fleet_cut_days, args.geo)
        print_fleet(frows)
        out = args.out.with_name("twin_fleet.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "twin-fleet", "rows": frows}, indent=2) + "\n")
        print(f"wrote {out}")
        return
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
    ratio, few_s, many_s, p1, r1 = decision_cost_s()
    print(f"decision with 1k finished jobs {few_s * 1e3:.4f} ms CPU, with 30k {many_s * 1e3:.4f} ms "
          f"({p1} pending, {r1} running; medians of alternating rounds)")
    print(f"decision_cost_ratio={ratio:.3f} decision_ms_1k_finished={few_s * 1e3:.4f} "
          f"decision_ms_30k_finished={many_s * 1e3:.4f}")
    for r in rows:  # machine-readable lines (grep/awk in CI)
        key = r["scenario"].replace("-", "_")
        print(f"{key}_wall_s={r['wall_s_median']:.4f} {key}_kernel_events={r['kernel_events']} "
              f"{key}_domain_events={r['domain_events']} {key}_events_per_s={r['events_per_s']:.0f} "
              f"{key}_kernel_overhead={r['kernel_overhead']:.4f} {key}_meets_goal={int(r['meets_goal'])}")
    frows = fleet_rows(args.fleet_timeout, args.fleet_cut_days, args.geo) if args.fleet else []
    if frows:
        print_fleet(frows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "twin", "rows": rows, "decision_cost_ratio": ratio,
                                    "decision_s_1k_finished": few_s, "decision_s_30k_finished": many_s,
                                    "fleet_rows": frows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
