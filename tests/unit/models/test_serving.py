"""The prefill model against published H100-class TTFT, and the M/G/c approximation against a request-level
FCFS simulation."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.models.serving import (
    MODELS,
    PrefillModel,
    equal_qos_split,
    erlang_c,
    ttft_quantile,
    wait_tail,
)


@pytest.mark.parametrize(("model", "published_s"), [("llama-70b", 0.472), ("llama-405b", 1.6)])
def test_prefill_model_matches_published_gh200_nvl32_ttft(model: str, published_s: float) -> None:
    # NVIDIA (2024, "Low latency inference chapter 2"): TTFT at 32,768 input tokens on a GH200 NVL32 (32 Hopper
    # GPUs, H100 compute): Llama 3.1 70B 472 ms, 405B ~1.6 s. Our model at the default MFU 0.5 on 32 H100s:
    pm = PrefillModel(MODELS[model], "H100-SXM", gpus=32, mfu=0.5)
    predicted = float(pm.service_s(np.array([32_768.0]))[0])
    assert predicted == pytest.approx(published_s, rel=0.30)


def test_prefill_time_grows_with_tokens_and_shrinks_with_faster_gpus() -> None:
    tokens = np.array([100.0, 1_000.0, 4_000.0, 32_000.0])
    h100 = PrefillModel(MODELS["llama-70b"], "H100-SXM", 8).service_s(tokens)
    b200 = PrefillModel(MODELS["llama-70b"], "B200", 8).service_s(tokens)
    assert np.all(np.diff(h100) > 0)
    assert np.all(b200 < h100)
    # compute-bound regime: B200 / H100 = 989 / 2250 (minus the fixed overhead)
    assert (b200[2] - 0.002) / (h100[2] - 0.002) == pytest.approx(989 / 2250, rel=0.01)
    # 4k-token prompt of a 70B model on 8 H100s at MFU 0.5: 2 * 70.6e9 * 4000 / (8 * 989e12 * 0.5) = 143 ms
    # + causal attention 2 * 80 * 8192 * 4000**2 / same = 5 ms + 2 ms overhead
    assert h100[2] == pytest.approx(0.150, rel=0.02)


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(10, 10.0) == 1.0  # unstable
    assert erlang_c(100, 80.0) < erlang_c(100, 95.0) < 1.0


def _fcfs_ttft(arrivals: np.ndarray, service: np.ndarray, c: int) -> np.ndarray:
    """Request-level FCFS c-server queue: wait + service of each request."""
    free = [0.0] * c
    heapq.heapify(free)
    out = np.empty(arrivals.size)
    for i, (t, s) in enumerate(zip(arrivals, service, strict=True)):
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + s)
        out[i] = start + s - t
    return out


@pytest.mark.parametrize(("c", "rho"), [(8, 0.8), (32, 0.9), (64, 0.95)])
def test_allen_cunneen_p99_tracks_a_request_level_simulation(c: int, rho: float) -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    service = rng.lognormal(np.log(0.02), 0.9, n)  # cs2 ~ 1.25, like prefill times of the Azure conv trace
    mean = float(service.mean())
    lam = rho * c / mean
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    simulated = float(np.quantile(_fcfs_ttft(arrivals, service, c)[n // 10:], 0.99))
    cs2 = float(service.var() / mean**2)
    model = ttft_quantile([(1.0, 0.0, wait_tail(c, lam, mean, 1.0, cs2))], np.sort(service[:20_000]))
    assert model == pytest.approx(simulated, rel=0.15)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 200), st.floats(0.1, 0.97))
def test_p99_grows_with_load(c: int, rho: float) -> None:
    service = np.linspace(0.01, 0.05, 200)
    mean = float(service.mean())
    lo = ttft_quantile([(1.0, 0.0, wait_tail(c, rho * 0.9 * c / mean, mean, 1.0, 0.1))], service)
    hi = ttft_quantile([(1.0, 0.0, wait_tail(c, rho * c / mean, mean, 1.0, 0.1))], service)
    assert hi >= lo - 1e-6
    overloaded = ttft_quantile([(1.0, 0.0, wait_tail(c, 1.01 * c / mean, mean, 1.0, 0.1))], service, hi_s=60)
    assert overloaded == 60


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=5), st.floats(0.1, 0.99))
def test_equal_qos_split_conserves_load_and_runs_big_pools_hotter(pools: list[int], rho: float) -> None:
    erl = rho * sum(pools)
    split = equal_qos_split([float(p) for p in pools], erl)
    assert sum(split) == pytest.approx(erl, rel=1e-6)
    util = [a / p for a, p in zip(split, pools, strict=True)]
    order = np.argsort(pools)
    assert all(util[order[i]] <= util[order[i + 1]] + 1e-6 for i in range(len(pools) - 1))
