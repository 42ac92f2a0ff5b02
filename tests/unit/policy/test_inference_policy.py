"""The inference pre-placer: forecast, headroom, hysteresis, latency filter, spare-capacity choice, syncs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.job import InferenceService
from superfactory.policy.inference import (
    WEIGHTS_ABSENT,
    WEIGHTS_PRESENT,
    FactoryCapacity,
    InferenceView,
    PopDemand,
    PrePlacer,
    ServiceProfile,
    holt_peak,
)

SVC = InferenceService("chat", "llama-70b", 141e9, "B200", 8, 150.0, ("us",))
PROF = ServiceProfile(SVC, nodes_per_replica=1, mean_service_s=0.02, p99_service_s=0.07)


def fc(fid: str, free: int, preemptible: int = 0, weights: str = WEIGHTS_PRESENT, up: bool = True) -> FactoryCapacity:
    return FactoryCapacity(fid, up, {"B200": free}, {"B200": preemptible}, {"chat": weights})


def view(history: tuple[float, ...], factories: tuple[FactoryCapacity, ...], rtt: dict[str, float],
         allocation: dict[tuple[str, str, str], int] | None = None) -> InferenceView:
    return InferenceView(0, (PROF,), (PopDemand("chat", "us", history),), factories,
                         {("us", f): v for f, v in rtt.items()}, allocation or {})


def test_holt_forecast_projects_a_ramp_to_the_end_of_the_horizon() -> None:
    ramp = tuple(100.0 + 2.0 * i for i in range(60))  # +2 req/s per minute
    peak = holt_peak(ramp, 15, alpha=0.3, beta=0.05)
    assert peak == pytest.approx(ramp[-1] + 15 * 2.0, rel=0.03)
    assert holt_peak(tuple([500.0] * 60), 15, 0.3, 0.05) == pytest.approx(500.0)
    assert holt_peak((), 15, 0.3, 0.05) == 0.0


def test_target_is_forecast_erlangs_times_headroom() -> None:
    hist = tuple([1000.0] * 60)  # 1000 req/s x 20 ms = 20 Erlangs
    for h in (1.0, 1.1, 1.3, 1.5):
        plan = PrePlacer(headroom=h).plan(view(hist, (fc("a", 100),), {"a": 5}))
        (f,) = plan.forecasts
        assert f.before_headroom == pytest.approx(20.0)
        assert f.target == math.ceil(20 * h - 1e-9)
        assert plan.replicas_at("chat", "a") == f.target


def test_scale_down_waits_for_the_hysteresis_band_and_scale_up_is_immediate() -> None:
    hist = tuple([1000.0] * 60)  # target 26 at headroom 1.3
    pol = PrePlacer(headroom=1.3, hysteresis=0.1)
    fcs = (fc("a", 100),)
    assert pol.plan(view(hist, fcs, {"a": 5}, {("chat", "us", "a"): 28})).replicas_at("chat", "a") == 28  # < 10 %
    assert pol.plan(view(hist, fcs, {"a": 5}, {("chat", "us", "a"): 30})).replicas_at("chat", "a") == 26  # > 10 %
    assert pol.plan(view(hist, fcs, {"a": 5}, {("chat", "us", "a"): 10})).replicas_at("chat", "a") == 26


def test_latency_filter_then_spare_capacity_not_distance() -> None:
    hist = tuple([1000.0] * 60)
    fcs = (fc("near", 10), fc("mid", 80), fc("far", 500))
    # budget = 150 * 0.8 - 70 = 50 ms: "far" (90 ms) is filtered out; "mid" has more spare than "near"
    plan = PrePlacer(headroom=1.3).plan(view(hist, fcs, {"near": 2, "mid": 30, "far": 90}))
    assert plan.replicas_at("chat", "far") == 0
    assert plan.replicas_at("chat", "mid") == 26
    assert plan.forecasts[0].eligible == ("near", "mid")


def test_spills_to_the_next_factory_then_preempts_training() -> None:
    hist = tuple([1000.0] * 60)  # 26 replicas
    plan = PrePlacer().plan(view(hist, (fc("a", 10, preemptible=4), fc("b", 6, preemptible=40)), {"a": 5, "b": 6}))
    assert plan.replicas_at("chat", "a") + plan.replicas_at("chat", "b") == 26
    # 16 free nodes first, then 10 from the factory with the most preemptible training
    assert plan.replicas_at("chat", "a") == 10 and plan.replicas_at("chat", "b") == 16
    short = PrePlacer().plan(view(hist, (fc("a", 10),), {"a": 5}))
    assert short.replicas_at("chat", "a") == 10 and short.unserved


def test_a_factory_without_weights_gets_a_sync_and_warm_ones_win_ties() -> None:
    hist = tuple([100.0] * 60)  # 3 replicas
    both = (fc("cold", 50, weights=WEIGHTS_ABSENT), fc("warm", 20))
    plan = PrePlacer().plan(view(hist, both, {"cold": 3, "warm": 4}))
    assert plan.replicas_at("chat", "warm") == 3 and not plan.syncs
    only_cold = PrePlacer().plan(view(hist, (fc("cold", 50, weights=WEIGHTS_ABSENT),), {"cold": 3}))
    assert only_cold.syncs == (("chat", "cold"),)


def test_prefill_bound_slo_is_served_best_effort_and_reported() -> None:
    slow = ServiceProfile(SVC, 1, 0.5, 2.0)
    v = InferenceView(0, (slow,), (PopDemand("chat", "us", tuple([10.0] * 60)),), (fc("a", 50),),
                      {("us", "a"): 5}, {})
    plan = PrePlacer().plan(v)
    assert plan.replicas_at("chat", "a") == math.ceil(10 * 0.5 * 1.3)
    assert any("SLO infeasible" in why for _, _, why in plan.unserved)


def test_down_factory_is_not_used() -> None:
    plan = PrePlacer().plan(view(tuple([1000.0] * 60), (fc("a", 100, up=False), fc("b", 100)), {"a": 2, "b": 5},
                                 {("chat", "us", "a"): 26}))
    assert plan.replicas_at("chat", "a") == 0 and plan.replicas_at("chat", "b") == 26


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 5000), st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60), st.floats(0, 100)),
                                    min_size=1, max_size=4),
       st.floats(1.0, 2.0))
def test_never_allocates_more_nodes_than_free_plus_preemptible(rate: float, facs: list[tuple[int, int, float]],
                                                                headroom: float) -> None:
    fcs = tuple(fc(f"f{i}", free, pre) for i, (free, pre, _) in enumerate(facs))
    rtt = {f"f{i}": r for i, (_, _, r) in enumerate(facs)}
    plan = PrePlacer(headroom=headroom).plan(view(tuple([rate] * 60), fcs, rtt))
    (f,) = plan.forecasts
    total = 0
    for i, (free, pre, r) in enumerate(facs):
        n = plan.replicas_at("chat", f"f{i}")
        assert n <= free + pre
        assert n == 0 or r <= 150 * 0.8 - 70 or not f.eligible or f"f{i}" in f.eligible
        total += n
    assert total <= f.target
