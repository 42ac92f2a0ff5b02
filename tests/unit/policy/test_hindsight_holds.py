"""Bound v3's rows: the knapsack cap is what whole gangs can fill, no gang schedule beats the knapsack rows in any
hour, and the LP with knapsack rows and interruption budgets stays a bound (never above the exact optimum of an
instance that obeys them, never below v2)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_geo_hindsight import _policy_schedule, instances

from superfactory.policy.hindsight import (
    HindsightInstance,
    HindsightJob,
    exact_schedule,
    hindsight_bound,
    schedule_cost,
)
from superfactory.policy.hindsight_holds import knap_gpus, worst_transfer_s

STEP_S = 60


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 60), st.sets(st.integers(2, 25), min_size=1, max_size=3))
def test_knap_is_the_largest_sum_of_multiples_that_fits(capacity: int, sizes: set[int]) -> None:
    units = sorted(sizes)
    best = 0
    for counts in itertools.product(*[range(capacity // s + 1) for s in units]):
        used = sum(c * s for c, s in zip(counts, units, strict=True))
        if used <= capacity:
            best = max(best, used)
    assert knap_gpus(capacity, units) == best


def test_knap_by_hand() -> None:
    assert knap_gpus(28_800, [4096, 8192]) == 28_672  # Texas: 7 gangs of 4,096
    assert knap_gpus(18_000, [4096, 8192]) == 16_384  # California: 1,616 GPUs no big gang can use
    assert knap_gpus(16_560, [8192]) == 16_384
    assert knap_gpus(10, [4, 6]) == 10 and knap_gpus(3, [4]) == 0 and knap_gpus(0, [1]) == 0


def test_worst_transfer_is_the_narrowest_link_or_the_default() -> None:
    from superfactory.domain.factory import WanLink

    links = [WanLink("a", "b", 400.0, 0.01), WanLink("b", "c", 50.0, 0.01)]
    assert worst_transfer_s(links, 1e12) == 160  # 1 TB over 50 Gb/s
    assert worst_transfer_s([], 1e12) == 80  # the 100 Gb/s default


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_gang_schedule_has_more_big_gpus_busy_than_the_knapsack_row(data: st.DataObject) -> None:
    """A pool simulated minute by minute the way the twin holds it (gangs of whole nodes on free live nodes, a
    node failing under a gang stays held, down, until the gang lets go): for every size S, the hourly mean of
    busy GPUs of gangs of >= S never exceeds the hourly mean of min(knap(C, sizes >= S), C - D(t))."""
    from superfactory.policy.hindsight_fleet import capped_live_gpus_per_hour

    gpn = data.draw(st.sampled_from([4, 8]))
    n_nodes = data.draw(st.integers(2, 24))
    sizes = sorted(set(data.draw(st.lists(st.sampled_from([1, 2, 3, 5, 6]), min_size=1, max_size=4))))
    hours = data.draw(st.integers(1, 3))
    horizon = hours * 3600
    spells = []
    for node in data.draw(st.sets(st.integers(0, n_nodes - 1), max_size=4)):
        a = STEP_S * data.draw(st.integers(0, horizon // STEP_S - 1))
        b = STEP_S * data.draw(st.integers(a // STEP_S + 1, (horizon + 3600) // STEP_S))
        spells.append((a, b, node))
    caps = {s: capped_live_gpus_per_hour(n_nodes * gpn, knap_gpus(n_nodes * gpn, [gpn * x for x in sizes if x >= s]),
                                         [(a, b, gpn) for a, b, _ in spells], hours) for s in sizes}
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    gangs: list[tuple[int, np.ndarray]] = []
    busy = {s: np.zeros(hours) for s in sizes}
    for t in range(0, horizon, STEP_S):
        down = np.zeros(n_nodes, dtype=bool)
        for a, b, node in spells:
            down[node] |= a <= t < b
        if gangs and rng.random() < 0.3:
            gangs.pop(int(rng.integers(len(gangs))))
        held = np.zeros(n_nodes, dtype=bool)
        for _, g in gangs:
            held[g] = True
        for _ in range(3):
            size = int(rng.choice(sizes))
            free = np.flatnonzero(~held & ~down)
            if free.size >= size:
                g = rng.choice(free, size, replace=False)
                gangs.append((size, g))
                held[g] = True
        for s in sizes:
            live = sum(int((~down[g]).sum()) for size, g in gangs if size >= s)
            busy[s][t // 3600] += gpn * live * STEP_S
    for s in sizes:
        assert (busy[s] / 3600 <= caps[s] + 1e-9).all(), (s, busy[s] / 3600, caps[s])


def _knap_rows(inst: HindsightInstance) -> list[tuple[int, int, np.ndarray]]:
    """Knapsack rows of the exact model: in each pool-hour the whole jobs of >= S GPUs fit the capacity."""
    rows = []
    sizes = sorted({j.gpus for j in inst.jobs})
    for p in range(inst.capacity_gpus.shape[0]):
        for s in sizes:
            big = [g for g in sizes if g >= s]
            rows.append((p, s, np.array([float(knap_gpus(int(c), big)) for c in inst.capacity_gpus[p]])))
    return rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.data())
def test_v3_rows_keep_the_bound_below_the_exact_optimum_and_above_v2(inst: HindsightInstance,
                                                                    data: st.DataObject) -> None:
    run = _policy_schedule(inst, data.draw(st.booleans()))
    cost, gpu_h = schedule_cost(inst, run)
    v2 = hindsight_bound(inst, gpu_h)
    v3 = hindsight_bound(inst, gpu_h, knap_rows=_knap_rows(inst), interruptions=(0.0, 0.0, 0.0))
    v3_job = hindsight_bound(inst, gpu_h, aggregate=False, knap_rows=_knap_rows(inst), interruptions=(0, 0, 0))
    exact = exact_schedule(inst, gpu_h)
    assert None not in (v2.cost_usd, v3.cost_usd, v3_job.cost_usd, exact.cost_usd)
    assert v2.cost_usd <= v3.cost_usd + 1e-6  # rows only added
    assert v3.cost_usd <= v3_job.cost_usd + 1e-6 <= exact.cost_usd + 2e-6 <= cost + 3e-6


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.data())
def test_interruption_budgets_cover_every_attribution(inst: HindsightInstance, data: st.DataObject) -> None:
    """Jobs whose work may grow by events: give each job per-event GPU-hours and the LP budgets; a schedule of
    an instance where the events went to any jobs (within the budgets) costs at least the bound, and more
    budget only lowers it."""
    per = [tuple(float(j.gpus * data.draw(st.integers(0, 2))) for _ in range(3)) for j in inst.jobs]
    jobs = tuple(HindsightJob(j.gpus, j.work_gpu_h, j.submit_h, j.pools, pe)  # type: ignore[arg-type]
                 for j, pe in zip(inst.jobs, per, strict=True))
    budget = tuple(float(data.draw(st.integers(0, 2))) for _ in range(3))
    # one attribution: each event kind's budget goes to one job chosen by the test
    grown = list(jobs)
    for kind in range(3):
        k = data.draw(st.integers(0, len(jobs) - 1))
        j = grown[k]
        grown[k] = HindsightJob(j.gpus, j.work_gpu_h + budget[kind] * per[k][kind], j.submit_h, j.pools,
                                j.per_event_gpu_h)
    real = HindsightInstance(inst.capacity_gpus, inst.usd_per_gpu_h, tuple(grown))
    run = _policy_schedule(real, data.draw(st.booleans()))
    cost, gpu_h = schedule_cost(real, run)
    base = HindsightInstance(inst.capacity_gpus, inst.usd_per_gpu_h, jobs)
    b = hindsight_bound(base, gpu_h, interruptions=budget)
    more = hindsight_bound(base, gpu_h, interruptions=tuple(x + 1 for x in budget))  # type: ignore[arg-type]
    exact = exact_schedule(real, gpu_h)
    assert b.cost_usd is not None and exact.cost_usd is not None and more.cost_usd is not None
    assert b.cost_usd <= exact.cost_usd + 1e-6 <= cost + 2e-6
    assert more.cost_usd <= b.cost_usd + 1e-6


def test_a_knapsack_row_binds_where_the_gcd_does_not() -> None:
    """A cheap pool of 6 GPUs and a dear one of 8; two 4-GPU jobs, 8 busy GPUs in each of two hours. v2 may
    put 6 in the cheap pool (two gangs per job, no knapsack); only one 4-GPU gang fits it."""
    cap = np.array([[6.0, 6.0], [8.0, 8.0]])
    price = np.array([[1.0, 1.0], [10.0, 10.0]])
    inst = HindsightInstance(cap, price, (HindsightJob(4, 8.0, 0, (0, 1)), HindsightJob(4, 8.0, 0, (0, 1))))
    v2 = hindsight_bound(inst, 16.0, gangs_held=2.0)
    v3 = hindsight_bound(inst, 16.0, gangs_held=2.0, knap_rows=_knap_rows(inst), interruptions=(0, 0, 0))
    exact = exact_schedule(inst, 16.0)
    assert v2.cost_usd == pytest.approx(2 * (6 * 1 + 2 * 10))
    assert v3.cost_usd == pytest.approx(2 * (4 * 1 + 4 * 10)) == pytest.approx(exact.cost_usd)
