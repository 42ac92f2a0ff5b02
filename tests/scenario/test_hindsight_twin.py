"""The tightened hindsight bound against schedules the twin really produced: on a small fleet with frequent node
failures, every policy's run sees the same failures, never has more GPUs busy in a pool-hour than the usable
capacity allows, and costs at least the bound (where-only and anytime) built from its own hourly busy GPUs."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from superfactory.domain.events import EventKind
from superfactory.policy.hindsight import hindsight_bound
from superfactory.policy.hindsight_fleet import (
    GANGS_HELD,
    down_spells,
    fleet_instance,
    fleet_pools,
    gang_granularity,
    oversized_placements,
    usable_gpus_per_hour,
)
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def _scenario():
    jobs = [job(f"j{k}", gpus=(32, 64, 96, 128)[k % 4], work=("8h", "20h", "1d", "14h")[k % 4],
                submit=f"{(k * 5) % 30}h") for k in range(14)]
    text = scenario(
        [factory("a", market="PJM", nodes=20), factory("b", market="ERCOT", nodes=16),
         factory("c", market="CAISO", nodes=12)],
        jobs, duration="2d",
        links=[{"a": "a", "b": "b", "bandwidth": "400Gbps", "latency": "10ms"},
               {"a": "b", "b": "c", "bandwidth": "400Gbps", "latency": "10ms"}],
        failures={"table": "llama3-405b", "rate_scale": 200},
    )
    return parse_scenario(text)


def _grids(sc, r):
    pools = fleet_pools(sc.factories)
    hours = sc.duration_s // 3600
    fx = {f.id: i for i, f in enumerate(sc.factories)}
    cost, busy = np.zeros((len(pools), hours)), np.zeros((len(pools), hours))
    for row in r.hours:
        if row.hour < hours:
            p = fx[row.factory]  # one pool per factory here
            cost[p, row.hour] = pools[p].extra_w_per_gpu * row.price_usd_per_mwh / 1e6
            busy[p, row.hour] = row.busy_gpus_mean
    return cost, busy


@pytest.fixture(scope="module")
def runs():
    sc = _scenario()
    return sc, {p: run_twin(sc, policy=p) for p in ("home-region", "greedy", "geo")}


def _usable(sc, pools, gran, spells):
    """The usable GPUs of every pool in every hour of ``sc`` (one pool per factory here), from ``spells``."""
    hours = sc.duration_s // 3600
    return np.array([usable_gpus_per_hour(pl.gpus, gran[p], spells[pl.factory], hours) for p, pl in enumerate(pools)])


def _failures(r):
    return [(e.time_s, e.kind, e.factory, e.node) for e in r.events
            if e.kind in (EventKind.NODE_FAILED, EventKind.NODE_REPAIRED)]


def test_every_policy_sees_the_same_failures_and_stays_within_the_usable_capacity(runs) -> None:
    sc, rs = runs
    ref = _failures(rs["home-region"])
    assert len([f for f in ref if f[1] is EventKind.NODE_FAILED]) >= 5, "the scenario should fail nodes"
    pools = fleet_pools(sc.factories)
    gran = gang_granularity(sc.jobs, pools, sc.factories)
    assert gran == [32, 32, 32]
    for name, r in rs.items():
        assert _failures(r) == ref, name
        assert oversized_placements(r.events, sc.jobs, sc.factories) == [], name  # busy GPUs are gang GPUs
        spells = down_spells(r.events, sc.factories, sc.duration_s)
        usable = _usable(sc, pools, gran, spells)
        _cost, busy = _grids(sc, r)
        assert (busy <= usable + 1e-6).all(), (name, np.argwhere(busy > usable + 1e-6))
        assert (usable < np.array([[pl.gpus] for pl in pools])).any(), "failures should cut the capacity"


def test_the_tightened_bound_is_below_every_policys_own_busy_cost(runs) -> None:
    sc, rs = runs
    pools = fleet_pools(sc.factories)
    gran = gang_granularity(sc.jobs, pools, sc.factories)
    spells = down_spells(rs["geo"].events, sc.factories, sc.duration_s)
    usable = _usable(sc, pools, gran, spells)
    groups = defaultdict(list)
    for p, pl in enumerate(pools):
        groups[pl.accelerator].append(p)
    for name, r in rs.items():
        cost, busy = _grids(sc, r)
        inst = fleet_instance(sc.factories, sc.jobs, sc.duration_s, cost, usable)
        nameplate = fleet_instance(sc.factories, sc.jobs, sc.duration_s, cost)
        totals = [(tuple(ps), float(busy[ps].sum())) for ps in groups.values()]
        hourly = [(tuple(ps), busy[ps].sum(axis=0)) for ps in groups.values()]
        where = hindsight_bound(inst, totals, hourly_gpus=hourly, gangs_held=GANGS_HELD).cost_usd
        anytime = hindsight_bound(inst, totals, gangs_held=GANGS_HELD).cost_usd
        loose = hindsight_bound(nameplate, totals, hourly_gpus=hourly, gangs_held=GANGS_HELD).cost_usd
        own = float((cost * busy).sum())
        assert None not in (where, anytime, loose), name
        assert anytime <= where + 1e-6 <= own + 2e-6, (name, anytime, where, own)
        assert loose <= where + 1e-6, name
