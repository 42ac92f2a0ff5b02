"""Per-job carbon budgets are hard rules: a job runs only where finishing it keeps it within its budget, every
refusal is audited, and a job no factory can serve within budget waits with that reason."""

from __future__ import annotations

import pytest

from superfactory.domain.events import EventKind
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def _text() -> str:
    facs = [factory("dirty", market="MISO", nodes=16), factory("clean", market="NORDPOOL_SE2", nodes=16)]
    jobs = [
        job("budgeted", gpus=64, work="2d", carbon_budget_tco2=0.5),  # ~1.8 t at MISO, ~0.1 t in SE2
        job("free", gpus=64, work="1d"),
        job("impossible", gpus=64, work="2d", carbon_budget_tco2=0.01),
    ]
    # the dirty grid is the cheap one, so a price-only policy would pick it
    return scenario(facs, jobs, duration="8d", failures={"rate_scale": 0.0, "planned": False},
                    markets={"MISO": {"mean_usd_per_mwh": 25}, "NORDPOOL_SE2": {"mean_usd_per_mwh": 35}})


@pytest.mark.parametrize("policy", ["greedy", "geo", "gang", "firstfit-blind"])
def test_budgets_steer_and_refuse(policy: str) -> None:
    res = run_twin(parse_scenario(_text()), policy=policy)
    placed = {(e.job, e.factory) for e in res.events if e.kind in (EventKind.JOB_PLACED, EventKind.JOB_MIGRATED)}
    assert ("budgeted", "clean") in placed and ("budgeted", "dirty") not in placed
    assert not any(j == "impossible" for j, _ in placed)
    audits = {(e.job, e.factory) for e in res.events
              if e.kind is EventKind.AUDIT_REFUSAL and e.cause.startswith("carbon budget")}
    assert ("budgeted", "dirty") in audits
    assert {("impossible", "dirty"), ("impossible", "clean")} <= audits
    jobs = {j.job.id: j for j in res.jobs}
    assert jobs["budgeted"].completed_s > 0
    assert jobs["budgeted"].carbon_g / 1e6 <= 0.5
    assert "carbon budget" in res.waiting_reasons["impossible"]
