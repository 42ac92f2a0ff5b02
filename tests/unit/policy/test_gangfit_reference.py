"""Topology-aware gang placement (policy/gangfit.py) equals a straightforward reference on random topologies.

The reference below is the placement rule of gangfit's module docstring written out in plain Python loops, one
step per sentence: capacities by domain, leaf and hall; best fit at the smallest level that holds the gang (ties:
fullest parent, then lowest index); covers largest first with the remainder best fit; fragments first inside a
leaf; nodes domain by domain. The fast numpy code (issue 12) must return exactly the same node tuple, in the same
order, on every input, including factories of several clusters, partial last domains, several halls and segment
constraints.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.accelerator import SystemSpec
from superfactory.domain.factory import Cluster, Factory
from superfactory.domain.topology import FactoryTopology, topology_of
from superfactory.policy.gangfit import GangShape, place_gang, units_available

# ----------------------------------------------------------------------------------------------- the reference


def _caps(topo: FactoryTopology, usable: list[bool], shape: GangShape) -> tuple[list[int], list[int], list[int]]:
    free_d = [0] * topo.domains
    for i, u in enumerate(usable):
        if u:
            free_d[int(topo.node_domain[i])] += 1
    cap_d = [f // shape.unit_nodes for f in free_d]
    leaf_cap = [0] * topo.leaves
    for d, c in enumerate(cap_d):
        leaf_cap[int(topo.domain_leaf[d])] += c
    leaf_cap = [c // shape.segment_units * shape.segment_units for c in leaf_cap]
    hall_cap = [0] * topo.halls
    for lf, c in enumerate(leaf_cap):
        hall_cap[int(topo.leaf_hall[lf])] += c
    return cap_d, leaf_cap, hall_cap


def _ref_best_fit(caps: list[int], need: int, parent: Callable[[int], int] | None) -> int:
    cands = [i for i, c in enumerate(caps) if c >= need]
    if not cands:
        return -1
    return min(cands, key=lambda i: (caps[i], parent(i) if parent is not None else 0, i))


def _ref_cover(children: list[int], caps: list[int], need: int) -> list[tuple[int, int]]:
    order = sorted(children, key=lambda i: (-caps[i], i))
    out: list[tuple[int, int]] = []
    for pos, i in enumerate(order):
        if need <= 0:
            break
        fits = [j for j in order[pos:] if caps[j] >= need]
        if fits:
            out.append((fits[-1], need))  # the smallest that holds the rest (last in largest-first order)
            return out
        out.append((i, caps[i]))
        need -= caps[i]
    return out if need <= 0 else []


def ref_place_gang(topo: FactoryTopology, usable_arr: np.ndarray, shape: GangShape) -> tuple[int, ...] | None:
    usable = [bool(u) for u in usable_arr]
    k, need, seg = shape.unit_nodes, shape.units, shape.segment_units
    if sum(usable) < shape.nodes or need <= 0:
        return None
    cap_d, leaf_cap, hall_cap = _caps(topo, usable, shape)
    if sum(leaf_cap) < need:
        return None
    dom_leaf = [int(x) for x in topo.domain_leaf]
    leaf_hall = [int(x) for x in topo.leaf_hall]
    take: list[tuple[int, int]] = []
    d = _ref_best_fit(cap_d, need, lambda i: leaf_cap[dom_leaf[i]]) if seg == 1 or need <= seg else -1
    if d >= 0:
        take = [(d, need)]
    else:
        lf = _ref_best_fit(leaf_cap, need, lambda i: hall_cap[leaf_hall[i]])
        if lf >= 0:
            leaves = [(lf, need)]
        else:
            h = _ref_best_fit(hall_cap, need, None)
            halls = [(h, need)] if h >= 0 else _ref_cover(list(range(topo.halls)), hall_cap, need)
            leaves = []
            for hh, n_h in halls:
                leaves += _ref_cover([i for i in range(topo.leaves) if leaf_hall[i] == hh], leaf_cap, n_h)
        for leaf, n_l in leaves:
            doms = sorted((i for i in range(topo.domains) if dom_leaf[i] == leaf and cap_d[i] > 0),
                          key=lambda i: (cap_d[i], i))
            for dd in doms:
                if n_l <= 0:
                    break
                t = min(cap_d[dd], n_l)
                take.append((dd, t))
                n_l -= t
    nodes: list[int] = []
    for dd, u in sorted(take):
        nodes += [i for i, ok in enumerate(usable) if ok and int(topo.node_domain[i]) == dd][: u * k]
    return tuple(nodes)


def ref_units_available(topo: FactoryTopology, usable_arr: np.ndarray, shape: GangShape) -> int:
    return sum(_caps(topo, [bool(u) for u in usable_arr], shape)[1])


# ----------------------------------------------------------------------------------------------- random inputs

#: (GPUs per node, nodes per NVLink domain)
_SYSTEMS = [(4, 18), (8, 1), (2, 4), (4, 6)]


def _factory(blocks: list[tuple[int, int, int, int]]) -> Factory:
    """``blocks``: (system index, domains, extra nodes in a partial last domain, domains per leaf) per cluster."""
    clusters: list[Cluster] = []
    node_off = dom_off = 0
    for si, (sys_ix, domains, extra, dom_per_leaf) in enumerate(blocks):
        gpn, npd = _SYSTEMS[sys_ix]
        spec = SystemSpec(f"sys{si}", f"ACC{sys_ix}", gpus_per_node=gpn, nodes_per_domain=npd, max_power_w=1000.0)
        nodes = domains * npd + (extra % npd if npd > 1 else 0)
        c = Cluster(spec, nodes, node_off, dom_off, npd if npd > 1 else 1, dom_per_leaf * npd, 2, 2.0)
        clusters.append(c)
        node_off += c.nodes
        dom_off += c.domains
    return Factory("t", "r", "PJM", "PJM", 1e12, 1e12, 1.1, frozenset(), "US", tuple(clusters))


_blocks = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 14), st.integers(0, 17), st.integers(1, 4)),
                   min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(blocks=_blocks, busy_p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31), units=st.integers(1, 60),
       unit_nodes=st.sampled_from([1, 2, 3, 4, 6, 18]), seg=st.sampled_from([1, 1, 2, 3]))
def test_place_gang_equals_reference(blocks: list[tuple[int, int, int, int]], busy_p: float, seed: int, units: int,
                                     unit_nodes: int, seg: int) -> None:
    f = _factory(blocks)
    topo = topology_of(f)
    usable = np.random.default_rng(seed).random(f.nodes) >= busy_p
    units = -(-units // seg) * seg
    shape = GangShape(units, unit_nodes, seg)
    got = place_gang(topo, usable, shape)
    assert got == ref_place_gang(topo, usable, shape)
    assert got is None or all(type(n) is int for n in got)
    assert units_available(topo, usable, shape) == ref_units_available(topo, usable, shape)


def test_reference_catches_a_wrong_tie_break() -> None:
    """A pinned case: of two equally good single domains (same units, same leaf) both take the lower one."""
    f = _factory([(0, 4, 0, 2)])  # 4 NVL72 domains, 2 per leaf
    topo = topology_of(f)
    usable = np.zeros(f.nodes, dtype=bool)
    usable[0:4] = usable[18:22] = True  # domains 0 and 1 (leaf 0) each hold 2 units of 2 nodes
    usable[36:54] = True  # domain 2 (leaf 1) is whole
    shape = GangShape(2, 2, 1)
    assert place_gang(topo, usable, shape) == ref_place_gang(topo, usable, shape) == (0, 1, 2, 3)


# ------------------------------------------------------ the cheaper forms of session 8 (issue 12) on their own

@settings(max_examples=150, deadline=None)
@given(blocks=_blocks, busy_p=st.floats(0.0, 0.9), seed=st.integers(0, 2**31), units=st.integers(1, 120),
       unit_nodes=st.sampled_from([1, 2, 3, 6]), seg=st.sampled_from([1, 1, 2, 3]),
       few=st.sampled_from([0, 10**6]))
def test_both_fragments_first_forms_equal_the_reference(blocks: list[tuple[int, int, int, int]], busy_p: float,
                                                        seed: int, units: int, unit_nodes: int, seg: int,
                                                        few: int) -> None:
    """Fragments-first on plain ints (few domains in the chosen leaves) and in numpy passes (many) each give the
    reference's nodes: ``few`` forces one form for every gang."""
    from superfactory.policy import gangfit

    f = _factory(blocks)
    topo = topology_of(f)
    usable = np.random.default_rng(seed).random(f.nodes) >= busy_p
    shape = GangShape(-(-units // seg) * seg, unit_nodes, seg)
    old = gangfit._FEW_LEAF_DOMAINS
    gangfit._FEW_LEAF_DOMAINS = few
    try:
        assert place_gang(topo, usable, shape) == ref_place_gang(topo, usable, shape)
    finally:
        gangfit._FEW_LEAF_DOMAINS = old


@settings(max_examples=150, deadline=None)
@given(domains=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 12)), min_size=1, max_size=3),
       busy_p=st.floats(0.0, 0.95), seed=st.integers(0, 2**31), units=st.integers(1, 200))
def test_one_node_domains_take_each_leafs_first_usable_nodes(domains: list[tuple[int, int]], busy_p: float,
                                                              seed: int, units: int) -> None:
    """DGX-style factories (NVLink inside one node: every domain is one node) take a shortcut: in each chosen
    leaf, its first usable nodes. Gangs spanning leaves and halls give the reference's nodes."""
    f = _factory([(1, n, 0, per_leaf) for n, per_leaf in domains])
    topo = topology_of(f)
    assert (topo.domain_nodes == 1).all()
    usable = np.random.default_rng(seed).random(f.nodes) >= busy_p
    shape = GangShape(units, 1, 1)
    assert place_gang(topo, usable, shape) == ref_place_gang(topo, usable, shape)
