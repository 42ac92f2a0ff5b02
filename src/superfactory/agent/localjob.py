"""What an agent knows about one job incarnation it runs: its process, its reports, why it ended.

:meth:`LocalJob.absorb` folds the job's progress records (see :mod:`superfactory.agent.runtime`) into the
state; records of another incarnation (another fencing token) are ignored. :meth:`LocalJob.outcome` turns the
process's end into the state the agent reports: ``succeeded`` (it reported ``completed`` and exited 0),
``stopped`` (a stop was asked and it ended), or ``failed`` with a reason (exit status, hang, failed node,
fenced) — retryable, so the control plane requeues it from its last committed checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from superfactory.agent.executor import EXIT_UNKNOWN, JobHandle
from superfactory.agent.launch import JobPlan
from superfactory.agent.runtime import EXIT_STOPPED, ProgressReader

__all__ = ["LocalJob"]


@dataclass
class LocalJob:
    """One running incarnation (job id + fencing token) on this agent."""

    job_id: str
    fencing_token: int
    handle: JobHandle
    plan: JobPlan
    nodes: list[int]
    reader: ProgressReader
    started_mono: float = field(default_factory=time.monotonic)
    last_progress_mono: float = field(default_factory=time.monotonic)
    step: int = 0
    tokens_per_s: float = 0.0
    reported_running: bool = False
    last_report_mono: float = 0.0
    resumed_from_step: int | None = None
    training_since_unix_s: float | None = None
    completed: dict[str, Any] | None = None
    fenced: str | None = None
    stop_reason: str | None = None  # why the agent asked it to stop (a stop assignment's reason)
    kill_reason: str | None = None  # why the agent killed it (hang, node failure, superseded)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # committed, not yet sent

    def absorb(self) -> list[dict[str, Any]]:
        """Read new records of this incarnation and update the state; returns them."""
        mine = [r for r in self.reader.poll() if r.get("fencing_token") == self.fencing_token]
        now = time.monotonic()
        for r in mine:
            kind = r["kind"]
            if kind in ("started", "progress", "checkpoint", "stopping", "completed", "waiting"):  # waiting: alive,
                # blocked on a service (the control plane's KMS while it restarts), not hung
                self.last_progress_mono = now
            if kind == "started":
                self.step = int(r.get("step", 0))
                self.resumed_from_step = self.step
            elif kind == "progress":
                self.step = int(r["step"])
                self.tokens_per_s = float(r.get("tokens_per_s", 0.0))
                if self.training_since_unix_s is None:
                    self.training_since_unix_s = float(r["t_unix_s"])
            elif kind == "checkpoint":
                self.checkpoints.append(r)
            elif kind == "completed":
                self.completed = r
                self.step = int(r["step"])
            elif kind == "fenced":
                self.fenced = str(r.get("error", "fenced"))
        return mine

    def hung(self, hang_s: float, startup_s: float) -> bool:
        """No record for ``hang_s`` seconds once the job reported ``started`` (``startup_s`` before that: imports
        and restoring a checkpoint take longer than a step). A job being stopped gets its grace period instead."""
        limit = hang_s if self.resumed_from_step is not None else max(hang_s, startup_s)
        return self.stop_reason is None and time.monotonic() - self.last_progress_mono > limit

    def outcome(self, status: int) -> tuple[str, str, bool]:
        """``(state, message, retryable)`` to report for a process that ended with ``status``."""
        if self.completed is not None and status in (0, EXIT_UNKNOWN):
            return "succeeded", f"completed {self.step} steps", False
        if self.kill_reason is not None:
            return "failed", self.kill_reason, True
        if self.stop_reason is not None:
            return "stopped", f"stopped for {self.stop_reason} at step {self.step} (exit {status})", True
        if self.fenced is not None:
            return "failed", f"fenced by the mesh: {self.fenced}", True
        if status == EXIT_STOPPED:
            return "failed", f"job stopped itself at step {self.step} (its lease expired)", True
        if status == EXIT_UNKNOWN:
            return "failed", f"job process {self.handle.pid} ended while the agent was away", True
        if status < 0:
            return "failed", f"job process killed by signal {-status} at step {self.step}", True
        return "failed", f"job process exited with status {status} at step {self.step}", True

    def report_body(self, state: str) -> dict[str, Any]:
        """A report of ``state`` with the current progress."""
        return {"fencing_token": self.fencing_token, "state": state, "progress_s": self.plan.progress_s(self.step),
                "step": self.step, "tokens_per_s": self.tokens_per_s}

    def to_dict(self) -> dict[str, Any]:
        """What a restarted agent needs to adopt this incarnation."""
        return {"handle": self.handle.to_dict(), "plan": [self.plan.steps, self.plan.checkpoint_interval_steps,
                                                          self.plan.seed, self.plan.seconds_per_step,
                                                          self.plan.step_wall_s],
                "nodes": self.nodes, "progress_path": str(self.reader.path), "stop_reason": self.stop_reason}
