"""Node selection inside one factory: the baseline first-fit allocator.

Works on the factory's node-status byte string (see :mod:`superfactory.domain.fleet`). Jobs take whole nodes
of their accelerator type. First-fit takes the lowest-numbered free nodes, which keeps allocations compact in
the numbering (and so in NVLink domains) without any topology reasoning; topology-aware placement lives in
the gang policy.

Speed (issue 12): a factory's clusters of one accelerator are looked up in a small per-factory table built once;
the scan stops at the first cluster that completes the gang; TP alignment costs a handful of passes over the free
nodes and trims only when some domain's free count is not a whole number of TP groups. The results are exactly
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
        (status[c.node_offset : c.node_end] == NODE_FREE).nonzero()[0] + c.node_offset
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
    return _lowest_free(spans[0], status, need, 1)


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
    # whole TP groups: ``need`` is a multiple of k whenever gpus is a multiple of tp_size
    return _lowest_free(spans[0], status, need, tp_nodes(per_node, gpus, tp_size))


def _lowest_free(spans: tuple[tuple[int, int, int], ...], status: npt.NDArray[np.uint8], need: int,
                 k: int) -> tuple[int, ...] | None:
    """The ``need`` lowest-numbered free nodes over the clusters' ``(offset, end, nodes per domain)`` spans, taking
    from each NVLink domain only a multiple of ``k`` of its free nodes (its lowest ones), or ``None`` if too few."""
    parts: list[npt.NDArray[np.intp]] = []
    found = 0
    for off, end, npd in spans:
        free = (status[off:end] == NODE_FREE).nonzero()[0]
        if free.size == 0:
            continue
        if k > 1:
            domain = free // npd
            count = np.bincount(domain)  # free nodes per domain of the cluster (up to the last with any)
            extra = count % k
            if np.count_nonzero(extra):  # (not .any(): numpy's Python wrapper costs more than the count)
                # keep the first (count - count % k) free nodes of each domain: whole TP groups only, i.e. drop
                # the last ``extra`` free nodes of each domain that has any (a mask over the few dropped positions
                # instead of ranking every free node: the same nodes kept, issue 12 session 7)
                odd = extra.nonzero()[0]
                ends = count.cumsum()[odd]  # one past the position in ``free`` of each such domain's last free node
                if k == 2:  # extra is 1 there
                    drop = ends - 1
                else:
                    ex = extra[odd]
                    drop = np.repeat(ends - ex, ex) + (np.arange(int(ex.sum())) - np.repeat(ex.cumsum() - ex, ex))
                keep = np.empty(free.size, dtype=bool)  # (np.ones is a Python-level wrapper: ~1 us more)
                keep.fill(True)
                keep[drop] = False
                free = free[keep]
        parts.append(free + off)
        found += free.size
        if found >= need:
            break
    if found < need:
        return None
    picked = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return nodes_tuple(picked[:need])
