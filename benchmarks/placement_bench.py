"""Placement speed (issue 12): node selection and the throughput check, old code against new on real inputs.

Records every call of the placement functions that three short twin runs make, with copies of their inputs:

- ``fleet-year`` under ``greedy``, cut to ``--greedy-days`` (``tp_aligned_fit``; ``placement_throughput`` from the
  fleet);
- ``fleet-year`` under ``geo``, cut to ``--geo-days`` (``place_gang`` through ``geo.pick_nodes``);
- ``nvl72-saturated`` under ``gang``, cut to ``--gang-hours`` (``place_gang``, ``units_available``, ``probe_ratio``,
  ``placement_throughput``);
- ``default`` under ``gang``, cut to ``--default-gang-hours`` (the same on a mixed DGX H100 / NVL72 fleet).

Then it times, in this process, the implementation from before issue 12's placement work (a verbatim copy below,
``_old_*``) against the current one (``superfactory.policy.nodes``, ``.gangfit``, ``superfactory.models.collective``)
on every recorded call, asserts that both return the same value on every call, and prints a table and
``key=value`` lines: ``placement_speedup=`` (all node-selection calls together), ``tp_aligned_fit_speedup=``,
``place_gang_speedup=``, ``units_available_speedup=``, ``throughput_speedup=`` (the node tuple given as a plain
tuple) and ``throughput_placed_speedup=`` (as the twin sees it: the tuple that placement returned). Times are CPU
seconds (``time.process_time``), the best of ``--repeat`` rounds, old and new alternating, so load on a shared
machine distorts them less. Writes ``benchmarks/results/placement.json``.

    .venv/bin/python benchmarks/placement_bench.py [--greedy-days 4] [--geo-days 3] [--gang-hours 2]
        [--default-gang-hours 24] [--repeat 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from superfactory.cli.stdio import quiet_stdout
from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_FREE
from superfactory.domain.job import TrainingJob
from superfactory.domain.topology import FactoryTopology, split_tp_groups, tp_nodes
from superfactory.models import collective
from superfactory.models.collective import DEGRADED_THROUGHPUT, _alpha_for, _ratio
from superfactory.policy import gangfit, nodes
from superfactory.policy.gangfit import GangShape
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin

OUT = Path(__file__).parent / "results" / "placement.json"

# --------------------------------------------------------------------------------------------------------------
# The implementation before issue 12's placement work (commit b7456c2), verbatim but for the names.
# --------------------------------------------------------------------------------------------------------------


def _old_nodes_needed(factory: Factory, accelerator: str, gpus: int) -> int:
    clusters = factory.clusters_of(accelerator)
    if not clusters:
        return 0
    per_node = clusters[0].system.gpus_per_node
    return -(-gpus // per_node)


def _old_free_nodes(factory: Factory, status: npt.NDArray[np.uint8], accelerator: str) -> npt.NDArray[np.intp]:
    parts = [
        np.flatnonzero(status[c.node_offset : c.node_end] == NODE_FREE) + c.node_offset
        for c in factory.clusters_of(accelerator)
    ]
    if not parts:
        return np.empty(0, dtype=np.intp)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _old_first_fit(factory: Factory, status: npt.NDArray[np.uint8], accelerator: str,
                   gpus: int) -> tuple[int, ...] | None:
    need = _old_nodes_needed(factory, accelerator, gpus)
    if need == 0:
        return None
    free = _old_free_nodes(factory, status, accelerator)
    if free.size < need:
        return None
    return tuple(free[:need].tolist())


def _old_tp_aligned_fit(factory: Factory, status: npt.NDArray[np.uint8], accelerator: str, gpus: int,
                        tp_size: int) -> tuple[int, ...] | None:
    need = _old_nodes_needed(factory, accelerator, gpus)
    if need == 0:
        return None
    clusters = factory.clusters_of(accelerator)
    per_node = clusters[0].system.gpus_per_node
    k = tp_nodes(per_node, gpus, tp_size)
    if k == 1:
        return _old_first_fit(factory, status, accelerator, gpus)
    parts: list[npt.NDArray[np.intp]] = []
    found = 0
    for c in clusters:
        free = np.flatnonzero(status[c.node_offset : c.node_end] == NODE_FREE)
        if free.size == 0:
            continue
        domain = free // c.system.nodes_per_domain
        new_run = np.empty(free.size, dtype=bool)
        new_run[0] = True
        np.not_equal(domain[1:], domain[:-1], out=new_run[1:])
        starts = np.flatnonzero(new_run)
        counts = np.diff(np.append(starts, free.size))
        run_id = np.cumsum(new_run) - 1
        rank = np.arange(free.size) - starts[run_id]
        usable = free[rank < (counts - counts % k)[run_id]] + c.node_offset
        parts.append(usable)
        found += usable.size
        if found >= need:
            break
    if found < need:
        return None
    picked = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return tuple(picked[:need].tolist())


def _old_best_fit(cap: npt.NDArray[np.int64], need: int, parent_cap: npt.NDArray[np.int64] | None) -> int:
    ok = np.flatnonzero(cap >= need)
    if ok.size == 0:
        return -1
    c = cap[ok]
    keys = (ok, parent_cap[ok], c) if parent_cap is not None else (ok, c)
    return int(ok[np.lexsort(keys)[0]])


def _old_cover(idx: npt.NDArray[np.intp], cap: npt.NDArray[np.int64], need: int) -> list[tuple[int, int]]:
    order = np.lexsort((idx, -cap))
    idx, cap = idx[order], cap[order]
    out: list[tuple[int, int]] = []
    i = 0
    while need > 0 and i < idx.size:
        rest = cap[i:]
        fits = np.flatnonzero(rest >= need)
        if fits.size:
            j = i + int(fits[-1])
            out.append((int(idx[j]), need))
            return out
        out.append((int(idx[i]), int(cap[i])))
        need -= int(cap[i])
        i += 1
    return out if need <= 0 else []


def _old_place_gang(topo: FactoryTopology, usable: npt.NDArray[np.bool_], shape: GangShape) -> tuple[int, ...] | None:
    free_idx = np.flatnonzero(usable)
    k, need, seg = shape.unit_nodes, shape.units, shape.segment_units
    if free_idx.size < shape.nodes or need <= 0:
        return None
    free_dom = topo.node_domain[free_idx]
    free_d = np.bincount(free_dom, minlength=topo.domains).astype(np.int64)
    cap_d = free_d // k
    leaf_cap = np.bincount(topo.domain_leaf, weights=cap_d, minlength=topo.leaves).astype(np.int64)
    leaf_cap = leaf_cap // seg * seg
    if int(leaf_cap.sum()) < need:
        return None
    hall_cap = np.bincount(topo.leaf_hall, weights=leaf_cap, minlength=topo.halls).astype(np.int64)
    take_d: list[tuple[int, int]] = []
    d = _old_best_fit(cap_d, need, leaf_cap[topo.domain_leaf]) if seg == 1 or need <= seg else -1
    if d >= 0:
        take_d = [(d, need)]
    else:
        lf = _old_best_fit(leaf_cap, need, hall_cap[topo.leaf_hall])
        if lf >= 0:
            leaves = [(lf, need)]
        else:
            h = _old_best_fit(hall_cap, need, None)
            halls = [(h, need)] if h >= 0 else _old_cover(np.arange(topo.halls, dtype=np.intp), hall_cap, need)
            leaves = []
            for hh, n_h in halls:
                in_h = np.flatnonzero(topo.leaf_hall == hh)
                leaves.extend(_old_cover(in_h, leaf_cap[in_h], n_h))
        for leaf, n_l in leaves:
            take_d.extend(_old_fragments_first(np.flatnonzero(topo.domain_leaf == leaf), cap_d, n_l))
    return _old_nodes_of(free_idx, free_dom, take_d, k)


def _old_fragments_first(doms: npt.NDArray[np.intp], cap_d: npt.NDArray[np.int64], need: int) -> list[tuple[int, int]]:
    c = cap_d[doms]
    keep = c > 0
    doms, c = doms[keep], c[keep]
    order = np.lexsort((doms, c))
    out: list[tuple[int, int]] = []
    for dd, cc in zip(doms[order].tolist(), c[order].tolist(), strict=True):
        if need <= 0:
            break
        take = min(cc, need)
        out.append((dd, take))
        need -= take
    return out


def _old_nodes_of(free_idx: npt.NDArray[np.intp], free_dom: npt.NDArray[np.int32], take_d: list[tuple[int, int]],
                  k: int) -> tuple[int, ...]:
    take_d.sort()
    doms = np.fromiter((d for d, _ in take_d), dtype=np.int64, count=len(take_d))
    starts = np.searchsorted(free_dom, doms, side="left")
    parts = [free_idx[s : s + u * k] for s, (_, u) in zip(starts.tolist(), take_d, strict=True)]
    return tuple(np.concatenate(parts).tolist()) if parts else ()


def _old_units_available(topo: FactoryTopology, usable: npt.NDArray[np.bool_], shape: GangShape) -> int:
    free_d = np.bincount(topo.node_domain[usable], minlength=topo.domains).astype(np.int64)
    leaf_cap = np.bincount(topo.domain_leaf, weights=free_d // shape.unit_nodes, minlength=topo.leaves)
    return int((leaf_cap.astype(np.int64) // shape.segment_units * shape.segment_units).sum())


def _old_probe_ratio(topo: FactoryTopology, nodes: tuple[int, ...], job: TrainingJob,
                     link_factor: dict[int, float]) -> tuple[float, list[int]]:
    if not nodes:
        return 1.0, []
    idx = np.asarray(nodes, dtype=np.intp)
    ci = int(topo.node_cluster[idx[0]])
    tp = max(1, min(job.tp_size, job.gpus))
    worst, bad = 1.0, []
    if tp > 1:
        if split_tp_groups(topo, nodes, job.gpus, job.tp_size):
            worst = min(worst, _ratio(tp, _alpha_for(tp), topo.nvlink_gbps[ci],
                                      topo.nic_gbps[ci] / topo.nvlink_gbps[ci]))
        doms: npt.NDArray[np.int32] = np.unique(topo.node_domain[idx])
        for d in doms.tolist():
            f = link_factor.get(int(d), 1.0)
            if f < 1.0:
                r = _ratio(tp, _alpha_for(tp), topo.nvlink_gbps[ci], f)
                bad.append(int(d))
                worst = min(worst, r)
    return worst, bad


def _old_placement_throughput(topo: FactoryTopology, nodes: tuple[int, ...], job: TrainingJob,
                              link_factor: dict[int, float]) -> float:
    if not nodes or max(1, min(job.tp_size, job.gpus)) == 1:
        return 1.0
    if split_tp_groups(topo, nodes, job.gpus, job.tp_size):
        return DEGRADED_THROUGHPUT
    if link_factor:
        doms = np.unique(topo.node_domain[np.asarray(nodes, dtype=np.intp)])
        if any(link_factor.get(int(d), 1.0) < 1.0 for d in doms.tolist()):
            return DEGRADED_THROUGHPUT
    return 1.0


# --------------------------------------------------------------------------------------------------------------
# Recording real calls
# --------------------------------------------------------------------------------------------------------------

#: function name -> (old implementation, current implementation)
PAIRS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "tp_aligned_fit": (_old_tp_aligned_fit, nodes.tp_aligned_fit),
    "first_fit": (_old_first_fit, nodes.first_fit),
    "place_gang": (_old_place_gang, gangfit.place_gang),
    "units_available": (_old_units_available, gangfit.units_available),
    "placement_throughput": (_old_placement_throughput, collective.placement_throughput),
    "probe_ratio": (_old_probe_ratio, collective.probe_ratio),
}
NODE_SELECTION = ("tp_aligned_fit", "first_fit", "place_gang", "units_available")


def _frozen(a: Any) -> Any:
    """A copy of a call argument that later mutation by the caller cannot change."""
    if isinstance(a, np.ndarray):
        return a.copy()
    if isinstance(a, dict):
        return dict(a)
    return a


@contextmanager
def recording(calls: dict[str, list[tuple[Any, ...]]]) -> Iterator[None]:
    """Wrap every function of :data:`PAIRS` wherever a loaded ``superfactory`` module refers to it by name, so each
    call's (copied) arguments are appended to ``calls[name]``."""
    import sys

    from superfactory.policy import registry

    registry.available()  # imports every policy module
    saved: list[tuple[Any, str, Any]] = []
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("superfactory.") or mod is None:
            continue
        for name, (_, real) in PAIRS.items():
            if getattr(mod, name, None) is not real or real.__module__ == mod_name:
                continue  # not used there, or its own module (a nested call is part of its caller's time)

            def wrapper(*args: Any, _real: Any = real, _name: str = name) -> Any:
                calls.setdefault(_name, []).append(tuple(_frozen(a) for a in args))
                return _real(*args)

            saved.append((mod, name, real))
            setattr(mod, name, wrapper)
    try:
        yield
    finally:
        for mod, name, real in saved:
            setattr(mod, name, real)


