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
