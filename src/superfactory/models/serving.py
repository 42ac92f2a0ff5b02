"""The serving model shared by the inference policy and the twin: prefill time and a queueing model of TTFT.

Prefill model (compute-bound, one request at a time per replica)
    ``flop(n) = 2 * params * n + 2 * layers * d_model * n**2``: the dense matmuls (2 FLOP per parameter per
    token) plus causal self-attention (QK^T and AV over ``n**2 / 2`` pairs, 2 matmuls, 2 FLOP each). A replica
    of ``g`` GPUs with tensor parallelism runs it at ``g * peak_bf16 * mfu``; the first forward pass must also
    stream the weights once from HBM, so ``t(n) = max(flop(n) / (g * peak * mfu), weights / (g * hbm))``
    plus a fixed ``overhead_s`` (tokenisation, scheduling, first-token sampling). Calibration: NVIDIA
    reports a TTFT of 472 ms for Llama 3.1 70B and ~1.6 s for 405B at 32,768 input tokens on a GH200 NVL32
    (32 Hopper GPUs, H100 compute); ``mfu = 0.5`` predicts 0.39 s and 1.96 s (within 25 %, see the tests).

Queueing model (M/G/c with the Allen-Cunneen correction, per pool and minute)
    A pool is the ``c`` warm replicas of one service in one factory, fed by every PoP routed there. With
    offered load ``a = lambda * E[S]`` (Erlangs) and ``rho = a / c < 1``, the probability of waiting is
    Erlang C ``C(c, a)`` and, given a wait, the wait is exponential with mean
    ``(ca2 + cs2) / 2 * E[S] / (c - a)`` (Allen-Cunneen: the M/M/c conditional wait scaled by the arrival and
    service variability, ``ca2`` and ``cs2`` squared coefficients of variation). TTFT of a request is
    ``RTT + backlog wait + W + S``; its P99 over a minute is solved numerically from the mixture over the
    request-size distribution (so a few long prompts move the tail, not just the mean). ``rho >= 1`` is an
    overload: the twin carries the unserved work to the next minute as a fluid backlog.
    A request-level FCFS simulation in the tests checks this approximation.

Everything here is pure arithmetic on floats and numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from superfactory.domain.accelerator import ACCELERATORS

FloatArray = npt.NDArray[np.float64]

#: HBM bandwidth per GPU, TB/s (data sheets), for the weight-streaming floor of a forward pass
HBM_TBPS: dict[str, float] = {"H100-SXM": 3.35, "H200": 4.8, "B200": 8.0, "GB200": 8.0, "MI325X": 6.0}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A dense transformer, as far as prefill cost goes.

    Attributes:
        name: catalog key.
        params: parameter count.
        layers: transformer layers.
        d_model: hidden size.
    """

    name: str
    params: float
    layers: int
    d_model: int

    @property
    def weights_bytes_bf16(self) -> float:
        return self.params * 2.0

    def prefill_flop(self, tokens: FloatArray | float) -> FloatArray | float:
        """FLOP to prefill ``tokens`` new tokens (dense matmuls + causal attention)."""
        return 2.0 * self.params * tokens + 2.0 * self.layers * self.d_model * np.square(tokens)


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("llama-8b", 8.0e9, 32, 4096),
        ModelSpec("llama-70b", 70.6e9, 80, 8192),
        ModelSpec("llama-405b", 405e9, 126, 16384),
    )
}


