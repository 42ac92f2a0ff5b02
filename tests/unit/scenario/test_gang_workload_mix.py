"""The saturated gang scenarios' size mixes are recomputed from AcmeTrace's published cluster statistics:
``nvl72-saturated`` from Kalos, ``nvl72-saturated-seren`` from Seren."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from superfactory.scenario.loader import builtin_text


def _exponent(avg_gpus: float, max_gpus: float) -> float:
    """a such that sizes 2^k, k = 0..log2(max), with P ~ 2^(-a k) have mean ``avg_gpus`` (bisection)."""
    ks = np.arange(int(np.log2(max_gpus)) + 1)

    def mean(a: float) -> float:
        w = 2.0 ** (-a * ks)
        return float((w * 2.0**ks).sum() / w.sum())

    lo, hi = 0.01, 5.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean(mid) > avg_gpus else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize(("cluster", "scenario", "exponent"), [
    ("Kalos", "nvl72-saturated", 0.5455),
    ("Seren", "nvl72-saturated-seren", 0.9887),
])
def test_size_weights_follow_acme(shared_data: Path, cluster: str, scenario: str, exponent: float) -> None:
    with (shared_data / "acme-nsdi24" / "cluster_summary.csv").open(newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["id"] == cluster)
    a = _exponent(float(row["avg_gpu_num"]), float(row["max_gpu"]))
    assert abs(a - exponent) < 1e-3
    sizes = yaml.safe_load(builtin_text(scenario))["workload"]["sizes"]
    gpus = np.array([s["gpus"] for s in sizes])
    assert gpus.min() == 8 and gpus.max() == 4096
    expect = 2.0 ** (-a * np.log2(gpus))
    expect /= expect.sum()
    got = np.array([s["weight"] for s in sizes])
    assert np.allclose(got / got.sum(), expect, atol=2e-4)
