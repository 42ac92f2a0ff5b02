"""The twin writer's checkpoint-mesh and throughput series on explicit events: tokens/s from FLOP/s and the model
size the checkpoint implies, the quorum wait of checkpoint writes (to the commit, or to ``CheckpointDurable`` when
the run models its WAN), and the sync queue per link from ``CheckpointSyncQueueDepth`` (both directions summed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from superfactory.domain.events import Event, EventKind
from superfactory.observe.openmetrics import (
    CHECKPOINT_BYTES_PER_PARAM,
    FLOP_PER_PARAM_PER_TOKEN,
    TwinMetricsFold,
    _grid_values,
)
from superfactory.scenario.loader import load_scenario
from superfactory.scenario.model import Scenario

DEMO = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "metrics-demo.yaml"


@pytest.fixture(scope="module")
def sc() -> Scenario:
    """The demo's scenario, its first job given a slow checkpoint writer (10 Gb/s: a write of tens of seconds)."""
    demo = load_scenario(str(DEMO))
    first = demo.jobs[0]
    slow = replace(first, checkpoint=replace(first.checkpoint, write_bandwidth_gbps=10.0))
    assert slow.checkpoint.async_write_s >= 20
    return replace(demo, jobs=(slow, *demo.jobs[1:]))


def _at(fold: TwinMetricsFold, name: str, t: list[int], **labels: str) -> list[float]:
    (s,) = [s for (n, lb), s in fold.series.items()
            if n == name and all(dict(lb).get(k) == v for k, v in labels.items())]
    return [float(x) for x in _grid_values(s, np.asarray(t, dtype=np.int64))]


def _running(sc: Scenario) -> tuple[TwinMetricsFold, str, int]:
    job = sc.jobs[0]
    fold = TwinMetricsFold(sc)
    for e in (Event(0, EventKind.JOB_SUBMITTED, job.id, value=job.gpus),
              Event(10, EventKind.JOB_PLACED, job.id, "texas", value=job.gpus),
              Event(100, EventKind.JOB_RUNNING, job.id, "texas", value=0.0)):
        fold.apply(e)
    ck = job.checkpoint
    return fold, job.id, ck.async_write_s if ck.async_write_s > 0 else ck.blocking_s  # how long its write takes


def test_tokens_per_second_follow_effective_flops_and_model_size(sc: Scenario) -> None:
    fold, jid, _ = _running(sc)
    job = sc.jobs[0]
    ck = job.checkpoint
    snap = ck.blocking_s + ck.async_write_s
    fold.apply(Event(1100 + snap, EventKind.CHECKPOINT_COMMITTED, jid, "texas", value=900.0))  # 90 % rate
    fold.finish()
    t = [1100 + snap]
    params = job.checkpoint.size_bytes / CHECKPOINT_BYTES_PER_PARAM
    flops = _at(fold, "superfactory_job_flop_per_second", t, job_id=jid)[0]
    assert flops == pytest.approx(0.9 * job.flop_per_s)
    assert _at(fold, "superfactory_job_tokens_per_second", t, job_id=jid)[0] == pytest.approx(
        flops / (FLOP_PER_PARAM_PER_TOKEN * params))
    assert 1e3 < flops / (FLOP_PER_PARAM_PER_TOKEN * params) < 1e8  # a plausible tokens/s for a cluster job


def test_quorum_wait_rises_during_a_write_and_drops_at_the_commit(sc: Scenario) -> None:
    fold, jid, write_s = _running(sc)
    commit = 2000
    fold.apply(Event(commit, EventKind.CHECKPOINT_COMMITTED, jid, "texas", value=1000.0))
    fold.finish()
    start = commit - write_s
    got = _at(fold, "superfactory_checkpoint_quorum_wait_seconds", [start - 10, start + 5, commit - 1, commit + 1],
              factory="texas")
    assert got == pytest.approx([0.0, 5.0, write_s - 1, 0.0])
    assert _at(fold, "superfactory_checkpoint_quorum_wait_seconds", [start + 5], factory="atlanta") == [0.0]
    assert not [n for n, _ in fold.series if n == "superfactory_checkpoint_sync_queue_depth"]  # no WAN modelled


def test_with_a_modelled_wan_quorum_waits_for_durability_and_the_queue_sums_directions(sc: Scenario) -> None:
    fold, jid, write_s = _running(sc)
    fold.apply(Event(2000, EventKind.CHECKPOINT_SYNC_QUEUE_DEPTH, "", "atlanta-texas", cause="texas->atlanta",
                     value=3))
    fold.apply(Event(2000, EventKind.CHECKPOINT_COMMITTED, jid, "texas", value=1000.0))
    fold.apply(Event(2100, EventKind.CHECKPOINT_SYNC_QUEUE_DEPTH, "", "atlanta-texas", cause="atlanta->texas",
                     value=4))
    fold.apply(Event(2300, EventKind.CHECKPOINT_SYNC_QUEUE_DEPTH, "", "atlanta-texas", cause="texas->atlanta",
                     value=0))
    fold.apply(Event(2400, EventKind.CHECKPOINT_DURABLE, jid, "texas", value=1000.0))
    fold.finish()
    queue = _at(fold, "superfactory_checkpoint_sync_queue_depth", [0, 2050, 2200, 2350], link="atlanta-texas")
    assert queue == [0.0, 3.0, 7.0, 4.0]
    assert _at(fold, "superfactory_checkpoint_sync_queue_depth", [2200], link="texas-wisconsin") == [0.0]
    start = 2000 - write_s
    wait = _at(fold, "superfactory_checkpoint_quorum_wait_seconds", [2200, 2399, 2401], factory="texas")
    assert wait == pytest.approx([2200 - start, 2399 - start, 0.0])  # durable at 2400, not at the commit


def test_with_a_modelled_wan_an_interruption_or_a_newer_commit_ends_the_wait(sc: Scenario) -> None:
    fold, jid, write_s = _running(sc)
    fold.apply(Event(2000, EventKind.CHECKPOINT_COMMITTED, jid, "texas", value=1000.0))
    fold.apply(Event(3200, EventKind.CHECKPOINT_COMMITTED, jid, "texas", value=2100.0))  # supersedes the first
    fold.apply(Event(3500, EventKind.JOB_INTERRUPTED, jid, "texas", cause="Faulty GPU", value=300.0))
    fold.apply(Event(3500, EventKind.CHECKPOINT_DURABLE, sc.jobs[1].id, "atlanta", value=5.0))  # a modelled WAN
    fold.finish()
    first, second = 2000 - write_s, 3200 - write_s
    wait = _at(fold, "superfactory_checkpoint_quorum_wait_seconds", [3100, 3300, 3499, 3501], factory="texas")
    assert wait == pytest.approx([3100 - first, 3300 - second, 3499 - second, 0.0])
    assert _at(fold, "superfactory_interruptions_total", [3600], factory="texas", cause="Faulty GPU") == [1.0]
