"""Property tests of topology-aware gang placement (policy/gangfit.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.factory import Factory, build_clusters
from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
from superfactory.domain.topology import TIER_DOMAIN, TIER_LEAF, split_tp_groups, topology_of
from superfactory.policy.gangfit import place_gang, shape_of, units_available

NVL72 = Factory("f", "r", "PJM", "PJM", 1e12, 1e12, 1.1, frozenset(), "US",
                build_clusters([("gb200-nvl72", 40 * 18)], [(0, 0, 2, 2.0)]))
DGX = Factory("g", "r", "PJM", "PJM", 1e12, 1e12, 1.1, frozenset(), "US", build_clusters([("dgx-h100", 256)]))


def _job(gpus: int, tp: int, segment: int = 0, acc: str = "GB200") -> TrainingJob:
    return TrainingJob("j", acc, gpus, 1e20, 0.4, 0, CheckpointSpec(1800, 30, 1e12, 800), RecoverySpec(60, 300),
                       tp_size=tp, segment_gpus=segment)


@settings(max_examples=150, deadline=None)
@given(
    busy_p=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**31),
    log_gpus=st.integers(3, 11),
    tp=st.sampled_from([4, 8, 16, 32, 64, 72]),
)
def test_nvl72_gangs_never_split_tp_groups_and_only_use_usable_nodes(busy_p: float, seed: int, log_gpus: int,
                                                                      tp: int) -> None:
    gpus = 2**log_gpus
    tp = min(tp, gpus)
    topo = topology_of(NVL72)
    usable = np.random.default_rng(seed).random(NVL72.nodes) >= busy_p
    shape = shape_of(_job(gpus, tp), 4, 18)
    nodes = place_gang(topo, usable, shape)
    can = units_available(topo, usable, shape) >= shape.units
    assert (nodes is not None) == can  # placement succeeds exactly when enough whole TP groups are free
    if nodes is None:
        return
    idx = np.asarray(nodes)
    assert len(set(nodes)) == len(nodes) == shape.nodes
    assert usable[idx].all()
    assert len(nodes) * 4 >= gpus
    assert split_tp_groups(topo, nodes, gpus, tp) == 0
    # smallest subtree: one domain / one leaf whenever one could hold the gang
    free_d = np.bincount(topo.node_domain[usable], minlength=topo.domains) // shape.unit_nodes
    if free_d.max() >= shape.units:
        assert topo.tier(nodes) == TIER_DOMAIN
    leaf_units = np.bincount(topo.domain_leaf, weights=free_d, minlength=topo.leaves)
    if leaf_units.max() >= shape.units:
        assert topo.tier(nodes) <= TIER_LEAF


@settings(max_examples=60, deadline=None)
@given(busy_p=st.floats(0.0, 0.6), seed=st.integers(0, 2**31), segments=st.integers(2, 6))
def test_segments_larger_than_a_domain_each_sit_in_one_leaf(busy_p: float, seed: int, segments: int) -> None:
    topo = topology_of(NVL72)
    usable = np.random.default_rng(seed).random(NVL72.nodes) >= busy_p
    seg_gpus = 144  # two racks' worth: must share a leaf group
    job = _job(seg_gpus * segments, 8, segment=seg_gpus)
    shape = shape_of(job, 4, 18)
    assert shape.segment_units == 18
    nodes = place_gang(topo, usable, shape)
    if nodes is None:
        return
    leaves = topo.node_leaf[np.asarray(nodes)]
    counts = np.bincount(leaves, minlength=topo.leaves)
    assert (counts % (seg_gpus // 4) == 0).all()  # whole segments per leaf


def test_fragments_are_filled_before_whole_domains() -> None:
    topo = topology_of(NVL72)
    usable = np.ones(NVL72.nodes, dtype=bool)
    usable[18:18 + 14] = False  # rack 1 has 4 free trays
    nodes = place_gang(topo, usable, shape_of(_job(16, 8), 4, 18))
    assert nodes is not None and set(topo.node_domain[list(nodes)].tolist()) == {1}


def test_big_gang_in_empty_factory_uses_fewest_leaves() -> None:
    topo = topology_of(NVL72)
    nodes = place_gang(topo, np.ones(NVL72.nodes, dtype=bool), shape_of(_job(2048, 64), 4, 18))
    assert nodes is not None
    _, racks, leaves, halls = topo.spread(nodes)
    assert racks == 32 and leaves == 4 and halls == 2  # 4 whole scalable units = 2 halls of 2 leaves


def test_dgx_whole_nodes() -> None:
    topo = topology_of(DGX)
    usable = np.ones(DGX.nodes, dtype=bool)
    usable[::3] = False
    nodes = place_gang(topo, usable, shape_of(_job(64, 8, acc="H100-SXM"), 8, 1))
    assert nodes is not None and len(nodes) == 8 and topo.tier(nodes) == TIER_LEAF
