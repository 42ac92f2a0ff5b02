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

Speed (issue 12; same results as the plain rule above, checked against a plain-loop reference in
tests/unit/policy/test_gangfit_reference.py): per-topology index tables are built once and cached by identity
(domain node ranges; the domains of each leaf and the leaves of each hall, which are contiguous ranges because
everything is numbered in node order), so capacities are ``add.reduceat`` sums rather than weighted bincounts;
covers and fragments-first are one cumulative sum over all the chosen leaves rather than a loop per leaf; the
nodes are gathered in one pass; :func:`units_available` without segments needs no leaf sums at all. Session 8
(geo's cheap path places ~10 gangs an hour): usable nodes are found with ``nonzero`` on booleans (~3x faster than
on bytes); a level no child of which could hold the gang even when empty is skipped (:func:`_most_units`); halls,
the covers and fragments-first over few domains run on plain ints (numpy calls cost more than the work there); in
factories whose domains are single nodes (DGX-style), fragments-first in a leaf is index order, so each chosen leaf
gives its first usable nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from superfactory.domain.job import TrainingJob
from superfactory.domain.topology import FactoryTopology, tp_nodes
from superfactory.models.collective import nodes_tuple

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


#: (gpus, tp_size, segment_gpus, gpus_per_node, domain_nodes) -> the shape (a function of those five only)
_SHAPES: dict[tuple[int, int, int, int, int], GangShape] = {}


def shape_of(job: TrainingJob, gpus_per_node: int, domain_nodes: int) -> GangShape:
    """The :class:`GangShape` of ``job`` on nodes of ``gpus_per_node`` GPUs in domains of ``domain_nodes``
    (kept per job shape: the gang size, TP size and segment, and the system)."""
    key = (job.gpus, job.tp_size, job.segment_gpus, gpus_per_node, domain_nodes)
    got = _SHAPES.get(key)
    if got is None:
        if len(_SHAPES) >= 4096:
            _SHAPES.clear()
        got = _SHAPES[key] = _shape(*key)
    return got


