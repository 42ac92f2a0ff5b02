"""The topology-blind first-fit baseline (policy ``firstfit-blind``): what a scheduler without a topology or
backfill plugin does (Slurm ``sched/builtin`` with ``topology/flat``; a plain Kubernetes gang queue).

Jobs are taken strictly in priority order (then submission, then id). Each gets the lowest-numbered free nodes
of its accelerator, with no notion of NVLink domains, racks, leaves or halls, so a TP group may straddle two
domains (the twin then runs it at the degraded throughput of :mod:`superfactory.models.collective`). The first
job that does not fit blocks the queue: no backfill, no reservations, no preemption, no hot-swap. The existing
``greedy`` policy is the same node choice *with* unlimited backfill (and so it can starve big gangs).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from superfactory.domain.fleet import FleetSnapshot, JobView, Place, Plan
from superfactory.policy.feasibility import evaluate
from superfactory.policy.gang import queue_order
from superfactory.policy.nodes import first_fit, nodes_needed
from superfactory.policy.registry import PolicyBase, register


@register("firstfit-blind")
class FirstFitBlind(PolicyBase):
    """Topology-blind first-fit in strict priority order (no backfill): the baseline for ``gang``."""

    name = "firstfit-blind"

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng  # deterministic
        status: dict[int, npt.NDArray[np.uint8]] = {}
        it_power = [s.it_power_w for s in snapshot.states]
        actions: list[Place] = []
        waiting: list[tuple[str, str]] = []
        refusals: list[tuple[str, str, str]] = []
        blocked_by: str | None = None
        for view in queue_order(snapshot.pending):
            if blocked_by is not None:
                waiting.append((view.job.id, f"queued behind {blocked_by} (strict priority order, no backfill)"))
                continue
            placed = self._try(snapshot, view, status, it_power, refusals)
            if isinstance(placed, Place):
                actions.append(placed)
            else:
                waiting.append((view.job.id, placed))
                blocked_by = view.job.id
        return Plan(tuple(actions), tuple(waiting), tuple(refusals))

    @staticmethod
    def _try(snapshot: FleetSnapshot, view: JobView, status: dict[int, npt.NDArray[np.uint8]],
             it_power: list[float], refusals: list[tuple[str, str, str]]) -> Place | str:
        job = view.job
        home = view.last_factory_id or job.home_factory
        order = list(range(len(snapshot.factories)))
        if home is not None and any(f.id == home for f in snapshot.factories):
            order.remove(snapshot.factory_index(home))
            order.insert(0, snapshot.factory_index(home))
        reasons: list[str] = []
        for i in order:
            f, st = snapshot.factories[i], snapshot.states[i]
            need = nodes_needed(f, job.accelerator, job.gpus)
            check = evaluate(view, f, st, it_power[i], need)
            if not check.ok:
                reasons.append(check.reason)
                audit = check.audit(job.id, f.id)
                if audit is not None:
                    refusals.append(audit)
                continue
            extra_w = check.extra_it_w
            if i not in status:
                status[i] = np.frombuffer(st.node_status, dtype=np.uint8).copy()
            nodes = first_fit(f, status[i], job.accelerator, job.gpus)
            if nodes is None:
                free = int((status[i] == 0).sum())
                reasons.append(f"{f.id}: needs {need} free {job.accelerator} nodes, {free} free")
                continue
            status[i][list(nodes)] = 1
            it_power[i] += extra_w
            return Place(job.id, f.id, nodes)
        return "; ".join(reasons) or "no candidate factory"
