"""Twin fidelity, live: calibrate the twin's recovery parameters on one scripted live failure sequence, then
predict the ETTR of a *different* sequence and compare with the ETTR measured live.

Live: a local fleet (control plane + 3 agents, real job processes, keys from the control plane; job processes
forked warm from each agent's zygote unless ``--cold``). A job of ``--steps`` steps (0.1 productive s each, a
checkpoint every 10 steps) runs under a scripted sequence of job-process kills (SIGKILL, ``superfactory chaos
kill-job``), each at a given training step in the middle of a checkpoint interval:

* sequence A (calibration): kills at steps ``--seq-a`` (default 43, 127, 206: three events);
* sequence B (prediction): kills at steps ``--seq-b`` (default 25, 88, 164, 252: four other events).

From A alone (its progress files and the control plane's event history) the benchmark measures the step time,
the checkpoint's blocking time, ``detect_s`` (kill -> the control plane requeues the job; median over the kills)
and ``restart_s`` (placement or requeue -> the first training step of the new process; median over every start,
the first one included: the twin charges it at the first start too). Those become the twin's job: work =
steps x step time, checkpoint interval = 10 steps + blocking, RecoverySpec(detect_s, restart_s). The twin
(``run_twin``, one factory, no random failures) then replays each sequence as scripted ``factory_outage``
events of 1 s at the seconds after submission at which the live kills happened (a whole-site outage that ends
before detection is a job failure to the twin). Twin time is the live time x ``SCALE`` so the twin's whole
seconds resolve 10 ms.

ETTR = productive time (steps x step time) / (completion - submission), identical on both sides. The in-sample
error on A checks the calibration; the out-of-sample error on B is the figure (goal: within 10 %).
``--repeat N`` runs the A/B pair N times on the same fleet (each B predicted from its own A).
Writes benchmarks/results/twin_fidelity.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from superfactory.agent import chaos
from superfactory.agent.drills import TERMINAL, progress_records, wait_job
from superfactory.agent.fleet import FleetOptions, LocalFleet
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

SCALE = 100  # twin seconds per live second
INTERVAL_STEPS = 10
SECONDS_PER_STEP = 0.1


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(fleet: LocalFleet, job_id: int) -> list[dict[str, Any]]:
    ans = fleet.api("GET", f"/v1/jobs/{job_id}/events")
    evs = ans["events"] if isinstance(ans, dict) else ans
    return [{**e, "t": float(e.get("at_unix_s", e.get("at", 0.0)))} for e in evs]


def _wait_step(fleet: LocalFleet, job_id: int, step: int, dead: set[int], label: str) -> dict[str, Any]:
    """The first progress record at ``step`` or later of an incarnation not killed yet."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for r in reversed(progress_records(fleet, job_id)):
            if r["kind"] == "progress" and r["step"] >= step and int(r["fencing_token"]) not in dead:
                return r
        if fleet.job(job_id)["state"] in TERMINAL:
            raise SystemExit(f"sequence {label}: the job ended before step {step}")
        time.sleep(0.005)
    raise SystemExit(f"sequence {label}: step {step} not reached in 600 s")


def run_live(fleet: LocalFleet, steps: int, kill_steps: list[int], label: str) -> dict[str, Any]:
    """Run the job, killing its process when it reaches each of ``kill_steps``; the timeline the benchmark needs."""
    spec = {"id": "fidelity", "accelerator": "H100-SXM", "gpus": 8, "work": f"{steps * SECONDS_PER_STEP:g}s",
            "checkpoint": {"interval": f"{INTERVAL_STEPS * SECONDS_PER_STEP:g}s", "blocking": "0s", "size": "1MB"}}
    t_submit = time.time()
    job_id = fleet.submit(spec, key=f"fidelity-{label}-{uuid.uuid4().hex[:8]}")
    faults: list[float] = []
    dead: set[int] = set()
    for k in kill_steps:
        rec = _wait_step(fleet, job_id, k, dead, label)
        faults.append(time.time())
        killed = chaos.kill_job(fleet, job_id)
        dead.add(int(killed["fencing_token"]))
        print(f"  {label}: killed job {job_id} at step {rec['step']}, +{faults[-1] - t_submit:.2f} s",
              file=sys.stderr, flush=True)
    end = wait_job(fleet, job_id, lambda j: j["state"] in TERMINAL, 600, "the end")
    recs = progress_records(fleet, job_id)
    done = [r for r in recs if r["kind"] == "completed"]
    if end["state"] != "succeeded" or not done:
        raise SystemExit(f"sequence {label}: the job ended {end['state']}")
    return {"job_id": job_id, "t_submit": t_submit, "faults": faults, "t_done": done[-1]["t_unix_s"],
            "records": recs, "events": _events(fleet, job_id)}


