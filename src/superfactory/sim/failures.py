"""The factory-wide failure stream of the twin (rates come from :mod:`superfactory.domain.reliability`).

One Poisson stream per factory of rate sum(node rates): draw the time to the next failure, pick a node in
proportion to its rate, pick the cause in proportion to its share on that node; the caller discards draws that
hit a node that is already down (thinning, so down nodes do not fail again).
"""

from __future__ import annotations

import math

import numpy as np

from superfactory.domain.factory import Factory
from superfactory.domain.reliability import FailureModel


class FactoryFailureProcess:
    """The Poisson failure stream of one factory (its own RNG stream, so factories don't perturb each other).

    ``next_failure(now_s)`` returns ``(time_s, node, cause_index)`` of the next candidate failure; the caller
    discards candidates that hit a node that is already down (thinning).
    """

    def __init__(self, factory: Factory, model: FailureModel, rng: np.random.Generator) -> None:
        self.model = model
        self.rng = rng
        node_rate = np.empty(factory.nodes, dtype=float)
        self._cause_cdf_by_cluster: list[np.ndarray] = []
        self._cluster_of_node = np.empty(factory.nodes, dtype=np.intp)
        for ci, c in enumerate(factory.clusters):
            rates = model.node_rates_per_s(c.system.gpus_per_node)
            node_rate[c.node_offset : c.node_end] = rates.sum()
            self._cluster_of_node[c.node_offset : c.node_end] = ci
            total = rates.sum()
            self._cause_cdf_by_cluster.append(np.cumsum(rates) / total if total > 0 else np.ones_like(rates))
        self.total_rate_per_s = float(node_rate.sum())
        self._node_cdf = np.cumsum(node_rate) / self.total_rate_per_s if self.total_rate_per_s > 0 else None

    def next_failure(self, now_s: int) -> tuple[int, int, int] | None:
        """The next candidate failure after ``now_s``, or ``None`` if the factory never fails."""
        if self._node_cdf is None:
            return None
        gap_s = self.rng.exponential(1.0 / self.total_rate_per_s)
        # the arrays' own searchsorted (the np.searchsorted wrapper costs as much again; ~10^5 draws a fleet-year)
        node = int(self._node_cdf.searchsorted(self.rng.random(), side="right"))
        node = min(node, len(self._node_cdf) - 1)
        cdf = self._cause_cdf_by_cluster[int(self._cluster_of_node[node])]
        cause = min(int(cdf.searchsorted(self.rng.random(), side="right")), len(cdf) - 1)
        # Round up so two failures never share a timestamp with a zero gap by accident of truncation.
        return now_s + max(1, math.ceil(gap_s)), node, cause
