"""Node selection inside one factory: the baseline first-fit allocator.

Works on the factory's node-status byte string (see :mod:`superfactory.domain.fleet`). Jobs take whole nodes
of their accelerator type. First-fit takes the lowest-numbered free nodes, which keeps allocations compact in
the numbering (and so in NVLink domains) without any topology reasoning; topology-aware placement lives in
the gang policy.

Speed (issue 12): each call reads only what it needs. A factory's clusters of one accelerator are looked up in a
small per-factory table built once, and the scan stops at the first block of nodes that holds the gang, so a
small job on a large, lightly loaded factory does not read the whole status array. The results are exactly
those of the plain definitions in the docstrings (tests/unit/policy/test_nodes.py checks them against a
straightforward reference).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_FREE
from superfactory.domain.topology import tp_nodes
from superfactory.models.collective import nodes_tuple

#: (offset, end, nodes per NVLink domain) of each cluster of one accelerator, and its GPUs per node.
_Spans = tuple[tuple[tuple[int, int, int], ...], int]
#: id(factory) -> (factory, {accelerator: spans}); the factory is kept so its id cannot be reused while cached.
_SPANS: dict[int, tuple[Factory, dict[str, _Spans | None]]] = {}
#: nodes scanned first, at least (then four times the need); the rest of the cluster only if that falls short.
_FIRST_BLOCK_NODES = 512


def _spans_of(factory: Factory, accelerator: str) -> _Spans | None:
    """The cluster spans of ``accelerator`` in ``factory`` (None when it has none), cached per factory."""
    hit = _SPANS.get(id(factory))
    if hit is None or hit[0] is not factory:
        if len(_SPANS) >= 256:
            _SPANS.clear()
        hit = _SPANS[id(factory)] = (factory, {})
    table = hit[1]
    if accelerator in table:
        return table[accelerator]
    clusters = factory.clusters_of(accelerator)
    spans: _Spans | None = None
    if clusters:
        spans = (tuple((c.node_offset, c.node_end, c.system.nodes_per_domain) for c in clusters),
                 clusters[0].system.gpus_per_node)
    table[accelerator] = spans
    return spans


def nodes_needed(factory: Factory, accelerator: str, gpus: int) -> int:
    """Whole nodes a gang of ``gpus`` needs on this factory's ``accelerator`` systems (0 if none)."""
    spans = _spans_of(factory, accelerator)
    if spans is None:
        return 0
    return -(-gpus // spans[1])


def free_nodes(factory: Factory, status: npt.NDArray[np.uint8], accelerator: str) -> npt.NDArray[np.intp]:
    """Indices of free nodes of ``accelerator`` type, ascending."""
    parts = [
        np.flatnonzero(status[c.node_offset : c.node_end] == NODE_FREE) + c.node_offset
        for c in factory.clusters_of(accelerator)
    ]
    if not parts:
        return np.empty(0, dtype=np.intp)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def first_fit(
    factory: Factory, status: npt.NDArray[np.uint8], accelerator: str, gpus: int
) -> tuple[int, ...] | None:
    """The lowest-numbered free nodes that hold ``gpus`` GPUs, or ``None`` if too few are free."""
    spans = _spans_of(factory, accelerator)
    if spans is None:
        return None
    need = -(-gpus // spans[1])
    if need <= 0:
        return None
    parts: list[npt.NDArray[np.intp]] = []
    found = 0
    for off, end, _ in spans[0]:
        a = off
        block = max(_FIRST_BLOCK_NODES, 4 * (need - found))
        while a < end and found < need:
            b = min(end, a + block)
            free = np.flatnonzero(status[a:b] == NODE_FREE)
            if free.size:
                parts.append(free + a)
                found += free.size
            a, block = b, end - b  # the rest of the cluster in one pass
        if found >= need:
            break
    if found < need:
        return None
    picked = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return nodes_tuple(picked[:need])


def tp_aligned_fit(
    factory: Factory, status: npt.NDArray[np.uint8], accelerator: str, gpus: int, tp_size: int
) -> tuple[int, ...] | None:
    """First-fit that never splits a tensor-parallel group across NVLink domains.

    Walks domains in index order and takes, from each, the largest multiple of a TP group's node count that
    is free there (its lowest-numbered free nodes), so every run of ``tp_nodes`` consecutive nodes in the result
    (the launcher's rank layout) lies inside one domain. Returns ``None`` if the free nodes cannot hold the gang
    that way. On 8-GPU nodes with TP <= 8 this is plain first-fit.
    """
    spans = _spans_of(factory, accelerator)
    if spans is None:
        return None
    per_node = spans[1]
    need = -(-gpus // per_node)
    if need <= 0:
        return None
    k = tp_nodes(per_node, gpus, tp_size)
    if k == 1:
        return first_fit(factory, status, accelerator, gpus)
    parts: list[npt.NDArray[np.intp]] = []
    found = 0
    for off, end, npd in spans[0]:
        if (end - off) % npd:  # a partial last domain: the general walk
            usable = _aligned_ragged(status, off, end, npd, k)
            if usable.size:
                parts.append(usable)
                found += usable.size
        else:
            a = off
            # whole domains per block; first a block about four times the need, then the rest
            block = -(-max(_FIRST_BLOCK_NODES, 4 * (need - found)) // npd) * npd
            while a < end and found < need:
                b = min(end, a + block)
                usable = _aligned_block(status, a, b, npd, k)
                if usable.size:
                    parts.append(usable)
                    found += usable.size
                a, block = b, end - b
        if found >= need:
            break
    if found < need:
        return None
    picked = np.concatenate(parts) if len(parts) > 1 else parts[0]
    # whole TP groups: ``need`` is a multiple of k whenever gpus is a multiple of tp_size
    return nodes_tuple(picked[:need])


def _aligned_block(status: npt.NDArray[np.uint8], a: int, b: int, npd: int, k: int) -> npt.NDArray[np.intp]:
    """Usable nodes in ``[a, b)``, which holds whole domains of ``npd`` nodes: the first ``f - f % k`` free nodes
    of each domain with ``f`` free, ascending."""
    free = (status[a:b] == NODE_FREE).reshape(-1, npd)
    count = np.count_nonzero(free, axis=1)
    extra = count % k
    if not extra.any():
        return np.flatnonzero(free) + a
    # keep a free node while its rank among its domain's free nodes is within the domain's usable count
    rank = np.cumsum(free, axis=1, dtype=np.int32)
    keep = free & (rank <= (count - extra)[:, None])
    return np.flatnonzero(keep) + a


def _aligned_ragged(status: npt.NDArray[np.uint8], off: int, end: int, npd: int, k: int) -> npt.NDArray[np.intp]:
    """:func:`_aligned_block` for a cluster whose last domain is partial (any ``[off, end)``)."""
    free = np.flatnonzero(status[off:end] == NODE_FREE)
    if free.size == 0:
        return free
    domain = free // npd
    new_run = np.empty(free.size, dtype=bool)
    new_run[0] = True
    np.not_equal(domain[1:], domain[:-1], out=new_run[1:])
    starts = np.flatnonzero(new_run)
    counts = np.diff(np.append(starts, free.size))
    run_id = np.cumsum(new_run) - 1
    rank = np.arange(free.size) - starts[run_id]
    usable: npt.NDArray[np.intp] = free[rank < (counts - counts % k)[run_id]] + off
    return usable