def record(runs: list[tuple[str, str, float]]) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Per run label, the recorded calls of each function. ``runs``: (scenario, policy, hours)."""
    loaded: dict[str, Any] = {}
    out: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for name, policy, hours in runs:
        sc = loaded.get(name) or load_scenario(name)
        loaded[name] = sc
        cut = int(hours * 3600)
        if cut < sc.duration_s:
            sc = dataclasses.replace(sc, duration_s=cut, jobs=tuple(j for j in sc.jobs if j.submit_s < cut),
                                     events=tuple(e for e in sc.events if e.at_s < cut))
        calls: dict[str, list[tuple[Any, ...]]] = {}
        with recording(calls), quiet_stdout():
            run_twin(sc, policy=policy)
        out[f"{name}/{policy}/{hours:g}h"] = calls
    return out


# --------------------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b and (not isinstance(a, tuple) or all(
        type(x) is type(y) for x, y in zip(a, b, strict=True)))


def _time(fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> float:
    t0 = time.process_time()
    for args in calls:
        fn(*args)
    return time.process_time() - t0


def _interleaved(old: Callable[..., Any], new: Callable[..., Any], calls: list[tuple[Any, ...]],
                 repeat: int, chunk: int = 32) -> tuple[float, float]:
    """CPU seconds of ``old`` and of ``new`` over all ``calls``: per chunk of calls, the best of ``repeat``
    alternating timings of each, summed over the chunks (so a burst of load on the machine hits both alike)."""
    t_old = t_new = 0.0
    for i in range(0, len(calls), chunk):
        part = calls[i : i + chunk]
        best_old = best_new = float("inf")
        for _ in range(repeat):
            best_old = min(best_old, _time(old, part))
            best_new = min(best_new, _time(new, part))
        t_old += best_old
        t_new += best_new
    return t_old, t_new


def _placed(calls: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The calls with each node tuple re-made the way placement makes it (:func:`collective.nodes_tuple`)."""
    return [(a[0], collective.nodes_tuple(np.asarray(a[1], dtype=np.intp)), *a[2:]) for a in calls]


