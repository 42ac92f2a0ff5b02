"""The loop in the twin: shadows are recorded and never applied, probes gate what policies see of a degraded
link, sovereignty refusals are audited under gang, and every action gets an outcome event."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from superfactory.domain.events import EventKind, event_log_digest
from superfactory.domain.fleet import FleetSnapshot, Plan
from superfactory.policy.registry import PolicyBase, register
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.fleet import PROBE_INTERVAL_S
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario

SEEN: list[tuple[int, dict[int, float]]] = []


@register("test-probe-spy")
class ProbeSpy(PolicyBase):
    """Test only: records what the snapshots say about NVLink domains, places nothing."""

    cycle_s = 5

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        SEEN.append((snapshot.now_s, snapshot.states[0].link_factors))
        return Plan()

    def observe(self, outcomes: Sequence[object]) -> None:  # type: ignore[override]
        del outcomes


def _small() -> str:
    return scenario([factory("a", nodes=16), factory("b", nodes=16, market="ERCOT")],
                    [job(f"j{i}", gpus=32, work="6h", submit=f"{i * 30}min") for i in range(8)], duration="1d",
                    failures={"rate_scale": 0.0, "planned": False})


def test_shadow_plans_are_recorded_and_never_applied() -> None:
    sc = parse_scenario(_small())
    alone = run_twin(sc, policy="greedy")
    both = run_twin(sc, policy="greedy", shadow=("greedy", "home-region"))
    acted = [e for e in both.events if e.kind is not EventKind.SHADOW_ACTION]
    assert event_log_digest(acted) == event_log_digest(alone.events)  # shadows changed nothing
    shadows = [e for e in both.events if e.kind is EventKind.SHADOW_ACTION]
    assert shadows and all(e.action.startswith("shadow/") for e in shadows)
    assert not any(e.action.startswith("shadow/") for e in acted)
    assert both.shadow["greedy"].agreement == 1.0  # the same policy, the same snapshots, the same plans
    assert both.shadow["greedy"].actions == sum(1 for e in alone.events if e.kind is EventKind.JOB_PLACED)
    assert both.shadow["home-region"].decisions == both.shadow["greedy"].decisions


def test_every_action_has_one_outcome_event() -> None:
    res = run_twin(parse_scenario(_small()), policy="gang")
    placed = sum(1 for e in res.events if e.kind is EventKind.JOB_PLACED)
    applied = [e for e in res.events if e.kind is EventKind.ACTION_APPLIED]
    assert len(applied) == placed == res.outcomes["applied"]
    assert len({e.action for e in applied}) == len(applied)


def test_a_degraded_link_is_invisible_until_a_probe_measures_it() -> None:
    sweep = PROBE_INTERVAL_S
    at, lasts = 5 * sweep + sweep // 2, 3 * sweep  # between two sweeps
    text = scenario([factory("f", nodes=4 * 18, system="gb200-nvl72")], [], duration=f"{12 * sweep}s",
                    events=[{"at": f"{at}s", "kind": "link_degradation", "factory": "f", "domain": 0,
                             "duration": f"{lasts}s"}], failures={"rate_scale": 0.0, "planned": False})
    SEEN.clear()
    run_twin(parse_scenario(text), policy="test-probe-spy")
    before = [f for t, f in SEEN if at <= t < 6 * sweep]
    after = [f for t, f in SEEN if 6 * sweep <= t < at + lasts]
    assert before and all(f == {} for f in before)  # degraded since `at`, no probe has run yet
    assert after and all(0 in f and f[0] < 0.9 for f in after)  # the next sweep measured it
    healed = [f for t, f in SEEN if t >= 9 * sweep]  # healed at at + lasts; the next sweep sees it
    assert healed and all(f == {} for f in healed)


def test_every_sovereignty_refusal_is_audited_under_gang() -> None:
    text = scenario([factory("us", nodes=16, clearances=("US",)), factory("eu", nodes=16, clearances=("EU",))],
                    [job("eu-data", gpus=32, work="2h", sovereignty=["EU"]),
                     job("us-data", gpus=32, work="2h", sovereignty=["US"], home="eu")], duration="6h",
                    failures={"rate_scale": 0.0, "planned": False})
    res = run_twin(parse_scenario(text), policy="gang")
    audits = {(e.job, e.factory) for e in res.events
              if e.kind is EventKind.AUDIT_REFUSAL and e.cause.startswith("sovereignty")}
    placed = {(e.job, e.factory) for e in res.events if e.kind is EventKind.JOB_PLACED}
    assert placed == {("eu-data", "eu"), ("us-data", "us")}
    assert audits == {("eu-data", "us"), ("us-data", "eu")}


def test_cli_shows_acting_vs_shadow(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from superfactory.cli.main import app
    from superfactory.errors import PolicyError

    path = tmp_path / "small.yaml"
    path.write_text(_small())
    res = CliRunner().invoke(app, ["simulate", str(path), "--policy", "gang", "--shadow", "greedy", "--json",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    sh = json.loads(res.stdout)["shadow"]["greedy"]
    assert sh["decisions"] > 0 and sh["actions"] > 0 and 0.0 <= sh["agreement"] <= 1.0
    res = CliRunner().invoke(app, ["compare", str(path), "--policies", "greedy,gang", "--shadow", "greedy",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "greedy acting, greedy in shadow" in res.stdout and "agreement 100.0%" in res.stdout
    bad = CliRunner().invoke(app, ["simulate", str(path), "--shadow", "preplacer", "--no-progress"])
    # a user error (PolicyError: main() prints it and exits 2), not a traceback from the loop
    assert isinstance(bad.exception, PolicyError) and "no acting policy for role 'inference'" in str(bad.exception)
