"""Result tables (pyarrow): events, jobs and factory-hours; written as Parquet for pandas/polars.

Columns carry units in their names. ``read_table(path)`` is ``pyarrow.parquet.read_table``; e.g.
``pd.read_parquet("results/default/jobs.parquet")``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from superfactory.domain.events import EVENT_SCHEMA_VERSION, Event, EventKind
from superfactory.observe.record import RunRecord
from superfactory.observe.summary import job_ettr, job_wall_s
from superfactory.observe.tco import cost_rows


def events_table(result: RunRecord) -> pa.Table:
    """The run's domain events, one row each, in order; the schema version is in the table's metadata
    (``superfactory.event_schema``). This table is the record a run can be re-reported from
    (:func:`read_events`, :func:`superfactory.observe.summary.summary_from_events`)."""
    ev = result.events
    table = pa.table({
        "time_s": pa.array([e.time_s for e in ev], pa.int64()),
        "kind": pa.array([e.kind.value for e in ev], pa.string()).dictionary_encode(),
        "job": pa.array([e.job for e in ev], pa.string()),
        "factory": pa.array([e.factory for e in ev], pa.string()).dictionary_encode(),
        "node": pa.array([e.node for e in ev], pa.int64()),
        "cause": pa.array([e.cause for e in ev], pa.string()).dictionary_encode(),
        "value": pa.array([e.value for e in ev], pa.float64()),
        "action": pa.array([e.action for e in ev], pa.string()),
    })
    return table.replace_schema_metadata({b"superfactory.event_schema": str(EVENT_SCHEMA_VERSION).encode()})


def read_events(path: Path) -> list[Event]:
    """Load an ``events.parquet`` written by :func:`write_tables` back into domain events.

    Raises:
        ValueError: the file was written with another event schema version.
    """
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    version = int(meta.get(b"superfactory.event_schema", b"1"))
    if version != EVENT_SCHEMA_VERSION:
        raise ValueError(f"{path}: event schema {version}, this version reads {EVENT_SCHEMA_VERSION}")
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    return [Event(t, EventKind(k), j, f, n, c, v, a) for t, k, j, f, n, c, v, a in zip(
        cols["time_s"], cols["kind"], cols["job"], cols["factory"], cols["node"], cols["cause"], cols["value"],
        cols["action"], strict=True)]


def jobs_table(result: RunRecord) -> pa.Table:
    end = result.scenario.duration_s
    js = result.jobs
    return pa.table({
        "job": [j.job.id for j in js],
        "accelerator": [j.job.accelerator for j in js],
        "gpus": pa.array([j.job.gpus for j in js], pa.int32()),
        "priority": pa.array([j.job.priority for j in js], pa.int32()),
        "home_factory": [j.job.home_factory or "" for j in js],
        "sovereignty": [",".join(sorted(j.job.sovereignty)) for j in js],
        "submit_s": pa.array([j.job.submit_s for j in js], pa.int64()),
        "first_start_s": pa.array([j.first_start_s for j in js], pa.int64()),
        "completed_s": pa.array([j.completed_s for j in js], pa.int64()),
        "state": [j.state.value for j in js],
        "last_factory": [result.scenario.factories[j.factory if j.factory >= 0 else j.last_factory].id
                         if (j.factory >= 0 or j.last_factory >= 0) else "" for j in js],
        "work_s": [j.job.work_s for j in js],
        "progress_s": [j.progress_s for j in js],
        "wall_s": pa.array([job_wall_s(j, end) for j in js], pa.int64()),
        "ettr": [job_ettr(j, end) for j in js],
        "interruptions": pa.array([j.interruptions for j in js], pa.int32()),
        "planned_stops": pa.array([j.planned_stops for j in js], pa.int32()),
        "preemptions": pa.array([j.preemptions for j in js], pa.int32()),
        "lost_work_s": [j.lost_work_s for j in js],
        "recovery_s": [j.recovery_s for j in js],
        "checkpoints": pa.array([j.checkpoints for j in js], pa.int32()),
        "checkpoint_stall_s": [j.checkpoint_stall_s for j in js],
        "energy_mwh": [j.energy_j / 3.6e9 for j in js],
        "power_cost_usd": [j.cost_usd for j in js],
        "carbon_tco2": [j.carbon_g / 1e6 for j in js],
    })


def hours_table(result: RunRecord) -> pa.Table:
    hs = result.hours
    return pa.table({
        "factory": [h.factory for h in hs],
        "hour": pa.array([h.hour for h in hs], pa.int32()),
        "it_energy_mwh": [h.it_energy_mwh for h in hs],
        "facility_energy_mwh": [h.facility_energy_mwh for h in hs],
        "price_usd_per_mwh": [h.price_usd_per_mwh for h in hs],
        "carbon_g_per_kwh": [h.carbon_g_per_kwh for h in hs],
        "power_cost_usd": [h.cost_usd for h in hs],
        "carbon_tco2": [h.carbon_t for h in hs],
        "gpu_utilization": [h.gpu_utilization for h in hs],
        "busy_gpus_mean": [h.busy_gpus_mean for h in hs],
    })


def write_tables(result: RunRecord, out_dir: Path) -> dict[str, Path]:
    """Write ``events.parquet``, ``jobs.parquet``, ``factory_hours.parquet`` and ``factory_cost.parquet``;
    return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "events": out_dir / "events.parquet",
        "jobs": out_dir / "jobs.parquet",
        "factory_hours": out_dir / "factory_hours.parquet",
        "factory_cost": out_dir / "factory_cost.parquet",
    }
    pq.write_table(events_table(result), paths["events"])
    pq.write_table(jobs_table(result), paths["jobs"])
    pq.write_table(hours_table(result), paths["factory_hours"])
    pq.write_table(pa.Table.from_pylist(cost_rows(result)), paths["factory_cost"])  # TCO by factory (tco.py)
    return paths
