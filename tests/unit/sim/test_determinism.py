from __future__ import annotations

from superfactory.domain.events import event_log_digest
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin


def test_same_seed_same_event_log() -> None:
    sc = load_scenario("llama3-405b")
    a = run_twin(sc, seed=5)
    b = run_twin(sc, seed=5)
    assert len(a.events) > 10_000
    assert event_log_digest(a.events) == event_log_digest(b.events)
    c = run_twin(sc, seed=6)
    assert event_log_digest(a.events) != event_log_digest(c.events)


def test_default_scenario_is_deterministic_across_policies_runs() -> None:
    sc = load_scenario("default")
    a = run_twin(sc, seed=3, policy="greedy")
    b = run_twin(sc, seed=3, policy="greedy")
    assert event_log_digest(a.events) == event_log_digest(b.events)
    assert [h.cost_usd for h in a.hours] == [h.cost_usd for h in b.hours]
