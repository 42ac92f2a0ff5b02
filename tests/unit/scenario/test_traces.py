"""Trace and RTT loaders, and the 24-hour demand model, on the real public files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from superfactory.errors import ScenarioError
from superfactory.scenario.loader import parse_scenario
from superfactory.scenario.traces import (
    INTRA_REGION_RTT_MS,
    load_azure_trace,
    load_mooncake_trace,
    load_rtt_matrix,
    load_trace,
    resolve,
    rtt_ms,
    tile_day,
)


def test_azure_conv_trace_loads_with_published_counts(shared_data: Path) -> None:
    tr = load_azure_trace(shared_data / "azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv")
    assert tr.arrival_s.size == 19_366  # SOURCES.md
    assert 3_400 < tr.span_s < 3_600  # one hour
    assert np.all(np.diff(tr.arrival_s) >= 0)
    assert np.median(tr.prompt_tokens) == pytest.approx(1020, abs=5)
    assert tr.cached_tokens.sum() == 0  # no prefix ids in the Azure format


def test_mooncake_prefix_cache_counts_shared_leading_blocks(shared_data: Path) -> None:
    tr = load_mooncake_trace(shared_data / "mooncake-fast25/conversation_trace.jsonl")
    assert tr.arrival_s.size == 12_031
    hit = tr.cached_tokens.sum() / tr.prompt_tokens.sum()
    assert 0.30 < hit < 0.45  # the conversation trace reuses about a third of its prompt tokens
    assert np.all(tr.prefill_tokens >= 0) and np.all(tr.cached_tokens <= tr.prompt_tokens)
    assert tr.cached_tokens[0] == 0  # nothing is cached before the first request


def test_tile_day_keeps_the_mean_rate_and_shifts_the_peak_by_time_zone(shared_data: Path) -> None:
    tr = load_trace("azure-conv")
    base_rps = tr.arrival_s.size / tr.span_s
    utc = tile_day(tr, 100, 0.0, seed=1)
    tokyo = tile_day(tr, 100, 9.0, seed=1)
    assert utc.rate_rps.mean() == pytest.approx(100 * base_rps, rel=0.03)
    assert np.argmax(utc.rate_rps) // 60 in (13, 14, 15)  # busiest early afternoon, local time
    assert np.argmax(tokyo.rate_rps) // 60 in (4, 5, 6)  # 14:00 in Tokyo is 05:00 UTC
    assert utc.rate_rps.max() / utc.rate_rps.min() > 2  # the diurnal envelope
    np.testing.assert_array_equal(utc.rate_rps, tile_day(tr, 100, 0.0, seed=1).rate_rps)  # deterministic
    # superposed independent copies smooth minute-to-minute noise (relative to the trace's own minutes)
    one = np.bincount((tr.arrival_s // 60).astype(int))[:-1]
    assert np.std(np.diff(utc.rate_rps)) / utc.rate_rps.mean() < np.std(np.diff(one)) / one.mean() / 3


def test_rtt_matrix_is_measured_symmetric_and_metro_within_a_region(shared_data: Path) -> None:
    m = load_rtt_matrix(shared_data / "skyplane/latency.csv")
    assert rtt_ms(m, "aws:us-east-1", "azure:eastus") == pytest.approx(1.9, abs=0.1)
    # both directions were measured (they differ by a few percent); a one-way pair takes the other direction
    there = rtt_ms(m, "aws:us-east-1", "azure:eastus")
    assert rtt_ms(m, "azure:eastus", "aws:us-east-1") == pytest.approx(there, rel=0.1)
    assert 140 < rtt_ms(m, "aws:us-east-1", "azure:japaneast") < 180
    assert rtt_ms(m, "aws:eu-west-1", "aws:eu-west-1") == INTRA_REGION_RTT_MS
    with pytest.raises(KeyError):
        rtt_ms(m, "aws:us-east-1", "mars:olympus-1")


def test_missing_trace_is_a_clear_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="trace file not found"):
        resolve("no-such-trace.csv", tmp_path)
    bad = tmp_path / "t.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ScenarioError, match="missing column"):
        load_azure_trace(bad)


def test_scenario_with_missing_trace_names_the_field(shared_data: Path, tmp_path: Path) -> None:
    text = """
name: t
duration: 1h
factories:
  - {id: f, region: r, market: PJM, cloud_region: "azure:eastus", power_cap: 5MW, cooling_capacity: 5MW,
     systems: [{system: dgx-b200, nodes: 4}]}
pops: [{id: p, cloud_region: "aws:us-east-1"}]
services:
  - {id: s, model: llama-70b, weights: 141GB, accelerator: B200, gpus_per_replica: 8, slo_p99_ms: 150,
     pops: [p, q], trace: missing.csv}
"""
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "t.yaml", base_dir=tmp_path)
    msg = str(e.value)
    assert "services[0].trace" in msg and "missing.csv" in msg
    assert "services[0].pops[1]" in msg and "unknown PoP 'q'" in msg
