"""Fault drills on a local fleet: run a job, inject one fault in the middle of a checkpoint interval, watch it
recover, and measure. Used by the integration tests (which assert the outcome) and by
``benchmarks/agent_recovery_bench.py`` (which reports the times).

The job's own progress files are the clock: every incarnation appends a record per step with its wall time,
so **downtime** (failure → training again) is the longest gap between consecutive progress records of any
incarnation after the fault, and **lost steps** are the steps trained before the fault that had to be trained
again (resumed step < step at the fault); **new incarnation** is the time from the fault to the first step of
a process started after it (for heartbeat loss: cut → training at another site).

Fault kinds: ``job`` (SIGKILL the job), ``agent`` (SIGKILL its agent, restart it 1 s later), ``server`` (SIGKILL
the control plane, restart it 1 s later), ``heartbeat`` (cut the agent off the control plane past the lost
timeout, reconnect once the job trains elsewhere), ``node`` (fail the job's node, repair it afterwards),
``hang`` (SIGSTOP the job: alive, silent; the agent's hang detection kills it), and the planned ``drain`` of
its factory (a graceful stop: checkpoint, stop, resume elsewhere; uncordoned afterwards).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from superfactory.agent import chaos
from superfactory.agent.fleet import FleetError, LocalFleet

__all__ = ["DRILL_JOB", "FAULT_KINDS", "DrillResult", "completed_digest", "long_job", "progress_records", "run_drill",
           "wait_job"]

FAULT_KINDS = ("job", "agent", "server", "heartbeat", "node", "hang", "drain")

#: the drill job: 60 steps (0.1 productive s each at the fleet's default scale), a checkpoint every 10 steps
DRILL_JOB: dict[str, Any] = {"id": "bitexact", "accelerator": "H100-SXM", "gpus": 8, "work": "6s",
                             "checkpoint": {"interval": "1s", "blocking": "0s", "size": "1MB"}}


def long_job(lost_after_s: float) -> dict[str, Any]:
    """The drill job for heartbeat loss: it must still be training when its lease runs out (0.8 × the lost
    timeout after the cut), so it trains ``lost_after_s + 10`` productive seconds."""
    return {**DRILL_JOB, "id": "bitexact-long", "work": f"{round(lost_after_s + 10)}s"}
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class DrillResult:
    """What one drill measured."""

    kind: str
    job_id: int
    state: str
    fault_step: int
    resumed_step: int | None
    downtime_s: float
    lost_steps: int
    tokens: list[int] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    digest: str | None = None
    wall_s: float = 0.0
    stop_reasons: list[str] = field(default_factory=list)  # why an incarnation stopped itself (lease_expired)
    new_incarnation_s: float | None = None  # fault -> first step of an incarnation started after the fault

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def progress_records(fleet: LocalFleet, job_id: int) -> list[dict[str, Any]]:
    """Every record of every incarnation of ``job_id`` at every site, in time order (with ``site``)."""
    out = []
    for path in sorted(fleet.root.glob(f"agents/*/jobs/{job_id}/token-*/progress.jsonl")):
        site = path.parts[-5]
        for line in path.read_text().splitlines():
            try:
                out.append({**json.loads(line), "site": site})
            except ValueError:
                continue
    return sorted(out, key=lambda r: r["t_unix_s"])


def completed_digest(fleet: LocalFleet, job_id: int) -> str | None:
    """The final-state SHA-256 the job reported when it completed (None if it did not)."""
    done = [r for r in progress_records(fleet, job_id) if r["kind"] == "completed"]
    return str(done[-1]["state_sha256"]) if done else None


def wait_job(fleet: LocalFleet, job_id: int, pred: Any, timeout_s: float, what: str) -> dict[str, Any]:
    """Poll the job until ``pred(job)``; FleetError on timeout (or when it ended otherwise)."""
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            job = fleet.job(job_id)
        except FleetError:
            time.sleep(0.2)  # the control plane may be restarting
            continue
        if pred(job):
            return job
        if job["state"] in TERMINAL:
            break
        time.sleep(0.1)
    raise FleetError(f"job {job_id}: {what} did not happen within {timeout_s:g} s; last seen {job}")


def _wait_mid_interval(fleet: LocalFleet, job_id: int, interval: int, timeout_s: float) -> dict[str, Any]:
    """Wait for a progress record past the first checkpoint and in the middle of an interval."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        recs = [r for r in progress_records(fleet, job_id) if r["kind"] == "progress"]
        if recs and recs[-1]["step"] > interval and interval // 3 <= recs[-1]["step"] % interval <= 2 * interval // 3:
            return recs[-1]
        time.sleep(0.02)
    raise FleetError(f"job {job_id} did not reach the middle of a checkpoint interval within {timeout_s:g} s")


