"""WAN fabric: the deadline-aware transfer planner against naive and overlay replication, in the twin on the
built-in ``checkpoint-herd`` scenario, plus the planner's speed and proven gap on a 50-factory fabric.

In the twin (``run_twin``: checkpoints replicated as transfers over links with queues and inference traffic,
durable at quorum, jobs stalling at a barrier while their previous checkpoint is not durable), each strategy is
the ``wan`` role's policy on the same scenario and seed:

* ``naive`` — ``wan-naive``, aligned barriers: every copy starts when its checkpoint is written, on the direct
  link; links shared fairly (inference traffic included).
* ``overlay`` — ``wan-overlay``, aligned barriers: every copy striped over its 3 shortest overlay paths in
  proportion to their bottlenecks, at once (routing without deadlines or timing).
* ``planner`` — ``wan-planner``, aligned barriers: the LP schedules every copy over paths and 10 s slots within its
  deadline, inference reserved; re-planned whenever transfers arrive or links change.
* ``planner+jitter`` — the same with barriers jittered ±10 % by factory hash (the scenario's own setting).

Two loads: ``checkpoint-herd`` as shipped (deadline = the 8-minute durability SLO; no strategy runs past the next
barrier, so nobody stalls) and an overload variant (2.4× the jobs at the hot sites, deadline = the next barrier)
where late replication stalls jobs at their barriers: GPU time lost to stalls (40 min: the first barrier's copies
run into the second barrier; the planner plans in 30 s slots there, a third of the LP of 10 s slots).
Restores: a job re-placed after a failure where its region holds no copy of its last durable checkpoint pulls it
over the fabric first (``restores``: how many; ``restore_wait_s``: wall time jobs waited beyond their normal
restart for them, summed; ``gpu_hours_restore_wait``: the GPU time that cost). ``home-region`` never moves a job,
and node failures restart in place, so the herd itself restores nothing; the ``outage`` line is the herd with its
first factory down for 1 h at 40 min under ``greedy`` placement (which re-places the stranded jobs elsewhere),
``wan-naive`` (cheap; the wan policy barely matters to a restore, which every policy sends first).
Baseline in the same run: ``naive``;
``peak_queue_cut`` = 1 − planner+jitter's peak checkpoint queue depth ÷ naive's. ``sync_1tb_3regions_s``: the
longest time from commit to durable of the herd's 1 TB checkpoint job (``*-sync1tb``) under planner+jitter;
``sync_1tb_3regions_standalone_s``: the earlier measurement (the planner alone on the generated herd, a 1 TB
checkpoint added with a 2-minute deadline, replayed by the fluid model).

Usage: python benchmarks/wan_bench.py [--seed S] [--repeat N] [--quick]   (writes benchmarks/results/wan.json)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

from superfactory.domain.events import EventKind
from superfactory.domain.transfer import FabricPlan, TrafficClass, Transfer
from superfactory.models.wan_flow import FluidFlow, simulate
from superfactory.policy.wan_paths import Fabric
from superfactory.policy.wan_planner import PlannerConfig, barrier_offset_s, plan_transfers
from superfactory.scenario.fabric import (
    TB_GBIT,
    HerdWorkload,
    checkpoint_herd,
    checkpoint_herd_scenario,
    region_fabric,
)
from superfactory.scenario.loader import load_scenario, parse_scenario
from superfactory.scenario.model import Scenario, ScenarioEvent
from superfactory.sim.twin import TwinResult, run_twin


def arc_arrays(fab: Fabric, herd: HerdWorkload) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cap = np.asarray(fab.capacity_gbps)
    lat = np.asarray(fab.latency_ms)
    lam = np.array([herd.inference_gbps.get((fab.sites[s], fab.sites[d]), 0.0)
                    for s, d in zip(fab.arc_src, fab.arc_dst, strict=True)])
    return cap, lat, lam


def planned_flows(fab: Fabric, plan: FabricPlan) -> list[FluidFlow]:
    idx = fab.arc_index()
    out = []
    for sch in plan.schedules:
        by_path: dict[tuple[str, ...], list[tuple[float, float, float]]] = {}
        for f in sch.flows:
            lo = plan.now_s + f.slot * plan.slot_s
            by_path.setdefault(f.path, []).append((lo, lo + plan.slot_s, f.gbit / plan.slot_s))
        for path, windows in by_path.items():
            p = [fab.site_index(s) for s in path]
            arcs = tuple(idx[(p[i], p[i + 1])] for i in range(len(p) - 1))
            size = sum((hi - lo) * r for lo, hi, r in windows)
            out.append(FluidFlow(sch.transfer_id, arcs, size, windows[0][0], schedule=tuple(windows)))
    return out


def plan_for(fab: Fabric, herd: HerdWorkload, lam: np.ndarray, cfg: PlannerConfig) -> FabricPlan:
    bg = np.repeat(lam[:, None], cfg.slots, axis=1)
    now = min(0, *(t.release_s for t in herd.transfers))
    return plan_transfers(fab, herd.transfers, now, cfg, bg)


def sync_1tb_standalone(seed: int) -> dict[str, object]:
    """The earlier measurement: the planner alone on the generated jittered herd with a 1 TB checkpoint added at
    the busiest site, due in 2 minutes, replayed by the fluid link model."""
    aligned = checkpoint_herd(seed=seed)
    jittered = checkpoint_herd(seed=seed, jitter=barrier_offset_s)
    fab = Fabric.from_links(aligned.fabric.links, aligned.fabric.sites)
    cap, lat, lam = arc_arrays(fab, aligned)
    cfg = PlannerConfig(slot_s=10, horizon_s=1800, pricing_rounds=8)
    src = aligned.fabric.sites[0]
    near = sorted((lk.latency_ms, lk.b if lk.a == src else lk.a) for lk in aligned.fabric.links if src in (lk.a, lk.b))
    extra = tuple(Transfer(f"1tb->{d}", src, d, TB_GBIT, 0, 120, TrafficClass.CHECKPOINT, 0) for _, d in near[:3])
    herd_1tb = HerdWorkload(jittered.fabric, jittered.transfers + extra, jittered.inference_gbps,
                            jittered.interval_s, jittered.window_s)
    plan = plan_for(fab, herd_1tb, lam, cfg)
    res = simulate(cap, lat, planned_flows(fab, plan), lam, dt_s=1.0, until_s=3600.0, start_s=plan.now_s)
    sync_s = max(res.finish_s[t.transfer_id] for t in extra) - min(t.release_s for t in extra)
    return {"sync_1tb_3regions_standalone_s": sync_s, "herd_rtt_source": aligned.fabric.source}


STRATEGIES = (("naive", "wan-naive", False), ("overlay", "wan-overlay", False), ("planner", "wan-planner", False),
              ("planner+jitter", "wan-planner", True))


def twin_run(scenario: Scenario, policy: str, jitter: bool) -> tuple[dict[str, float], TwinResult]:
    """One twin run of ``scenario`` with the wan role's ``policy`` (the scenario's planner parameters for the
    planner), barriers jittered or aligned; returns its row and the result."""
    assert scenario.wan is not None
    params = scenario.wan.policy_params if policy == scenario.wan.policy else ()
    wan = dataclasses.replace(scenario.wan, policy=policy, policy_params=params, barrier_jitter=jitter)
    t0 = time.process_time()
    r = run_twin(dataclasses.replace(scenario, wan=wan))
    cpu = time.process_time() - t0
    assert r.wan is not None
    f, rep = r.wan.fabric, r.wan.replication
    lost = sum(j.lost_work_s * j.job.gpus for j in r.jobs) / 3600.0
    return {"deadline_misses": f.deadline_misses, "transfers": f.transfers_completed,
            "peak_queue_depth": f.peak_queue_depth, "congested_link_s": f.congested_link_s,
            "inference_p99_delay_ms": f.inference_p99_delay_ms, "gpu_hours_stalled": rep.stall_gpu_s / 3600.0,
            "barrier_stalls": rep.stalls, "gpu_hours_lost_to_failures": lost, "durable_checkpoints": rep.durable,
            "reduced_durability": rep.reduced_durability, "peak_link_utilisation": f.peak_utilisation,
            "wan_decisions": r.wan.decisions, "restores": rep.restores.restores,
            "restores_delayed": rep.restores.delayed, "restore_wait_s": rep.restores.wait_s,
            "gpu_hours_restore_wait": rep.restores.wait_gpu_s / 3600.0, "cpu_s": cpu}, r


def barrier_demand_ratio(scenario: Scenario, r: TwinResult, window_s: int = 60) -> float:
    """Replication demand the first barrier puts on the busiest directed link within ``window_s`` of it (every
    copy of a checkpoint written in the window, on its direct link) ÷ that link's capacity over the window."""
    assert scenario.wan is not None
    jobs = {j.id: j for j in scenario.jobs}
    first = min(e.time_s for e in r.events if e.kind is EventKind.CHECKPOINT_COMMITTED)
    window = {e.job for e in r.events if e.kind is EventKind.CHECKPOINT_COMMITTED and e.time_s < first + window_s}
    cap = {(lk.a, lk.b): lk.bandwidth_gbps for lk in scenario.links}
    cap |= {(lk.b, lk.a): lk.bandwidth_gbps for lk in scenario.links}
    demand: dict[tuple[str, str], float] = {}
    for e in r.events:
        job, _, rest = e.job.partition("#")
        if e.kind is EventKind.TRANSFER_COMPLETED and rest.startswith("1->") and job in window:
            pair = tuple(e.factory.split("->"))
            if pair in cap:
                size = jobs[job].checkpoint.size_bytes * scenario.wan.critical_share * 8 / 1e9
                demand[pair] = demand.get(pair, 0.0) + size  # type: ignore[index]
    return max(d / (cap[k] * window_s) for k, d in demand.items())


