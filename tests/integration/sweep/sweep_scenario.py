"""A scenario small enough for sweep tests (~0.2 s a run): two DGX H100 sites, two days of synthetic jobs."""

from __future__ import annotations

from pathlib import Path

SMALL = """\
name: sweep-small
description: two small factories, two days of synthetic training jobs (sweep tests)
seed: 3
duration: 2d
policy: greedy
factories:
  - {id: dallas, region: us-south, market: ERCOT, power_cap: 40MW, cooling_capacity: 38MW, pue: 1.2,
     systems: [{system: dgx-h100, nodes: 120}]}
  - {id: ashburn, region: us-east, market: PJM, power_cap: 40MW, cooling_capacity: 38MW, pue: 1.25,
     systems: [{system: dgx-h100, nodes: 120}]}
links:
  - {a: dallas, b: ashburn, bandwidth: 1.6Tbps, latency: 30ms}
workload:
  kind: mixed-training
  load: 0.8
  backlog: 0.5
  median_duration: 12h
  min_duration: 2h
  max_duration: 2d
  sizes:
    - {gpus: 64, weight: 2}
    - {gpus: 256, weight: 1}
failures:
  table: llama3-405b
  rate_scale: 4.0
"""


def write_small(folder: Path, name: str = "small.yaml", text: str = SMALL) -> Path:
    """Write the small scenario into ``folder`` and return its path."""
    path = folder / name
    path.write_text(text)
    return path
