"""The Grafana dashboards — Economist, Operator, Detective — generated from code into ``deploy/grafana/dashboards``.

Each dashboard is a plain dict in Grafana's JSON model (schemaVersion 39) built from :class:`Panel` specs; every
PromQL query names only metrics of :mod:`superfactory.observe.metrics_catalog`. Regenerate the committed JSON
after an edit with::

    python -m superfactory.observe.dashboards deploy/grafana/dashboards

(a test fails while the committed files differ from what this module produces). Template variables:
``datasource`` (any Prometheus) and ``factory`` (multi-select; "All" = ``.*``). The same dashboards show the
live fleet and a twin run backfilled from ``simulate --metrics-out`` — pick the time range of the run.

Views, from the source material: the **Economist** ($ per FLOP by region, energy price and cost, carbon
intensity, migration cost history), the **Operator** (queue depths, checkpoint sync status, WAN circuit
utilisation, power and thermal headroom, leases, failures) and the **Detective** (effective vs theoretical
throughput and bandwidth, silent degradation).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from superfactory.observe.metrics_catalog import BY_NAME

SCHEMA_VERSION = 39


@dataclass(frozen=True, slots=True)
class Panel:
    """One panel: a title, its queries as ``(legend, expr)`` pairs, a Grafana unit and a kind."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""


def _f(metric: str, extra: str = "") -> str:
    """``metric{factory=~"$factory",extra}``."""
    inner = 'factory=~"$factory"' + (f",{extra}" if extra else "")
    return f"{metric}{{{inner}}}"


ECONOMIST = (
    Panel("Energy cost per PFLOP of durable training work, by region",
          (("{{region}}", "sum by (region) (increase(" + _f("superfactory_factory_energy_cost_usd_total") + "[1h]))"
            " / (sum by (region) (increase(" + _f("superfactory_factory_productive_flop_total") + "[1h])) / 1e15)"),),
          "currencyUSD", description="USD of facility energy per PFLOP made durable (checkpointed) in the hour."),
    Panel("Electricity price", (("{{factory}} ({{market}})",
                                 _f("superfactory_factory_energy_price_usd_per_megawatt_hour")),), "currencyUSD",
          description="Market price, USD/MWh."),
    Panel("Grid carbon intensity",
          (("{{factory}}", _f("superfactory_factory_carbon_intensity_grams_per_kilowatt_hour")),), "short",
          description="gCO2/kWh at each factory's grid."),
    Panel("Energy cost per hour", (("{{factory}}", "sum by (factory) (rate("
                                    + _f("superfactory_factory_energy_cost_usd_total") + "[1h])) * 3600"),),
          "currencyUSD"),
    Panel("Carbon emitted per hour (tCO2)",
          (("{{factory}}", "sum by (factory) (rate(" + _f("superfactory_factory_carbon_grams_total")
            + "[1h])) * 3600 / 1e6"),)),
    Panel("Migration cost: checkpoint bytes moved per hour",
          (("{{source}} → {{destination}}",
            "sum by (source, destination) (increase(superfactory_migration_transfer_bytes_total[1h]))"),), "bytes"),
    Panel("Migration cost: GPU-hours held in transfer per hour",
          (("{{source}} → {{destination}}",
            "sum by (source, destination) (increase(superfactory_migration_gpu_seconds_total[1h])) / 3600"),)),
    Panel("Migrations per hour by outcome",
          (("{{destination}} {{outcome}}",
            "sum by (destination, outcome) (increase(superfactory_migrations_total[1h]))"),)),
)

OPERATOR = (
    Panel("Queue depth", (("{{state}}", 'sum by (state) (superfactory_jobs{state=~"pending|starting|migrating"})'),),
          description="Jobs waiting for GPUs (pending), starting and moving between factories."),
    Panel("Running jobs", (("running", 'sum(superfactory_jobs{state="running"})'),), kind="stat"),
    Panel("GPU allocation", (("{{factory}}", "sum by (factory) (" + _f("superfactory_factory_allocated_gpus")
                              + ") / sum by (factory) (" + _f("superfactory_factory_gpus") + ")"),), "percentunit"),
    Panel("Factory leases (1 = held)", (("{{factory}}", _f("superfactory_factory_lease_up")),)),
    Panel("Failed nodes", (("{{factory}}", _f("superfactory_factory_failed_nodes")),)),
    Panel("Interruptions per hour by cause",
          (("{{cause}}", "sum by (cause) (increase(" + _f("superfactory_interruptions_total") + "[1h]))"),)),
    Panel("Checkpoints committed per hour",
          (("{{factory}}", "sum by (factory) (increase(" + _f("superfactory_job_checkpoints_total") + "[1h]))"),)),
    Panel("Checkpoint sync queue per link",
          (("{{link}}", "max by (link) (superfactory_checkpoint_sync_queue_depth)"),),
          description="Shard transfers queued or in flight; alert above 5 (CheckpointSyncQueueDeep)."),
    Panel("Checkpoint quorum wait", (("{{factory}}", "max by (factory) ("
                                      + _f("superfactory_checkpoint_quorum_wait_seconds") + ")"),), "s"),
    Panel("WAN circuit utilisation",
          (("{{link}}", "sum by (link) (rate(superfactory_link_transmitted_bytes_total[5m]))"
            " / sum by (link) (superfactory_link_capacity_bytes_per_second)"),), "percentunit"),
    Panel("WAN links up", (("{{link}}", "superfactory_link_up"),)),
    Panel("Power headroom (share of cap)",
          (("{{factory}}", "(" + _f("superfactory_factory_power_cap_watts") + " - "
            + _f("superfactory_factory_power_watts") + ") / " + _f("superfactory_factory_power_cap_watts")),),
          "percentunit"),
    Panel("Thermal headroom (share of cooling capacity)",
          (("{{factory}}", "(" + _f("superfactory_factory_cooling_capacity_watts") + " - "
            + _f("superfactory_factory_it_power_watts") + ") / " + _f("superfactory_factory_cooling_capacity_watts")),),
          "percentunit"),
    Panel("Placements per hour", (("{{factory}}", "sum by (factory) (increase("
                                   + _f("superfactory_placements_total") + "[1h]))"),)),
)