def sync_1tb_twin(r: TwinResult) -> float:
    """Longest commit-to-durable time of the 1 TB checkpoint job's checkpoints, s."""
    committed: dict[float, int] = {}
    waits = []
    for e in r.events:
        if e.job.endswith("-sync1tb") and e.kind is EventKind.CHECKPOINT_COMMITTED:
            committed[e.value] = e.time_s
        elif e.job.endswith("-sync1tb") and e.kind is EventKind.CHECKPOINT_DURABLE:
            waits.append(e.time_s - committed[e.value])
    return float(max(waits))


def overload_scenario(seed: int, duration_s: int) -> Scenario:
    """checkpoint-herd with 2.4x the jobs at the hot sites and the next barrier as every deadline."""
    doc = checkpoint_herd_scenario(seed=seed, hot_jobs=24)
    doc["wan"]["durability_slo"] = 0  # type: ignore[index]
    doc["wan"]["policy_params"] = {"slot_s": 30, "horizon_s": 1200}  # type: ignore[index]  # 2.4x the transfers
    doc["name"] = "checkpoint-herd-overload"
    return dataclasses.replace(parse_scenario(yaml.safe_dump(doc), "checkpoint-herd-overload.yaml"),
                               duration_s=duration_s)


def twin_tables(seed: int, quick: bool) -> tuple[list[dict], list[dict], dict[str, object]]:
    herd = load_scenario("checkpoint-herd")
    if seed != herd.seed:
        herd = herd.reseeded(seed)
    if quick:
        herd = dataclasses.replace(herd, duration_s=3600)
    rows, runs = [], {}
    for name, policy, jitter in STRATEGIES:
        row, runs[name] = twin_run(herd, policy, jitter)
        rows.append({"strategy": name, **row})
        print(f"  herd {name}: cpu {row['cpu_s']:.1f} s", flush=True)
    overload = overload_scenario(seed, 1800 if quick else 2400)
    over_rows = []
    for name, policy, jitter in (STRATEGIES[0], STRATEGIES[3]):
        row, _ = twin_run(overload, policy, jitter)
        over_rows.append({"strategy": name, **row})
        print(f"  overload {name}: cpu {row['cpu_s']:.1f} s", flush=True)
    extras = {"barrier_demand_ratio": barrier_demand_ratio(herd, runs["naive"]),
              "sync_1tb_3regions_s": sync_1tb_twin(runs["planner+jitter"]),
              "herd_duration_s": herd.duration_s, "overload_duration_s": overload.duration_s}
    return rows, over_rows, extras