def calibrate(live: dict[str, Any]) -> dict[str, Any]:
    """Step time, checkpoint blocking, detect_s and restart_s measured on one live sequence (medians over its
    events: one slow event does not set the parameter)."""
    recs, evs = live["records"], live["events"]
    by_token: dict[int, list[dict[str, Any]]] = {}
    for r in recs:
        by_token.setdefault(int(r["fencing_token"]), []).append(r)
    plain, ckpt = [], []
    for rs in by_token.values():
        prog = [r for r in rs if r["kind"] == "progress"]
        for a, b in itertools.pairwise(prog):
            if b["step"] != a["step"] + 1:
                continue
            (ckpt if a["step"] % INTERVAL_STEPS == 0 else plain).append(b["t_unix_s"] - a["t_unix_s"])
    step_s = statistics.median(plain)
    blocking_s = max(0.0, statistics.median(ckpt) - step_s) if ckpt else 0.0
    detect, restart = [], []
    first = {tok: min(r["t_unix_s"] for r in rs if r["kind"] == "progress")
             for tok, rs in by_token.items() if any(r["kind"] == "progress" for r in rs)}
    requeues = sorted(e["t"] for e in evs if e["kind"] == "requeued")
    for tf in live["faults"]:
        rq = min((t for t in requeues if t >= tf - 0.5), default=None)
        if rq is None:
            raise SystemExit("calibration: no requeue event after a kill; cannot measure detection")
        detect.append(max(0.0, rq - tf))
        restart.append(min(t for t in first.values() if t > rq) - rq)
    restart.insert(0, min(first.values()) - live["t_submit"])  # the first start: the twin charges restart_s too
    return {"step_s": step_s, "blocking_s": blocking_s, "detect_s": statistics.median(detect),
            "restart_s": statistics.median(restart), "starts_s": restart, "detects_s": detect}


def _dur(s: float) -> str:
    return f"{max(0, round(s * SCALE))}s"


def twin_ettr(cal: dict[str, Any], steps: int, kills_s: list[float]) -> tuple[float, float]:
    """(ETTR, completion s after submission) the twin predicts for the job with failures at ``kills_s``."""
    work_s = steps * cal["step_s"]
    interval_s = INTERVAL_STEPS * cal["step_s"] + cal["blocking_s"]
    doc = {
        "name": "twin-fidelity", "duration": _dur(10 * (work_s + 60 + 60 * len(kills_s))), "seed": 1,
        "failures": {"rate_scale": 0.0, "planned": False},
        "factories": [{"id": "site", "region": "us-south", "market": "ERCOT", "power_cap": "1MW",
                       "cooling_capacity": "1MW", "systems": [{"system": "dgx-h100", "nodes": 2}]}],
        "jobs": [{"id": "fidelity", "accelerator": "H100-SXM", "gpus": 8, "work": _dur(work_s),
                  "checkpoint": {"interval": _dur(interval_s), "blocking": _dur(cal["blocking_s"]), "size": "1MB",
                                 "write_bandwidth": "0Gbps"},
                  "recovery": {"detect": _dur(cal["detect_s"]), "restart": _dur(cal["restart_s"])}}],
        "events": [{"at": _dur(t), "kind": "factory_outage", "factory": "site", "duration": "1s"} for t in kills_s],
    }
    res = run_twin(parse_scenario(json.dumps(doc)), seed=1)
    jr = res.jobs[0]
    if jr.completed_s is None or jr.completed_s < 0:
        raise SystemExit("twin: the job did not complete within the horizon")
    span_s = (jr.completed_s - jr.job.submit_s) / SCALE
    return work_s / span_s, span_s


