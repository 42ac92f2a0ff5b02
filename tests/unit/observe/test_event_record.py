"""The events table is the record of a run: a summary recomputed from a reloaded events.parquet equals the one
computed in memory, and a record of another schema version is refused."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from superfactory.domain.events import EventKind
from superfactory.observe.fold import FOLDED_KEYS
from superfactory.observe.summary import summarize, summary_from_events
from superfactory.observe.tables import read_events, write_tables
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def _scenario() -> str:
    # failures, checkpoints, preemption by priority, two factories and a partition: most event kinds occur
    return scenario(
        [factory("a", nodes=16), factory("b", nodes=16, market="ERCOT")],
        [job(f"j{i}", gpus=64, work=f"{10 + 4 * i}h", submit=f"{i * 2}h", priority=i % 3, preemptible=True,
             checkpoint={"interval": "30min", "blocking": "20s", "size": "1TB", "write_bandwidth": "400Gbps"})
         for i in range(8)],
        duration="4d", failures={"rate_scale": 30.0},
        links=[{"a": "a", "b": "b", "bandwidth": "400Gbps", "latency": "10ms"}],
    )


@pytest.mark.parametrize("policy", ["gang", "geo"])
def test_summary_from_reloaded_events_equals_the_in_memory_one(policy: str, tmp_path: Path) -> None:
    sc = parse_scenario(_scenario())
    res = run_twin(sc, policy=policy)
    assert any(e.kind is EventKind.JOB_INTERRUPTED for e in res.events)  # the record has failures to fold
    write_tables(res, tmp_path)
    events = read_events(tmp_path / "events.parquet")
    assert events == list(res.events)
    in_memory = summarize(res)
    reloaded = summary_from_events(events, sc)
    assert {k: in_memory[k] for k in FOLDED_KEYS} == reloaded
    # and the fold agrees with the twin's own per-job bookkeeping
    assert reloaded["interruptions"] == sum(j.interruptions for j in res.jobs)
    assert reloaded["training_throughput"] == pytest.approx(sum(j.progress_s * j.job.gpus for j in res.jobs) / 3600)
    lost = sum((j.lost_work_s + j.recovery_s) * j.job.gpus for j in res.jobs) / 3600
    assert reloaded["gpu_hours_lost_to_failures"] == pytest.approx(lost)
    assert reloaded["energy_mwh"] == pytest.approx(sum(h.facility_energy_mwh for h in res.hours))


def test_a_record_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    res = run_twin(parse_scenario(_scenario()), policy="greedy")
    write_tables(res, tmp_path)
    path = tmp_path / "events.parquet"
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({b"superfactory.event_schema": b"1"}), path)
    with pytest.raises(ValueError, match="event schema 1"):
        read_events(path)
