"""Deadline-aware transfer planning over the WAN fabric: a path-based multi-commodity flow LP on HiGHS.

The horizon (default 30 min) is cut into equal slots (default 30 s). Each transfer ``k`` may send ``x[k,p,t]``
gigabits along path ``p`` in slot ``t`` between its release and its deadline. The LP

    minimise   sum_kpt x[k,p,t] * (w_k * (t+1)/T * S/size_k + relay * hops(p))       mean arrival, relay use
             + sum_k   u_k * 1000 w_k max(1, S/size_k) + o_k * w_k * S/size_k * (1 + 1/T)   unmet, deferred
    subject to sum_pt x[k,p,t] + u_k + o_k = size_k                        every bit is carried, missed or deferred
               sum_{k,p ∋ a} x[k,p,t] <= (cap_a - background_a,t) * slot   every arc, every slot
               x, u, o >= 0    (o_k only for deadlines beyond the horizon)

(``w_k`` the class weight, ``S`` the mean transfer size: each transfer is charged its mean arrival slot, so
small urgent transfers go first) is a fluid model: a slot's data crosses a path at its bottleneck rate; relays
forward within the slot (RTTs are milliseconds, slots tens of seconds). Background load (inference traffic,
other tenants) is reserved per arc and slot from a forecast, so checkpoint bursts cannot crowd it out.

It starts from the ``k`` shortest paths of each transfer (by latency, at most ``max_hops`` arcs: the direct link
and routes over relay sites, as Skyplane plans one transfer's overlay, here for all transfers over time).
Column generation prices new paths with a Dijkstra per source site and congested slot under the capacity duals;
each pricing pass also gives a Lagrangian lower bound on the cost of any schedule over *all* simple paths,
``z_RMP + sum_k size_k * min(0, min reduced cost of k)``, so a plan always carries a proven optimality gap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from superfactory.domain.transfer import (
    CLASS_WEIGHT,
    FabricPlan,
    PathFlow,
    Transfer,
    TransferSchedule,
    barrier_offset_s,
)
from superfactory.policy.relaxation import new_highs
from superfactory.policy.wan_paths import Fabric, dijkstra_tree, path_from_tree, shortest_paths

__all__ = ["PlannerConfig", "barrier_offset_s", "plan_transfers"]

UNMET_COST = 1000.0  # per gigabit, times the class weight: missing a deadline dwarfs any lateness


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """Knobs of the transfer planner.

    Attributes:
        slot_s: slot length, s.
        horizon_s: planning horizon, s (the congestion forecast's reach).
        paths_per_transfer: initial candidate paths per transfer (shortest by latency).
        max_hops: longest initial candidate path, in arcs (2 = one relay site).
        relay_cost: cost per gigabit per arc crossed, small against lateness (prefers the direct path at equal
            lateness; a relay pays only when it makes data arrive sooner).
        pricing_rounds: column-generation rounds after the first solve (0 = the k-shortest-path LP only).
        prove_bound: run one pricing pass after the last solve to compute the lower bound (else the bound is
            ``-inf`` and the gap unknown).
    """

    slot_s: int = 30
    horizon_s: int = 1800
    paths_per_transfer: int = 3
    max_hops: int = 3
    relay_cost: float = 1e-3
    pricing_rounds: int = 0
    prove_bound: bool = True

    @property
    def slots(self) -> int:
        return max(1, self.horizon_s // self.slot_s)


@dataclass
class _Commodity:
    """One transfer inside the LP: where it may send, when, and along which paths (site indices)."""

    transfer: Transfer
    src: int
    dst: int
    t_lo: int
    t_hi: int  # exclusive
    may_defer: bool
    weight: float
    paths: list[tuple[int, ...]]
    late_scale: float = 1.0  # mean size / own size: lateness is charged per transfer, not per bit

    def late_cost(self, slot: np.ndarray | int, n_slots: int) -> np.ndarray | float:
        """Cost per gigabit sent in ``slot``: its class weight × (slot+1)/T × mean size / own size."""
        return self.weight * self.late_scale * (np.asarray(slot) + 1) / n_slots


def plan_transfers(fabric: Fabric, transfers: Sequence[Transfer], now_s: int,
                   config: PlannerConfig | None = None,
                   background_gbps: np.ndarray | None = None) -> FabricPlan:
    """Plan ``transfers`` over ``fabric`` for the horizon starting at ``now_s``.

    Args:
        fabric: sites and directed arcs (see :class:`Fabric`).
        transfers: what to move; sites must be on the fabric.
        now_s: start of slot 0, s.
        config: planner knobs (defaults: 30 s slots, 30 min, 3 paths of <= 3 hops, bound proven).
        background_gbps: load reserved on each arc in each slot, shape ``(n_arcs, slots)`` (Gb/s), e.g. the
            inference traffic forecast; ``None`` for an empty fabric.

    Returns:
        The plan: flows per transfer, unmet and deferred gigabits, the objective and a proven lower bound;
        transfers that cannot make their deadline are listed in ``infeasible`` with the figures.
    """
    cfg = config or PlannerConfig()
    n_slots = cfg.slots
    residual = np.asarray(fabric.capacity_gbps, dtype=float)[:, None].repeat(n_slots, axis=1)
    if background_gbps is not None:
        bg = np.asarray(background_gbps, dtype=float)
        if bg.shape != residual.shape:
            raise ValueError(f"background_gbps has shape {bg.shape}; expected {residual.shape} (arcs, slots)")
        residual = np.maximum(0.0, residual - bg)
    cap_gbit = residual * cfg.slot_s

    commodities = [_commodity(fabric, tr, now_s, cfg) for tr in transfers]
    if commodities:
        mean_size = float(np.mean([c.transfer.size_gbit for c in commodities]))
        for c in commodities:
            c.late_scale = mean_size / c.transfer.size_gbit
    out_arcs = fabric.out_arcs()
    arc_index = fabric.arc_index()
    lower_bound = -math.inf
    solution = _solve(fabric, commodities, cap_gbit, cfg, arc_index)
    rounds = cfg.pricing_rounds + (1 if cfg.prove_bound else 0)
    for r in range(rounds):
        z, x, duals, cols = solution
        bound, new_paths = _price(fabric, commodities, duals, cfg, out_arcs, z)
        lower_bound = max(lower_bound, bound)
        if r == cfg.pricing_rounds or not new_paths:
            if not new_paths:
                lower_bound = z  # no improving column: the restricted LP is the LP optimum over all paths
            break
        for ci, path in new_paths:
            commodities[ci].paths.append(path)
        solution = _solve(fabric, commodities, cap_gbit, cfg, arc_index)
    z, x, _, cols = solution
    return _plan(fabric, commodities, x, cols, z, min(lower_bound, z), now_s, cfg)


def _commodity(fabric: Fabric, tr: Transfer, now_s: int, cfg: PlannerConfig) -> _Commodity:
    src, dst = fabric.site_index(tr.src), fabric.site_index(tr.dst)
    t_lo = max(0, math.ceil((tr.release_s - now_s) / cfg.slot_s))
    t_hi = min(cfg.slots, (tr.deadline_s - now_s) // cfg.slot_s)
    may_defer = tr.deadline_s > now_s + cfg.slots * cfg.slot_s
    paths = shortest_paths(fabric, src, dst, cfg.paths_per_transfer, cfg.max_hops)
    if not paths:  # farther than max_hops: the lowest-latency route of any length, so no transfer starts pathless
        dist, pred = dijkstra_tree(fabric.out_arcs(), fabric.arc_dst, np.asarray(fabric.latency_ms) + 1e-3, src)
        far = path_from_tree(pred, fabric.arc_src, src, dst) if np.isfinite(dist[dst]) else None
        paths = [far] if far is not None else []
    return _Commodity(tr, src, dst, t_lo, max(t_lo, t_hi), may_defer, CLASS_WEIGHT[tr.traffic_class], paths)


@dataclass(frozen=True, slots=True)
class _Columns:
    """Which (commodity, path, slot) each x column is; u and o columns follow the x columns."""

    commodity: np.ndarray
    path: np.ndarray
    slot: np.ndarray
    n_x: int


def _solve(fabric: Fabric, commodities: list[_Commodity], cap_gbit: np.ndarray, cfg: PlannerConfig,
           arc_index: dict[tuple[int, int], int]) -> tuple[float, np.ndarray, np.ndarray, _Columns]:
    """Build and solve the restricted master LP; returns (objective, x values, row duals, column map)."""
    n_k = len(commodities)
    n_slots = cfg.slots
    cost: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    index: list[np.ndarray] = []
    c_k: list[np.ndarray] = []
    c_p: list[np.ndarray] = []
    c_t: list[np.ndarray] = []
    nnz = 0
    for ci, c in enumerate(commodities):
        ts = np.arange(c.t_lo, c.t_hi)
        if ts.size == 0:
            continue
        late = np.asarray(c.late_cost(ts, n_slots))
        for pi, path in enumerate(c.paths):
            arcs = np.array([arc_index[(path[i], path[i + 1])] for i in range(len(path) - 1)], dtype=np.int64)
            cost.append(late + cfg.relay_cost * arcs.size)
            rows = np.empty((ts.size, 1 + arcs.size), dtype=np.int64)
            rows[:, 0] = ci
            rows[:, 1:] = n_k + arcs[None, :] * n_slots + ts[:, None]
            index.append(rows.ravel())
            starts.append(nnz + np.arange(ts.size, dtype=np.int64) * (1 + arcs.size))
            nnz += rows.size
            c_k.append(np.full(ts.size, ci))
            c_p.append(np.full(ts.size, pi))
            c_t.append(ts)
    n_x = int(sum(a.size for a in c_k))
    # u_k (unmet) and o_k (deferred past the horizon) for every commodity: one entry in its own row
    slack_cost = np.array([[UNMET_COST * c.weight * max(1.0, c.late_scale),
                            c.weight * c.late_scale * (1.0 + 1.0 / n_slots)] for c in commodities]).ravel()
    slack_upper = np.array([[np.inf, np.inf if c.may_defer else 0.0] for c in commodities]).ravel()
    slack_rows = np.repeat(np.arange(n_k, dtype=np.int64), 2)
    starts.append(nnz + np.arange(2 * n_k, dtype=np.int64))
    index.append(slack_rows)
    nnz += 2 * n_k

    lp = highspy.HighsLp()
    lp.num_col_ = n_x + 2 * n_k
    lp.num_row_ = n_k + fabric.n_arcs * n_slots
    lp.col_cost_ = np.concatenate([*cost, slack_cost]) if cost else slack_cost
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.concatenate([np.full(n_x, np.inf), slack_upper])
    sizes = np.array([c.transfer.size_gbit for c in commodities], dtype=float)
    lp.row_lower_ = np.concatenate([sizes, np.full(fabric.n_arcs * n_slots, -np.inf)])
    lp.row_upper_ = np.concatenate([sizes, cap_gbit.ravel()])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([*starts, [nnz]]).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate(index).astype(np.int32)
    lp.a_matrix_.value_ = np.ones(nnz)
    h = new_highs()
    h.setOptionValue("solver", "simplex")
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:  # pragma: no cover - the LP is always feasible
        raise RuntimeError(f"transfer LP not solved: {h.modelStatusToString(h.getModelStatus())}")
    sol = h.getSolution()
    x = np.asarray(sol.col_value, dtype=float)
    duals = np.asarray(sol.row_dual, dtype=float)
    z = float(h.getInfo().objective_function_value)
    empty = np.zeros(0, dtype=np.int64)
    cols = _Columns(np.concatenate(c_k) if c_k else empty, np.concatenate(c_p) if c_p else empty,
                    np.concatenate(c_t) if c_t else empty, n_x)
    return z, x, duals, cols


def _price(fabric: Fabric, commodities: list[_Commodity], duals: np.ndarray, cfg: PlannerConfig,
           out_arcs: list[list[int]], z: float) -> tuple[float, list[tuple[int, tuple[int, ...]]]]:
    """One pricing pass: the Lagrangian lower bound and, per commodity, its best new path if it improves.

    The reduced cost of column (k, p, t) is ``late_k(t) + relay * hops(p) - y_k - sum_{a in p} y_{a,t}``, with
    capacity duals ``y <= 0``; the best path for (k, t) is a shortest path under arc weights
    ``relay - y_{a,t} >= 0`` (Dijkstra). Slots whose arcs all have zero duals share one tree per source.
    """
    n_k = len(commodities)
    n_slots = cfg.slots
    y_k = duals[:n_k]
    y_cap = np.minimum(0.0, duals[n_k:].reshape(fabric.n_arcs, n_slots))  # guard tiny positive noise
    congested = np.flatnonzero((y_cap < -1e-12).any(axis=0))
    trees: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    base_w = np.full(fabric.n_arcs, cfg.relay_cost)

    def tree(src: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        key = (src, t if t in congested_set else -1)
        if key not in trees:
            w = base_w - y_cap[:, t] if key[1] >= 0 else base_w
            trees[key] = dijkstra_tree(out_arcs, fabric.arc_dst, w, src)
        return trees[key]

    congested_set = {int(t) for t in congested}
    bound = z
    new: list[tuple[int, tuple[int, ...]]] = []
    for ci, c in enumerate(commodities):
        best_rc = 0.0
        best_path: tuple[int, ...] | None = None
        for t in range(c.t_lo, c.t_hi):
            dist, pred = tree(c.src, t)
            if not math.isfinite(dist[c.dst]):
                continue
            rc = float(c.late_cost(t, n_slots)) + float(dist[c.dst]) - float(y_k[ci])
            if rc < best_rc - 1e-9:
                best_rc = rc
                best_path = path_from_tree(pred, fabric.arc_src, c.src, c.dst)
        bound += c.transfer.size_gbit * best_rc
        if best_path is not None and best_path not in c.paths:
            new.append((ci, best_path))
    return bound, new


def _plan(fabric: Fabric, commodities: list[_Commodity], x: np.ndarray, cols: _Columns, z: float,
          lower_bound: float, now_s: int, cfg: PlannerConfig) -> FabricPlan:
    n_k = len(commodities)
    flows: list[list[PathFlow]] = [[] for _ in commodities]
    last_slot = np.full(n_k, -1)
    for j in np.flatnonzero(x[: cols.n_x] > 1e-9):
        ci, pi, t = int(cols.commodity[j]), int(cols.path[j]), int(cols.slot[j])
        path = tuple(fabric.sites[s] for s in commodities[ci].paths[pi])
        flows[ci].append(PathFlow(path, t, float(x[j])))
        last_slot[ci] = max(last_slot[ci], t)
    schedules: list[TransferSchedule] = []
    infeasible: list[tuple[str, str]] = []
    for ci, c in enumerate(commodities):
        tr = c.transfer
        unmet = float(x[cols.n_x + 2 * ci])
        deferred = float(x[cols.n_x + 2 * ci + 1])
        tol = 1e-6 * max(1.0, tr.size_gbit)
        unmet = unmet if unmet > tol else 0.0
        deferred = deferred if deferred > tol else 0.0
        done = unmet == 0.0 and deferred == 0.0
        finish = now_s + int(last_slot[ci] + 1) * cfg.slot_s if done and last_slot[ci] >= 0 else None
        flows[ci].sort(key=lambda f: (f.slot, f.path))
        schedules.append(TransferSchedule(tr.transfer_id, tuple(flows[ci]), unmet, deferred, finish))
        if unmet > 0.0:
            infeasible.append((tr.transfer_id, _why(tr, unmet, c, cfg)))
    return FabricPlan(now_s, cfg.slot_s, cfg.slots, tuple(schedules), z, lower_bound, tuple(infeasible))


def _why(tr: Transfer, unmet_gbit: float, c: _Commodity, cfg: PlannerConfig) -> str:
    window_s = (c.t_hi - c.t_lo) * cfg.slot_s
    if window_s <= 0:
        return (f"{tr.src}->{tr.dst}: no whole {cfg.slot_s} s slot between release {tr.release_s} s and "
                f"deadline {tr.deadline_s} s")
    if not c.paths:
        return f"{tr.src}->{tr.dst}: no path of at most {cfg.max_hops} links"
    return (f"{tr.src}->{tr.dst}: {unmet_gbit:.1f} of {tr.size_gbit:.1f} Gbit cannot arrive by "
            f"{tr.deadline_s} s; the {window_s} s window needs {tr.size_gbit / window_s:.1f} Gb/s and the "
            f"capacity left on its paths after higher-priority and background traffic is short")
