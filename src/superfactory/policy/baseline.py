"""Baseline placement policies (greedy, home-region, cheapest-static) with TP-aligned first-fit nodes.

These are the reference points the smarter policies are measured against. Neither migrates nor preempts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt

from superfactory.domain.fleet import NODE_FREE, FleetSnapshot, JobView, Place, Plan
from superfactory.policy.feasibility import evaluate
from superfactory.policy.nodes import nodes_needed, tp_aligned_fit
from superfactory.policy.registry import PolicyBase, register

FULL = "full"


def _why(snapshot: FleetSnapshot, accelerator: str, reasons: dict[int, str]) -> str:
    """One stable sentence for a waiting job: factories in scenario order, full ones grouped, those without
    the accelerator grouped, other refusals verbatim (so the reason changes only when the situation does)."""
    if not reasons:
        return "no candidate factory"
    full = [snapshot.factories[i].id for i in sorted(reasons) if reasons[i] == FULL]
    lacking = [snapshot.factories[i].id for i in sorted(reasons)
               if snapshot.factories[i].gpus_of(accelerator) == 0]
    parts = []
    if full:
        parts.append(f"not enough free {accelerator} nodes at {', '.join(full)}")
    parts.extend(reasons[i] for i in sorted(reasons)
                 if reasons[i] != FULL and snapshot.factories[i].id not in lacking)
    if lacking:
        parts.append(f"no {accelerator} at {', '.join(lacking)}")
    return "; ".join(parts)


def _queue_order(pending: tuple[JobView, ...]) -> list[JobView]:
    """Higher priority first, then earlier submission (a requeued job keeps its place), then id."""
    return sorted(pending, key=lambda v: (-v.job.priority, v.job.submit_s, v.job.id))


class _FirstFitPlanner(PolicyBase, ABC):
    """Shared machinery: walk the queue, try candidate factories in order, first-fit nodes that never split a
    tensor-parallel group across NVLink domains (:func:`~superfactory.policy.nodes.tp_aligned_fit`).

    Subclasses choose the candidate factories for each job (:meth:`candidates`). Within one call, capacity
    and power taken by earlier placements are tracked so a plan never double-books a node or a megawatt.
    Jobs that fit nowhere wait; later, smaller jobs may backfill around them.
    """

    name = "abstract"

    @abstractmethod
    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        """Factory indices to try for ``view``, best first."""

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng  # deterministic
        status: dict[int, npt.NDArray[np.uint8]] = {}
        free_count: dict[tuple[int, str], int] = {}  # free nodes per (factory, accelerator), kept up to date
        it_power = [s.it_power_w for s in snapshot.states]
        actions: list[Place] = []
        waiting: list[tuple[str, str]] = []
        refusals: list[tuple[str, str, str]] = []
        for view in _queue_order(snapshot.pending):
            job = view.job
            reasons: dict[int, str] = {}
            placed = False
            for i in self.candidates(snapshot, view):
                f, st = snapshot.factories[i], snapshot.states[i]
                check = evaluate(view, f, st, it_power[i])
                if not check.ok:
                    reasons[i] = check.reason
                    audit = check.audit(job.id, f.id)
                    if audit is not None:
                        refusals.append(audit)
                    continue
                extra_w = check.extra_it_w
                if i not in status:
                    status[i] = np.frombuffer(st.node_status, dtype=np.uint8).copy()
                key = (i, job.accelerator)
                if key not in free_count:
                    free_count[key] = sum(int((status[i][c.node_offset : c.node_end] == NODE_FREE).sum())
                                          for c in f.clusters_of(job.accelerator))
                need = nodes_needed(f, job.accelerator, job.gpus)
                nodes = (tp_aligned_fit(f, status[i], job.accelerator, job.gpus, job.tp_size)
                         if free_count[key] >= need else None)
                if nodes is None:
                    reasons[i] = FULL
                    continue
                status[i][list(nodes)] = 1
                free_count[key] -= len(nodes)
                it_power[i] += extra_w
                actions.append(Place(job.id, f.id, nodes))
                placed = True
                break
            if not placed:
                waiting.append((job.id, _why(snapshot, job.accelerator, reasons)))
        return Plan(tuple(actions), tuple(waiting), tuple(refusals))


@register("greedy")
class GreedyCheapest(_FirstFitPlanner):
    """Cheapest feasible factory now (price x PUE), first-fit nodes; never migrates."""

    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        return sorted(
            range(len(snapshot.factories)),
            key=lambda i: (snapshot.states[i].price_usd_per_mwh * snapshot.factories[i].pue, i),
        )


@register("home-region")
class HomeRegion(_FirstFitPlanner):
    """Each job runs only in the factory it was submitted to, queueing when it is full (price-blind)."""

    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        home = view.job.home_factory
        if home is None:
            return list(range(len(snapshot.factories)))
        return [snapshot.factory_index(home)]


@register("cheapest-static")
class CheapestStatic(_FirstFitPlanner):
    """Factory with the lowest average price so far (x PUE) first, first-fit nodes; ignores the hour."""

    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        def avg(i: int) -> float:
            hist = snapshot.price_history.get(snapshot.factories[i].market, ())
            mean = sum(hist) / len(hist) if hist else snapshot.states[i].price_usd_per_mwh
            return mean * snapshot.factories[i].pue

        return sorted(range(len(snapshot.factories)), key=lambda i: (avg(i), i))
