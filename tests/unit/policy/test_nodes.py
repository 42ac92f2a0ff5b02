"""Node selection: TP-aligned first fit keeps every tensor-parallel group inside one NVLink domain."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.factory import Factory, build_clusters
from superfactory.domain.fleet import NODE_BUSY, NODE_FREE
from superfactory.policy.nodes import first_fit, nodes_needed, tp_aligned_fit


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


# --- issue 12: the fast code equals a straightforward reference on random factories and free sets ---------------

def _ref_first_fit(f: Factory, status: np.ndarray, acc: str, gpus: int) -> tuple[int, ...] | None:
    clusters = f.clusters_of(acc)
    if not clusters:
        return None
    need = -(-gpus // clusters[0].system.gpus_per_node)
    free = [n for c in clusters for n in range(c.node_offset, c.node_end) if status[n] == NODE_FREE]
    return tuple(free[:need]) if len(free) >= need else None


def _ref_tp_aligned_fit(f: Factory, status: np.ndarray, acc: str, gpus: int, tp: int) -> tuple[int, ...] | None:
    """Domain by domain in index order, the lowest free nodes of each domain in whole TP groups."""
    clusters = f.clusters_of(acc)
    if not clusters:
        return None
    per_node = clusters[0].system.gpus_per_node
    need = -(-gpus // per_node)
    k = max(1, -(-max(1, min(tp, gpus)) // per_node))
    if k == 1:
        return _ref_first_fit(f, status, acc, gpus)
    picked: list[int] = []
    for c in clusters:
        npd = c.system.nodes_per_domain
        for start in range(c.node_offset, c.node_end, npd):
            free = [n for n in range(start, min(start + npd, c.node_end)) if status[n] == NODE_FREE]
            picked += free[: len(free) - len(free) % k]
    return tuple(picked[:need]) if len(picked) >= need else None


def _mixed(blocks: list[tuple[str, int]]) -> Factory:
    return Factory("m", "r", "PJM", "PJM", 1e9, 1e9, 1.2, frozenset(), "US", build_clusters(blocks))


_BLOCKS = st.lists(st.tuples(st.sampled_from(["gb200-nvl72", "dgx-h100"]), st.integers(1, 80)), min_size=1,
                   max_size=4)


@settings(max_examples=300, deadline=None)
@given(blocks=_BLOCKS, busy_p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31),
       gpus=st.integers(1, 400), tp=st.sampled_from([1, 2, 4, 8, 12, 16, 32, 72]),
       acc=st.sampled_from(["GB200", "H100-SXM", "B200"]))
def test_fits_equal_reference(blocks: list[tuple[str, int]], busy_p: float, seed: int, gpus: int, tp: int,
                              acc: str) -> None:
    f = _mixed(blocks)  # several clusters of each kind, NVL72 ones often with a partial last rack
    status = np.where(np.random.default_rng(seed).random(f.nodes) < busy_p, NODE_BUSY, NODE_FREE).astype(np.uint8)
    got = tp_aligned_fit(f, status, acc, gpus, tp)
    assert got == _ref_tp_aligned_fit(f, status, acc, gpus, tp)
    assert got is None or all(type(n) is int for n in got)
    assert first_fit(f, status, acc, gpus) == _ref_first_fit(f, status, acc, gpus)
    assert nodes_needed(f, acc, gpus) == (-(-gpus // f.clusters_of(acc)[0].system.gpus_per_node)
                                          if f.clusters_of(acc) else 0)


def test_node_tuples_equal_plain_conversion() -> None:
    """Issue 12, session 7: placement's node tuples take their ints from a shared table (64 nodes or more, all in
    range); the tuple must equal ``tuple(idx.tolist())`` for any index array, and convert back to the same array."""
    from superfactory.models.collective import nodes_array, nodes_tuple

    rng = np.random.default_rng(3)
    cases = [np.arange(100, 300), np.arange(-3, 120), np.arange(0), np.arange(5), np.arange(20_000, 20_100),
             rng.permutation(5_000)[:700], np.arange(400)[::3], np.array([7] * 80), np.arange(5_000_000, 5_000_070)]
    for arr in cases:
        idx = np.asarray(arr, dtype=np.intp)
        want = tuple(idx.tolist())
        got = nodes_tuple(idx.copy())
        assert got == want and all(type(n) is int for n in got)
        assert np.array_equal(nodes_array(got), idx)
