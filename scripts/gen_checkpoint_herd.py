"""Generate the built-in ``checkpoint-herd`` scenario (issue 16): 12 factories, aligned 15-minute checkpoint
barriers, every checkpoint replicated to 3 regions over shared links that also carry inference traffic.

Usage: .venv/bin/python scripts/gen_checkpoint_herd.py [--out src/superfactory/scenario/builtin/checkpoint-herd.yaml]

Contract: deterministic (seed 0); needs ``../shared/data/skyplane/latency.csv`` (measured inter-region RTTs) and
exits 2 with a message when it is absent. The document is :func:`superfactory.scenario.fabric.
checkpoint_herd_scenario`; the written file is self-contained (links and latencies are baked in).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from superfactory.scenario.fabric import checkpoint_herd_scenario, region_fabric

OUT = Path(__file__).resolve().parents[1] / "src" / "superfactory" / "scenario" / "builtin" / "checkpoint-herd.yaml"

HEADER = """\
# checkpoint-herd (issue 16; written by scripts/gen_checkpoint_herd.py, do not edit by hand): 12 factories on
# measured cloud regions (skyplane RTTs); each links to its 4-5 nearest by RTT at 400 Gb/s (4-9 links a site).
# Three hot sites run 10 jobs (one also a 1 TB-checkpoint job), the rest 2. Every job starts at t=0 on its home
# factory, so all checkpoint barriers are aligned (every 15 minutes), and each checkpoint (0.75 / 2 / 4.5 TB) goes
# to the 3 nearest lawful regions within 8 minutes (the durability SLO; the next barrier at the latest).
# Inference takes 30 % of every link. One job carries EU personal data with a single other cleared factory:
# reduced durability, reported. The wan block runs the deadline-aware planner with barrier jitter; compare
#   python benchmarks/wan_bench.py   (planner vs naive vs overlay on this scenario)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if "synthetic" in region_fabric(12, 0).source:
        print("needs ../shared/data/skyplane/latency.csv (the measured RTT matrix)", file=sys.stderr)
        sys.exit(2)
    doc = checkpoint_herd_scenario()
    args.out.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, width=120, default_flow_style=None))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
