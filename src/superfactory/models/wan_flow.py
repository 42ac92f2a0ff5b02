"""Fluid model of traffic on the WAN fabric: max-min fair sharing of directed links, in fixed time steps.

The twin's ground truth for what a link does with the flows offered to it, and the yardstick the transfer
planner's benchmark uses for every strategy alike. Each step, every active flow asks for a rate (its demand
cap: a NIC limit, or the rate a plan scheduled for it) and gets its max-min fair share along its path
(progressive filling: raise all unfrozen flows together until an arc saturates, freeze the flows through it,
repeat). Inference traffic is one flow per arc with demand ``lambda + backlog / dt``: when its share falls
below its offered load a backlog builds, and the delay a new request sees is the link's latency plus the time
to drain that backlog at the share it gets.

Checkpoint "queue depth" on an arc is the number of transfer flows with data in flight through it, the
quantity the source material alarms on (``checkpoint_sync_queue_depth > 5``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class FluidFlow:
    """One flow of a transfer along a fixed path.

    Attributes:
        key: the transfer it belongs to (several flows may share a key: a transfer split over paths).
        arcs: arc indices along its path.
        size_gbit: data it carries, gigabits.
        start_s: when it starts offering data, s.
        rate_cap_gbps: the most it may send, Gb/s (``inf`` for no limit but the links), or a per-step schedule
            via ``schedule``.
        schedule: optional ``(start_s, end_s, rate_gbps)`` windows: the flow sends at most ``rate_gbps`` in
            each window and nothing outside them (a plan's slots); overrides ``rate_cap_gbps``.
    """

    key: str
    arcs: tuple[int, ...]
    size_gbit: float
    start_s: float
    rate_cap_gbps: float = float("inf")
    schedule: tuple[tuple[float, float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class FluidResult:
    """What happened on the fabric.

    Attributes:
        finish_s: per transfer key, when its last bit arrived (``inf`` if not within the simulated time).
        peak_queue_depth: the most transfer flows in flight through one arc at one time.
        queue_depth_p95: 95th percentile over (step, arc with any flow) of that count.
        inference_delay_ms: per step and arc with inference load, the delay a new request saw, ms (flattened).
        peak_arc_utilisation: the highest share of an arc's capacity in use in any step.
    """

    finish_s: dict[str, float]
    peak_queue_depth: int
    queue_depth_p95: float
    inference_delay_ms: np.ndarray
    peak_arc_utilisation: float

    def inference_delay_p99_ms(self) -> float:
        return float(np.percentile(self.inference_delay_ms, 99)) if self.inference_delay_ms.size else 0.0


def max_min_fair(incidence: np.ndarray, capacity: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """Max-min fair rates for flows over arcs by progressive filling.

    Args:
        incidence: ``(flows, arcs)`` 0/1 matrix: which arcs each flow crosses.
        capacity: ``(arcs,)`` capacity, Gb/s.
        demand: ``(flows,)`` most each flow wants, Gb/s (may be ``inf``).

    Returns:
        ``(flows,)`` rates: no arc over capacity, no flow over its demand, and no flow can gain without a flow
        with an equal or smaller rate losing.
    """
    n_f = incidence.shape[0]
    rate = np.zeros(n_f)
    active = demand > 0
    remaining = capacity.astype(float).copy()
    inc = incidence.astype(float)
    while active.any():
        users = inc[active].sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(users > 0, remaining / users, np.inf)
        arc_inc = float(share.min()) if np.isfinite(share).any() else np.inf
        dem_inc = float((demand[active] - rate[active]).min())
        inc_step = min(arc_inc, dem_inc)
        if not np.isfinite(inc_step):  # flows crossing no arc with unlimited demand: nothing bounds them
            break
        rate[active] += inc_step
        remaining -= inc_step * users
        frozen = np.zeros(n_f, dtype=bool)
        saturated = (users > 0) & (remaining <= 1e-9 * np.maximum(1.0, capacity))
        if saturated.any():
            frozen |= (inc[:, saturated] > 0).any(axis=1)
        frozen |= rate >= demand - 1e-12
        active &= ~frozen
    return rate


def simulate(capacity_gbps: Sequence[float], latency_ms: Sequence[float], flows: Sequence[FluidFlow],
             inference_gbps: np.ndarray | None = None, dt_s: float = 1.0, until_s: float = 3600.0,
             start_s: float = 0.0) -> FluidResult:
    """Run ``flows`` (and per-arc inference load ``inference_gbps``, Gb/s) over the arcs from ``start_s`` until
    every flow has finished or ``until_s``; return finish times, queue depths and inference delays.

    A flow with a ``schedule`` counts in an arc's queue depth only in steps where it is scheduled to send (its
    data waits at the source otherwise); any other flow counts from its start until its last bit is sent."""
    cap = np.asarray(capacity_gbps, dtype=float)
    lat = np.asarray(latency_ms, dtype=float)
    n_a = cap.size
    lam = np.zeros(n_a) if inference_gbps is None else np.asarray(inference_gbps, dtype=float)
    inf_arcs = np.flatnonzero(lam > 0)
    n_f = len(flows)
    inc = np.zeros((n_f + inf_arcs.size, n_a))
    for i, f in enumerate(flows):
        inc[i, list(f.arcs)] = 1.0
    for j, a in enumerate(inf_arcs):
        inc[n_f + j, a] = 1.0
    left = np.array([f.size_gbit for f in flows], dtype=float)
    start = np.array([f.start_s for f in flows], dtype=float)
    cap_rate = np.array([f.rate_cap_gbps for f in flows], dtype=float)
    backlog = np.zeros(inf_arcs.size)
    eps = 1e-7 * np.maximum(1.0, left)  # "done" tolerance: a schedule's rate × dt sums carry rounding error
    finish: dict[str, float] = {f.key: float("inf") for f in flows}  # inf until the last bit arrives
    open_flows: dict[str, int] = {}
    for f in flows:
        open_flows[f.key] = open_flows.get(f.key, 0) + 1
    depth_samples: list[np.ndarray] = []
    delays: list[np.ndarray] = []
    peak_util = 0.0
    t = float(start_s)
    while t < until_s:
        demand = np.zeros(n_f + inf_arcs.size)
        live = (left > eps) & (start <= t + 1e-9)
        for fi in np.flatnonzero(live).tolist():
            demand[fi] = _scheduled_rate(flows[fi], t) if flows[fi].schedule else cap_rate[fi]
        demand[n_f:] = lam[inf_arcs] + backlog / dt_s
        if not live.any() and not (left > eps).any() and backlog.sum() <= 1e-9 and t > start.max(initial=0.0):
            break
        rate = max_min_fair(inc, cap, demand)
        sent = np.minimum(rate[:n_f] * dt_s, left)
        left -= sent
        got = rate[n_f:]
        backlog = np.maximum(0.0, backlog + (lam[inf_arcs] - got) * dt_s)
        if inf_arcs.size:
            with np.errstate(divide="ignore"):
                drain_s = np.where(got > 0, backlog / np.maximum(got, 1e-12), np.where(backlog > 0, np.inf, 0.0))
            delays.append(lat[inf_arcs] + 1000.0 * np.minimum(drain_s, 3600.0))
        in_flight = (sent > 0) | (live & (left > eps) & (demand[:n_f] > 0))
        depth = inc[:n_f][in_flight].sum(axis=0)
        if depth.any():
            depth_samples.append(depth[depth > 0])
        load = (inc * rate[:, None]).sum(axis=0)
        peak_util = max(peak_util, float((load / np.maximum(cap, 1e-12)).max(initial=0.0)))
        t += dt_s
        for fi in np.flatnonzero((left <= eps) & (sent > 0)).tolist():
            key = flows[fi].key
            open_flows[key] -= 1
            if open_flows[key] == 0:
                finish[key] = t
        if not (left > eps).any() and backlog.sum() <= 1e-9:
            break
    depths = np.concatenate(depth_samples) if depth_samples else np.zeros(1)
    return FluidResult(finish, int(depths.max()), float(np.percentile(depths, 95)),
                       np.concatenate(delays) if delays else np.zeros(0), peak_util)


def _scheduled_rate(flow: FluidFlow, t: float) -> float:
    for lo, hi, rate in flow.schedule:
        if lo - 1e-9 <= t < hi - 1e-9:
            return rate
    return 0.0
