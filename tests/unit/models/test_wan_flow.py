"""The fluid WAN model: max-min fairness, finish times, queue depth and inference delay."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.models.wan_flow import FluidFlow, max_min_fair, simulate


def test_two_flows_share_one_link_fairly_then_the_survivor_takes_it_all():
    flows = [FluidFlow("small", (0,), 100.0, 0.0), FluidFlow("big", (0,), 300.0, 0.0)]
    res = simulate([100.0], [5.0], flows, dt_s=1.0, until_s=100)
    # 50 Gb/s each: small done at 2 s; big has 200 left, alone at 100 Gb/s: done at 4 s
    assert res.finish_s == {"small": 2.0, "big": 4.0}
    assert res.peak_queue_depth == 2


def test_classic_max_min_example():
    # arcs: 0 (cap 10) shared by flows A, B; arc 1 (cap 4) used by B and C
    inc = np.array([[1, 0], [1, 1], [0, 1]])
    rate = max_min_fair(inc, np.array([10.0, 4.0]), np.array([np.inf, np.inf, np.inf]))
    assert rate == pytest.approx([8.0, 2.0, 2.0])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.integers(0, 10_000))
def test_max_min_never_exceeds_capacity_or_demand(n_arcs, n_flows, seed):
    rng = np.random.default_rng(seed)
    inc = (rng.random((n_flows, n_arcs)) < 0.5).astype(float)
    cap = rng.uniform(1, 100, n_arcs)
    demand = np.where(rng.random(n_flows) < 0.5, np.inf, rng.uniform(0, 50, n_flows))
    demand[inc.sum(axis=1) == 0] = np.minimum(demand[inc.sum(axis=1) == 0], 10.0)
    rate = max_min_fair(inc, cap, demand)
    assert (rate >= -1e-12).all() and (rate <= demand + 1e-9).all()
    assert (inc.T @ rate <= cap + 1e-6).all()
    # every flow is either at its demand or crosses a saturated arc (no slack it could take)
    load = inc.T @ rate
    for i in range(n_flows):
        if rate[i] < demand[i] - 1e-6:
            assert any(load[a] >= cap[a] - 1e-6 for a in np.flatnonzero(inc[i]))


def test_inference_backlog_builds_when_a_burst_takes_its_share():
    # 100 Gb/s link, 30 Gb/s of inference; 9 checkpoint flows take a fair share each (10 Gb/s) -> backlog
    flows = [FluidFlow(f"c{i}", (0,), 500.0, 0.0) for i in range(9)]
    res = simulate([100.0], [5.0], flows, inference_gbps=np.array([30.0]), dt_s=1.0, until_s=200)
    assert res.inference_delay_p99_ms() > 1000.0  # seconds of queueing, not the 5 ms propagation
    quiet = simulate([100.0], [5.0], [], inference_gbps=np.array([30.0]), dt_s=1.0, until_s=10)
    assert quiet.inference_delay_p99_ms() == pytest.approx(5.0)


def test_scheduled_flow_sends_only_in_its_windows():
    f = FluidFlow("p", (0,), 200.0, 10.0, schedule=((10.0, 20.0, 10.0), (40.0, 50.0, 10.0)))
    res = simulate([100.0], [1.0], [f], dt_s=1.0, until_s=100)
    assert res.finish_s["p"] == 50.0
    assert res.peak_queue_depth == 1
