"""Bound v4 (job level, continuity): never above a schedule that keeps to the events it states, never above the
exact MILP of the same model, never below v3, equal to the exact optimum where the LP is provably integral, and
tighter than v3 where v3 re-chooses which job sits where."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_geo_hindsight import instances

from superfactory.policy.hindsight import HindsightInstance, HindsightJob, hindsight_bound
from superfactory.policy.hindsight_jobs import EventBudget, job_level_bound, job_level_exact, repair_units


def _sticky_schedule(inst: HindsightInstance, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """A feasible schedule as a policy with continuity finds it, hour by hour: running jobs keep their pool while
    it has room (else they stop: a drain), a job sometimes pauses (a drain) or moves to the cheapest pool with
    room (a migration), waiting jobs start in a pool with room. Returns (run[j, h] = pool or -1, drains,
    migrations)."""
    _n, hours = inst.capacity_gpus.shape
    run = np.full((len(inst.jobs), hours), -1, dtype=np.int64)
    left = [j.work_gpu_h for j in inst.jobs]
    where = [-1] * len(inst.jobs)
    drains = migrations = 0
    for hh in range(hours):
        room = inst.capacity_gpus[:, hh].copy()
        for k in rng.permutation(len(inst.jobs)):
            j = inst.jobs[k]
            if j.submit_h > hh or left[k] < j.gpus - 1e-9:
                where[k] = -1
                continue
            was = where[k]
            if was >= 0 and rng.random() < 0.15:  # a pause
                where[k] = -1
                drains += 1
                continue
            pools = sorted(j.pools, key=lambda p: inst.usd_per_gpu_h[p, hh])
            if was >= 0 and rng.random() < 0.3:
                pools = [*[p for p in pools if p != was][:1], was]
            elif was >= 0:
                pools = [was]
            for p in pools:
                if room[p] >= j.gpus:
                    room[p] -= j.gpus
                    left[k] -= j.gpus
                    run[k, hh] = p
                    if was >= 0 and p != was:
                        migrations += 1
                    where[k] = p  # a restart after a stop is free here: the stop was counted as a drain
                    break
            else:
                if was >= 0:
                    drains += 1  # lost its room: stopped
                where[k] = -1
    return run, drains, migrations


def _cost(inst: HindsightInstance, run: np.ndarray) -> tuple[float, np.ndarray]:
    n_pools, hours = inst.capacity_gpus.shape
    busy = np.zeros((n_pools, hours))
    for k, j in enumerate(inst.jobs):
        for hh in np.flatnonzero(run[k] >= 0):
            busy[run[k, hh], hh] += j.gpus
    return float((busy * inst.usd_per_gpu_h).sum()), busy


def _targets(busy: np.ndarray, split: int):
    groups = [g for g in (tuple(range(split)), tuple(range(split, busy.shape[0]))) if g]
    return [(g, float(busy[list(g)].sum())) for g in groups], [(g, busy[list(g)].sum(axis=0)) for g in groups]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.data())
def test_v4_is_between_v3_and_the_exact_milp_and_below_a_continuous_schedule(inst: HindsightInstance,
                                                                             data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    run, drains, migrations = _sticky_schedule(inst, rng)
    cost, busy = _cost(inst, run)
    totals, hourly = _targets(busy, data.draw(st.integers(0, inst.capacity_gpus.shape[0])))
    budget = EventBudget(0.0, float(drains), float(migrations))
    gangs = [float(j.gpus) for j in inst.jobs]
    v4 = job_level_bound(inst, gangs, totals, hourly, budget=budget)
    exact = job_level_exact(inst, gangs, totals, hourly, budget=budget)
    v3 = hindsight_bound(inst, totals, hourly_gpus=hourly, gangs_held=2.0,
                         interruptions=(0.0, float(drains), float(migrations)))
    assert None not in (v4.cost_usd, exact.cost_usd, v3.cost_usd), (v4.status, exact.status, v3.status)
    assert v3.cost_usd <= v4.cost_usd + 1e-6
    assert v4.cost_usd <= exact.cost_usd + 1e-6 <= cost + 2e-6
    assert (v4.gpu_h <= inst.capacity_gpus + 1e-6).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(unit=True), st.data())
def test_v4_equals_the_exact_optimum_on_unit_jobs_when_continuity_is_free(inst: HindsightInstance,
                                                                           data: st.DataObject) -> None:
    """Unit jobs (1 GPU, whole hours) with a start budget of one per job-hour: the LP's continuity rows are slack
    and what is left is a bipartite b-matching (totally unimodular), so LP = MILP."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    run, _d, _m = _sticky_schedule(inst, rng)
    _, busy = _cost(inst, run)
    totals, hourly = _targets(busy, data.draw(st.integers(0, inst.capacity_gpus.shape[0])))
    ample = EventBudget(0.0, float(len(inst.jobs) * inst.hours * len(inst.capacity_gpus)), 0.0)
    gangs = [1.0] * len(inst.jobs)
    v4 = job_level_bound(inst, gangs, totals, hourly, budget=ample)
    exact = job_level_exact(inst, gangs, totals, hourly, budget=ample)
    assert v4.cost_usd is not None and exact.cost_usd is not None
    assert v4.cost_usd == pytest.approx(exact.cost_usd, abs=1e-6)