DETECTIVE = (
    Panel("Training efficiency per job (effective / theoretical)",
          (("{{job_id}} @ {{factory}}", _f("superfactory_job_flop_per_second") + " / "
            + _f("superfactory_job_theoretical_flop_per_second")),), "percentunit",
          description="Below 0.85 for 10 minutes fires TrainingEfficiencyAnomaly."),
    Panel("Fleet training throughput: effective vs theoretical (PFLOP/s)",
          (("effective", "sum(" + _f("superfactory_job_flop_per_second") + ") / 1e15"),
           ("theoretical", "sum(" + _f("superfactory_job_theoretical_flop_per_second") + ") / 1e15"))),
    Panel("Jobs silently degraded (below 85 % without a restart in 15 min)",
          (("degraded", "count((" + _f("superfactory_job_flop_per_second") + " / "
            + _f("superfactory_job_theoretical_flop_per_second") + " < 0.85) unless on (job_id) "
            "(increase(superfactory_job_restarts_total[15m]) > 0)) or vector(0)"),), kind="stat"),
    Panel("Tokens per second per job", (("{{job_id}}", _f("superfactory_job_tokens_per_second")),)),
    Panel("WAN bandwidth: effective vs nominal",
          (("{{link}} sent", "sum by (link) (rate(superfactory_link_transmitted_bytes_total[5m]))"),
           ("{{link}} nominal", "sum by (link) (superfactory_link_capacity_bytes_per_second)")), "Bps"),
    Panel("Job progress", (("{{job_id}}", _f("superfactory_job_progress_ratio")),), "percentunit"),
    Panel("Checkpoint duration (snapshot to durable)",
          (("{{job_id}}", _f("superfactory_job_checkpoint_duration_seconds")),), "s"),
)

VIEWS: dict[str, tuple[str, tuple[Panel, ...]]] = {
    "economist": ("superfactory / Economist", ECONOMIST),
    "operator": ("superfactory / Operator", OPERATOR),
    "detective": ("superfactory / Detective", DETECTIVE),
}


def _variables() -> list[dict[str, object]]:
    return [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0},
        {"name": "factory", "label": "factory", "type": "query",
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": {"query": "label_values(superfactory_factory_gpus, factory)", "refId": "factory"},
         "definition": "label_values(superfactory_factory_gpus, factory)",
         "multi": True, "includeAll": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"},
         "refresh": 2, "sort": 1, "hide": 0},
    ]


def _panel(i: int, p: Panel) -> dict[str, object]:
    ds = {"type": "prometheus", "uid": "${datasource}"}
    return {
        "id": i + 1,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": ds,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
        if p.kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [{"refId": chr(ord("A") + j), "datasource": ds, "expr": expr, "legendFormat": legend}
                    for j, (legend, expr) in enumerate(p.queries)],
    }


def dashboard(view: str) -> dict[str, object]:
    """The Grafana JSON model of ``view`` (``economist``, ``operator`` or ``detective``)."""
    title, panels = VIEWS[view]
    return {
        "uid": f"superfactory-{view}",
        "title": title,
        "tags": ["superfactory"],
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "links": [],
        "panels": [_panel(i, p) for i, p in enumerate(panels)],
    }


def render(view: str) -> str:
    """The committed file's exact text for ``view``."""
    return json.dumps(dashboard(view), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def queries(view: str) -> list[tuple[str, str]]:
    """Every ``(panel title, PromQL)`` of ``view``, template variables left in."""
    return [(p.title, expr) for p in VIEWS[view][1] for _, expr in p.queries]


def expand(expr: str, factory: str = ".*") -> str:
    """``expr`` with the dashboard variables substituted as Grafana would for "All"."""
    return expr.replace("$factory", factory)


def metrics_used(expr: str) -> set[str]:
    """The catalog metric names ``expr`` reads."""
    return {m for m in re.findall(r"superfactory_[a-z_]+", expr) if m in BY_NAME}


def write_all(folder: Path) -> list[Path]:
    """Write every view to ``folder/superfactory-<view>.json``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for view in VIEWS:
        path = folder / f"superfactory-{view}.json"
        path.write_text(render(view), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/grafana/dashboards")):
        print(f"wrote {written}")
