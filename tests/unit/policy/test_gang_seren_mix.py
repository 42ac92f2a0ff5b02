"""The nvl72-saturated-seren size mix is recomputed from AcmeTrace's published Seren statistics."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
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


def test_size_weights_follow_acme_seren(shared_data: Path) -> None:
    with (shared_data / "acme-nsdi24" / "cluster_summary.csv").open(newline="") as fh:
        seren = next(r for r in csv.DictReader(fh) if r["id"] == "Seren")
    a = _exponent(float(seren["avg_gpu_num"]), float(seren["max_gpu"]))
    assert abs(a - 0.9887) < 1e-3
    doc = yaml.safe_load(builtin_text("nvl72-saturated-seren"))
    gpus = np.array([s["gpus"] for s in doc["workload"]["sizes"]])
    assert gpus.min() == 8 and gpus.max() == 4096
    expect = 2.0 ** (-a * np.log2(gpus))
    expect /= expect.sum()
    got = np.array([s["weight"] for s in doc["workload"]["sizes"]])
    assert np.allclose(got / got.sum(), expect, atol=2e-4)
    # everything but the size mix is the Kalos-fitted scenario's
    kalos = yaml.safe_load(builtin_text("nvl72-saturated"))
    for key in ("factories", "defaults", "events", "failures", "duration", "seed"):
        assert doc[key] == kalos[key], key
