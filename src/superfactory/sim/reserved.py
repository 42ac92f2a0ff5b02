"""Capacity reserved outside training jobs (inference replicas): reserve, release and claim nodes.

Part of :class:`~superfactory.sim.fleet.SimulatedFleet` (a mixin over its state).
"""

from __future__ import annotations

import numpy as np

from superfactory.domain.fleet import NODE_FREE
from superfactory.errors import SimulationError


class ReservedCapacityMixin:
    """Nodes held outside training jobs, e.g. by inference replicas (uses SimulatedFleet's state)."""

    def free_nodes_of(self, factory_index: int, accelerator: str) -> np.ndarray:
        """Indices of free, healthy nodes of ``accelerator`` in a factory (empty while it is down)."""
        r = self.rt[factory_index]
        if not r.up:
            return np.empty(0, dtype=np.intp)
        ok = [ci for ci, c in enumerate(r.factory.clusters) if c.accelerator == accelerator]
        mask = (r.status == NODE_FREE) & np.isin(r.node_cluster, ok)
        return np.flatnonzero(mask)

    def reserve_nodes(self, factory_index: int, accelerator: str, count: int) -> tuple[int, ...]:
        """Take up to ``count`` free healthy nodes of ``accelerator`` for a non-job owner; returns them."""
        nodes = self.free_nodes_of(factory_index, accelerator)[:max(count, 0)]
        if nodes.size:
            r = self.rt[factory_index]
            r.accrue(self.k.now_s())
            r.reserve(nodes)
        return tuple(int(n) for n in nodes)

    def release_reserved(self, factory_index: int, nodes: tuple[int, ...]) -> None:
        """Give reserved nodes back to the free pool (and to training)."""
        idx = np.asarray(nodes, dtype=np.intp)
        r = self.rt[factory_index]
        if idx.size == 0:
            return
        if not np.all(r.reserved[idx]):
            raise SimulationError(f"{r.factory.id}: released nodes that were not reserved")
        r.accrue(self.k.now_s())
        r.unreserve(idx)
        self.request_decision()

    def set_claim(self, factory_index: int, accelerator: str, count: int) -> None:
        """Want ``count`` more nodes of ``accelerator``: nodes jobs release there go to the claim first."""
        self.claims[(factory_index, accelerator)] = max(count, 0)

    def take_claimed(self, factory_index: int, accelerator: str) -> tuple[int, ...]:
        """Nodes handed over (already reserved) since the last call."""
        return tuple(self.claimed.pop((factory_index, accelerator), ()))

    def _serve_claims(self, fi: int, nodes: tuple[int, ...]) -> None:
        r = self.rt[fi]
        for (cfi, acc), want in self.claims.items():
            if cfi != fi or want <= 0 or not r.up:
                continue
            idx = np.asarray(nodes, dtype=np.intp)
            idx = idx[(r.status[idx] == NODE_FREE) & (np.asarray(
                [r.factory.clusters[int(c)].accelerator == acc for c in r.node_cluster[idx]], dtype=bool))][:want]
            if idx.size:
                r.reserve(idx)  # accrued by the caller
                self.claims[(cfi, acc)] = want - int(idx.size)
                self.claimed.setdefault((cfi, acc), []).extend(int(n) for n in idx)
