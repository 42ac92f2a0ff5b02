"""Where geo's remaining saving gap comes from, on the real-data fleet (``real-2023``), window by window.

``geo_economics_bench.py`` measures ``saving_captured`` against the hindsight bound and says which pools carry the
gap (``gap_by_pool_usd``: Frankfurt). This bench asks *why*, by watching geo itself: a subclass of the policy
(``geo-diagnosed``, registered only while it runs) makes exactly geo's decisions and, at the first decision of
every simulated hour, records on the plan it just made (nodes it placed counted as taken):

- ``holes_gpu_h``: free GPUs per factory (GPU-hours over the window), and ``fillable_gpu_h``: how many of them gangs
  of the job sizes of that accelerator could take at once (a greedy over topology-aware placements, largest size
  first: free nodes that no gang shape fits are not counted);
- ``pending_fit_gpu_h``: pending work (after the plan) that would fit some lawful factory's free nodes: placement
  left undone, by decision kind (full solve or between), the first such factory, and whether starting there would
  be a restart elsewhere (a move, under the migration quota) (0 would mean every hole is smaller than every
  waiting job);
- ``pending_by_size_gpu_h``: pending work of each accelerator by job size (what the holes would have to take);
- ``busy_gpu_h`` per factory and how much of it is ``only_here_gpu_h``: jobs lawful at no other factory
  (sovereignty: Frankfurt's EU-personal work);
- ``missed_moves``: running jobs that fit, on this plan, at a factory whose 24-hour cost is lower than where they
  run, taken greediest first, by what kept each there: ``not worth over remaining run`` (saving x remaining hours <=
  the move's cost at the value of a GPU-hour), ``24-h span / hysteresis`` (worth over the remaining run but not over
  geo's span with its margin), ``governor``, ``locked`` (not computing), and ``geo's own rule`` (worth it by geo's
  columns; split by whether a full solve ran at that decision). GPU-hours and the saving per hour summed over the
  hours (USD, power only, at the forecast 24-hour costs).

Prints a table per window and key=value lines; writes ``benchmarks/results/geo_gap_diagnosis.json``.

Usage: python benchmarks/geo_gap_diagnosis.py [--months 1,6] [--days 7] [--out X.json]
(needs ../shared/data, exits 0 without it; bad arguments exit 2)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from superfactory.domain.fleet import NODE_FREE, FleetSnapshot, Plan
from superfactory.domain.job import TrainingJob
from superfactory.policy.geo import GeoPolicy
from superfactory.policy.geo_columns import _MOVABLE
from superfactory.policy.geo_plan import pick_nodes
from superfactory.policy.registry import register, unregister
from superfactory.scenario import market_data
from superfactory.sim.twin import run_twin

sys.path.insert(0, str(Path(__file__).parent))
from geo_economics_bench import window_scenario  # a sibling benchmark script

HOUR_S = 3600


class DiagnosedGeo(GeoPolicy):
    """``geo`` itself, recording the figures of the module docstring at the first decision of every hour."""

    last: DiagnosedGeo | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.acc: dict[str, float] = defaultdict(float)
        self._hour = -1
        self._sizes: dict[str, set[int]] = defaultdict(set)
        DiagnosedGeo.last = self

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        plan = super().decide(snapshot, rng)
        if snapshot.now_s // HOUR_S != self._hour:
            self._hour = snapshot.now_s // HOUR_S
            self._record(snapshot, plan)
        return plan

    def _record(self, snap: FleetSnapshot, plan: Plan) -> None:
        acc = self.acc
        fids = [f.id for f in snap.factories]
        status = [np.frombuffer(st.node_status, dtype=np.uint8).copy() for st in snap.states]
        for a in plan.actions:
            nodes = getattr(a, "nodes", ())
            if nodes:
                status[fids.index(a.factory_id)][list(nodes)] = 1
        acted = {a.job_id for a in plan.actions}
        protos: dict[str, TrainingJob] = {}
        for v in (*snap.pending, *snap.running):
            self._sizes[v.job.accelerator].add(v.job.gpus)
            protos.setdefault(v.job.accelerator, v.job)
        for i, f in enumerate(snap.factories):
            free_nodes = {c.system.gpus_per_node: 0 for c in f.clusters}
            for c in f.clusters:
                free_nodes[c.system.gpus_per_node] += int((status[i][c.node_offset:c.node_end] == NODE_FREE).sum())
            acc[f"holes_gpu_h:{f.id}"] += sum(g * n for g, n in free_nodes.items())
            st = status[i].copy()
            for a_name in f.accelerators:
                proto = protos.get(a_name)
                for size in sorted(self._sizes.get(a_name, ()), reverse=True):
                    assert proto is not None
                    job = dataclasses.replace(proto, gpus=size)
                    while (nodes := pick_nodes(f, st, job)) is not None:
                        st[list(nodes)] = 1
                        acc[f"fillable_gpu_h:{f.id}"] += size
        for v in snap.pending:
            if v.job.id in acted:
                continue
            acc[f"pending_by_size_gpu_h:{v.job.accelerator}:{v.job.gpus}"] += v.job.gpus
            sites, _ = self._sites(snap, v.job)
            fit = [snap.factories[i].id for i, *_ in sites
                   if snap.states[i].up and pick_nodes(snap.factories[i], status[i], v.job) is not None]
            if fit:
                acc["pending_fit_gpu_h"] += v.job.gpus
                moved = v.last_factory_id is not None and v.last_factory_id != fit[0]
                acc[f"pending_fit_gpu_h:{'full solve' if self._last_solve_s == snap.now_s else 'between'}:{fit[0]}"
                    f":{'restart elsewhere (quota)' if moved else 'new or same site'}"] += v.job.gpus
        for v in snap.running:
            acc[f"busy_gpu_h:{v.factory_id}"] += v.job.gpus
            if len(self._sites(snap, v.job)[0]) == 1:
                acc[f"only_here_gpu_h:{v.factory_id}"] += v.job.gpus
        self._missed_moves(snap, acted, status)

    def _missed_moves(self, snap: FleetSnapshot, acted: set[str], status: list[np.ndarray]) -> None:
        rate24 = self._rates[0]
        fids = [f.id for f in snap.factories]
        cands = []
        for v in snap.running:
            if v.job.id in acted or v.factory_id is None:
                continue
            cur = fids.index(v.factory_id)
            sites, _ = self._sites(snap, v.job)
            opts = sorted(((mw * (rate24[cur] - rate24[i]), i, mw) for i, _n, _w, mw in sites
                           if i != cur and snap.states[i].up and rate24[i] < rate24[cur]), reverse=True)
            if opts:
                cands.append((opts[0][0] / v.job.gpus, v, cur, opts))
        cands.sort(key=lambda c: -c[0])
        full = self._last_solve_s == snap.now_s
        for _per_gpu, v, cur, opts in cands:
            job = v.job
            for saving_h, i, mw in opts:
                nodes = pick_nodes(snap.factories[i], status[i], job)
                if nodes is None:
                    continue
                status[i][list(nodes)] = 1
                remaining_h = max(1.0, (job.work_s - v.progress_s) / HOUR_S)
                span = max(1, int(min(self.amortise_h, 24, math.ceil(remaining_h))))
                ck = job.checkpoint
                move_usd = ((ck.blocking_s + ck.async_write_s + job.recovery.restart_s) / HOUR_S * job.gpus
                            * self._lam.get(job.accelerator, 1.0))
                margin_h = self.hysteresis * mw * rate24[i]
                if saving_h * remaining_h <= move_usd:
                    why = "not worth over remaining run"
                elif v.state not in _MOVABLE:
                    why = "locked"
                elif not (self.migrate and job.migratable):
                    why = "not migratable"
                elif not self.governor.may_move(job.id, snap.now_s):
                    why = "governor"
                elif (saving_h - margin_h) * span <= move_usd:
                    why = "24-h span / hysteresis"
                else:
                    why = "geo's own rule, " + ("full solve" if full else "no full solve")
                key = f"{why}|{fids[cur]}->{fids[i]}"
                self.acc[f"missed_moves_gpu_h:{key}"] += job.gpus
                self.acc[f"missed_moves_usd:{key}"] += saving_h
                break


def diagnose(month: int, days: int) -> dict[str, Any]:
    sc = window_scenario(month, days)
    register("geo-diagnosed")(DiagnosedGeo)
    try:
        c0 = time.process_time()
        run_twin(sc, policy="geo-diagnosed")
        cpu = time.process_time() - c0
    finally:
        unregister("geo-diagnosed")
    pol = DiagnosedGeo.last
    assert pol is not None
    return {"days": sc.duration_s / 86400, "cpu_s": cpu, "figures": {k: round(v) for k, v in sorted(pol.acc.items())}}


def _print(name: str, r: dict[str, Any]) -> None:
    fig = r["figures"]
    factories = sorted({k.split(":")[1] for k in fig if k.startswith("holes_gpu_h:")})
    hours = r["days"] * 24
    print(f"\n{name} ({r['days']:g} d, {r['cpu_s']:.1f} CPU-s)\n| factory | busy GPUs (mean) | only lawful here | "
          "free GPUs | of which a gang fits |\n|---|---|---|---|---|")
    for f in factories:
        print(f"| {f} | {fig.get(f'busy_gpu_h:{f}', 0) / hours:,.0f} | "
              f"{fig.get(f'only_here_gpu_h:{f}', 0) / hours:,.0f} | {fig.get(f'holes_gpu_h:{f}', 0) / hours:,.0f} | "
              f"{fig.get(f'fillable_gpu_h:{f}', 0) / hours:,.0f} |")
    print("pending (mean GPUs) by size: " + ", ".join(
        f"{k.split(':', 1)[1]}: {v / hours:,.0f}" for k, v in fig.items() if k.startswith("pending_by_size_gpu_h:")))
    print(f"pending_fit_gpu_h={fig.get('pending_fit_gpu_h', 0)} (" + ", ".join(
        f"{k.split(':', 1)[1]}: {v:,}" for k, v in fig.items() if k.startswith("pending_fit_gpu_h:")) + ")")
    print("| kept there by | move | GPU-h | saving USD (sum of hourly) |\n|---|---|---|---|")
    for k, v in sorted(((k, v) for k, v in fig.items() if k.startswith("missed_moves_usd:")), key=lambda kv: -kv[1]):
        why, move = k.split(":", 1)[1].split("|")
        print(f"| {why} | {move} | {fig['missed_moves_gpu_h:' + k.split(':', 1)[1]]:,} | {v:,} |")
    missed = sum(v for k, v in fig.items() if k.startswith("missed_moves_usd:") and "not worth" not in k)
    print(f"window={name} missed_move_saving_usd={missed} pending_fit_gpu_h={fig.get('pending_fit_gpu_h', 0)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", default="1,6", help="comma-separated months 1-12")
    ap.add_argument("--days", type=int, default=7, help="days simulated from the 1st of each month")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "geo_gap_diagnosis.json")
    args = ap.parse_args()
    try:
        months = [int(m) for m in args.months.split(",") if m]
        if not months or any(not 1 <= m <= 12 for m in months) or not 1 <= args.days <= 31:
            raise ValueError
    except ValueError:
        print("geo_gap_diagnosis: --months takes months 1-12 separated by commas; --days 1-31", file=sys.stderr)
        return 2
    if market_data.data_root() is None:
        print("geo_gap_diagnosis: ../shared/data/green-dcc-2023 is absent; nothing to measure")
        return 0
    os.nice(5)
    out: dict[str, Any] = {"days": args.days, "windows": {}}
    for m in months:
        name = f"2023-{m:02d}"
        out["windows"][name] = r = diagnose(m, args.days)
        _print(name, r)
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
