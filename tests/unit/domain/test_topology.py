"""The factory tree: halls, racks, leaf groups and NVLink domains derived from cluster numbering."""

from __future__ import annotations

import numpy as np

from superfactory.domain.factory import Factory, build_clusters
from superfactory.domain.topology import (
    TIER_DOMAIN,
    TIER_FACTORY,
    TIER_HALL,
    TIER_LEAF,
    split_tp_groups,
    topology_of,
    topology_problem,
    tp_nodes,
)


def _factory(blocks: list[tuple[str, int]], topo: list[tuple[int, int, int, float]] | None = None) -> Factory:
    return Factory("f", "r", "PJM", "PJM", 1e12, 1e12, 1.1, frozenset(), "US", build_clusters(blocks, topo))


def test_nvl72_tree_counts_follow_superpod_defaults() -> None:
    f = _factory([("gb200-nvl72", 100 * 18)])
    t = topology_of(f)
    assert t.domains == 100  # one NVLink domain per rack
    assert t.leaves == 13  # 8 racks per scalable unit, last one partial
    assert t.halls == 1
    assert int(t.node_rack.max()) + 1 == 100
    assert (t.node_domain == t.node_rack).all()
    assert t.domain_nodes.tolist() == [18] * 100


def test_dgx_tree_and_mixed_clusters_do_not_share_leaves() -> None:
    f = _factory([("dgx-h100", 40), ("gb200-nvl72", 36)], [(0, 0, 0, 1.0), (0, 18, 1, 2.0)])
    t = topology_of(f)
    assert t.domains == 40 + 2
    assert int(t.node_rack[39]) == 9  # 4 DGX nodes per rack
    assert int(t.node_leaf[31]) == 0 and int(t.node_leaf[32]) == 1 and int(t.node_leaf[40]) == 2
    assert t.leaf_hall.tolist() == [0, 0, 1, 2]  # leaves_per_hall=1 for the NVL72 block
    assert t.oversubscription == (1.0, 2.0)


def test_tier_and_expected_bandwidth() -> None:
    f = _factory([("gb200-nvl72", 64 * 18)], [(0, 0, 2, 2.0)])
    t = topology_of(f)
    assert t.tier([0, 17]) == TIER_DOMAIN and t.expected_gbps([0, 17]) == 7200.0
    assert t.tier([0, 18]) == TIER_LEAF and t.expected_gbps([0, 18]) == 400.0
    assert t.tier([0, 8 * 18]) == TIER_HALL and t.expected_gbps([0, 8 * 18]) == 200.0
    assert t.tier([0, 16 * 18]) == TIER_FACTORY and t.expected_gbps([0, 16 * 18]) == 100.0
    assert t.spread([0, 1, 18, 16 * 18]) == (3, 3, 2, 2)


def test_split_tp_groups_counts_groups_across_domains() -> None:
    t = topology_of(_factory([("gb200-nvl72", 36)]))
    assert tp_nodes(4, 64, 16) == 4
    assert split_tp_groups(t, tuple(range(16, 24)), 32, 16) == 1  # nodes 16-19 straddle racks 0 and 1
    assert split_tp_groups(t, tuple(range(18, 26)), 32, 16) == 0
    assert split_tp_groups(t, tuple(range(16, 24)), 32, 4) == 0  # TP 4 = one tray, never split


def test_topology_problem_rejects_racks_that_cut_domains() -> None:
    bad = build_clusters([("gb200-nvl72", 36)], [(0, 20, 0, 1.0)])[0]
    assert topology_problem(bad) is not None
    assert topology_problem(build_clusters([("dgx-h100", 64)])[0]) is None
    assert np.all(topology_of(_factory([("dgx-h100", 8)])).domain_nodes == 1)
