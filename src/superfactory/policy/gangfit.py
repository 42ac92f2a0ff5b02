"""Topology-aware node selection for one gang inside one factory (the core of the ``gang`` policy).

Like Slurm's topology/block and Kueue's Topology-Aware Scheduling, a gang is placed in the *smallest subtree that
holds it*, best fit at every level:

1. The gang is cut into units: one unit is a tensor-parallel group (``tp_nodes`` nodes that must share an NVLink
   domain, see :func:`superfactory.domain.topology.tp_nodes`), or a whole segment when the job declares a
   segment that fits in a domain. A domain with ``f`` usable free nodes offers ``f // unit_nodes`` units, so a
   TP group can never straddle two domains.
2. One domain if a domain can hold the gang; else one leaf group; else one hall; else the fewest halls. At each
   level the candidate with the *least* spare capacity that still fits wins (best fit), ties broken towards the
   fullest parent then the lowest index: big holes stay whole for big gangs.
3. Spanning several children, the largest are taken whole and the remainder goes best-fit into the smallest
   child that holds it (fewest leaves / halls touched).
4. Inside a leaf group, domains are consumed fragments first (fewest free units first): partially used domains
   are filled before whole ones are broken, which keeps whole NVLink domains free (fragmentation-aware).

Segments larger than a domain (``segment_units > 1``) must each sit in one leaf group: leaf capacity is then
counted in whole segments. Nodes are returned domain by domain in ascending order, so the launcher's rank order
puts every TP group inside one domain. Cost: a few numpy passes over domains and leaves (~1 ms for a 4,096-GPU
gang in a 100k-GPU factory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from superfactory.domain.job import TrainingJob
from superfactory.domain.topology import FactoryTopology, tp_nodes

BoolArray = npt.NDArray[np.bool_]
IntpArray = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class GangShape:
    """What a gang needs in node terms.

    Attributes:
        units: indivisible units to place.
        unit_nodes: nodes per unit (all in one NVLink domain).
        segment_units: units that must share a leaf group (1 = no constraint beyond the unit).
    """

    units: int
    unit_nodes: int
    segment_units: int = 1

    @property
    def nodes(self) -> int:
        return self.units * self.unit_nodes


def shape_of(job: TrainingJob, gpus_per_node: int, domain_nodes: int) -> GangShape:
    """The :class:`GangShape` of ``job`` on nodes of ``gpus_per_node`` GPUs in domains of ``domain_nodes``."""
    nodes = -(-job.gpus // gpus_per_node)
    k = min(tp_nodes(gpus_per_node, job.gpus, job.tp_size), domain_nodes)
    seg_units = 1
    segment_gpus = job.segment_gpus
    if segment_gpus and segment_gpus < job.gpus:
        seg_nodes = -(-segment_gpus // gpus_per_node)
        if seg_nodes <= domain_nodes:
            k = max(k, seg_nodes)
        else:
            seg_units = -(-seg_nodes // k)
    units = -(-nodes // k)
    units = -(-units // seg_units) * seg_units
    return GangShape(units, k, seg_units)


def _best_fit(cap: npt.NDArray[np.int64], need: int, parent_cap: npt.NDArray[np.int64] | None) -> int:
    """Index of the smallest ``cap >= need`` (ties: smallest parent capacity, then lowest index); -1 if none."""
    ok = np.flatnonzero(cap >= need)
    if ok.size == 0:
        return -1
    c = cap[ok]
    keys = (ok, parent_cap[ok], c) if parent_cap is not None else (ok, c)
    return int(ok[np.lexsort(keys)[0]])


def _cover(idx: IntpArray, cap: npt.NDArray[np.int64], need: int) -> list[tuple[int, int]]:
    """Split ``need`` over children ``idx`` with capacities ``cap``: largest whole, remainder best fit."""
    order = np.lexsort((idx, -cap))
    idx, cap = idx[order], cap[order]
    out: list[tuple[int, int]] = []
    i = 0
    while need > 0 and i < idx.size:
        rest = cap[i:]
        fits = np.flatnonzero(rest >= need)
        if fits.size:
            j = i + int(fits[-1])  # sorted descending: the last that fits is the smallest (best fit)
            out.append((int(idx[j]), need))
            return out
        out.append((int(idx[i]), int(cap[i])))
        need -= int(cap[i])
        i += 1
    return out if need <= 0 else []


def place_gang(topo: FactoryTopology, usable: BoolArray, shape: GangShape) -> tuple[int, ...] | None:
    """Nodes for a gang of ``shape`` among ``usable`` nodes (free, right accelerator, not withheld), or None.

    ``usable`` is a boolean array over the factory's nodes. The result is ordered domain by domain.
    """
    free_idx = np.flatnonzero(usable)
    k, need, seg = shape.unit_nodes, shape.units, shape.segment_units
    if free_idx.size < shape.nodes or need <= 0:
        return None
    free_dom = topo.node_domain[free_idx]
    free_d = np.bincount(free_dom, minlength=topo.domains).astype(np.int64)
    cap_d = free_d // k
    leaf_cap = np.bincount(topo.domain_leaf, weights=cap_d, minlength=topo.leaves).astype(np.int64)
    leaf_cap = leaf_cap // seg * seg
    if int(leaf_cap.sum()) < need:
        return None
    hall_cap = np.bincount(topo.leaf_hall, weights=leaf_cap, minlength=topo.halls).astype(np.int64)
    take_d: list[tuple[int, int]] = []
    d = _best_fit(cap_d, need, leaf_cap[topo.domain_leaf]) if seg == 1 or need <= seg else -1
    if d >= 0:
        take_d = [(d, need)]
    else:
        lf = _best_fit(leaf_cap, need, hall_cap[topo.leaf_hall])
        if lf >= 0:
            leaves = [(lf, need)]
        else:
            h = _best_fit(hall_cap, need, None)
            halls = [(h, need)] if h >= 0 else _cover(np.arange(topo.halls, dtype=np.intp), hall_cap, need)
            leaves = []
            for hh, n_h in halls:
                in_h = np.flatnonzero(topo.leaf_hall == hh)
                leaves.extend(_cover(in_h, leaf_cap[in_h], n_h))
        for leaf, n_l in leaves:
            take_d.extend(_fragments_first(np.flatnonzero(topo.domain_leaf == leaf), cap_d, n_l))
    return _nodes_of(free_idx, free_dom, take_d, k)


def _fragments_first(doms: IntpArray, cap_d: npt.NDArray[np.int64], need: int) -> list[tuple[int, int]]:
    """Take ``need`` units from ``doms``, fewest-free domains first; the last take is a best fit."""
    c = cap_d[doms]
    keep = c > 0
    doms, c = doms[keep], c[keep]
    order = np.lexsort((doms, c))
    out: list[tuple[int, int]] = []
    for dd, cc in zip(doms[order].tolist(), c[order].tolist(), strict=True):
        if need <= 0:
            break
        take = min(cc, need)
        out.append((dd, take))
        need -= take
    return out


def _nodes_of(free_idx: IntpArray, free_dom: npt.NDArray[np.int32], take_d: list[tuple[int, int]],
              k: int) -> tuple[int, ...]:
    take_d.sort()
    doms = np.fromiter((d for d, _ in take_d), dtype=np.int64, count=len(take_d))
    starts = np.searchsorted(free_dom, doms, side="left")
    parts = [free_idx[s : s + u * k] for s, (_, u) in zip(starts.tolist(), take_d, strict=True)]
    return tuple(np.concatenate(parts).tolist()) if parts else ()


def units_available(topo: FactoryTopology, usable: BoolArray, shape: GangShape) -> int:
    """Units of ``shape`` that could be placed on ``usable`` nodes (honouring domain and segment constraints)."""
    free_d = np.bincount(topo.node_domain[usable], minlength=topo.domains).astype(np.int64)
    leaf_cap = np.bincount(topo.domain_leaf, weights=free_d // shape.unit_nodes, minlength=topo.leaves)
    return int((leaf_cap.astype(np.int64) // shape.segment_units * shape.segment_units).sum())
