"""The seed tree: ``--seed`` drives every random input, a pinned component stays fixed, and adding a component
never reshuffles another's stream."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml

from superfactory.errors import ScenarioError
from superfactory.scenario.loader import parse_scenario
from superfactory.scenario.seeds import MAX_SEED, SeedTree, child_seed
from superfactory.sim.twin import run_twin

from scenario_builders import factory, scenario


def _doc(**extra: Any) -> dict[str, Any]:
    """Two markets, a synthetic workload, nothing pinned."""
    text = scenario([factory("a", nodes=16), factory("b", market="ERCOT", nodes=16)], [], duration="3d",
                    workload={"kind": "mixed-training", "load": 0.8, "backlog": 0.5,
                              "sizes": [{"gpus": 8, "weight": 2}, {"gpus": 32, "weight": 1}],
                              "median_duration": "6h", "min_duration": "1h", "max_duration": "2d"})
    d: dict[str, Any] = yaml.safe_load(text)
    d.update(extra)
    return d


def _parse(d: dict[str, Any], seed: int | None = None) -> Any:
    return parse_scenario(yaml.safe_dump(d, sort_keys=False), seed=seed)


def _jobs(sc: Any) -> list[tuple[str, int, int, float]]:
    return [(j.id, j.submit_s, j.gpus, j.work_flop) for j in sc.jobs]


def test_two_seeds_give_different_prices_carbon_and_workloads() -> None:
    a, b = _parse(_doc(), seed=1), _parse(_doc(), seed=2)
    for market in ("PJM", "ERCOT"):
        assert a.prices[market].values != b.prices[market].values
        assert a.carbon[market].values != b.carbon[market].values
    assert _jobs(a) != _jobs(b)
    assert a.seeds["failures"] != b.seeds["failures"] and a.seeds["workload"] != b.seeds["workload"]
    assert a.pinned_seeds == frozenset()


def test_run_seed_reseeds_a_compiled_scenario_like_compiling_at_that_seed() -> None:
    base = _parse(_doc(), seed=1)
    direct = _parse(_doc(), seed=5)
    r = run_twin(base, seed=5)
    assert r.seed == 5 and r.scenario.seeds == direct.seeds
    assert r.scenario.prices["ERCOT"].values == direct.prices["ERCOT"].values
    assert _jobs(r.scenario) == _jobs(direct)
    assert [e.line() for e in r.events] == [e.line() for e in run_twin(direct).events]


def test_same_seed_same_event_log() -> None:
    sc = _parse(_doc())
    a, b = run_twin(sc, seed=3), run_twin(_parse(_doc()), seed=3)
    lines = [e.line() for e in a.events]
    assert len(lines) > 50
    assert lines == [e.line() for e in b.events]
    assert lines != [e.line() for e in run_twin(sc, seed=4).events]


def test_a_pinned_component_stays_fixed_across_seeds() -> None:
    d = _doc(markets={"PJM": {"seed": 42}})
    d["workload"]["seed"] = 7
    a, b = _parse(d, seed=1), _parse(d, seed=2)
    assert _jobs(a) == _jobs(b)
    assert a.prices["PJM"].values == b.prices["PJM"].values
    assert a.prices["ERCOT"].values != b.prices["ERCOT"].values  # the unpinned market still moves
    assert a.pinned_seeds == {"workload", "prices:PJM"}
    assert a.seeds["workload"] == 7 and a.seeds["prices:PJM"] == 42


def test_pinning_a_reported_effective_seed_reproduces_that_component() -> None:
    free = _parse(_doc(), seed=9)
    d = _doc(markets={"ERCOT": {"seed": free.seeds["prices:ERCOT"]}})
    d["workload"]["seed"] = free.seeds["workload"]
    pinned = _parse(d, seed=123)
    assert pinned.prices["ERCOT"].values == free.prices["ERCOT"].values
    assert _jobs(pinned) == _jobs(free)


def test_adding_a_factory_does_not_reshuffle_other_series() -> None:
    d = _doc()
    d.pop("workload")
    before = _parse(d, seed=4)
    d["factories"].append(factory("c", market="MISO", nodes=8))
    after = _parse(d, seed=4)
    assert after.prices["PJM"].values == before.prices["PJM"].values
    assert after.prices["ERCOT"].values == before.prices["ERCOT"].values
    assert after.seeds["failures"] == before.seeds["failures"]


def test_child_seeds_are_stable_and_in_range() -> None:
    s = child_seed(7, "prices:ERCOT")
    assert s == child_seed(7, "prices:ERCOT") and 0 <= s <= MAX_SEED
    assert s != child_seed(8, "prices:ERCOT") and s != child_seed(7, "prices:PJM")
    t = SeedTree(7)
    assert np.random.default_rng(s).random() == t.rng("prices:ERCOT").random()


@pytest.mark.parametrize("bad", [-1, MAX_SEED + 1])
def test_out_of_range_seeds_are_refused_with_the_range(bad: int) -> None:
    with pytest.raises(ScenarioError, match=r"seed"):
        parse_scenario(yaml.safe_dump(_doc(seed=bad)))
    with pytest.raises(ValueError, match=r"2\*\*63-1"):
        SeedTree(bad)


def test_adding_a_factory_does_not_reshuffle_another_factorys_failures() -> None:
    from superfactory.domain.events import EventKind

    def failures_at_a(factories: list[dict[str, Any]]) -> list[str]:
        text = scenario(factories, [], duration="20d", failures={"rate_scale": 20.0})
        r = run_twin(parse_scenario(text), seed=11)
        return [e.line() for e in r.events if e.kind is EventKind.NODE_FAILED and e.factory == "a"]

    alone = failures_at_a([factory("a", nodes=16)])
    assert len(alone) > 5
    # b listed first: by position, a's stream would change; by id it does not
    assert failures_at_a([factory("b", market="ERCOT", nodes=16), factory("a", nodes=16)]) == alone