def _two_pools(budget: EventBudget) -> tuple[float, float, float]:
    """One 1-GPU job, 4 h of work in 4 h, two pools whose prices alternate: (v3, v4, exact)."""
    price = np.array([[1.0, 9.0, 1.0, 9.0], [9.0, 1.0, 9.0, 2.0]])
    inst = HindsightInstance(np.ones((2, 4)), price, (HindsightJob(1, 4.0, 0, (0, 1)),))
    need = [((0, 1), np.ones(4))]
    v3 = hindsight_bound(inst, 4.0, hourly_gpus=need, gangs_held=2.0,
                         interruptions=(budget.failures, budget.drains, budget.migrations))
    v4 = job_level_bound(inst, [1.0], 4.0, need, budget=budget)
    exact = job_level_exact(inst, [1.0], 4.0, need, budget=budget)
    assert None not in (v3.cost_usd, v4.cost_usd, exact.cost_usd)
    return v3.cost_usd, v4.cost_usd, exact.cost_usd  # type: ignore[return-value]


def test_continuity_binds_where_v3_rechooses_every_hour() -> None:
    """No event: the job stays in one pool (cost min(20, 21) = 20); v3 follows the cheap pool every hour (5).
    One migration: the best single switch costs 1 + 9 + 1 + 2 = 13 (the LP may split, but stays well above v3)."""
    v3, v4, exact = _two_pools(EventBudget())
    assert v3 == pytest.approx(1 + 1 + 1 + 2)
    assert v4 == pytest.approx(exact) == pytest.approx(20.0)
    v3m, v4m, exactm = _two_pools(EventBudget(migrations=1.0))
    assert v3m == pytest.approx(5.0)
    assert v4m <= exactm + 1e-9 and exactm == pytest.approx(13.0) and v4m > v3m + 1.0
    # three events allow three switches: back to v3's hourly choice
    _, v4f, exactf = _two_pools(EventBudget(failures=3.0))
    assert v4f == pytest.approx(exactf) == pytest.approx(5.0)


def test_a_second_gang_only_during_a_migrations_double_hold() -> None:
    """Two cheap hours need 2 GPUs busy of one 1-GPU job: impossible without a migration's double hold."""
    inst = HindsightInstance(np.ones((2, 2)), np.ones((2, 2)), (HindsightJob(1, 4.0, 0, (0, 1)),))
    need = [((0, 1), np.array([2.0, 1.0]))]
    assert job_level_bound(inst, [1.0], 3.0, need).cost_usd is None
    ok = job_level_bound(inst, [1.0], 3.0, need, budget=EventBudget(migrations=1.0), hold_h=[1.0])
    assert ok.cost_usd == pytest.approx(3.0)


def test_repair_units() -> None:
    """A repair lifts one job's busy GPUs by one node's GPUs (at most its whole gang); a restore by the site."""
    assert repair_units([(0, 4), (1, 8)], [], [16, 4]) == pytest.approx(0.25 + 1.0)
    assert repair_units([], [64], [16, 32]) == pytest.approx(4.0)


def test_the_work_cap_takes_the_jobs_own_events() -> None:
    """A job whose cap is 2 GPU-h and 1 GPU-h more per failure: 3 GPU-h need one failure in the budget."""
    inst = HindsightInstance(np.ones((1, 3)), np.ones((1, 3)), (HindsightJob(1, 2.0, 0, (0,), (1.0, 0.0, 0.0)),))
    assert job_level_bound(inst, [1.0], 3.0).cost_usd is None
    assert job_level_bound(inst, [1.0], 3.0, budget=EventBudget(failures=1.0)).cost_usd == pytest.approx(3.0)


def test_bad_lengths_are_refused() -> None:
    inst = HindsightInstance(np.ones((1, 2)), np.ones((1, 2)), (HindsightJob(1, 2.0, 0, (0,)),))
    with pytest.raises(ValueError, match="one value per job"):
        job_level_bound(inst, [], 1.0)



def test_slices_of_gangs_are_reported() -> None:
    """A 4-GPU gang in a pool with room for 2: the LP runs half the gang every hour (a slice no schedule has)."""
    inst = HindsightInstance(np.full((1, 3), 2.0), np.ones((1, 3)), (HindsightJob(4, 12.0, 0, (0,)),))
    res = job_level_bound(inst, [4.0], 6.0, [((0,), np.full(3, 2.0))])
    assert res.cost_usd == pytest.approx(6.0)
    assert res.slice_share[0] == pytest.approx(1.0)
    whole = job_level_bound(HindsightInstance(np.full((1, 3), 4.0), np.ones((1, 3)), inst.jobs), [4.0], 12.0)
    assert whole.slice_share[0] == pytest.approx(0.0)