def run_drill(fleet: LocalFleet, kind: str, spec: dict[str, Any], interval_steps: int = 10,
              timeout_s: float = 240.0) -> DrillResult:
    """Submit ``spec`` (its ``id`` fixes the seed), inject fault ``kind`` mid-interval, wait for the end."""
    if kind not in FAULT_KINDS:
        raise FleetError(f"unknown fault kind {kind!r}; kinds: {', '.join(FAULT_KINDS)}")
    t0 = time.time()
    job_id = fleet.submit(spec, key=f"drill-{kind}-{uuid.uuid4().hex[:8]}")
    at = _wait_mid_interval(fleet, job_id, interval_steps, timeout_s)
    job = fleet.job(job_id)
    site, nodes = job["factory_id"], list(job["nodes"])
    t_fault = time.time()
    if kind == "job":
        chaos.kill_job(fleet, job_id)
    elif kind == "hang":
        chaos.hang_job(fleet, job_id)
    elif kind == "agent":
        chaos.kill_agent(fleet, site)
        time.sleep(1.0)
        fleet.start_agent(site)
    elif kind == "server":
        chaos.kill_server(fleet)
        time.sleep(1.0)
        fleet.start_server()
    elif kind == "heartbeat":
        chaos.partition_agent(fleet, site)
        wait_job(fleet, job_id, lambda j: j["state"] == "running" and j["factory_id"] != site, timeout_s,
                 "running at another site")
        chaos.partition_agent(fleet, site, heal=True)
    elif kind == "drain":
        fleet.api("POST", f"/v1/factories/{site}/drain")
        wait_job(fleet, job_id, lambda j: j["state"] == "running" and j["factory_id"] != site, timeout_s,
                 "running at another site")
        fleet.api("POST", f"/v1/factories/{site}/uncordon")
    elif kind == "node":
        chaos.fail_node(fleet, site, nodes[0])
        wait_job(fleet, job_id, lambda j: j["state"] == "running" and j["fencing_token"] != job["fencing_token"],
                 timeout_s, "running again")
        chaos.fail_node(fleet, site, nodes[0], repair=True)
    end = wait_job(fleet, job_id, lambda j: j["state"] in TERMINAL, timeout_s, "the end")
    recs = progress_records(fleet, job_id)
    steps = [r for r in recs if r["kind"] == "progress" and r["t_unix_s"] >= at["t_unix_s"]]
    gaps = [b["t_unix_s"] - a["t_unix_s"] for a, b in itertools.pairwise(steps)]
    starts = [r for r in recs if r["kind"] == "started" and r["t_unix_s"] > t_fault]
    resumed = int(starts[0]["step"]) if starts else None
    return DrillResult(
        kind=kind, job_id=job_id, state=end["state"], fault_step=int(at["step"]), resumed_step=resumed,
        downtime_s=round(max(gaps, default=0.0), 3),
        lost_steps=max(0, int(at["step"]) - resumed) if resumed is not None else 0,
        tokens=sorted({int(r["fencing_token"]) for r in recs}), sites=sorted({r["site"] for r in recs}),
        digest=completed_digest(fleet, job_id), wall_s=round(time.time() - t0, 3),
        stop_reasons=[str(r.get("reason")) for r in recs if r["kind"] == "stopping"],
        new_incarnation_s=_first_new_step(recs, job["fencing_token"], t_fault),
    )


def _first_new_step(recs: list[dict[str, Any]], token: int, t_fault: float) -> float | None:
    """Seconds from the fault to the first training step of an incarnation with another fencing token."""
    new = [r["t_unix_s"] for r in recs if r["kind"] == "progress" and r["fencing_token"] != token]
    return round(min(new) - t_fault, 3) if new else None


def start_reference(fleet: LocalFleet, spec: dict[str, Any]) -> int:
    """Submit a failure-free run of ``spec`` (it may run beside drills); its job id."""
    return fleet.submit(spec, key=f"reference-{uuid.uuid4().hex[:8]}")


def reference_run(fleet: LocalFleet, spec: dict[str, Any], timeout_s: float = 240.0,
                  job_id: int | None = None) -> str:
    """The final-state digest of a failure-free run of ``spec`` (submitted now, or ``job_id`` if given)."""
    job_id = start_reference(fleet, spec) if job_id is None else job_id
    end = wait_job(fleet, job_id, lambda j: j["state"] in TERMINAL, timeout_s, "the end")
    digest = completed_digest(fleet, job_id)
    if end["state"] != "succeeded" or digest is None:
        raise FleetError(f"the failure-free reference run ended {end['state']} (digest {digest})")
    return digest


__all__ += ["reference_run", "start_reference"]