def compare(name: str, calls: list[tuple[Any, ...]], repeat: int) -> dict[str, float]:
    """Check old == new on every call, then the best-of-``repeat`` CPU time of each over all calls."""
    old, new = PAIRS[name]
    for args in calls:
        a, b = old(*args), new(*args)
        if not _same(a, b):
            raise SystemExit(f"{name}: old and new differ on a recorded call: {a!r} != {b!r}")
    t_old, t_new = _interleaved(old, new, calls, repeat)
    row = {"calls": len(calls), "old_cpu_s": t_old, "new_cpu_s": t_new,
           "old_us_per_call": t_old / len(calls) * 1e6, "new_us_per_call": t_new / len(calls) * 1e6,
           "speedup": t_old / t_new if t_new > 0 else float("inf")}
    if name == "placement_throughput":
        # as the twin calls it: on the tuple placement returned (its array is remembered); batches stay within
        # the remembered-array table's size
        t_placed = 0.0
        for i in range(0, len(calls), 32):
            batch = _placed(calls[i : i + 32])
            t_placed += min(_time(new, batch) for _ in range(repeat))
        row["new_placed_cpu_s"] = t_placed
        row["placed_speedup"] = t_old / t_placed if t_placed > 0 else float("inf")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--greedy-days", type=float, default=4.0)
    ap.add_argument("--geo-days", type=float, default=3.0)
    ap.add_argument("--gang-hours", type=float, default=2.0)
    ap.add_argument("--default-gang-hours", type=float, default=24.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if min(args.greedy_days, args.geo_days, args.gang_hours, args.default_gang_hours) <= 0 or args.repeat < 1:
        ap.error("the cuts must be positive and --repeat at least 1")
    t0 = time.process_time()
    recorded = record([("fleet-year", "greedy", args.greedy_days * 24), ("fleet-year", "geo", args.geo_days * 24),
                       ("nvl72-saturated", "gang", args.gang_hours), ("default", "gang", args.default_gang_hours)])
    record_cpu_s = time.process_time() - t0
    rows: dict[str, dict[str, float]] = {}
    per_run: dict[str, dict[str, int]] = {}
    for label, calls in recorded.items():
        per_run[label] = {k: len(v) for k, v in calls.items()}
    merged = {f: [c for calls in recorded.values() for c in calls.get(f, [])] for f in PAIRS}
    for fname, calls in merged.items():
        if calls:
            rows[fname] = compare(fname, calls, args.repeat)
    sel = [rows[f] for f in NODE_SELECTION if f in rows]
    old_sel, new_sel = sum(r["old_cpu_s"] for r in sel), sum(r["new_cpu_s"] for r in sel)
    summary = {
        "placement_speedup": old_sel / new_sel if new_sel > 0 else float("inf"),
        "tp_aligned_fit_speedup": rows.get("tp_aligned_fit", {}).get("speedup", float("nan")),
        "place_gang_speedup": rows.get("place_gang", {}).get("speedup", float("nan")),
        "units_available_speedup": rows.get("units_available", {}).get("speedup", float("nan")),
        "throughput_speedup": rows.get("placement_throughput", {}).get("speedup", float("nan")),
        "throughput_placed_speedup": rows.get("placement_throughput", {}).get("placed_speedup", float("nan")),
        "probe_ratio_speedup": rows.get("probe_ratio", {}).get("speedup", float("nan")),
    }
    print(f"{'function':<22}{'calls':>8}{'old us/call':>13}{'new us/call':>13}{'speedup':>9}")
    for fname, r in rows.items():
        print(f"{fname:<22}{int(r['calls']):>8}{r['old_us_per_call']:>13.1f}{r['new_us_per_call']:>13.1f}"
              f"{r['speedup']:>9.2f}")
    print("every recorded call: old and new results identical")
    for k, v in summary.items():
        print(f"{k}={v:.3f}")
    print(f"identical_calls={sum(int(r['calls']) for r in rows.values())}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "summary": summary, "functions": rows, "calls_per_run": per_run, "record_cpu_s": record_cpu_s,
        "repeat": args.repeat, "cuts": {"greedy_days": args.greedy_days, "geo_days": args.geo_days,
                                        "gang_hours": args.gang_hours},
        "baseline": "verbatim copy in this file of the code at commit b7456c2 (before the change)",
        "time": "CPU seconds (time.process_time), best of the repeats, over all recorded calls",
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