@dataclass(frozen=True, slots=True)
class PrefillModel:
    """Prefill service time of one replica.

    Attributes:
        model: the model served.
        accelerator: catalog key of the GPUs.
        gpus: GPUs per replica (tensor parallel).
        mfu: achieved fraction of dense BF16 peak during prefill.
        overhead_s: fixed per-request cost, s.
    """

    model: ModelSpec
    accelerator: str
    gpus: int
    mfu: float = 0.5
    overhead_s: float = 0.002

    def service_s(self, tokens: FloatArray) -> FloatArray:
        """Prefill seconds for each entry of ``tokens`` (new, uncached prompt tokens)."""
        acc = ACCELERATORS[self.accelerator]
        compute = np.asarray(self.model.prefill_flop(tokens), dtype=np.float64) / (
            self.gpus * acc.bf16_dense_tflops * 1e12 * self.mfu)
        stream = self.model.weights_bytes_bf16 / (self.gpus * HBM_TBPS.get(self.accelerator, 3.35) * 1e12)
        return np.maximum(compute, stream) + self.overhead_s


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with ``c`` servers and offered load ``a`` Erlangs.

    Uses the numerically stable Erlang-B recursion; 1.0 when ``a >= c`` (unstable queue).
    """
    if c <= 0 or a >= c:
        return 1.0
    if a <= 0:
        return 0.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1.0 - rho + rho * b)


@dataclass(frozen=True, slots=True)
class WaitTail:
    """``P(W > t) = p_wait * exp(-t / mean_cond_s)`` for t >= 0 (``p_wait = 1, mean = inf`` when overloaded)."""

    p_wait: float
    mean_cond_s: float

    @property
    def stable(self) -> bool:
        return math.isfinite(self.mean_cond_s)


def wait_tail(c: int, arrival_rps: float, mean_s: float, ca2: float, cs2: float) -> WaitTail:
    """Allen-Cunneen M/G/c waiting-time tail for ``c`` servers (see the module docstring)."""
    a = arrival_rps * mean_s
    if arrival_rps <= 0:
        return WaitTail(0.0, 0.0)
    if c <= 0 or a >= c:
        return WaitTail(1.0, math.inf)
    return WaitTail(erlang_c(c, a), (ca2 + cs2) / 2.0 * mean_s / (c - a))


def ttft_quantile(parts: list[tuple[float, float, WaitTail]], service_s: FloatArray, q: float = 0.99,
                  hi_s: float = 60.0) -> float:
    """The ``q`` quantile of TTFT over a mixture of pools.

    Args:
        parts: ``(weight, fixed_delay_s, wait_tail)`` per pool a PoP's requests go to: the share of requests,
            RTT + backlog wait, and the pool's queueing-wait tail. Weights need not sum to one.
        service_s: service-time samples (or quantiles) of the requests.
        q: quantile, e.g. 0.99.
        hi_s: cap returned when the quantile is unbounded (an overloaded pool carries > 1 - q of the load).

    Returns:
        seconds; ``hi_s`` when overloaded pools make the quantile unbounded.
    """
    total = sum(w for w, _, _ in parts)
    if total <= 0 or service_s.size == 0:
        return 0.0
    tail = 1.0 - q
    if sum(w for w, _, wt in parts if not wt.stable) / total > tail:
        return hi_s
    live = [(w / total, d, wt) for w, d, wt in parts if wt.stable and w > 0]
    dead = sum(w for w, _, wt in parts if not wt.stable) / total

    def exceed(x: float) -> float:
        p = dead
        for w, d, wt in live:
            y = x - d - service_s
            if wt.p_wait <= 0 or wt.mean_cond_s <= 0:
                pw = (y < 0).astype(np.float64)
            else:
                pw = np.where(y < 0, 1.0, wt.p_wait * np.exp(-np.maximum(y, 0.0) / wt.mean_cond_s))
            p += w * float(pw.mean())
        return p

    lo, hi = 0.0, hi_s
    if exceed(hi) > tail:
        return hi_s
    for _ in range(32):
        mid = 0.5 * (lo + hi)
        if exceed(mid) > tail:
            lo = mid
        else:
            hi = mid
    return hi


def equal_qos_split(replicas: list[float], erlangs: float) -> list[float]:
    """Split ``erlangs`` of load over pools of ``replicas`` so that all pools get the same square-root-staffing
    margin ``beta`` (``c = a + beta * sqrt(a)``, Halfin-Whitt): large pools run hotter than small ones and every
    pool sees about the same waiting probability. Returns the load per pool (sums to ``erlangs``)."""
    cs = [max(c, 0.0) for c in replicas]
    if erlangs <= 0 or sum(cs) <= 0:
        return [0.0 for _ in cs]

    def load(beta: float) -> list[float]:
        return [((-beta + math.sqrt(beta * beta + 4 * c)) / 2) ** 2 if c > 0 else 0.0 for c in cs]

    lo, hi = -100.0, 100.0  # load(beta) decreases in beta
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if sum(load(mid)) > erlangs:
            lo = mid
        else:
            hi = mid
    out = load(hi)
    total = sum(out)
    return [x * erlangs / total for x in out] if total > 0 else out


def service_quantiles(service_s: FloatArray, points: int = 1000) -> FloatArray:
    """A compact stand-in for a large service-time sample: its ``points`` mid-quantiles."""
    if service_s.size <= points:
        return np.sort(service_s)
    return np.quantile(service_s, (np.arange(points) + 0.5) / points)
