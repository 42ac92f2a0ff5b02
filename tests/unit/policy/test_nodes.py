"""Node selection: TP-aligned first fit keeps every tensor-parallel group inside one NVLink domain."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from superfactory.domain.factory import Factory, build_clusters
from superfactory.domain.fleet import NODE_BUSY, NODE_FREE
from superfactory.policy.nodes import first_fit, tp_aligned_fit


def _nvl72(racks: int) -> Factory:
    return Factory("f", "r", "PJM", "PJM", 1e9, 1e9, 1.2, frozenset(), "US",
                   build_clusters([("gb200-nvl72", 18 * racks)]))


@given(st.integers(1, 6), st.lists(st.booleans(), min_size=18 * 6, max_size=18 * 6),
       st.sampled_from([8, 16, 72]), st.integers(1, 24))
def test_tp_groups_never_span_domains(racks: int, busy: list[bool], tp: int, groups: int) -> None:
    f = _nvl72(racks)
    status = np.array([NODE_BUSY if b else NODE_FREE for b in busy[: f.nodes]], dtype=np.uint8)
    gpus = tp * groups
    nodes = tp_aligned_fit(f, status, "GB200", gpus, tp)
    k = tp // 4
    per_domain_free = [int((status[d * 18 : (d + 1) * 18] == NODE_FREE).sum()) for d in range(racks)]
    feasible = sum(c - c % k for c in per_domain_free) >= gpus // 4
    assert (nodes is not None) == feasible
    if nodes is not None:
        assert len(nodes) == gpus // 4 and len(set(nodes)) == len(nodes)
        assert all(status[n] == NODE_FREE for n in nodes)
        for g in range(0, len(nodes), k):
            assert len({n // 18 for n in nodes[g : g + k]}) == 1


def test_blind_first_fit_can_split_where_aligned_does_not() -> None:
    f = _nvl72(2)
    status = np.zeros(f.nodes, dtype=np.uint8)
    status[:17] = NODE_BUSY  # one free tray left in rack 0
    blind = first_fit(f, status, "GB200", 8)
    aligned = tp_aligned_fit(f, status, "GB200", 8, 8)
    assert blind == (17, 18)  # a TP=8 group across racks 0 and 1
    assert aligned == (18, 19)
