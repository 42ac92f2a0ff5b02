"""The llama3-405b scenario reproduces the paper: 419 unexpected interruptions in 54 days, ETTR 0.90-0.95."""

from __future__ import annotations

import math
import statistics

import pytest

from superfactory.observe.summary import summarize
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin


@pytest.fixture(scope="module")
def summaries() -> list[dict[str, object]]:
    sc = load_scenario("llama3-405b")
    return [summarize(run_twin(sc, seed=s)) for s in range(20)]


def test_interruption_count_matches_the_paper(summaries: list[dict[str, object]]) -> None:
    counts = [int(s["interruptions"]) for s in summaries]  # type: ignore[call-overload]
    assert abs(statistics.mean(counts) - 419) <= 20
    for c in counts:
        assert abs(c - 419) <= 3 * math.sqrt(419)


def test_planned_interruptions_and_causes(summaries: list[dict[str, object]]) -> None:
    planned = [int(s["planned_interruptions"]) for s in summaries]  # type: ignore[call-overload]
    assert abs(statistics.mean(planned) - 47) <= 3 * math.sqrt(47 / 20) + 2
    # GPU faults dominate as in Table 5 (268 of 419 are GPU-category).
    by_cause: dict[str, int] = {}
    for s in summaries:
        for k, v in s["interruptions_by_cause"].items():  # type: ignore[attr-defined]
            by_cause[k] = by_cause.get(k, 0) + v
    total = sum(by_cause.values())
    assert by_cause["Faulty GPU"] / total == pytest.approx(148 / 419, abs=0.03)
    assert max(by_cause, key=by_cause.__getitem__) == "Faulty GPU"


def test_ettr_in_the_reported_range(summaries: list[dict[str, object]]) -> None:
    for s in summaries:
        assert 0.90 <= float(s["ettr"]) <= 0.95  # type: ignore[arg-type]
