"""Twin fidelity, live: calibrate the twin's recovery parameters on one scripted live failure sequence, then
predict the ETTR of a *different* sequence and compare with the ETTR measured live.

Live: a local fleet (control plane + 3 agents, real job processes, keys from the control plane). A job of
``--steps`` steps (0.1 productive s each, a checkpoint every 10 steps) runs twice under a scripted sequence of
job-process kills (SIGKILL, ``superfactory chaos kill-job``) at fixed seconds after submission:

* sequence A (calibration): kills at ``--seq-a`` (default 25 s);
* sequence B (prediction): kills at ``--seq-b`` (default 20 s and 50 s).

From A's progress files and the control plane's event history the benchmark measures the step time, the
checkpoint's blocking time, ``detect_s`` (kill -> the control plane requeues the job) and ``restart_s`` (placement
or requeue -> the first training step of the new process; the twin charges it at the first start too). Those
become the twin's job: work = steps × step time, checkpoint interval = 10 steps + blocking, RecoverySpec
(detect_s, restart_s). The twin (``run_twin``, one factory, no random failures) then replays each sequence as
scripted ``factory_outage`` events of 1 s at the same times (a whole-site outage that ends before detection is a
job failure to the twin). Twin time is the live time × ``SCALE`` so the twin's whole seconds resolve 10 ms.

ETTR = productive time (steps × step time) / (completion − submission), identical on both sides. The in-sample
error on A checks the calibration; the out-of-sample error on B is the figure (goal: within 10 %).
Writes benchmarks/results/twin_fidelity.json. A few minutes of wall time (each process imports torch).
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


def run_live(fleet: LocalFleet, steps: int, kills_s: list[float], label: str) -> dict[str, Any]:
    """Run the job under the scripted kills; the timeline the benchmark needs."""
    spec = {"id": "fidelity", "accelerator": "H100-SXM", "gpus": 8, "work": f"{steps * SECONDS_PER_STEP:g}s",
            "checkpoint": {"interval": f"{INTERVAL_STEPS * SECONDS_PER_STEP:g}s", "blocking": "0s", "size": "1MB"}}
    t_submit = time.time()
    job_id = fleet.submit(spec, key=f"fidelity-{label}-{uuid.uuid4().hex[:8]}")
    faults = []
    for at in kills_s:
        while time.time() < t_submit + at:
            time.sleep(0.02)
        job = fleet.job(job_id)
        if job["state"] != "running":
            raise SystemExit(f"sequence {label}: the job is {job['state']} at +{at:g} s, not training; lengthen "
                             f"the gaps between kills (--seq-{label.lower()})")
        faults.append(time.time())
        chaos.kill_job(fleet, job_id)
        print(f"  {label}: killed job {job_id} at +{faults[-1] - t_submit:.2f} s", file=sys.stderr, flush=True)
    end = wait_job(fleet, job_id, lambda j: j["state"] in TERMINAL, 600, "the end")
    recs = progress_records(fleet, job_id)
    done = [r for r in recs if r["kind"] == "completed"]
    if end["state"] != "succeeded" or not done:
        raise SystemExit(f"sequence {label}: the job ended {end['state']}")
    return {"job_id": job_id, "t_submit": t_submit, "faults": faults, "t_done": done[-1]["t_unix_s"],
            "records": recs, "events": _events(fleet, job_id)}


def calibrate(live: dict[str, Any]) -> dict[str, float]:
    """Step time, checkpoint blocking, detect_s and restart_s measured on one live sequence."""
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
    restart.append(min(first.values()) - live["t_submit"])  # the first start: the twin charges restart_s too
    return {"step_s": step_s, "blocking_s": blocking_s, "detect_s": statistics.mean(detect),
            "restart_s": statistics.mean(restart), "starts_s": restart}


def _dur(s: float) -> str:
    return f"{max(0, round(s * SCALE))}s"


def twin_ettr(cal: dict[str, float], steps: int, kills_s: list[float]) -> tuple[float, float]:
    """(ETTR, completion s after submission) the twin predicts for the job under ``kills_s``."""
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seq-a", default="25", help="calibration kills, seconds after submission, comma-separated")
    ap.add_argument("--seq-b", default="20,50", help="predicted sequence's kills")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "twin_fidelity.json")
    args = ap.parse_args()
    seq_a = [float(x) for x in args.seq_a.split(",") if x]
    seq_b = [float(x) for x in args.seq_b.split(",") if x]
    opts = FleetOptions(port=_port(), mesh_fsync=True)
    with tempfile.TemporaryDirectory(prefix="twin-fidelity-") as tmp:
        fleet = LocalFleet(Path(tmp), opts)
        try:
            fleet.up(demo_jobs=False)
            live_a = run_live(fleet, args.steps, seq_a, "A")
            live_b = run_live(fleet, args.steps, seq_b, "B")
        finally:
            left = fleet.down()
    cal = calibrate(live_a)
    work_s = args.steps * cal["step_s"]
    rows = []
    for label, seq, live in (("A (calibration)", seq_a, live_a), ("B (prediction)", seq_b, live_b)):
        live_span = live["t_done"] - live["t_submit"]
        pred, twin_span = twin_ettr(cal, args.steps, seq)
        ettr = work_s / live_span
        rows.append({"sequence": label, "kills_s": seq, "live_ettr": ettr, "twin_ettr_pred": pred,
                     "live_span_s": live_span, "twin_span_s": twin_span,
                     "fidelity_error": abs(pred - ettr) / ettr})
    print(f"twin fidelity, live — local fleet, {os.cpu_count()} cores; job {args.steps} steps, checkpoint every "
          f"{INTERVAL_STEPS}; calibrated on A: step {cal['step_s'] * 1000:.1f} ms, blocking "
          f"{cal['blocking_s'] * 1000:.0f} ms, detect_s {cal['detect_s']:.2f}, restart_s {cal['restart_s']:.2f}")
    print(f"{'sequence':<16} {'kills_s':<12} {'live_span_s':>11} {'twin_span_s':>11} {'live_ettr':>9} "
          f"{'twin_ettr':>9} {'error':>7}")
    for r in rows:
        print(f"{r['sequence']:<16} {','.join(f'{k:g}' for k in r['kills_s']):<12} {r['live_span_s']:>11.2f} "
              f"{r['twin_span_s']:>11.2f} {r['live_ettr']:>9.3f} {r['twin_ettr_pred']:>9.3f} "
              f"{r['fidelity_error']:>7.1%}")
    seen_b = calibrate(live_b)  # diagnostics only: what B measured (the prediction used A's figures)
    print(f"measured starts (first start last), A: {', '.join(f'{x:.2f}' for x in cal['starts_s'])} s; "
          f"B: {', '.join(f'{x:.2f}' for x in seen_b['starts_s'])} s; B step {seen_b['step_s'] * 1000:.1f} ms, "
          f"blocking {seen_b['blocking_s'] * 1000:.0f} ms, detect_s {seen_b['detect_s']:.2f}")
    b = rows[1]
    print(f"twin_ettr_pred={b['twin_ettr_pred']:.4f} live_ettr={b['live_ettr']:.4f} "
          f"fidelity_error={b['fidelity_error']:.4f} within_10pct={b['fidelity_error'] <= 0.10}")
    print(f"calibration_error={rows[0]['fidelity_error']:.4f} processes_left_after_down={len(left)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"calibration": cal, "measured_b": seen_b, "steps": args.steps, "scale": SCALE,
                                    "rows": rows, "processes_left": left}, indent=1))


if __name__ == "__main__":
    main()
