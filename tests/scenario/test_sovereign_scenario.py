"""The sovereignty-heavy built-in scenario: regulated work stays where the law allows, refusals are audited, and a
policy that ignores the law is stopped by the twin itself."""

from __future__ import annotations

import numpy as np
import pytest

from superfactory.domain.events import EventKind
from superfactory.domain.fleet import FleetSnapshot, Place, Plan
from superfactory.errors import SimulationError
from superfactory.policy import registry
from superfactory.policy.nodes import first_fit
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin


@pytest.mark.parametrize("policy", ["geo", "greedy"])
def test_regulated_work_stays_in_cleared_sites(policy: str) -> None:
    sc = load_scenario("sovereign")
    classes = {j.id: j.sovereignty for j in sc.jobs}
    assert sum(1 for c in classes.values() if "EU_PERSONAL" in c) > len(classes) / 2  # sovereignty-heavy
    r = run_twin(sc, policy=policy)
    placed = [(e.job, e.factory) for e in r.events if e.kind in (EventKind.JOB_PLACED, EventKind.JOB_MIGRATED)]
    assert placed
    for job_id, fid in placed:
        if "DE_HEALTH" in classes[job_id]:
            assert fid == "frankfurt"
        if "EU_PERSONAL" in classes[job_id]:
            assert fid != "virginia"
    audits = [e for e in r.events if e.kind is EventKind.AUDIT_REFUSAL]
    assert audits and all(e.cause.startswith("sovereignty") for e in audits)
    assert {e.factory for e in audits if "DE_HEALTH" in classes[e.job]} >= {"virginia"}


class _Lawless(registry.PolicyBase):
    """Cheapest site first, ignoring sovereignty: the twin must refuse to carry this out."""

    name = "lawless-test"

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng
        order = sorted(range(len(snapshot.factories)), key=lambda i: snapshot.states[i].price_usd_per_mwh)
        for view in snapshot.pending:
            for i in order:
                status = np.frombuffer(snapshot.states[i].node_status, dtype=np.uint8)
                nodes = first_fit(snapshot.factories[i], status, view.job.accelerator, view.job.gpus)
                if nodes is not None:
                    return Plan((Place(view.job.id, snapshot.factories[i].id, nodes),))
        return Plan()


def test_a_policy_that_ignores_the_law_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.available()  # discover the built-in policies first
    monkeypatch.setitem(registry._REGISTRY, "lawless-test", _Lawless)
    with pytest.raises(SimulationError, match=r"lacks clearance for (DE_HEALTH|EU_PERSONAL)"):
        run_twin(load_scenario("sovereign"), policy="lawless-test")
