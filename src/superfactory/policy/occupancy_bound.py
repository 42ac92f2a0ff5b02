"""A theoretical upper bound on GPU occupancy: an LP relaxation over time of gang placement (pure, HiGHS).

Occupancy is what the twin meters: GPU-seconds of held nodes over the horizon / (every GPU x horizon). The bound
answers "how much of that could *any* schedule reach with this workload on these factories", so a policy's
occupancy reads as a share of the achievable (``occupancy / bound``).

The relaxation. Time ``[0, horizon_s)`` is cut into slots (every ``slot_s``); jobs fall into classes
``k = (accelerator, nodes per TP unit)`` per cluster system. Variable ``x[k, c, s]`` = nodes of class ``k``
held in cluster ``c`` during slot ``s`` (continuous). Maximise the held GPU-seconds subject to

1. **capacity**: in each cluster, ``sum_k x[k, c, s] <= nodes(c) - down(c, s)``, where ``down(c, s)`` is the
   mean number of the cluster's nodes that are down (failed, under repair) during the slot, from a node-failure
   trace passed as ``down`` (a down node never counts as held: the twin meters only live held nodes);
2. **release**: a class holds no more nodes than its jobs submitted by the *end* of the slot need,
   ``sum_c x[k, c, s] <= sum_{j in k, submit_j < end(s)} nodes_j`` (releases counted early: still a bound);
3. **NVLink domains** (``topology=True``): a TP unit sits inside one NVLink domain of ``n`` nodes, and a
   domain holds whole units only. For every set ``W`` of the unit sizes present in the cluster, a domain holds
   at most ``knap(n, W)`` nodes of units from ``W`` (the integer knapsack: the largest sum of sizes from ``W``,
   repeats allowed, that is ``<= n``), so
   ``sum_{k: unit_k in W} x[k, c, s] <= domains(c) * knap(n, W) + knap(rest(c), W)`` (``rest``: the nodes of
   a last, partial domain). ``W = {u, 2u, ...}`` gives the earlier ``floor(n / u) * u`` rule; mixed sets are
   tighter (units of 8 and 12 fill at most 16 of 18 nodes together, not 18);
4. **whole gangs** (``integral=True``): at any instant the gangs holding nodes in a cluster are a set of
   whole released jobs, so a cluster holds at most ``M(c, s)``, the optimum of a small integer program: choose
   ``m_g`` jobs of each gang shape ``g`` (nodes, unit), at most the number released by the slot's end, with
   ``sum_g nodes_g * m_g <= nodes(c)`` and the domain rows of 3 on ``nodes_g * m_g``. HiGHS's *dual* bound of
   that program is used (an upper bound on its optimum even if the solve stopped early);
5. **time-coupled rows** (module :mod:`superfactory.policy.gang_hold`). (a) *Fill patterns* (``topology=True``):
   at an instant each domain holds the units of one maximal multiset of unit sizes that fits it (or fewer), so
   per slot the nodes of each unit size are at most a convex combination of patterns over the domains
   (``y[p, c, s]``, ``sum_p y <= domains``). (b) *Hold caps* (``drains`` given): a job holds nodes at most
   ``min(horizon - submit, base + F_j per_failure + D_j per_drain)`` seconds (its :class:`HoldCap`, derived from
   the twin's restart, detection, checkpoint stalls, rolled-back work and slowest placement speed). Jobs are
   grouped by class and release slot; group ``G`` holds ``z[G, s] <= nodes(G)`` in its slots,
   ``sum_c x[k, c, s] <= sum_r z[(k, r), s]``, and ``sum_s len(s) z[G, s] <= V_G + a_G f_G + b_G e_G`` where
   ``V_G`` sums its jobs' nodes x capped base holds and ``a_G``, ``b_G`` are the most node-seconds one failure or
   one drain adds to one of its jobs; ``sum_G f_G <=`` the outages in ``down`` (a failure interrupts at most one
   job; a failure of a down node is discarded) and ``sum_G e_G <= drains``. This couples slots: work used in one
   slot is gone for the others. It holds for every schedule with at most ``drains`` drains and hot swaps, no
   ``Migrate``, no modelled WAN and no factory outage (gang_hold's stated assumptions).

Every schedule a policy can run satisfies 1-4 at every instant (a gang holds its nodes whole; restarts,
checkpoints and slowdowns only *lower* what is feasible; a job's node that fails is no longer counted held,
which only lowers the left-hand sides), so each slot's time-average satisfies them too (the right-hand sides
are constant within a slot; ``down`` enters as its slot average and ``x <= nodes - down`` is linear), and the
LP optimum is an upper bound. Row 4 alone is not linear in ``down``, so it is stated on all the nodes (a
failed node is still inside the cluster) and row 1 takes the outages. The failure trace is the same for every
policy in the twin (each factory's failure stream is drawn from its own seed, whatever
runs where; a draw that hits a node already down is discarded), so a bound with ``down`` taken from one run's
``NodeFailed``/``NodeRepaired`` events holds for every policy on that scenario and seed.
Row 5b holds because every job's hold time within the horizon is at most its cap (gang_hold's derivation),
the jobs of a group hold at most their nodes at any instant and only after their release slot begins, and the
per-job interruption counts are at most the global ones (the LP chooses the attribution, so the worst one is
covered). It drops: gangs' all-or-nothing timing *across* slots (a gang's nodes must all be free at one
instant, which needs a drain or perfectly timed ends before a large gang starts), how long a job holds nodes
*at least*, leaf-group segments, power and cooling caps, sovereignty.
Hence it is tight when the queue never empties (saturated factories) and loose when work runs out. On a
saturated queue with 2-node TP units (8-GPU gangs) no per-instant relaxation can be lower than capacity minus
outages: any node count fits some set of released gangs; see docs/gang.md.

Topology-blind policies (``firstfit-blind``, ``greedy``) may split TP groups across domains and so break 3, and
hold only the nodes a job's GPUs need (not whole TP units): for them use ``topology=False`` (rows 1, 2 and 4 on
those node counts, no row 3), which bounds every policy.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt

from superfactory.domain.events import Event, EventKind
from superfactory.domain.factory import Cluster, Factory
from superfactory.domain.job import TrainingJob
from superfactory.policy.gang_hold import HoldCap, fill_patterns, hold_cap
from superfactory.policy.gangfit import shape_of
from superfactory.policy.relaxation import new_highs


@dataclass(frozen=True, slots=True)
class OccupancyBound:
    """Result of :func:`occupancy_bound`.

    Attributes:
        busy_gpu_s: the most GPU-seconds any schedule (within the relaxation's assumptions) can hold.
        capacity_gpu_s: every GPU of every factory x horizon (the twin's occupancy denominator).
        occupancy: ``busy_gpu_s / capacity_gpu_s``.
        topology: whether the NVLink-domain packing constraints were applied.
        slots: time slots of the LP; variables, constraints: its size.
        binding: constraint family that limits the optimum most often (``capacity``, ``release``, ``domains``).
    """

    busy_gpu_s: float
    capacity_gpu_s: float
    occupancy: float
    topology: bool
    slots: int
    variables: int
    constraints: int
    binding: str


def down_spells(events: Iterable[Event], end_s: int) -> list[tuple[str, int, int, int]]:
    """Node outages ``(factory, node, from_s, until_s)`` from ``NodeFailed``/``NodeRepaired`` events (a node
    not repaired by ``end_s`` is down until then)."""
    since: dict[tuple[str, int], int] = {}
    out: list[tuple[str, int, int, int]] = []
    for e in events:
        if e.kind is EventKind.NODE_FAILED:
            since.setdefault((e.factory, e.node), e.time_s)
        elif e.kind is EventKind.NODE_REPAIRED and (e.factory, e.node) in since:
            out.append((e.factory, e.node, since.pop((e.factory, e.node)), e.time_s))
    out.extend((f, n, t, end_s) for (f, n), t in since.items())
    return out


def _down_per_slot(factories: Sequence[Factory], clusters: list[Cluster], slots: list[tuple[int, int]],
                   down: Sequence[tuple[str, int, int, int]]) -> npt.NDArray[np.float64]:
    """Mean down nodes per (cluster, slot) of the outages ``down``."""
    out = np.zeros((len(clusters), len(slots)))
    if not down:
        return out
    offset: dict[str, tuple[Factory, int]] = {}
    ci = 0
    for f in factories:
        offset[f.id] = (f, ci)
        ci += len(f.clusters)
    for fid, node, a, b in down:
        if fid not in offset or not 0 <= node < offset[fid][0].nodes:
            raise ValueError(f"outage of unknown node {node} of factory {fid!r}")
        f, base = offset[fid]
        k = base + next(i for i, c in enumerate(f.clusters) if c.node_offset <= node < c.node_end)
        for s, (lo, hi) in enumerate(slots):
            overlap = min(b, hi) - max(a, lo)
            if overlap > 0:
                out[k, s] += overlap / (hi - lo)
    return out


def knap(n: int, sizes: Iterable[int]) -> int:
    """The largest sum of ``sizes`` (each usable any number of times) that is ``<= n``: how many nodes of a domain
    of ``n`` nodes whole TP units of those sizes can fill."""
    reach = np.zeros(max(n, 0) + 1, dtype=bool)
    reach[0] = True
    for u in sorted(set(sizes)):
        if u <= 0:
            continue
        for i in range(u, n + 1):  # unbounded knapsack: each size any number of times
            reach[i] |= reach[i - u]
    return int(np.flatnonzero(reach)[-1]) if n >= 0 else 0


def domain_rows(units: Iterable[int], nodes: int, per_domain: int) -> list[tuple[frozenset[int], int]]:
    """Row 3 of the module docstring: ``(W, cap)`` for every set ``W`` of the unit sizes (> 1 node) in ``units``:
    a cluster of ``nodes`` nodes in domains of ``per_domain`` holds at most ``cap`` nodes of units from ``W``.
    Sets whose cap is the cluster size are left out (row 1 already says it)."""
    sizes = sorted({u for u in units if u > 1})
    domains, rest = divmod(nodes, per_domain)
    out = []
    for r in range(1, len(sizes) + 1):
        for w in itertools.combinations(sizes, r):
            cap = domains * knap(per_domain, w) + knap(rest, w)
            if cap < nodes:
                out.append((frozenset(w), cap))
    return out


def whole_gang_fill(shapes: Sequence[tuple[int, int, int]], nodes: int, per_domain: int,
                    topology: bool) -> float:
    """Row 4 of the module docstring: the most nodes of one cluster a set of whole gangs can hold, for gang
    shapes ``(nodes, unit nodes, how many released)``; HiGHS's dual bound of the integer program (>= its
    optimum)."""
    shapes = [(g, u, m) for g, u, m in shapes if m > 0 and g <= nodes]
    if not shapes:
        return 0.0
    if sum(g * m for g, _, m in shapes) <= nodes and not topology:
        return float(sum(g * m for g, _, m in shapes))
    h = new_highs(time_limit_s=10.0)
    inf = highspy.kHighsInf
    for i, (g, _u, m) in enumerate(shapes):
        h.addVar(0.0, float(m))
        h.changeColCost(i, -float(g))
        h.changeColIntegrality(i, highspy.HighsVarType.kInteger)
    rows: list[tuple[frozenset[int] | None, int]] = [(None, nodes)]
    if topology and per_domain > 1:
        rows += domain_rows([u for _, u, _ in shapes], nodes, per_domain)
    for w, cap in rows:
        cols = [i for i, (_, u, _) in enumerate(shapes) if w is None or u in w]
        if cols:
            h.addRow(-inf, float(cap), len(cols), np.asarray(cols, dtype=np.int32),
                     np.asarray([float(shapes[i][0]) for i in cols]))
    h.run()
    info = h.getInfo()
    if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
        return -float(info.objective_function_value)
    return min(float(nodes), -float(info.mip_dual_bound))  # pragma: no cover - tiny programs solve at once


def _add_patterns(h: highspy.Highs, rows: list[str], var: dict[tuple[int, int, int], int],
                  class_keys: list[tuple[tuple[str, int, int], int]], clusters: list[Cluster], n_slots: int) -> None:
    """Row 5a: per cluster and slot, the nodes of each TP-unit size (> 1 node) are at most what a convex
    combination of fill patterns (:func:`~superfactory.policy.gang_hold.fill_patterns`), one per domain, holds:
    ``sum_{k: unit u} x[k, c, s] <= sum_p y[p, c, s] * u * count_u(p)``, ``sum_p y[p, c, s] <= domains(c)`` (and
    a partial last domain with its own patterns, used at most once)."""
    inf = highspy.kHighsInf
    for ci, c in enumerate(clusters):
        n = c.system.nodes_per_domain
        units = sorted({class_keys[k][1] for (k, cj, _s) in var if cj == ci and class_keys[k][1] > 1})
        if n <= 1 or not units:
            continue
        domains, rest = divmod(c.nodes, n)
        families = [(fill_patterns(n, units), float(domains))] + ([(fill_patterns(rest, units), 1.0)] if rest else [])
        for s in range(n_slots):
            link: dict[int, tuple[list[int], list[float]]] = {u: ([], []) for u in units}
            for pats, count in families:
                cols = []
                for p in pats:
                    col = h.getNumCol()
                    h.addVar(0.0, inf)
                    cols.append(col)
                    for u in units:
                        if p.count(u):
                            link[u][0].append(col)
                            link[u][1].append(-float(u * p.count(u)))
                h.addRow(-inf, count, len(cols), np.asarray(cols, dtype=np.int32), np.ones(len(cols)))
                rows.append("domain patterns")
            for u in units:
                xs = [col for (k, cj, sj), col in var.items() if cj == ci and sj == s and class_keys[k][1] == u]
                cols_u, coef_u = link[u]
                h.addRow(-inf, 0.0, len(xs) + len(cols_u), np.asarray(xs + cols_u, dtype=np.int32),
                         np.asarray([1.0] * len(xs) + coef_u))
                rows.append("domain patterns")


def _add_holds(h: highspy.Highs, rows: list[str], var: dict[tuple[int, int, int], int],
               class_keys: list[tuple[tuple[str, int, int], int]], systems: dict[tuple[str, int, int], list[int]],
               slots: list[tuple[int, int]], groups: dict[tuple[tuple[tuple[str, int, int], int], int], list[float]],
               failures: int, drains: int) -> None:
    """Row 5b: the jobs of class ``k`` released in slot ``r`` (group ``G``) hold ``z[G, s]`` nodes in slot
    ``s >= r`` (at most their nodes), ``sum_c x[k, c, s] <= sum_r z[(k, r), s]``, and over the horizon
    ``sum_s len(s) z[G, s] <= V_G + a_G f_G + b_G e_G``: ``V_G`` = the group's nodes x hold caps without
    interruptions (each capped at horizon - submit), ``a_G``/``b_G`` = the most node-seconds one failure / one
    drain can add to a job of the group, ``f_G``/``e_G`` >= 0 the failures and drains it gets, with
    ``sum_G f_G <= failures`` and ``sum_G e_G <= drains`` (:mod:`superfactory.policy.gang_hold`)."""
    inf = highspy.kHighsInf
    index = {ck: k for k, ck in enumerate(class_keys)}
    z_of: dict[tuple[int, int], list[int]] = {}  # (class, slot) -> z columns
    budget_f: list[int] = []
    budget_d: list[int] = []
    for (ck, r), (nodes, volume, per_f, per_d) in sorted(groups.items(), key=lambda kv: (index[kv[0][0]], kv[0][1])):
        k = index[ck]
        cols, lens = [], []
        for s in range(r, len(slots)):
            col = h.getNumCol()
            h.addVar(0.0, nodes)
            z_of.setdefault((k, s), []).append(col)
            cols.append(col)
            lens.append(float(slots[s][1] - slots[s][0]))
        f_col, d_col = h.getNumCol(), h.getNumCol() + 1
        h.addVar(0.0, inf)
        h.addVar(0.0, inf)
        budget_f.append(f_col)
        budget_d.append(d_col)
        h.addRow(-inf, volume, len(cols) + 2, np.asarray([*cols, f_col, d_col], dtype=np.int32),
                 np.asarray([*lens, -per_f, -per_d]))
        rows.append("hold caps")
    for k, ck in enumerate(class_keys):
        for s in range(len(slots)):
            xs = [var[(k, ci, s)] for ci in systems[ck[0]] if (k, ci, s) in var]
            zs = z_of.get((k, s), [])
            h.addRow(-inf, 0.0, len(xs) + len(zs), np.asarray(xs + zs, dtype=np.int32),
                     np.asarray([1.0] * len(xs) + [-1.0] * len(zs)))
            rows.append("hold caps")
    for cols, cap in ((budget_f, failures), (budget_d, drains)):
        if cols:
            h.addRow(-inf, float(cap), len(cols), np.asarray(cols, dtype=np.int32), np.ones(len(cols)))
            rows.append("hold caps")


def _slots(horizon_s: int, slot_s: int) -> list[tuple[int, int]]:
    edges = [*range(0, horizon_s, max(1, slot_s)), horizon_s]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def occupancy_bound(factories: Sequence[Factory], jobs: Sequence[TrainingJob], horizon_s: int,
                    topology: bool = True, slot_s: int = 900,
                    down: Sequence[tuple[str, int, int, int]] = (), integral: bool = True,
                    drains: int | None = None,
                    hold: Callable[[TrainingJob], HoldCap] = hold_cap) -> OccupancyBound:
    """The LP bound of the module docstring for ``jobs`` on ``factories`` over ``[0, horizon_s)``.

    ``down``: node outages ``(factory id, node, from_s, until_s)`` (the realised failure trace; :func:`down_spells`
    reads it from events); ``integral``: add the whole-gang rows (4); ``drains``: add the time-coupled hold rows
    (5) for schedules with at most this many drains and hot swaps (preemptions, planned stops, ``SwapNodes``) in
    the horizon, and at most one failure interruption per outage in ``down`` (``None``: no hold rows; the
    domain-pattern rows of 5 are always added with ``topology``); ``hold``: the hold caps (any other function
    than :func:`~superfactory.policy.gang_hold.hold_cap` voids the proof: for what-if estimates only). Raises
    ``ValueError`` for a non-positive horizon or slot, a negative ``drains``, or an outage of an unknown factory
    or node. Jobs whose accelerator no factory has are ignored (no schedule can run them)."""
    if horizon_s <= 0 or slot_s <= 0:
        raise ValueError(f"horizon_s and slot_s must be > 0, got {horizon_s}, {slot_s}")
    if drains is not None and drains < 0:
        raise ValueError(f"drains must be >= 0, got {drains}")
    clusters = [c for f in factories for c in f.clusters]
    capacity_gpu_s = float(sum(f.gpus for f in factories)) * horizon_s
    slots = _slots(horizon_s, slot_s)
    down_nodes = _down_per_slot(factories, clusters, slots, down)
    # classes: (accelerator, unit nodes) -> per-slot released nodes; nodes per job depend on the cluster system,
    # so classes are per (cluster system signature, unit) and a job counts in each system it could run on
    systems: dict[tuple[str, int, int], list[int]] = {}
    for ci, c in enumerate(clusters):
        key = (c.accelerator, c.system.gpus_per_node, c.system.nodes_per_domain)
        systems.setdefault(key, []).append(ci)
    ends = np.array([b for _, b in slots], dtype=np.int64)
    classes: dict[tuple[tuple[str, int, int], int], np.ndarray] = {}
    gangs: dict[tuple[str, int, int], dict[tuple[int, int], np.ndarray]] = {}  # system -> shape -> released
    groups: dict[tuple[tuple[tuple[str, int, int], int], int], list[float]] = {}  # (class, release slot) -> hold
    for j in jobs:
        hcap = hold(j) if drains is not None else None
        for key in systems:
            if key[0] != j.accelerator:
                continue
            # a topology-aware gang holds whole TP units (its shape); a blind policy only the nodes its GPUs need
            shape = shape_of(j, key[1], key[2])
            nodes, unit = (shape.nodes, shape.unit_nodes) if topology else (-(-j.gpus // key[1]), 1)
            rel = classes.setdefault((key, unit), np.zeros(len(slots)))
            rel[j.submit_s < ends] += nodes
            cnt = gangs.setdefault(key, {}).setdefault((nodes, unit), np.zeros(len(slots)))
            cnt[j.submit_s < ends] += 1
            if hcap is not None and j.submit_s < horizon_s:
                g = groups.setdefault(((key, unit), int(np.argmax(j.submit_s < ends))), [0.0, 0.0, 0.0, 0.0])
                g[0] += nodes  # nodes, volume cap (node-s), the most one failure / one drain can add (node-s)
                g[1] += nodes * min(float(horizon_s - max(j.submit_s, 0)), hcap.base_s)
                g[2] = max(g[2], nodes * hcap.per_failure_s)
                g[3] = max(g[3], nodes * hcap.per_drain_s)
    if not classes:
        return OccupancyBound(0.0, capacity_gpu_s, 0.0, topology, len(slots), 0, 0, "release")
    h = new_highs()
    inf = highspy.kHighsInf
    var: dict[tuple[int, int, int], int] = {}  # (class index, cluster, slot) -> column
    class_keys = list(classes)
    for k, (key, _unit) in enumerate(class_keys):
        for ci in systems[key]:
            gpn = clusters[ci].system.gpus_per_node
            for s, (a, b) in enumerate(slots):
                var[(k, ci, s)] = h.getNumCol()
                h.addVar(0.0, inf)
                h.changeColCost(var[(k, ci, s)], -float(gpn * (b - a)))  # HiGHS minimises
    rows: list[str] = []

    def add_row(cols: list[int], ub: float, family: str) -> None:
        if cols:
            h.addRow(-inf, float(ub), len(cols), np.asarray(cols, dtype=np.int32), np.ones(len(cols)))
            rows.append(family)

    fills: dict[tuple[int, tuple[tuple[int, int, int], ...]], float] = {}  # cache: same releases, same fill
    dom_rows: dict[int, list[tuple[frozenset[int], int]]] = {}
    for s in range(len(slots)):
        for ci, c in enumerate(clusters):
            in_c = [(k, var[(k, ci, s)]) for k in range(len(class_keys)) if (k, ci, s) in var]
            add_row([col for _, col in in_c], c.nodes - down_nodes[ci, s], "capacity")
            n = c.system.nodes_per_domain
            if topology and n > 1:
                if ci not in dom_rows:
                    dom_rows[ci] = domain_rows([class_keys[k][1] for k, _ in in_c], c.nodes, n)
                for w, cap in dom_rows[ci]:
                    add_row([col for k, col in in_c if class_keys[k][1] in w], cap, "domains")
            if integral and in_c:
                key = (c.accelerator, c.system.gpus_per_node, n)
                shapes = tuple((g, u, int(cnt[s])) for (g, u), cnt in sorted(gangs[key].items()))
                ck = (ci, shapes)
                if ck not in fills:
                    fills[ck] = whole_gang_fill(shapes, c.nodes, n, topology)
                if fills[ck] < c.nodes - down_nodes[ci, s]:
                    add_row([col for _, col in in_c], fills[ck], "whole gangs")
        for k, ckey in enumerate(class_keys):
            add_row([var[(k, ci, s)] for ci in systems[ckey[0]]], classes[ckey][s], "release")
    if topology:
        _add_patterns(h, rows, var, class_keys, clusters, len(slots))
    if drains is not None:
        _add_holds(h, rows, var, class_keys, systems, slots, groups,
                   failures=sum(1 for *_, a, _b in down if a < horizon_s), drains=drains)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:  # pragma: no cover - the LP is always feasible
        raise RuntimeError(f"occupancy bound LP: {h.modelStatusToString(h.getModelStatus())}")
    busy = -float(h.getInfo().objective_function_value)
    duals = np.asarray(h.getSolution().row_dual)
    weight: dict[str, float] = {}
    for fam, d in zip(rows, duals, strict=True):
        weight[fam] = weight.get(fam, 0.0) + abs(float(d))
    binding = max(weight, key=lambda fam: weight[fam]) if weight else "capacity"
    return OccupancyBound(busy, capacity_gpu_s, busy / capacity_gpu_s if capacity_gpu_s else 0.0, topology,
                          len(slots), h.getNumCol(), h.getNumRow(), binding)
