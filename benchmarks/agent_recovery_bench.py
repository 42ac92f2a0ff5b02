"""Recovery time per fault kind on a local fleet (control plane + 3 agents + the example job, real processes).

For each fault kind (see ``superfactory.agent.drills``) one job of 60 steps (a checkpoint every 10) runs, the
fault is injected in the middle of an interval, and the job runs to the end. Reported per kind:

* ``downtime_s`` — failure → training again: the longest gap between two consecutive training steps of any
  incarnation after the fault (includes detection, requeue, placement, process start, restore);
* ``new_proc_s`` — fault → first step of a process started after the fault (heartbeat loss: the cut →
  training at another site; "-" when the job never needed a new process);
* ``lost_steps`` — steps trained before the fault that had to be trained again;
* whether the final state equals a failure-free run's bit for bit.

Timeouts are the local fleet's defaults (``FleetOptions``: lost after 30 s, suspect after 10 s, heartbeat 1 s,
hang 60 s) unless ``--lost-after-s`` / ``--hang-s`` say otherwise. Goals (issue 14): < 30 s for job-process and
node faults; ≈ lost timeout + 30 s for agent loss (heartbeat). Usage::

    .venv/bin/python benchmarks/agent_recovery_bench.py [--kinds job,node,...] [--lost-after-s 30] [--hang-s 60]

Job processes are forked from each agent's zygote (torch already imported, :mod:`superfactory.agent.zygote`);
``--cold`` starts them the old way (exec + import torch: seconds, and most of a recovery on a loaded machine).
Writes ``benchmarks/results/agent_recovery.json``. Timings depend on the machine's load; the script asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from superfactory.agent.drills import DRILL_JOB, FAULT_KINDS, long_job, reference_run, run_drill
from superfactory.agent.fleet import FleetOptions, LocalFleet

GOALS = {"job": "< 30 s", "node": "< 30 s", "hang": "hang_s + < 30 s", "heartbeat": "≈ lost + 30 s",
         "agent": "job keeps running", "server": "job keeps running", "drain": "planned, 0 lost steps"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(FAULT_KINDS))
    ap.add_argument("--lost-after-s", type=float, default=FleetOptions.lost_after_s)
    ap.add_argument("--hang-s", type=float, default=FleetOptions.hang_s)
    ap.add_argument("--cold", action="store_true", help="start job processes cold (exec + import torch), not "
                    "forked from the agents' zygotes")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "agent_recovery.json")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    opts = FleetOptions(port=_port(), lost_after_s=args.lost_after_s, suspect_after_s=min(10.0, args.lost_after_s / 3),
                        hang_s=args.hang_s, startup_s=300.0, mesh_fsync=True, warm_start=not args.cold)
    results = []
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        fleet = LocalFleet(Path(tmp), opts)
        try:
            fleet.up(demo_jobs=False)
            fleet.wait_warm()
            t0 = time.time()
            references = {DRILL_JOB["id"]: reference_run(fleet, DRILL_JOB)}
            reference_wall_s = time.time() - t0
            for kind in kinds:
                # cut off, the job must still be training when its lease runs out: a longer job
                spec = long_job(opts.lost_after_s) if kind == "heartbeat" else DRILL_JOB
                if spec["id"] not in references:
                    references[spec["id"]] = reference_run(fleet, spec)
                r = run_drill(fleet, kind, spec)
                results.append({**r.to_dict(), "bit_identical": r.digest == references[spec["id"]]})
                print(f"  {kind}: downtime {r.downtime_s:.1f} s, {r.state}", file=sys.stderr, flush=True)
        finally:
            left = fleet.down()
    print(f"agent recovery benchmark — local fleet, {os.cpu_count()} cores, lost timeout {opts.lost_after_s:g} s, "
          f"hang timeout {opts.hang_s:g} s, heartbeat {opts.heartbeat_interval_s:g} s; job starts "
          f"{'cold' if args.cold else 'warm (zygote)'}; load {os.getloadavg()[0]:.1f}; failure-free run "
          f"{reference_wall_s:.1f} s wall")
    print(f"{'fault':<10} {'downtime_s':>10} {'new_proc_s':>10} {'lost_steps':>10} {'fault@':>6} {'resumed@':>8} "
          f"{'sites':<20} {'bit-exact':>9}  goal")
    for r in results:
        new = "-" if r["new_incarnation_s"] is None else f"{r['new_incarnation_s']:.2f}"
        print(f"{r['kind']:<10} {r['downtime_s']:>10.2f} {new:>10} {r['lost_steps']:>10} {r['fault_step']:>6} "
              f"{r['resumed_step']!s:>8} {'+'.join(r['sites']):<20} {r['bit_identical']!s:>9}  {GOALS[r['kind']]}")
    for r in results:
        print(f"recovery_s_{r['kind']}={r['downtime_s']}")
    print(f"all_bit_identical={all(r['bit_identical'] for r in results)}")
    print(f"processes_left_after_down={len(left)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"options": opts.__dict__, "load": os.getloadavg()[0],
                                    "reference_wall_s": reference_wall_s, "results": results,
                                    "processes_left": left}, indent=1))


if __name__ == "__main__":
    main()
