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

    Cost (issue 12): a decision's work grows with the *distinct* job shapes waiting, not with the queue. A job
    that fits nowhere leaves its outcome (reasons, refusals) under its shape — accelerator, GPUs, TP size, data
    classes and candidate factories; jobs with a carbon budget are always evaluated, their outcome depends on
    their own progress — and a later job of the same shape reuses it until the plan places something (only a
    placement changes capacity or power within a decision). The queue order is kept while the world shows the
    same pending tuple (a world that reuses it while its queue is unchanged saves the sort).
    """

    name = "abstract"
    #: whether :meth:`candidates` depends on the job; when False it is called once per decision
    candidates_per_job = True

    def __init__(self) -> None:
        super().__init__()
        self._order_of: tuple[tuple[JobView, ...], list[JobView]] | None = None

    @abstractmethod
    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        """Factory indices to try for ``view``, best first."""

    def _queue(self, pending: tuple[JobView, ...]) -> list[JobView]:
        memo = self._order_of
        if memo is not None and memo[0] is pending:
            return memo[1]
        order = _queue_order(pending)
        self._order_of = (pending, order)
        return order

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng  # deterministic
        status: dict[int, npt.NDArray[np.uint8]] = {}
        free_count: dict[tuple[int, str], int] = {}  # free nodes per (factory, accelerator), kept up to date
        it_power = [s.it_power_w for s in snapshot.states]
        actions: list[Place] = []
        waiting: list[tuple[str, str]] = []
        refusals: list[tuple[str, str, str]] = []
        # shape -> (placements made when it was computed, why it waits, (factory index, refusal reason) ...)
        failed: dict[tuple[object, ...], tuple[int, str, tuple[tuple[int, str], ...]]] = {}
        shared = None if self.candidates_per_job or not snapshot.pending else self.candidates(
            snapshot, snapshot.pending[0])
        for view in self._queue(snapshot.pending):
            job = view.job
            cands = self.candidates(snapshot, view) if shared is None else shared
            shape: tuple[object, ...] | None = None
            if job.carbon_budget_tco2 is None:
                shape = (job.accelerator, job.gpus, job.tp_size, job.sovereignty,
                         None if shared is not None else tuple(cands))
                hit = failed.get(shape)
                if hit is not None and hit[0] == len(actions):
                    refusals.extend((job.id, snapshot.factories[i].id, reason) for i, reason in hit[2])
                    waiting.append((job.id, hit[1]))
                    continue
            reasons: dict[int, str] = {}
            refused: list[tuple[int, str]] = []
            placed = False
            for i in cands:
                f, st = snapshot.factories[i], snapshot.states[i]
                check = evaluate(view, f, st, it_power[i])
                if not check.ok:
                    reasons[i] = check.reason
                    audit = check.audit(job.id, f.id)
                    if audit is not None:
                        refusals.append(audit)
                        refused.append((i, audit[2]))
                    continue
                extra_w = check.extra_it_w
                key = (i, job.accelerator)
                if key not in free_count:  # counted on the snapshot's bytes: placements so far touched other keys
                    raw = st.node_status
                    free_count[key] = sum(raw.count(NODE_FREE, c.node_offset, c.node_end)
                                          for c in f.clusters_of(job.accelerator))
                need = nodes_needed(f, job.accelerator, job.gpus)
                nodes = None
                if free_count[key] >= need:
                    if i not in status:
                        status[i] = np.frombuffer(st.node_status, dtype=np.uint8).copy()
                    nodes = tp_aligned_fit(f, status[i], job.accelerator, job.gpus, job.tp_size)
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
                why = _why(snapshot, job.accelerator, reasons)
                waiting.append((job.id, why))
                if shape is not None:
                    failed[shape] = (len(actions), why, tuple(refused))
        return Plan(tuple(actions), tuple(waiting), tuple(refusals))


@register("greedy")
class GreedyCheapest(_FirstFitPlanner):
    """Cheapest feasible factory now (price x PUE), first-fit nodes; never migrates."""

    candidates_per_job = False

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

    candidates_per_job = False

    def candidates(self, snapshot: FleetSnapshot, view: JobView) -> list[int]:
        def avg(i: int) -> float:
            hist = snapshot.price_history.get(snapshot.factories[i].market, ())
            mean = sum(hist) / len(hist) if hist else snapshot.states[i].price_usd_per_mwh
            return mean * snapshot.factories[i].pue

        return sorted(range(len(snapshot.factories)), key=lambda i: (avg(i), i))
