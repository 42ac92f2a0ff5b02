from __future__ import annotations

import csv
from pathlib import Path

import pytest

from superfactory.domain.reliability import LLAMA3_405B_TABLE, llama3_405b_model


def test_embedded_table_matches_published_csv(shared_data: Path) -> None:
    with (shared_data / "facts" / "llama3_405b_interruptions.csv").open() as fh:
        rows = [(r["component"], r["category"], int(r["interruption_count"])) for r in csv.DictReader(fh)]
    assert tuple(rows) == LLAMA3_405B_TABLE
    assert sum(r[2] for r in rows) == 419


def test_a_16k_gpu_h100_job_expects_419_interruptions_in_54_days() -> None:
    m = llama3_405b_model()
    mtbf_h = m.job_mtbf_h(16_384, gpus_per_node=8)
    assert 54 * 24 / mtbf_h == pytest.approx(419, rel=1e-9)
    assert m.planned_rate_per_gpu_hour * 16_384 * 54 * 24 == pytest.approx(47)


def test_rates_scale_with_gpus_and_gpu_causes_scale_per_gpu() -> None:
    m = llama3_405b_model()
    assert m.job_mtbf_h(1024, 8) == pytest.approx(16 * m.job_mtbf_h(16_384, 8))
    # A 4-GPU NVL72 tray carries half the GPU-fault rate of an 8-GPU node but the same host-fault rate.
    gpu = [c.per_gpu for c in m.causes]
    r8, r4 = m.node_rates_per_s(8), m.node_rates_per_s(4)
    for is_gpu, a, b in zip(gpu, r8, r4, strict=True):
        assert b == pytest.approx(a / 2 if is_gpu else a)


def test_scaled_model() -> None:
    m = llama3_405b_model()
    assert m.scaled(2.0).job_mtbf_h(8192, 8) == pytest.approx(m.job_mtbf_h(8192, 8) / 2)
