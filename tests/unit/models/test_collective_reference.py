"""The throughput check and the probe (models/collective.py) equal a plain-loop reference on random placements.

Issue 12 made them skip the node array when a TP group fits in one node and reuse the array that placement built
(:func:`nodes_tuple` / :func:`nodes_array`); the answers must not move: same speed, same worst ratio to the last
bit, same list of short domains.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.factory import Factory, build_clusters
from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
from superfactory.domain.topology import FactoryTopology, topology_of
from superfactory.models.collective import (
    DEGRADED_THROUGHPUT,
    _alpha_for,
    _ratio,
    nodes_array,
    nodes_tuple,
    placement_throughput,
    probe_ratio,
)

F = Factory("f", "r", "PJM", "PJM", 1e12, 1e12, 1.1, frozenset(), "US",
            build_clusters([("dgx-h100", 20), ("gb200-nvl72", 6 * 18 + 7), ("gb200-nvl72", 36)]))


def _job(acc: str, gpus: int, tp: int) -> TrainingJob:
    return TrainingJob("j", acc, gpus, 1e20, 0.4, 0, CheckpointSpec(1800, 30, 1e12, 800), RecoverySpec(60, 300),
                       tp_size=tp)


def _groups_split(topo: FactoryTopology, nodes: tuple[int, ...], job: TrainingJob) -> bool:
    """Whether a TP group (``k`` consecutive entries; a shorter last group counts too) spans two domains."""
    per_node = topo.gpus_per_node[int(topo.node_cluster[nodes[0]])]
    k = max(1, -(-max(1, min(job.tp_size, job.gpus)) // per_node))
    groups = [nodes[i : i + k] for i in range(0, len(nodes), k)]
    return k > 1 and any(len({int(topo.node_domain[n]) for n in g}) > 1 for g in groups)


def ref_throughput(topo: FactoryTopology, nodes: tuple[int, ...], job: TrainingJob, lf: dict[int, float]) -> float:
    if not nodes or max(1, min(job.tp_size, job.gpus)) == 1:
        return 1.0
    if _groups_split(topo, nodes, job):
        return DEGRADED_THROUGHPUT
    if any(lf.get(int(topo.node_domain[n]), 1.0) < 1.0 for n in nodes):
        return DEGRADED_THROUGHPUT
    return 1.0


def ref_probe(topo: FactoryTopology, nodes: tuple[int, ...], job: TrainingJob,
              lf: dict[int, float]) -> tuple[float, list[int]]:
    if not nodes:
        return 1.0, []
    ci = int(topo.node_cluster[nodes[0]])
    tp = max(1, min(job.tp_size, job.gpus))
    worst, bad = 1.0, []
    if tp > 1:
        if _groups_split(topo, nodes, job):
            worst = min(worst, _ratio(tp, _alpha_for(tp), topo.nvlink_gbps[ci],
                                      topo.nic_gbps[ci] / topo.nvlink_gbps[ci]))
        for d in sorted({int(topo.node_domain[n]) for n in nodes}):
            f = lf.get(d, 1.0)
            if f < 1.0:
                bad.append(d)
                worst = min(worst, _ratio(tp, _alpha_for(tp), topo.nvlink_gbps[ci], f))
    return worst, bad


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 40), acc=st.sampled_from(["GB200", "H100-SXM"]),
       gpus=st.sampled_from([4, 8, 12, 16, 32, 64, 144]), tp=st.sampled_from([1, 4, 8, 16, 32, 72]),
       aligned=st.booleans(), degraded=st.lists(st.tuples(st.integers(0, 30), st.sampled_from([0.125, 0.5, 1.0])),
                                                max_size=4),
       placed=st.booleans())
def test_throughput_and_probe_equal_reference(seed: int, n: int, acc: str, gpus: int, tp: int, aligned: bool,
                                              degraded: list[tuple[int, float]], placed: bool) -> None:
    topo = topology_of(F)
    c = F.clusters_of(acc)[0]
    rng = np.random.default_rng(seed)
    pool = np.arange(c.node_offset, c.node_end)
    idx = np.sort(rng.choice(pool, min(n, pool.size), replace=False)) if aligned else rng.choice(
        pool, min(n, pool.size), replace=False)
    # ``placed``: the tuple comes from placement with its array remembered, as the twin passes it
    nodes = nodes_tuple(idx.astype(np.intp)) if placed else tuple(int(x) for x in idx)
    job = _job(acc, gpus, tp)
    lf = dict(degraded)
    assert placement_throughput(topo, nodes, job, lf) == ref_throughput(topo, nodes, job, lf)
    assert probe_ratio(topo, nodes, job, lf) == ref_probe(topo, nodes, job, lf)


def test_nodes_array_gives_back_the_placed_array_and_converts_other_tuples() -> None:
    idx = np.array([5, 3, 9], dtype=np.intp)
    placed = nodes_tuple(idx)
    assert placed == (5, 3, 9) and all(type(x) is int for x in placed)
    assert nodes_array(placed) is idx and not idx.flags.writeable  # no conversion, and nobody can change it
    other = (5, 3, 9)  # equal but a different tuple: converted
    got = nodes_array(other)
    assert got is not idx and got.tolist() == [5, 3, 9] and got.dtype == np.intp
