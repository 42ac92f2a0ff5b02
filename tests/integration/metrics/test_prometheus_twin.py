"""A twin run in a real Prometheus: `simulate --metrics-out` backfilled with promtool, then every PromQL query of
the generated dashboards evaluated through Prometheus' HTTP API over the run's time range.

Every query must return data: the demo run models its WAN, so the checkpoint sync queue and the quorum wait
come from its replication, tokens/s from its throughput.
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
    for view, title, expr in _all_queries():
        assert metrics_used(expr) <= TWIN, f"{view} / {title} reads metrics the catalog says the twin lacks"
        if not any(series["values"] for series in prom.query_range(expand(expr), start, end, 600)):
            problems.append(f"{view} / {title}: no data for {expr}")
    assert not problems, f"{len(problems)} of {len(_all_queries())} queries without data:\n" + "\n".join(problems)
    assert len(_all_queries()) >= 30


def test_factory_variable_filters(twin_prometheus: tuple[Prometheus, int]) -> None:
    prom, duration_s = twin_prometheus
    t = DEFAULT_START_UNIX_S + duration_s // 2
    expr = dict(queries("operator"))["GPU allocation"]
    result = prom.query_range(expand(expr, factory="texas"), t, t + 600, 300)
    assert [s["metric"]["factory"] for s in result] == ["texas"]
    values = [float(v) for _, v in result[0]["values"]]
    assert all(0 <= v <= 1 for v in values)


def test_alert_conditions_hold_in_the_twin_where_the_scenario_says(twin_prometheus: tuple[Prometheus, int]) -> None:
    """The demo degrades two NVLink domains and takes atlanta down for 2 h (14-16 h): the alert expressions see
    the degraded domains, the lost lease, checkpoints that cannot reach their quorum (their copies for atlanta
    wait) and, right after, the jobs that stalled at their barriers meanwhile."""
    prom, duration_s = twin_prometheus
    alerts = {r["alert"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
              if "alert" in r}
    start, end = DEFAULT_START_UNIX_S, DEFAULT_START_UNIX_S + duration_s

    def hours(series: dict[str, object]) -> list[float]:
        return [(float(t) - DEFAULT_START_UNIX_S) / 3600 for t, _ in series["values"]]  # type: ignore[attr-defined]

    slow = prom.query_range(alerts["TrainingEfficiencyAnomaly"], start, end, 600)
    assert "wisconsin" in {s["metric"]["factory"] for s in slow}
    for s in slow:  # elsewhere only the measurement interval that spans a barrier stall of the outage
        if s["metric"]["factory"] != "wisconsin":
            assert min(hours(s)) >= 16 and max(hours(s)) <= 17, (s["metric"], hours(s))
    quorum = prom.query_range(alerts["CheckpointQuorumNotReached"], start, end, 600)
    assert {s["metric"]["factory"] for s in quorum} == {"wisconsin", "texas"}
    assert all(14 <= h <= 16.2 for s in quorum for h in hours(s))
    lost = prom.query_range(alerts["FactoryLeaseLost"], start, end, 600)
    assert [s["metric"]["factory"] for s in lost] == ["atlanta"]
    times = [float(t) - DEFAULT_START_UNIX_S for t, _ in lost[0]["values"]]
    assert min(times) >= 14 * 3600 and max(times) <= 16 * 3600
