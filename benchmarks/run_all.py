"""Run every ``benchmarks/*_bench.py`` script, each in its own process (highspy and OR-tools must never share
a process), and print where each wrote its JSON. Pass-through: ``python benchmarks/run_all.py [NAME ...]``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    wanted = set(sys.argv[1:])
    failures = 0
    for script in sorted(here.glob("*_bench.py")):
        name = script.stem.removesuffix("_bench")
        if wanted and name not in wanted:
            continue
        print(f"== {name} ({script.name})", flush=True)
        rc = subprocess.call([sys.executable, str(script)])
        if rc != 0:
            print(f"!! {script.name} exited with {rc}", flush=True)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