def outage_restores(seed: int) -> dict[str, float]:
    """The herd with its first factory down for 1 h at 40 min, ``greedy`` placement (re-places stranded jobs
    elsewhere), ``wan-naive``: restores carried, how many delayed a start, the wait, the longest restore."""
    herd = load_scenario("checkpoint-herd")
    if seed != herd.seed:
        herd = herd.reseeded(seed)
    assert herd.wan is not None
    down = ScenarioEvent(2400, "factory_outage", 3600, factory=herd.factories[0].id)
    s = dataclasses.replace(herd, events=(*herd.events, down),
                            wan=dataclasses.replace(herd.wan, policy="wan-naive", policy_params=()))
    r = run_twin(s, policy="greedy")
    assert r.wan is not None
    rep = r.wan.replication.restores
    restart = {j.id: j.recovery.restart_s for j in s.jobs}
    took = [restart[e.job.split("~")[0]] + e.value for e in r.events
            if e.kind is EventKind.TRANSFER_COMPLETED and e.cause == "restore"]  # value = arrival - placed - restart
    return {"outage_restores": rep.restores, "outage_restores_delayed": rep.delayed,
            "outage_restore_wait_s": rep.wait_s, "outage_restore_max_s": max(took, default=0.0)}


def random_transfers(sites: tuple[str, ...], n: int, seed: int) -> tuple[Transfer, ...]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = rng.choice(len(sites), size=2, replace=False)
        size = float(rng.choice([0.75, 2.0, 4.5])) * TB_GBIT / 3  # one third of a checkpoint per copy stripe
        release = int(rng.integers(0, 600))
        deadline = release + int(rng.integers(600, 1500))
        out.append(Transfer(f"t{i:03d}", sites[int(a)], sites[int(b)], size, release, deadline,
                            TrafficClass(int(rng.choice([0, 1, 1, 1, 2, 3]))), 0))
    return tuple(out)


