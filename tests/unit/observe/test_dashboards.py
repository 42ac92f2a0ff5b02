"""The generated Grafana dashboards: committed JSON equals the generator's output, every query reads catalog
metrics only and is valid PromQL (promtool parses it as a recording rule), and the three views cover what the
source material asks of them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from superfactory.observe.dashboards import VIEWS, dashboard, expand, metrics_used, queries, render, write_all

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "deploy" / "grafana" / "dashboards"


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_committed_json_equals_generator(view: str) -> None:
    path = COMMITTED / f"superfactory-{view}.json"
    assert path.is_file(), f"{path} missing: run python -m superfactory.observe.dashboards deploy/grafana/dashboards"
    assert path.read_text(encoding="utf-8") == render(view), (
        f"{path.name} is stale: run python -m superfactory.observe.dashboards deploy/grafana/dashboards")


def test_no_stray_dashboard_files() -> None:
    assert {p.name for p in COMMITTED.glob("*.json")} == {f"superfactory-{v}.json" for v in VIEWS}


def test_write_all_round_trips(tmp_path: Path) -> None:
    for path in write_all(tmp_path):
        model = json.loads(path.read_text())
        assert model == json.loads(json.dumps(dashboard(model["uid"].removeprefix("superfactory-"))))


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_panels_are_well_formed(view: str) -> None:
    model = dashboard(view)
    panels = model["panels"]
    assert isinstance(panels, list) and panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    positions = {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}
    assert len(positions) == len(panels), "panels overlap"
    for p in panels:
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
        assert p["datasource"]["uid"] == "${datasource}"
    names = [v["name"] for v in model["templating"]["list"]]
    assert names == ["datasource", "factory"]


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_queries_read_only_catalog_metrics(view: str) -> None:
    for title, expr in queries(view):
        assert metrics_used(expr), f"{title}: reads no catalog metric: {expr}"
        unknown = set(re.findall(r"superfactory_[a-z_]+", expr)) - metrics_used(expr)
        assert not unknown, f"{title}: unknown metrics {unknown}"


def test_views_cover_the_source_material() -> None:
    def metrics_of(view: str) -> set[str]:
        return set().union(*(metrics_used(e) for _, e in queries(view)))

    economist, operator, detective = metrics_of("economist"), metrics_of("operator"), metrics_of("detective")
    assert {"superfactory_factory_energy_cost_usd_total", "superfactory_factory_productive_flop_total",
            "superfactory_factory_carbon_intensity_grams_per_kilowatt_hour",
            "superfactory_migration_transfer_bytes_total"} <= economist
    assert {"superfactory_jobs", "superfactory_checkpoint_sync_queue_depth",
            "superfactory_link_transmitted_bytes_total", "superfactory_factory_power_cap_watts",
            "superfactory_factory_cooling_capacity_watts"} <= operator
    assert {"superfactory_job_flop_per_second", "superfactory_job_theoretical_flop_per_second",
            "superfactory_link_capacity_bytes_per_second"} <= detective


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'; scripts/system-deps.sh installs it)")
    rules = [{"record": f"check:{view}:{i}", "expr": expand(expr)}
             for view in VIEWS for i, (_, expr) in enumerate(queries(view))]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules)} rules found" in r.stdout
