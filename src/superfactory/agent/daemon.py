"""The factory agent: one per site. Registers, heartbeats, runs what the control plane assigns, reports back.

One loop (:meth:`Agent.tick`, every ``timeouts.tick_s``) does, in this order:

1. **Lease.** Heartbeat every ``heartbeat_interval_s`` with the complete list of failed nodes. On
   ``stale_lease_epoch``/``lease_lost`` every local job is killed (the control plane has requeued them) and the
   agent registers again. The lease file that jobs watch is renewed to ``last ok heartbeat + 0.8 × lost
   timeout``: an agent that dies, hangs or is cut off stops renewing it, and its jobs checkpoint and exit
   *before* the control plane declares the site lost and places them elsewhere.
2. **Node health.** ``<state_dir>/down_nodes.json`` lists failed nodes (a health checker, or ``superfactory
   chaos fail-node``, writes it); a job on a failed node is killed at once (its node is gone) and reported
   failed, so it is requeued.
3. **Reconcile.** With the assignments: a local job that is no longer assigned here, or under a different
   fencing token, is **killed before anything is started** (its successor may be starting elsewhere); an
   assignment ``run`` without a local process starts one; ``stop`` sends SIGTERM (the job checkpoints) and
   SIGKILL after ``stop_grace_s``.
4. **Watch.** New progress records are forwarded: ``running`` with steps, productive seconds and tokens/s (at
   most every ``report_interval_s``), each committed checkpoint; a job silent for ``hang_s`` is killed as hung.
   A process that ended is reported ``succeeded``, ``stopped`` or ``failed`` (retryable).

Job processes start warm by default: the executor forks them from a zygote that imported torch once
(:mod:`superfactory.agent.zygote`), cold (``exec``) until it is ready.

Reports that must arrive (checkpoints, end states) wait in an outbox while the control plane is unreachable;
jobs keep running meanwhile. ``<state_dir>/agent.json`` records running incarnations so a restarted agent adopts
them instead of starting a second process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from superfactory.agent import meshwatch
from superfactory.agent.client import ControlPlane, ControlPlaneError, Unreachable
from superfactory.agent.config import AgentConfig
from superfactory.agent.executor import Executor, ProcessExecutor
from superfactory.agent.launch import JobPlan, LaunchError, plan_job, process_spec
from superfactory.agent.localjob import LocalJob
from superfactory.agent.runtime import ProgressReader, write_lease

__all__ = ["Agent"]

log = logging.getLogger("superfactory.agent")

SELF_FENCE_SHARE = 0.8  # jobs stop themselves after this share of the lost timeout without a renewed lease


class Agent:
    """A factory agent (see the module docstring). ``run`` loops until ``stop_event`` is set."""

    def __init__(self, cfg: AgentConfig, executor: Executor | None = None, client: ControlPlane | None = None) -> None:
        self.cfg = cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.executor = executor or ProcessExecutor(
            warm=cfg.job.warm_start, preload=tuple(cfg.job.preload) if cfg.job.preload is not None else None,
            zygote_log=cfg.state_dir / "zygote.log")
        self.client = client or ControlPlane(cfg.server, cfg.resolved_token(), timeout_s=cfg.timeouts.request_s,
                                             partition_flag=cfg.state_dir / "partitioned")
        self.jobs: dict[str, LocalJob] = {}
        self.outbox: list[tuple[str, str, dict[str, Any]]] = []  # (kind, job id, body), in order
        self.lease_epoch: int | None = None
        self.lease: dict[str, Any] = {"heartbeat_interval_s": 5.0, "lost_after_s": 300.0, "suspect_after_s": 30.0}
        self.last_heartbeat_ok = 0.0  # unix time of the last accepted heartbeat/register
        self.next_heartbeat = 0.0
        self.fetch_now = True
        self.down_nodes: list[int] = []
        self.attempts: dict[str, int] = {}
        self.factory_nodes: dict[int, int] = {}  # node index -> GPUs, when the config declares no nodes
        self.ended: set[tuple[str, int]] = set()  # incarnations that ended here: never started again
        self._adopt()

    # -- persistence -----------------------------------------------------------------------------------------
    @property
    def _state_path(self) -> Path:
        return self.cfg.state_dir / "agent.json"

    def _save_state(self) -> None:
        zygote = getattr(self.executor, "zygote", None)
        data = {"jobs": [j.to_dict() for j in self.jobs.values()], "outbox": self.outbox,
                "warm": zygote is not None and zygote.ready()}  # job starts fork a warm interpreter now
        tmp = self._state_path.with_name("agent.json.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self._state_path)

    def _adopt(self) -> None:
        """Re-attach to incarnations a previous instance of this agent started and that are still alive."""
        try:
            data = json.loads(self._state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        self.outbox = [tuple(x) for x in data.get("outbox", [])]  # type: ignore[misc]
        for rec in data.get("jobs", []):
            handle = self.executor.adopt(rec["handle"])
            steps, interval, seed, sps, *rest = rec["plan"]
            wall = rest[0] if rest else None
            plan = JobPlan(int(steps), int(interval), int(seed), float(sps), None if wall is None else float(wall))
            # a process that ended while no agent watched is reported from what its progress file says
            handle = handle or _dead_handle(rec["handle"])
            job = LocalJob(handle.job_id, handle.fencing_token, handle, plan, list(rec["nodes"]),
                           ProgressReader(Path(rec["progress_path"])))
            job.stop_reason = rec.get("stop_reason")
            job.absorb()
            self.jobs[job.job_id] = job
            log.info("adopted job %s (token %s, pid %s, alive %s)", job.job_id, job.fencing_token,
                     job.handle.pid, handle is not None)

    # -- control-plane calls ---------------------------------------------------------------------------------
    def _register(self) -> None:
        ans = self.client.register(self.cfg.resolved_agent_id(), self.cfg.node_dicts(), self.down_nodes)
        self.lease_epoch = int(ans["lease_epoch"])
        self._lease_ok(ans)
        self.fetch_now = True
        if self.cfg.nodes is None:  # nodes not declared in the config: the factory the server declares
            self.factory_nodes = _declared_nodes(ans.get("factory") or {})
        log.info("registered factory %s, lease epoch %s, site %s", ans.get("factory_id"), self.lease_epoch,
                 self.cfg.labels())

    def _lease_ok(self, ans: dict[str, Any]) -> None:
        for k in ("heartbeat_interval_s", "lost_after_s", "suspect_after_s"):
            if k in ans:
                self.lease[k] = float(ans[k])
        self.last_heartbeat_ok = time.time()
        write_lease(self.cfg.state_dir / "lease.json", self.last_heartbeat_ok + SELF_FENCE_SHARE *
                    self.lease["lost_after_s"])

    def _heartbeat_due(self) -> bool:
        return time.monotonic() >= self.next_heartbeat

    def _heartbeat(self) -> None:
        interval = self.cfg.timeouts.heartbeat_interval_s or self.lease["heartbeat_interval_s"]
        self.next_heartbeat = time.monotonic() + interval
        try:
            if self.lease_epoch is None:
                self._register()
                return
            ans = self.client.heartbeat(self.lease_epoch, self.down_nodes)
            self._lease_ok(ans)
            if ans.get("assignments_changed", True):
                self.fetch_now = True
            self._mesh_status()
        except Unreachable as exc:
            log.warning("heartbeat: %s", exc)
        except ControlPlaneError as exc:
            if exc.code in ("stale_lease_epoch", "lease_lost"):
                log.warning("lease gone (%s): killing every local job and registering again", exc.code)
                for job in list(self.jobs.values()):
                    self._kill(job, f"lease lost ({exc.code})", report=False)
                self.lease_epoch = None
                self.next_heartbeat = 0.0
            else:
                log.error("heartbeat refused: %s", exc)

    def _mesh_status(self) -> None:
        """Report the jobs' checkpoint replication (sync queue, quorum wait) for the control plane's /metrics."""
        if self.lease_epoch is None:
            return
        now, mono = time.time(), time.monotonic()
        jobs = {j.job_id: now - (mono - j.started_mono) for j in self.jobs.values()}
        try:
            self.client.mesh_status(self.lease_epoch, meshwatch.mesh_status(self.cfg.storage_targets(), jobs, now))
        except ControlPlaneError as exc:  # metrics only: never worth more than a log line
            log.debug("mesh status not delivered: %s", exc)

    def _send(self, kind: str, job_id: str, body: dict[str, Any]) -> bool:
        """Deliver one report; True when done with it (accepted, or refused for good)."""
        try:
            if kind == "checkpoint":
                self.client.commit_checkpoint(job_id, body["fencing_token"], body["step"], body["progress_s"],
                                              body["location"], body.get("mesh"))
            else:
                self.client.report(job_id, body)
            return True
        except Unreachable:
            return False
        except ControlPlaneError as exc:
            if exc.code == "stale_fencing_token":
                job = self.jobs.get(job_id)
                if job is not None and job.fencing_token == body.get("fencing_token"):
                    self._kill(job, "fencing token superseded", report=False)
            log.warning("%s report for job %s refused: %s", kind, job_id, exc)
            return True

    def _flush(self) -> None:
        while self.outbox:
            kind, job_id, body = self.outbox[0]
            if not self._send(kind, job_id, body):
                return
            self.outbox.pop(0)

    # -- job lifecycle ---------------------------------------------------------------------------------------
    def _devices(self, nodes: list[int]) -> tuple[str, ...]:
        gpus = {n.index: n.gpus for n in self.cfg.nodes or []} or self.factory_nodes
        return tuple(f"{n}:{g}" for n in nodes for g in range(gpus.get(n, 1)))

    def _start(self, a: dict[str, Any]) -> None:
        job_id = str(a["job_id"])
        nodes = [int(n) for n in a.get("nodes", [])]
        bad = sorted(set(nodes) & set(self.down_nodes))
        if bad:
            self.outbox.append(("report", job_id, {"fencing_token": a["fencing_token"], "state": "failed",
                                                   "message": f"node {bad[0]} is down", "retryable": True}))
            return
        try:
            plan = plan_job(self.cfg, a)
            attempt = self.attempts.get(job_id, 0)
            spec, _assignment = process_spec(self.cfg, a, plan, attempt, self._devices(nodes))
            handle = self.executor.start(spec)
        except (LaunchError, OSError) as exc:
            log.error("cannot start job %s: %s", job_id, exc)
            self.outbox.append(("report", job_id, {"fencing_token": a["fencing_token"], "state": "failed",
                                                   "message": str(exc), "retryable": False}))
            return
        self.attempts[job_id] = attempt + 1
        self.jobs[job_id] = LocalJob(job_id, int(a["fencing_token"]), handle, plan, nodes,
                                     ProgressReader(Path(spec.env["SUPERFACTORY_PROGRESS_PATH"])))
        log.info("started job %s (token %s) on nodes %s: pid %s, %s steps", job_id, a["fencing_token"], nodes,
                 handle.pid, plan.steps)

    def _kill(self, job: LocalJob, reason: str, report: bool = True) -> None:
        job.kill_reason = reason
        self.executor.kill(job.handle)
        log.warning("killed job %s (token %s): %s", job.job_id, job.fencing_token, reason)
        if not report:
            self.jobs.pop(job.job_id, None)
            self.ended.add((job.job_id, job.fencing_token))

    def _reconcile(self, assignments: list[dict[str, Any]]) -> None:
        wanted = {str(a["job_id"]): a for a in assignments}
        for job in list(self.jobs.values()):  # superseded incarnations die first
            a = wanted.get(job.job_id)
            if (a is None or int(a["fencing_token"]) != job.fencing_token) and job.handle.exit_status is None:
                self._kill(job, "no longer assigned here under this fencing token", report=False)
            elif a is None or int(a["fencing_token"]) != job.fencing_token:
                self.jobs.pop(job.job_id, None)
        for job_id, a in wanted.items():
            job = self.jobs.get(job_id)
            if a["action"] == "run" and job is None and (job_id, int(a["fencing_token"])) not in self.ended:
                self._start(a)
            elif a["action"] == "stop":
                reason = a.get("stop_reason") or "stop"
                if job is None:
                    if not any(k == "report" and j == job_id and b.get("state") == "stopped"
                               for k, j, b in self.outbox):
                        self.outbox.append(("report", job_id, {"fencing_token": a["fencing_token"],
                                                               "state": "stopped"}))
                elif job.stop_reason is None:
                    job.stop_reason = reason
                    self.executor.terminate(job.handle, self.cfg.timeouts.stop_grace_s)
                    log.info("stopping job %s for %s", job_id, reason)

    def _watch(self, job: LocalJob) -> None:
        job.absorb()
        for rec in job.checkpoints:
            self.outbox.append(("checkpoint", job.job_id, {
                "fencing_token": job.fencing_token, "step": int(rec["step"]),
                "progress_s": job.plan.progress_s(int(rec["step"])),
                "location": f"mesh://job-{job.job_id}/{rec['checkpoint_id']}",
                "mesh": meshwatch.checkpoint_facts(self.cfg.storage_targets(), job.job_id, str(rec["checkpoint_id"]),
                                                   rec.get("save_s"))}))
        job.checkpoints.clear()
        status = self.executor.poll(job.handle)
        if status is None:
            if job.hung(self.cfg.timeouts.hang_s, self.cfg.timeouts.startup_s):
                self._kill(job, f"hung: no progress for {self.cfg.timeouts.hang_s:g} s at step {job.step}")
                status = self.executor.poll(job.handle)
            else:
                now = time.monotonic()
                if job.resumed_from_step is not None and (
                        not job.reported_running or now - job.last_report_mono >= self.cfg.timeouts.report_interval_s):
                    if self._send("report", job.job_id, job.report_body("running")):
                        job.reported_running = True
                    job.last_report_mono = now
                return
        if status is None:
            return
        job.absorb()
        state, message, retryable = job.outcome(status)
        body = {**job.report_body(state), "message": message, "retryable": retryable}
        if state == "stopped":
            body = {"fencing_token": job.fencing_token, "state": "stopped", "message": message}
        self.outbox.append(("report", job.job_id, body))
        self.ended.add((job.job_id, job.fencing_token))
        log.info("job %s (token %s) ended: %s (%s)", job.job_id, job.fencing_token, state, message)
        self.jobs.pop(job.job_id, None)

    def _read_down_nodes(self) -> None:
        try:
            down = sorted({int(n) for n in json.loads((self.cfg.state_dir / "down_nodes.json").read_text())})
        except (OSError, ValueError, TypeError):
            down = []
        if down != self.down_nodes:
            self.down_nodes = down
            self.next_heartbeat = 0.0  # tell the control plane now
            for job in list(self.jobs.values()):
                bad = sorted(set(job.nodes) & set(down))
                if bad and job.handle.exit_status is None:
                    self._kill(job, f"node {bad[0]} failed")

    # -- the loop --------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """One pass of the loop (see the module docstring)."""
        self._read_down_nodes()
        if self._heartbeat_due():
            self._heartbeat()
        if self.lease_epoch is not None and self.fetch_now:
            try:
                assignments = self.client.assignments()
                self.fetch_now = False
                self._reconcile(assignments)
            except Unreachable as exc:
                log.warning("assignments: %s", exc)
            except ControlPlaneError as exc:
                log.error("assignments refused: %s", exc)
                if exc.code in ("stale_lease_epoch", "lease_lost", "unauthenticated"):
                    self.lease_epoch = None
        for job in list(self.jobs.values()):
            self._watch(job)
        self._flush()
        self._save_state()

    def run(self, stop_event: threading.Event | None = None) -> None:
        """Loop until ``stop_event`` is set; then stop every local job gracefully (checkpoint first)."""
        stop_event = stop_event or threading.Event()
        poll_s = self.cfg.timeouts.tick_s
        last_fetch = 0.0
        while not stop_event.is_set():
            if time.monotonic() - last_fetch >= max(1.0, poll_s):
                self.fetch_now, last_fetch = True, time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("agent tick failed; continuing")
            stop_event.wait(poll_s)
        self.shutdown()

    def shutdown(self) -> None:
        """Stop every local job gracefully and report what can be reported."""
        for job in self.jobs.values():
            job.kill_reason = job.kill_reason or "agent shut down (the job checkpointed first)"
            self.executor.terminate(job.handle, self.cfg.timeouts.stop_grace_s)
        deadline = time.monotonic() + self.cfg.timeouts.stop_grace_s + 5.0
        while self.jobs and time.monotonic() < deadline:
            for job in list(self.jobs.values()):
                self._watch(job)
            time.sleep(0.05)
        with contextlib.suppress(Exception):
            self._flush()
        self._save_state()
        self.client.close()
        close = getattr(self.executor, "close", None)
        if close is not None:
            close()


def _dead_handle(rec: dict[str, Any]) -> Any:
    from superfactory.agent.executor import EXIT_UNKNOWN, JobHandle

    handle = JobHandle.from_dict(rec)
    handle.exit_status = EXIT_UNKNOWN
    return handle


def _declared_nodes(spec: dict[str, Any]) -> dict[int, int]:
    """Node index -> GPUs of the factory the control plane declares (its encoded ``clusters``)."""
    from superfactory.domain.accelerator import SYSTEMS

    out: dict[int, int] = {}
    for c in spec.get("clusters", []):
        system = SYSTEMS.get(c.get("system"))
        for n in range(int(c.get("node_offset", 0)), int(c.get("node_offset", 0)) + int(c.get("nodes", 0))):
            out[n] = system.gpus_per_node if system is not None else 1
    return out
