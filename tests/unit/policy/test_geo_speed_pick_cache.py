"""geo's node pick keeps what it reads of a factory (issue 12, session 8): per factory and accelerator the
topology and the mask of that accelerator's nodes (looked up by identity, not by hashing the frozen Factory), the
usable mask while the snapshot's node status bytes are the same object, and each gang shape per (size, TP, segment,
system). :func:`pick_nodes` must answer exactly as the uncached rule below on every input, and a changed status
must never be served a mask kept for the old one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.accelerator import SystemSpec
from superfactory.domain.factory import Cluster, Factory
from superfactory.domain.fleet import NODE_BUSY, NODE_DOWN, NODE_FREE
from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
from superfactory.domain.topology import topology_of
from superfactory.policy import gangfit, geo_plan
from superfactory.policy.gangfit import place_gang, shape_of
from superfactory.policy.geo_plan import pick_nodes
from superfactory.policy.nodes import tp_aligned_fit

#: (GPUs per node, nodes per NVLink domain)
_SYSTEMS = [(4, 18), (8, 1), (2, 4), (4, 6)]


def _factory(blocks: list[tuple[int, int, int]]) -> Factory:
    """``blocks``: (system index, domains, domains per leaf) per cluster; system i is accelerator ``ACC{i % 2}``,
    so a factory of several clusters often holds two accelerators."""
    clusters: list[Cluster] = []
    node_off = dom_off = 0
    for si, (sys_ix, domains, dom_per_leaf) in enumerate(blocks):
        gpn, npd = _SYSTEMS[sys_ix]
        spec = SystemSpec(f"sys{si}", f"ACC{sys_ix % 2}", gpus_per_node=gpn, nodes_per_domain=npd,
                          max_power_w=1000.0)
        c = Cluster(spec, domains * npd, node_off, dom_off, npd, dom_per_leaf * npd, 2, 2.0)
        clusters.append(c)
        node_off += c.nodes
        dom_off += c.domains
    return Factory("t", "r", "PJM", "PJM", 1e12, 1e12, 1.1, frozenset(), "US", tuple(clusters))


def _job(acc: str, gpus: int, tp: int, segment: int = 0) -> TrainingJob:
    return TrainingJob(id="j", accelerator=acc, gpus=gpus, work_flop=1e18, mfu=0.4, submit_s=0,
                       checkpoint=CheckpointSpec(600, 10, 1e9, 10.0), recovery=RecoverySpec(60, 300),
                       tp_size=tp, segment_gpus=segment)


def _uncached(f: Factory, status: np.ndarray, job: TrainingJob) -> tuple[int, ...] | None:
    """pick_nodes as it was written before the caches (cca9efc..e880518), every piece computed afresh."""
    cl = f.clusters_of(job.accelerator)
    if not cl:
        return None
    s = cl[0].system
    usable = np.zeros(f.nodes, dtype=bool)
    for c in cl:
        usable[c.node_offset:c.node_end] = status[c.node_offset:c.node_end] == NODE_FREE
    shape = gangfit._shape(job.gpus, job.tp_size, job.segment_gpus, s.gpus_per_node, s.nodes_per_domain)
    nodes = place_gang(topology_of(f), usable, shape)
    return nodes if nodes is not None else tp_aligned_fit(f, status, job.accelerator, job.gpus, job.tp_size)


def _status(f: Factory, busy_p: float, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(np.array([NODE_FREE, NODE_BUSY, NODE_DOWN], dtype=np.uint8), size=f.nodes,
                      p=[1 - busy_p, busy_p * 0.8, busy_p * 0.2])


_blocks = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 10), st.integers(1, 4)), min_size=1, max_size=3)


@settings(max_examples=200, deadline=None)
@given(blocks=_blocks, busy_p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31),
       acc=st.sampled_from(["ACC0", "ACC1", "ACC9"]), gpus=st.integers(1, 200),
       tp=st.sampled_from([1, 2, 4, 8, 16, 64]), segment=st.sampled_from([0, 0, 16, 64, 256]))
def test_cached_pick_equals_uncached_rule_on_random_factories(blocks: list[tuple[int, int, int]], busy_p: float,
                                                              seed: int, acc: str, gpus: int, tp: int,
                                                              segment: int) -> None:
    f = _factory(blocks)
    rng = np.random.default_rng(seed)
    job = _job(acc, gpus, tp, segment)
    for _ in range(3):  # the same factory object with new statuses: fresh masks each time
        status = _status(f, busy_p, rng)
        b = status.tobytes()
        want = _uncached(f, status, job)
        assert pick_nodes(f, status.copy(), job) == want
        assert pick_nodes(f, np.frombuffer(b, dtype=np.uint8).copy(), job, b) == want
        assert pick_nodes(f, np.frombuffer(b, dtype=np.uint8).copy(), job, b) == want  # served from the cache


def test_new_status_bytes_are_not_served_the_old_mask() -> None:
    f = _factory([(1, 16, 4)])  # 16 single-node domains of 8 GPUs, one accelerator
    job = _job("ACC1", 64, 8)  # 8 nodes
    free = np.zeros(f.nodes, dtype=np.uint8)
    b_free = free.tobytes()
    assert pick_nodes(f, free.copy(), job, b_free) == tuple(range(8))
    busy = free.copy()
    busy[:12] = NODE_BUSY  # 4 free nodes left: the gang no longer fits
    b_busy = busy.tobytes()
    assert pick_nodes(f, busy.copy(), job, b_busy) is None
    half = free.copy()
    half[:8] = NODE_DOWN
    assert pick_nodes(f, half.copy(), job, half.tobytes()) == tuple(range(8, 16))
    # and the first bytes object, asked again, is still answered on its own content
    assert pick_nodes(f, free.copy(), job, b_free) == tuple(range(8))


def test_mixed_factory_masks_out_the_other_accelerator() -> None:
    f = _factory([(1, 4, 2), (2, 3, 1), (1, 4, 2)])  # ACC1 nodes 0-3 and 16-19, ACC0 nodes 4-15
    status = np.zeros(f.nodes, dtype=np.uint8)
    got = pick_nodes(f, status, _job("ACC1", 64, 8), status.tobytes())
    assert got is not None and set(got) <= {0, 1, 2, 3, 16, 17, 18, 19} and len(got) == 8
    small = _job("ACC0", 16, 2)
    got = pick_nodes(f, status, small, status.tobytes())
    assert got == _uncached(f, status, small) and got is not None and set(got) <= set(range(4, 16))
    site = geo_plan._site_of(f, "ACC1")
    assert site is not None and site[1] is not None and int(site[1].sum()) == 8


@settings(max_examples=300, deadline=None)
@given(gpus=st.integers(1, 4096), tp=st.sampled_from([1, 2, 4, 8, 16, 32, 72]),
       segment=st.sampled_from([0, 8, 64, 512, 4096]), system=st.sampled_from(_SYSTEMS))
def test_shape_of_kept_per_shape_equals_the_rule(gpus: int, tp: int, segment: int, system: tuple[int, int]) -> None:
    gpn, npd = system
    job = _job("ACC0", gpus, tp, segment)
    assert shape_of(job, gpn, npd) == gangfit._shape(gpus, tp, segment, gpn, npd)
    assert shape_of(job, gpn, npd) == gangfit._shape(gpus, tp, segment, gpn, npd)  # second ask: from the cache


def test_shape_of_tells_tp_and_segment_apart() -> None:
    # the same gang size on the same system: the TP size and the segment each change the shape
    a = shape_of(_job("ACC0", 72, 1), 4, 18)
    b = shape_of(_job("ACC0", 72, 8), 4, 18)
    c = shape_of(_job("ACC0", 72, 8, 36), 4, 18)
    assert (a.unit_nodes, b.unit_nodes, c.unit_nodes) == (1, 2, 9)