def planner_speed(seed: int, repeat: int) -> dict[str, float]:
    gen = region_fabric(50, seed)
    fab = Fabric.from_links(gen.links, gen.sites)
    transfers = random_transfers(gen.sites, 200, seed)
    fast = PlannerConfig(slot_s=60, horizon_s=1800, prove_bound=False)
    walls = []
    plan = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        plan = plan_transfers(fab, transfers, 0, fast)
        walls.append(time.perf_counter() - t0)
    assert plan is not None
    t0 = time.perf_counter()
    exact = plan_transfers(fab, transfers, 0, PlannerConfig(slot_s=60, horizon_s=1800, pricing_rounds=30))
    bound_wall = time.perf_counter() - t0
    gap = (plan.objective - exact.lower_bound) / max(abs(exact.lower_bound), 1e-9)
    return {"plan_50x200_s": statistics.median(walls), "plan_gap": max(0.0, gap),
            "plan_objective": plan.objective, "lower_bound": exact.lower_bound,
            "bound_proven_optimal": exact.gap == 0.0, "bound_wall_s": bound_wall,
            "links_50": len(gen.links), "misses_50x200": len(plan.infeasible), "fabric_source": gen.source}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 h of the herd and 30 min of the overload (smoke run)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "wan.json")
    args = ap.parse_args()
    rows, over, extras = twin_tables(args.seed, args.quick)
    restores = outage_restores(args.seed)
    standalone = sync_1tb_standalone(args.seed)
    speed = planner_speed(args.seed, args.repeat)
    head = (f"{'strategy':<16}{'misses':>8}{'peak q':>8}{'q>5 link-s':>12}{'inf p99 ms':>12}{'GPU-h stall':>13}"
            f"{'GPU-h lost':>12}{'durable':>9}{'restores':>10}{'wait s':>8}{'CPU s':>8}")

    def line(r: dict) -> str:
        return (f"{r['strategy']:<16}{r['deadline_misses']:>8}{r['peak_queue_depth']:>8}{r['congested_link_s']:>12.0f}"
                f"{r['inference_p99_delay_ms']:>12.1f}{r['gpu_hours_stalled']:>13.1f}"
                f"{r['gpu_hours_lost_to_failures']:>12.1f}{r['durable_checkpoints']:>9}{r['restores']:>10}"
                f"{r['restore_wait_s']:>8.0f}{r['cpu_s']:>8.1f}")

    print(f"checkpoint-herd in the twin ({extras['herd_duration_s']} s, seed {args.seed}):")
    print(head)
    for r in rows:
        print(line(r))
    print(f"overload: 2.4x jobs at the hot sites, deadline = next barrier ({extras['overload_duration_s']} s):")
    print(head)
    for r in over:
        print(line(r))
    by = {r["strategy"]: r for r in rows}
    ob = {r["strategy"]: r for r in over}
    cut = 1.0 - by["planner+jitter"]["peak_queue_depth"] / max(1, by["naive"]["peak_queue_depth"])
    figures = {
        "deadline_misses_naive": by["naive"]["deadline_misses"],
        "deadline_misses_overlay": by["overlay"]["deadline_misses"],
        "deadline_misses_planner": by["planner+jitter"]["deadline_misses"],
        "deadline_misses_planner_aligned": by["planner"]["deadline_misses"],
        "peak_queue_cut": cut,
        "inference_p99_naive_ms": by["naive"]["inference_p99_delay_ms"],
        "inference_p99_overlay_ms": by["overlay"]["inference_p99_delay_ms"],
        "inference_p99_planner_ms": by["planner+jitter"]["inference_p99_delay_ms"],
        "gpu_hours_stalled_naive": by["naive"]["gpu_hours_stalled"],
        "gpu_hours_stalled_planner": by["planner+jitter"]["gpu_hours_stalled"],
        "overload_gpu_hours_stalled_naive": ob["naive"]["gpu_hours_stalled"],
        "overload_gpu_hours_stalled_planner": ob["planner+jitter"]["gpu_hours_stalled"],
        "overload_deadline_misses_naive": ob["naive"]["deadline_misses"],
        "overload_deadline_misses_planner": ob["planner+jitter"]["deadline_misses"],
        "restores_naive": by["naive"]["restores"],
        "restores_planner": by["planner+jitter"]["restores"],
        "restore_wait_s_naive": by["naive"]["restore_wait_s"],
        "restore_wait_s_planner": by["planner+jitter"]["restore_wait_s"],
        **restores,
        "barrier_demand_ratio": extras["barrier_demand_ratio"],
        "sync_1tb_3regions_s": extras["sync_1tb_3regions_s"],
        "sync_1tb_3regions_standalone_s": standalone["sync_1tb_3regions_standalone_s"],
        "plan_50x200_s": speed["plan_50x200_s"],
        "plan_gap": speed["plan_gap"],
    }
    for k, v in figures.items():
        print(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"herd": rows, "overload": over, "figures": figures, "speed": speed,
                                    "extras": extras, "herd_rtt_source": standalone["herd_rtt_source"],
                                    "seed": args.seed, "quick": args.quick}, indent=2) + "\n")


if __name__ == "__main__":
    main()
