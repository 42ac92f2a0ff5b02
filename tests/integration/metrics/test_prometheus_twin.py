"""A twin run in a real Prometheus: `simulate --metrics-out` backfilled with promtool, then every PromQL query of
the generated dashboards evaluated through Prometheus' HTTP API over the run's time range.

A query returns data exactly when the twin produces every metric it reads (the catalog's ``worlds``); the few
metrics no twin models yet (tokens/s reported by job processes, the mesh's sync queue and quorum wait) must
come back empty, so the day the twin starts producing them this test asks for the catalog to say so.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_harness import Prometheus, binaries

from superfactory.observe.dashboards import VIEWS, expand, metrics_used, queries
from superfactory.observe.metrics_catalog import produced_by
from superfactory.observe.openmetrics import DEFAULT_START_UNIX_S, write_twin_metrics
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "deploy" / "examples" / "metrics-demo.yaml"
RULES = ROOT / "deploy" / "prometheus" / "superfactory-rules.yml"
TWIN = produced_by("twin")


@pytest.fixture(scope="module")
def twin_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, int]]:
    _, promtool = binaries()
    folder = tmp_path_factory.mktemp("prom-twin")
    scenario = load_scenario(str(DEMO))
    result = run_twin(scenario)
    om = folder / "demo.om"
    write_twin_metrics(scenario, result.events, result.hours, om, step_s=60)
    prom = Prometheus(folder)
    r = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(prom.data)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr + r.stdout
    prom.start()
    try:
        yield prom, scenario.duration_s
    finally:
        prom.stop()


def _all_queries() -> list[tuple[str, str, str]]:
    return [(view, title, expr) for view in VIEWS for title, expr in queries(view)]


def test_every_dashboard_query_over_the_twin_run(twin_prometheus: tuple[Prometheus, int]) -> None:
    prom, duration_s = twin_prometheus
    start, end = DEFAULT_START_UNIX_S + 3600, DEFAULT_START_UNIX_S + duration_s
    problems = []
    answered = 0
    for view, title, expr in _all_queries():
        result = prom.query_range(expand(expr), start, end, 600)
        has_data = any(series["values"] for series in result)
        expected = metrics_used(expr) <= TWIN or "vector(0)" in expr
        answered += has_data
        if has_data != expected:
            problems.append(f"{view} / {title}: {'no data' if expected else 'unexpected data'} for {expr}")
    assert not problems, "\n".join(problems)
    assert answered >= len(_all_queries()) - 4  # at most the 4 queries of metrics no twin models are empty


def test_factory_variable_filters(twin_prometheus: tuple[Prometheus, int]) -> None:
    prom, duration_s = twin_prometheus
    t = DEFAULT_START_UNIX_S + duration_s // 2
    expr = dict(queries("operator"))["GPU allocation"]
    result = prom.query_range(expand(expr, factory="texas"), t, t + 600, 300)
    assert [s["metric"]["factory"] for s in result] == ["texas"]
    values = [float(v) for _, v in result[0]["values"]]
    assert all(0 <= v <= 1 for v in values)


def test_alert_conditions_hold_in_the_twin_where_the_scenario_says(twin_prometheus: tuple[Prometheus, int]) -> None:
    """The demo degrades two NVLink domains and takes atlanta down for 2 h: the alert expressions see both."""
    prom, duration_s = twin_prometheus
    alerts = {r["alert"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
              if "alert" in r}
    start, end = DEFAULT_START_UNIX_S, DEFAULT_START_UNIX_S + duration_s
    slow = prom.query_range(alerts["TrainingEfficiencyAnomaly"], start, end, 600)
    assert slow and {s["metric"]["factory"] for s in slow} == {"wisconsin"}
    lost = prom.query_range(alerts["FactoryLeaseLost"], start, end, 600)
    assert [s["metric"]["factory"] for s in lost] == ["atlanta"]
    times = [float(t) - DEFAULT_START_UNIX_S for t, _ in lost[0]["values"]]
    assert min(times) >= 14 * 3600 and max(times) <= 16 * 3600