def _shape(gpus: int, tp_size: int, segment_gpus: int, gpus_per_node: int, domain_nodes: int) -> GangShape:
    """:func:`shape_of` uncached, on the job's gang size, TP size and segment."""
    nodes = -(-gpus // gpus_per_node)
    k = min(tp_nodes(gpus_per_node, gpus, tp_size), domain_nodes)
    seg_units = 1
    if segment_gpus and segment_gpus < gpus:
        seg_nodes = -(-segment_gpus // gpus_per_node)
        if seg_nodes <= domain_nodes:
            k = max(k, seg_nodes)
        else:
            seg_units = -(-seg_nodes // k)
    units = -(-nodes // k)
    units = -(-units // seg_units) * seg_units
    return GangShape(units, k, seg_units)


#: id(topology) -> (topology, its tables); the topology is kept so the id cannot be reused while cached.
_TABLES: dict[int, tuple[FactoryTopology, _Tables]] = {}


@dataclass(frozen=True, slots=True)
class _Tables:
    """Index tables of one topology that placement reads on every call (built once, see :func:`_tables_of`).

    Domains, leaves and halls are numbered in node order, so the domains of a leaf and the leaves of a hall are
    contiguous ranges: ``leaf_dom[l]:leaf_dom[l + 1]`` and ``hall_leaf[h]:hall_leaf[h + 1]``.
    """

    dom_first: IntpArray  # per domain, its first node
    dom_end: IntpArray  # per domain, one past its last node
    leaf_dom: IntpArray  # leaves + 1 bounds into the domains
    hall_leaf: IntpArray  # halls + 1 bounds into the leaves
    leaf_starts: IntpArray | None  # leaf_dom[:-1] when every leaf has a domain (for add.reduceat), else None
    hall_starts: IntpArray | None  # hall_leaf[:-1] when every hall has a leaf, else None
    halls: int
    domain_leaf: IntpArray
    leaf_hall: IntpArray
    all_halls: IntpArray  # arange(halls)
    leaf_dom_l: list[int]  # leaf_dom and hall_leaf as plain ints (choices among few leaves and halls use lists)
    hall_leaf_l: list[int]
    one_node_domains: bool  # every domain is one node (DGX-style systems: NVLink inside the node)
    node_is_domain: bool  # domain d is node d for every node (then free nodes per domain are the usable mask)
    most_units: dict[int, tuple[int, int]]  # unit nodes -> (most units one domain, one leaf could hold)


def _tables_of(topo: FactoryTopology) -> _Tables:
    """The :class:`_Tables` of ``topo``, cached by identity (a topology is immutable and :func:`topology_of`
    keeps one per factory)."""
    hit = _TABLES.get(id(topo))
    if hit is not None and hit[0] is topo:
        return hit[1]
    if (np.diff(topo.domain_leaf) < 0).any() or (np.diff(topo.leaf_hall) < 0).any():
        raise ValueError(f"topology of {topo.factory_id}: domains and leaves must be numbered in node order")
    halls = topo.halls
    leaf_ix = np.arange(topo.leaves + 1, dtype=np.intp)
    hall_ix = np.arange(halls + 1, dtype=np.intp)
    leaf_dom = np.searchsorted(topo.domain_leaf, leaf_ix, side="left").astype(np.intp)
    hall_leaf = np.searchsorted(topo.leaf_hall, hall_ix, side="left").astype(np.intp)
    t = _Tables(
        dom_first=topo.domain_first_node.astype(np.intp),
        dom_end=(topo.domain_first_node + topo.domain_nodes).astype(np.intp),
        leaf_dom=leaf_dom,
        hall_leaf=hall_leaf,
        leaf_starts=leaf_dom[:-1] if leaf_dom.size > 1 and (np.diff(leaf_dom) > 0).all() else None,
        hall_starts=hall_leaf[:-1] if hall_leaf.size > 1 and (np.diff(hall_leaf) > 0).all() else None,
        halls=halls,
        domain_leaf=topo.domain_leaf.astype(np.intp),
        leaf_hall=topo.leaf_hall.astype(np.intp),
        all_halls=np.arange(halls, dtype=np.intp),
        leaf_dom_l=leaf_dom.tolist(),
        hall_leaf_l=hall_leaf.tolist(),
        one_node_domains=bool((topo.domain_nodes == 1).all()),
        node_is_domain=bool(topo.node_domain.size == topo.domain_first_node.size
                            and (topo.node_domain == np.arange(topo.node_domain.size)).all()),
        most_units={},
    )
    if len(_TABLES) >= 256:
        _TABLES.clear()
    _TABLES[id(topo)] = (topo, t)
    return t


def _most_units(t: _Tables, k: int) -> tuple[int, int]:
    """The most units of ``k`` nodes one domain, and one leaf, could hold with every node usable (bounds that
    let placement skip a level no child of which can hold the gang)."""
    hit = t.most_units.get(k)
    if hit is None:
        per_dom = (t.dom_end - t.dom_first) // k
        per_leaf = np.add.reduceat(per_dom, t.leaf_starts) if t.leaf_starts is not None else (
            _segment_sums(per_dom.astype(np.int64), t.leaf_dom, None))
        hit = t.most_units[k] = (int(per_dom.max(initial=0)), int(per_leaf.max(initial=0)))
    return hit


def _segment_sums(values: npt.NDArray[np.int64], bounds: IntpArray,
                  starts: IntpArray | None) -> npt.NDArray[np.int64]:
    """Sums of ``values`` over the contiguous ranges ``bounds[i]:bounds[i + 1]`` (empty ranges sum to 0);
    ``starts``: ``bounds[:-1]`` when no range is empty (one ``add.reduceat``), else None."""
    if starts is not None:
        sums: npt.NDArray[np.int64] = np.add.reduceat(values, starts)
        return sums
    cs = np.zeros(values.size + 1, dtype=np.int64)
    values.cumsum(out=cs[1:])
    return cs[bounds[1:]] - cs[bounds[:-1]]


def _best_fit(cap: npt.NDArray[np.int64], need: int, parent_cap: npt.NDArray[np.int64] | None = None,
              parent_of: IntpArray | None = None) -> int:
    """Index of the smallest ``cap >= need`` (ties: smallest capacity of its parent ``parent_cap[parent_of[i]]``,
    then lowest index); -1 if none."""
    ok = (cap >= need).nonzero()[0]
    if ok.size <= 1:
        return int(ok[0]) if ok.size else -1
    c = cap[ok]
    ok = ok[c == c.min()]
    if ok.size == 1 or parent_cap is None or parent_of is None:
        return int(ok[0])
    return int(ok[int(np.argmin(parent_cap[parent_of[ok]]))])  # argmin: the first of equal parents


def _best_fit_list(cap: list[int], need: int) -> int:
    """:func:`_best_fit` without parents, on a list: index of the smallest ``cap >= need`` (ties: lowest index);
    -1 if none."""
    best, best_c = -1, 0
    for i, c in enumerate(cap):
        if c >= need and (best < 0 or c < best_c):
            best, best_c = i, c
    return best


def _cover(first: int, cap: list[int], need: int) -> list[tuple[int, int]]:
    """Split ``need`` over children ``first, first + 1, ...`` with capacities ``cap``: largest whole, remainder
    best fit.

    Children go largest first (ties: lowest index); the first one that, with those before it, reaches ``need``
    marks the end: the remainder then goes to the smallest child from there on that holds it. Empty if the
    capacities cannot hold ``need``."""
    if need <= 0:
        return []
    order = sorted(range(len(cap)), key=cap.__getitem__, reverse=True)  # (stable: equal capacities by index)
    got = 0
    for i, p in enumerate(order):
        if got + cap[p] >= need:
            rest = need - got
            j = i  # descending: the last from i on that holds the rest is the smallest
            while j + 1 < len(order) and cap[order[j + 1]] >= rest:
                j += 1
            out = [(first + q, cap[q]) for q in order[:i]]
            out.append((first + order[j], rest))
            return out
        got += cap[p]
    return []


#: below one usable node in this many, domain counts come from the usable nodes' list rather than a full pass
_SPARSE = 8


def place_gang(topo: FactoryTopology, usable: BoolArray, shape: GangShape) -> tuple[int, ...] | None:
    """Nodes for a gang of ``shape`` among ``usable`` nodes (free, right accelerator, not withheld), or None.

    ``usable`` is a boolean array over the factory's nodes. The result is ordered domain by domain.
    """
    k, need, seg = shape.unit_nodes, shape.units, shape.segment_units
    n_usable = int(np.count_nonzero(usable))
    if need <= 0 or n_usable < shape.nodes:
        return None
    t = _tables_of(topo)
    ub = usable if usable.dtype == np.bool_ else usable != 0  # (nonzero on booleans is ~3x faster than on bytes)
    u8 = ub.view(np.uint8)
    if t.node_is_domain:  # (DGX-style: each node its own domain, numbered as the nodes: no per-domain sums)
        free_d = u8.astype(np.int64)
    elif n_usable * _SPARSE < u8.size:  # few usable nodes: count them by domain
        free_d = np.bincount(topo.node_domain[ub.nonzero()[0]], minlength=t.dom_first.size).astype(np.int64)
    else:
        free_d = np.add.reduceat(u8, t.dom_first).astype(np.int64)
    cap_d = free_d // k
    leaf_cap = _segment_sums(cap_d, t.leaf_dom, t.leaf_starts)
    if seg > 1:
        leaf_cap = leaf_cap // seg * seg
    if int(leaf_cap.sum()) < need:
        return None
    dom_most, leaf_most = _most_units(t, k)
    if (seg == 1 or need <= seg) and need <= dom_most:
        d = _best_fit(cap_d, need, leaf_cap, t.domain_leaf)
        if d >= 0:
            return _nodes_of(ub, t, free_d, [d], [need], k)
    hall_cap = _segment_sums(leaf_cap, t.hall_leaf, t.hall_starts)
    lf = _best_fit(leaf_cap, need, hall_cap, t.leaf_hall) if need <= leaf_most else -1
    if lf >= 0:
        leaves = [(lf, need)]
    else:
        hc: list[int] = hall_cap.tolist()  # (halls and the leaves of one hall are few: plain ints from here)
        h = _best_fit_list(hc, need)
        halls = [(h, need)] if h >= 0 else _cover(0, hc, need)
        leaves = []
        hall_leaf = t.hall_leaf_l
        for hh, n_h in halls:
            a, b = hall_leaf[hh], hall_leaf[hh + 1]
            leaves.extend(_cover(a, leaf_cap[a:b].tolist(), n_h))
    if t.one_node_domains and k == 1:
        # every domain holds 0 or 1 unit: fewest-free-first in a leaf is index order, so each leaf gives its
        # first usable nodes
        parts = []
        leaf_dom = t.leaf_dom_l
        for leaf, n_l in sorted(leaves):
            a = int(t.dom_first[leaf_dom[leaf]])
            parts.append(ub[a : int(t.dom_end[leaf_dom[leaf + 1] - 1])].nonzero()[0][:n_l] + a)
        if not parts:
            return ()
        return nodes_tuple(np.concatenate(parts) if len(parts) > 1 else parts[0])
    doms, units = _fragments_first(t, cap_d, leaves)
    return _nodes_of(ub, t, free_d, doms, units, k)


#: up to this many domains in the chosen leaves, :func:`_fragments_first` takes them on plain ints
_FEW_LEAF_DOMAINS = 48


def _fragments_first(t: _Tables, cap_d: npt.NDArray[np.int64],
                     leaves: list[tuple[int, int]]
                     ) -> tuple[list[int], list[int]] | tuple[IntpArray, npt.NDArray[np.int64]]:
    """Take ``n`` units from the domains of each ``(leaf, n)`` of ``leaves``, in each leaf fewest-free domains first
    (ties: lowest index), so the last take is a best fit. Returns the domains taken, ascending, and their units.
    Up to :data:`_FEW_LEAF_DOMAINS` domains in those leaves, on plain ints; beyond, in numpy passes."""
    leaf_dom = t.leaf_dom_l
    if sum(leaf_dom[lf + 1] - leaf_dom[lf] for lf, _n in leaves) <= _FEW_LEAF_DOMAINS:
        taken: list[tuple[int, int]] = []
        for leaf, n_l in leaves:
            a = leaf_dom[leaf]
            caps = cap_d[a : leaf_dom[leaf + 1]].tolist()
            for cp, p in sorted([(cp, p) for p, cp in enumerate(caps) if cp > 0]):  # by capacity, then index
                if n_l <= 0:
                    break
                got = cp if cp < n_l else n_l
                taken.append((a + p, got))
                n_l -= got
        taken.sort()
        return [d for d, _u in taken], [u for _d, u in taken]
    if len(leaves) == 1:
        leaf, n_leaf = leaves[0]
        a = int(t.leaf_dom[leaf])
        c = cap_d[a : int(t.leaf_dom[leaf + 1])]
        dom = (c > 0).nonzero()[0]
        c = c[dom]
        order = c.argsort(kind="stable")  # by capacity, then index
        dom, c = dom[order] + a, c[order]
        before = c.cumsum() - c  # units of the domains taken ahead of each one
        take = np.minimum(c, np.maximum(n_leaf - before, 0))
    else:
        leaf_need = np.zeros(t.leaf_dom.size - 1, dtype=np.int64)
        for leaf, n_l in leaves:
            leaf_need[leaf] = n_l
        need_of = leaf_need[t.domain_leaf]
        dom = ((need_of > 0) & (cap_d > 0)).nonzero()[0]
        c = cap_d[dom]
        order = np.lexsort((c, t.domain_leaf[dom]))  # by leaf, then capacity, then index
        dom, c = dom[order], c[order]
        before = c.cumsum() - c
        leaf_of = t.domain_leaf[dom]
        new_leaf = np.empty(leaf_of.size, dtype=bool)
        new_leaf[:1] = True
        np.not_equal(leaf_of[1:], leaf_of[:-1], out=new_leaf[1:])
        heads = new_leaf.nonzero()[0]
        before -= np.repeat(before[heads], np.diff(np.append(heads, leaf_of.size)))  # within its own leaf
        take = np.minimum(c, np.maximum(need_of[dom] - before, 0))
    keep = take > 0
    dom, take = dom[keep], take[keep]
    order = dom.argsort()
    return dom[order], take[order]


#: up to this many domains, :func:`_nodes_of` scans each domain's own nodes; beyond, one pass over the factory.
_FEW_DOMAINS = 4


def _nodes_of(ub: BoolArray, t: _Tables, free_d: npt.NDArray[np.int64],
              doms: list[int] | IntpArray, units: list[int] | npt.NDArray[np.int64], k: int) -> tuple[int, ...]:
    """The first ``units[i] * k`` usable nodes of each domain ``doms[i]`` (ascending), domain by domain
    (``doms`` and ``units``: plain lists or arrays)."""
    if len(doms) == 0:
        return ()
    if len(doms) <= _FEW_DOMAINS:
        parts = []
        dl: list[int] = doms if isinstance(doms, list) else doms.tolist()
        ul: list[int] = units if isinstance(units, list) else units.tolist()
        for d, u in zip(dl, ul, strict=True):
            a = int(t.dom_first[d])
            parts.append(ub[a : int(t.dom_end[d])].nonzero()[0][: u * k] + a)
        return nodes_tuple(np.concatenate(parts) if len(parts) > 1 else parts[0])
    free_idx = ub.nonzero()[0]
    lens = np.asarray(units, dtype=np.int64) * k
    starts = (free_d.cumsum() - free_d)[np.asarray(doms, dtype=np.intp)]
    ends = lens.cumsum()
    pos = np.repeat(starts - (ends - lens), lens) + np.arange(int(ends[-1]), dtype=np.intp)
    return nodes_tuple(free_idx[pos])


def units_available(topo: FactoryTopology, usable: BoolArray, shape: GangShape) -> int:
    """Units of ``shape`` that could be placed on ``usable`` nodes (honouring domain and segment constraints)."""
    if shape.segment_units == 1:  # leaf grouping cannot cut anything: every domain's whole units count
        if shape.unit_nodes == 1 and usable.dtype == np.bool_:
            return int(np.count_nonzero(usable))
        return int((np.bincount(topo.node_domain[usable]) // shape.unit_nodes).sum())
    free_d = np.bincount(topo.node_domain[usable], minlength=topo.domains)
    t = _tables_of(topo)
    leaf_cap = _segment_sums(free_d // shape.unit_nodes, t.leaf_dom, t.leaf_starts)
    seg = shape.segment_units
    return int((leaf_cap // seg * seg).sum())
