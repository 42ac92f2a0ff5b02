"""Node selection inside one factory: the baseline first-fit allocator.

Works on the factory's node-status byte string (see :mod:`superfactory.domain.fleet`). Jobs take whole nodes
of their accelerator type. First-fit takes the lowest-numbered free nodes, which keeps allocations compact in
the numbering (and so in NVLink domains) without any topology reasoning; topology-aware placement lives in
the gang policy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_FREE
from superfactory.domain.topology import tp_nodes


def nodes_needed(factory: Factory, accelerator: str, gpus: int) -> int:
    """Whole nodes a gang of ``gpus`` needs on this factory's ``accelerator`` systems (0 if none)."""
    clusters = factory.clusters_of(accelerator)
    if not clusters:
        return 0
    per_node = clusters[0].system.gpus_per_node
    return -(-gpus // per_node)


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
    need = nodes_needed(factory, accelerator, gpus)
    if need == 0:
        return None
    free = free_nodes(factory, status, accelerator)
    if free.size < need:
        return None
    return tuple(free[:need].tolist())


def tp_aligned_fit(
    factory: Factory, status: npt.NDArray[np.uint8], accelerator: str, gpus: int, tp_size: int
) -> tuple[int, ...] | None:
    """First-fit that never splits a tensor-parallel group across NVLink domains.

    Walks domains in index order and takes, from each, the largest multiple of a TP group's node count that
    is free there, so every run of ``tp_nodes`` consecutive nodes in the result (the launcher's rank layout)
    lies inside one domain. Returns ``None`` if the free nodes cannot hold the gang that way. On 8-GPU
    nodes with TP <= 8 this is plain first-fit.
    """
    need = nodes_needed(factory, accelerator, gpus)
    if need == 0:
        return None
    clusters = factory.clusters_of(accelerator)
    per_node = clusters[0].system.gpus_per_node
    k = tp_nodes(per_node, gpus, tp_size)
    if k == 1:
        return first_fit(factory, status, accelerator, gpus)
    parts: list[npt.NDArray[np.intp]] = []
    found = 0
    for c in clusters:
        free = np.flatnonzero(status[c.node_offset : c.node_end] == NODE_FREE)
        if free.size == 0:
            continue
        # rank of each free node inside its domain's run of free nodes; keep the first
        # (count - count % k) of each run so every domain contributes whole TP groups.
        domain = free // c.system.nodes_per_domain
        new_run = np.empty(free.size, dtype=bool)
        new_run[0] = True
        np.not_equal(domain[1:], domain[:-1], out=new_run[1:])
        starts = np.flatnonzero(new_run)
        counts = np.diff(np.append(starts, free.size))
        run_id = np.cumsum(new_run) - 1
        rank = np.arange(free.size) - starts[run_id]
        usable = free[rank < (counts - counts % k)[run_id]] + c.node_offset
        parts.append(usable)
        found += usable.size
        if found >= need:
            break
    if found < need:
        return None
    picked = np.concatenate(parts) if len(parts) > 1 else parts[0]
    # whole TP groups: ``need`` is a multiple of k whenever gpus is a multiple of tp_size
    return tuple(picked[:need].tolist())
