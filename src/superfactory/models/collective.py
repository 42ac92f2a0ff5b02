"""The all-reduce sanity check: a simulated NCCL probe run on a placement before a gang starts.

Timing model (ring all-reduce, the alpha-beta model NCCL's own tuner uses): a message of ``S`` bytes over ``n``
GPUs with per-step latency ``alpha`` and per-GPU bus bandwidth ``B`` takes
``t = 2(n-1) alpha + 2(n-1)/n * S / B``; the *effective bus bandwidth* a probe reports is
``2(n-1)/n * S / t`` (nccl-tests' ``busbw``).

Calibration (``../shared/data/vidur-h100/all_reduce.csv``: measured NCCL all-reduce medians on one 8xH100 DGX
for 2, 4 and 8 workers and 993 message sizes from 2 KiB to 64 MiB; ``size`` is bytes and times are ms). A
least-squares fit of the model over *all* sizes, per worker count (reproduced by
:func:`fit_alpha_beta`; a test refits the file and checks these constants):

=========  ============  ===============  ======================  ==========
 workers    alpha (us)    busbw (GB/s)     busbw / NVLink4 peak    mean |err|
=========  ============  ===============  ======================  ==========
 2          12.00         305.0            0.68                    13.4 %
 4           4.65         353.4            0.79                     7.3 %
 8           2.48         365.9            0.81                     6.5 %
=========  ============  ===============  ======================  ==========

The 8-worker efficiency (measured busbw / 450 GB/s NVLink4 peak = 0.81) is applied to every link class: an
NVLink domain of another generation gets 0.81 x its peak, the rail-optimised network 0.81 x the NIC rate
divided by the oversubscription of the tier the gang spans (see :mod:`superfactory.domain.topology`). Network
hops add an assumed 10 us per ring step (InfiniBand/RoCE switch + NIC latency; not in the profile).

The check (:func:`probe_ratio`) probes the two collectives of a 3D-parallel gang with a 64 MiB message (the
largest profiled size, a typical gradient bucket): the TP all-reduce inside each NVLink domain the gang uses,
and the data-parallel all-reduce across the gang. It returns the worst ratio of measured to expected
bandwidth; the ``gang`` policy rejects and redoes placements below 0.9. A degraded domain (the source
material's "NVLink domain fragmentation": 8x less bandwidth, no alarm) measures ~1/8 and is caught; a TP group
split across domains (a topology-blind placement) runs its TP traffic over the NIC and is caught too.
:func:`placement_throughput` is the throughput such a gang then actually gets (40 % lower, per the same source).

Speed (issue 12): the twin asks :func:`placement_throughput` at every placement. A gang whose TP group fits in one
node is never split, so it needs no look at its nodes; otherwise the nodes are read as an index array once.
Placement builds its node tuples from arrays (:func:`nodes_tuple`), and :func:`nodes_array` hands that array
back for the same tuple instead of converting thousands of Python ints again.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from superfactory.domain.job import TrainingJob
from superfactory.domain.topology import FactoryTopology, tp_nodes

IntpArray = npt.NDArray[np.intp]

#: Fitted ``(alpha_s, busbw_gbps)`` per worker count (module docstring; GB/s x 8 = Gb/s).
ALLREDUCE_FIT: dict[int, tuple[float, float]] = {
    2: (12.00e-6, 305.0 * 8),
    4: (4.65e-6, 353.4 * 8),
    8: (2.48e-6, 365.9 * 8),
}
#: measured busbw / NVLink4 peak (450 GB/s per direction) at 8 workers.
LINK_EFFICIENCY = 365.9 / 450.0
NETWORK_ALPHA_S = 10e-6
PROBE_BYTES = 64 * 2**20
#: Throughput of a gang whose TP traffic runs on a degraded or foreign link (source material: "NVLink domain
#: fragmentation: 8x less bandwidth, 40 % lower throughput").
DEGRADED_THROUGHPUT = 0.6


def ring_time_s(size_bytes: float, workers: int, alpha_s: float, busbw_gbps: float) -> float:
    """Ring all-reduce time, s, of ``size_bytes`` over ``workers`` GPUs (module docstring)."""
    if workers <= 1:
        return 0.0
    steps = 2 * (workers - 1)
    return steps * alpha_s + steps / workers * size_bytes * 8 / (busbw_gbps * 1e9)


def busbw_gbps(size_bytes: float, workers: int, time_s: float) -> float:
    """The bus bandwidth, Gb/s, nccl-tests would report for that timing."""
    if workers <= 1 or time_s <= 0:
        return float("inf")
    return 2 * (workers - 1) / workers * size_bytes * 8 / time_s / 1e9


def _alpha_for(workers: int) -> float:
    key = min(ALLREDUCE_FIT, key=lambda n: (abs(n - min(workers, 8)), n))
    return ALLREDUCE_FIT[key][0]


def fit_alpha_beta(rows: Iterable[tuple[int, float, float]]) -> dict[int, tuple[float, float, float]]:
    """Least-squares fit of the ring model to ``(workers, size_bytes, time_s)`` rows.

    Returns ``{workers: (alpha_s, busbw_gbps, mean_relative_error)}``.
    """
    by_n: dict[int, list[tuple[float, float]]] = {}
    for n, size_b, time_s in rows:
        by_n.setdefault(int(n), []).append((float(size_b), float(time_s)))
    out: dict[int, tuple[float, float, float]] = {}
    for n, pts in sorted(by_n.items()):
        arr = np.asarray(pts)
        size, t = arr[:, 0], arr[:, 1]
        a = np.c_[np.full_like(size, 2 * (n - 1)), 2 * (n - 1) / n * size]
        sol = np.linalg.lstsq(a, t, rcond=None)[0]
        err = float(np.mean(np.abs(a @ sol - t) / t))
        out[n] = (float(sol[0]), float(8 / sol[1] / 1e9), err)
    return out


def _ratio(workers: int, alpha_s: float, nominal_gbps: float, factor: float) -> float:
    expect = ring_time_s(PROBE_BYTES, workers, alpha_s, nominal_gbps * LINK_EFFICIENCY)
    got = ring_time_s(PROBE_BYTES, workers, alpha_s, nominal_gbps * LINK_EFFICIENCY * factor)
    return expect / got if got > 0 else 1.0


#: id(nodes) -> (nodes, the same nodes as an index array), for tuples built by :func:`nodes_tuple`. The tuple is
#: held, so its id cannot be reused while it is here; the table is emptied when it reaches _NODE_ARRAYS_MAX.
_NODE_ARRAYS: dict[int, tuple[tuple[int, ...], IntpArray]] = {}
_NODE_ARRAYS_MAX = 256


#: the ints 0..n-1 as Python objects (grown on demand; one list holding the current table): a node tuple made from
#: them shares their int objects instead of allocating one per node (issue 12, session 7: a 2,048-node placement
#: converts ~35 % faster)
_INTS: list[npt.NDArray[np.object_]] = [np.arange(0).astype(object)]
_INTS_MAX = 1 << 22
_min, _max = np.minimum.reduce, np.maximum.reduce


def _as_ints(idx: IntpArray) -> list[int]:
    """``idx.tolist()`` (equal values), taking the ints from :data:`_INTS` when they are all in its range."""
    if idx.size >= 64 and idx.ndim == 1:
        lo, hi = int(_min(idx)), int(_max(idx))
        if lo >= 0 and hi < _INTS_MAX:
            table = _INTS[0]
            if hi >= table.size:
                table = _INTS[0] = np.arange(max(hi + 1, 2 * table.size, 8192)).astype(object)
            out: list[int] = table.take(idx).tolist()
            return out
    return idx.tolist()  # type: ignore[no-any-return]


def nodes_tuple(idx: IntpArray) -> tuple[int, ...]:
    """``tuple(idx.tolist())``, remembered: :func:`nodes_array` of the returned tuple gives back ``idx`` (made
    read-only) without converting. For placement code that builds a node tuple from an array."""
    nodes = tuple(_as_ints(idx))
    if len(_NODE_ARRAYS) >= _NODE_ARRAYS_MAX:
        _NODE_ARRAYS.clear()
    idx.flags.writeable = False
    _NODE_ARRAYS[id(nodes)] = (nodes, idx)
    return nodes


def nodes_array(nodes: tuple[int, ...]) -> IntpArray:
    """``nodes`` as an index array (equal to ``np.asarray(nodes, dtype=np.intp)``; read-only when it came from
    :func:`nodes_tuple`)."""
    hit = _NODE_ARRAYS.get(id(nodes))
    if hit is not None and hit[0] is nodes:
        return hit[1]
    return np.fromiter(nodes, dtype=np.intp, count=len(nodes))


def _any_split(topo: FactoryTopology, idx: IntpArray, k: int) -> bool:
    """Whether a TP group of ``k`` consecutive entries of ``idx`` spans two domains (``split_tp_groups > 0``)."""
    dom = topo.node_domain[idx]
    n = dom.size - dom.size % k
    if n:
        groups = dom[:n].reshape(-1, k)
        if (groups != groups[:, :1]).any():
            return True
    return bool(n < dom.size and (dom[n:] != dom[n]).any())


def _tp_nodes_of(topo: FactoryTopology, nodes: tuple[int, ...], job: TrainingJob) -> int:
    return tp_nodes(topo.gpus_per_node[int(topo.node_cluster[nodes[0]])], job.gpus, job.tp_size)


def _degraded_domains(link_factor: dict[int, float]) -> bool:
    return any(f < 1.0 for f in link_factor.values())


def probe_ratio(topo: FactoryTopology, nodes: tuple[int, ...], job: TrainingJob,
                link_factor: dict[int, float]) -> tuple[float, list[int]]:
    """Worst measured/expected bus-bandwidth ratio of the probe on ``nodes``, and the domains that fell short.

    ``link_factor`` maps an NVLink domain to the fraction of its nominal bandwidth it delivers now (absent =
    healthy): in the twin that is the true link state, in the live plane the per-domain result of nccl-tests.
    """
    if not nodes:
        return 1.0, []
    ci = int(topo.node_cluster[nodes[0]])
    tp = max(1, min(job.tp_size, job.gpus))
    worst, bad = 1.0, []
    if tp > 1:
        k = _tp_nodes_of(topo, nodes, job)
        idx = nodes_array(nodes) if k > 1 or link_factor else None
        if k > 1 and idx is not None and _any_split(topo, idx, k):
            # TP traffic that should ride NVLink crosses the scale-out network
            worst = min(worst, _ratio(tp, _alpha_for(tp), topo.nvlink_gbps[ci],
                                      topo.nic_gbps[ci] / topo.nvlink_gbps[ci]))
        if idx is not None and _degraded_domains(link_factor):
            doms: npt.NDArray[np.int32] = np.unique(topo.node_domain[idx])
            for d in doms.tolist():
                f = link_factor.get(int(d), 1.0)
                if f < 1.0:
                    r = _ratio(tp, _alpha_for(tp), topo.nvlink_gbps[ci], f)
                    bad.append(int(d))
                    worst = min(worst, r)
    # The data-parallel probe across the gang measures what its tier should give on healthy links, and a
    # degraded domain's NVLink (>= 1/8 of 3.6-7.2 Tb/s) is still no slower than the 400 Gb/s NIC, so it never
    # lowers the worst ratio; it is left out rather than computed as a constant 1.
    return worst, bad


def placement_throughput(topo: FactoryTopology, nodes: tuple[int, ...], job: TrainingJob,
                         link_factor: dict[int, float]) -> float:
    """Fraction of nominal throughput a gang on ``nodes`` gets: 1, or :data:`DEGRADED_THROUGHPUT` when a TP
    group is split across domains or sits on a degraded domain (TP traffic is on the critical path)."""
    if not nodes or max(1, min(job.tp_size, job.gpus)) == 1:
        return 1.0
    k = _tp_nodes_of(topo, nodes, job)
    idx = None
    if k > 1:
        idx = nodes_array(nodes)
        if _any_split(topo, idx, k):
            return DEGRADED_THROUGHPUT
    if link_factor and _degraded_domains(link_factor):
        if idx is None:
            idx = nodes_array(nodes)
        doms = np.unique(topo.node_domain[idx])
        if any(link_factor.get(int(d), 1.0) < 1.0 for d in doms.tolist()):
            return DEGRADED_THROUGHPUT
    return 1.0