def _one_pair(fleet: LocalFleet, args: argparse.Namespace, seq_a: list[int], seq_b: list[int]) -> dict[str, Any]:
    live_a = run_live(fleet, args.steps, seq_a, "A")
    live_b = run_live(fleet, args.steps, seq_b, "B")
    cal = calibrate(live_a)
    seen_b = calibrate(live_b)  # diagnostics only: what B measured (the prediction uses A's figures)
    work_s = args.steps * cal["step_s"]
    rows = []
    for label, seq, live in (("A (calibration)", seq_a, live_a), ("B (prediction)", seq_b, live_b)):
        kills_s = [t - live["t_submit"] for t in live["faults"]]
        live_span = live["t_done"] - live["t_submit"]
        pred, twin_span = twin_ettr(cal, args.steps, kills_s)
        ettr = work_s / live_span
        rows.append({"sequence": label, "kill_steps": seq, "kills_s": [round(k, 3) for k in kills_s],
                     "live_ettr": ettr, "twin_ettr_pred": pred, "live_span_s": live_span, "twin_span_s": twin_span,
                     "fidelity_error": abs(pred - ettr) / ettr})
    return {"calibration": cal, "measured_b": seen_b, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seq-a", default="43,127,206", help="calibration kills: training steps, comma-separated")
    ap.add_argument("--seq-b", default="25,88,164,252", help="predicted sequence's kills (steps)")
    ap.add_argument("--repeat", type=int, default=2, help="A/B pairs to run (each B predicted from its A)")
    ap.add_argument("--cold", action="store_true", help="start job processes cold (exec + import torch)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "twin_fidelity.json")
    args = ap.parse_args()
    seq_a = [int(x) for x in args.seq_a.split(",") if x]
    seq_b = [int(x) for x in args.seq_b.split(",") if x]
    for seq in (seq_a, seq_b):
        if seq != sorted(set(seq)) or any(not 0 < k < args.steps or k % INTERVAL_STEPS == 0 for k in seq):
            raise SystemExit(f"kill steps must rise, lie inside 1..{args.steps - 1} and not on a checkpoint "
                             f"(multiple of {INTERVAL_STEPS}): {seq}")
    opts = FleetOptions(port=_port(), mesh_fsync=True, warm_start=not args.cold)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="twin-fidelity-") as tmp:
        fleet = LocalFleet(Path(tmp), opts)
        try:
            fleet.up(demo_jobs=False)
            fleet.wait_warm()
            pairs = [_one_pair(fleet, args, seq_a, seq_b) for _ in range(args.repeat)]
        finally:
            left = fleet.down()
    starts = "cold (exec + import torch)" if args.cold else "warm (forked from the agent's zygote)"
    print(f"twin fidelity, live — local fleet, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; job "
          f"{args.steps} steps, checkpoint every {INTERVAL_STEPS}; job starts {starts}; wall {time.time() - t0:.0f} s")
    print(f"{'pair':<4} {'sequence':<16} {'kill_steps':<16} {'live_span_s':>11} {'twin_span_s':>11} "
          f"{'live_ettr':>9} {'twin_ettr':>9} {'error':>7}")
    for i, p in enumerate(pairs, 1):
        for r in p["rows"]:
            print(f"{i:<4} {r['sequence']:<16} {','.join(map(str, r['kill_steps'])):<16} {r['live_span_s']:>11.2f} "
                  f"{r['twin_span_s']:>11.2f} {r['live_ettr']:>9.3f} {r['twin_ettr_pred']:>9.3f} "
                  f"{r['fidelity_error']:>7.1%}")
    for i, p in enumerate(pairs, 1):
        cal, b = p["calibration"], p["measured_b"]
        print(f"pair {i} calibrated on A: step {cal['step_s'] * 1000:.1f} ms, blocking {cal['blocking_s'] * 1000:.0f} "
              f"ms, detect_s {cal['detect_s']:.2f} (of {', '.join(f'{x:.2f}' for x in cal['detects_s'])}), restart_s "
              f"{cal['restart_s']:.2f} (of {', '.join(f'{x:.2f}' for x in cal['starts_s'])}, first start first); "
              f"B measured: step {b['step_s'] * 1000:.1f} ms, blocking {b['blocking_s'] * 1000:.0f} ms, detect_s "
              f"{b['detect_s']:.2f}, starts {', '.join(f'{x:.2f}' for x in b['starts_s'])}")
    errs = [p["rows"][1]["fidelity_error"] for p in pairs]
    cal_err = max(p["rows"][0]["fidelity_error"] for p in pairs)
    print(f"fidelity_error_max={max(errs):.4f} fidelity_errors={','.join(f'{e:.4f}' for e in errs)} "
          f"within_10pct={max(errs) <= 0.10} calibration_error_max={cal_err:.4f} "
          f"warm_start={not args.cold} processes_left_after_down={len(left)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"steps": args.steps, "scale": SCALE, "warm_start": not args.cold,
                                    "pairs": pairs, "processes_left": left}, indent=1))


if __name__ == "__main__":
    main()
