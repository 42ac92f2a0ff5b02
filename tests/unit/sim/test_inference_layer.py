"""The twin's inference layer: reserved nodes stay consistent with training, preemption hands nodes over,
failed replicas are replaced, and P99 responds to load."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

SMALL = """
name: small-inference
duration: 4h
seed: 5
factories:
  - {{id: f, region: r, market: PJM, cloud_region: "azure:eastus", power_cap: 5MW, cooling_capacity: 5MW,
     systems: [{{system: dgx-b200, nodes: 32}}]}}
pops: [{{id: p, cloud_region: "aws:us-east-1", timezone_offset_h: 8}}]  # 08:00-12:00 local: rising
services:
  - {{id: s, model: llama-70b, weights: 141GB, accelerator: B200, gpus_per_replica: 8, slo_p99_ms: 150,
     pops: [p], trace: azure-conv, trace_scale: {scale}, weights_at: [f]}}
inference: {{headroom: {headroom}}}
jobs:
  - {{id: big, accelerator: B200, gpus: 128, work: 2d}}
  - {{id: small, accelerator: B200, gpus: 32, work: 2d, priority: -1}}
failures: {{rate_scale: {failures}}}
"""


def _scenario(scale: float = 60, headroom: float = 1.3, failures: float = 0.0):  # type: ignore[no-untyped-def]
    return parse_scenario(SMALL.format(scale=scale, headroom=headroom, failures=failures), "small.yaml")


def test_inference_preempts_training_and_keeps_fleet_invariants(shared_data: Path) -> None:
    r = run_twin(_scenario(), check_invariants=True)
    inf = r.inference
    assert inf is not None
    # ~7 Erlangs x 1.3 at 08:00 local (10 replicas) rising to ~13 replicas by noon; training holds 20 of the
    # 22 nodes left, so inference must preempt
    assert inf.preemptions >= 1
    preempted = {j.job.id for j in r.jobs if j.preemptions}
    assert "small" in preempted  # the lowest priority goes first
    assert inf.slo_attainment > 0.97
    assert 0 < inf.idle_share < 0.5


def test_failed_replica_nodes_are_replaced(shared_data: Path) -> None:
    r = run_twin(_scenario(failures=400.0), check_invariants=True)
    inf = r.inference
    assert inf is not None
    assert inf.replica_failures >= 1
    assert inf.slo_attainment > 0.9


def test_p99_responds_to_load(shared_data: Path) -> None:
    # the same demand on fewer replicas (less headroom) runs hotter: longer queues, higher P99
    p99 = []
    idle = []
    for h in (1.0, 1.2, 1.6):
        inf = run_twin(_scenario(scale=60, headroom=h)).inference
        assert inf is not None
        p99.append(float(np.median(inf.p99_ms[("s", "p")])))
        idle.append(inf.idle_share)
    assert p99[0] > p99[1] > p99[2]
    assert idle[0] < idle[1] < idle[2]


def test_same_seed_same_inference_results(shared_data: Path) -> None:
    a = run_twin(_scenario()).inference
    b = run_twin(_scenario()).inference
    assert a is not None and b is not None
    assert a.summary() == b.summary()
