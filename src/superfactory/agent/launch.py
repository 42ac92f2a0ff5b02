"""From an assignment of the control plane to a job process: parameters, environment, mesh config, limits.

A job spec (a scenario's ``jobs:`` entry) says how much productive time the job needs (``work``, a duration on
its declared gang) and how often it checkpoints (``checkpoint.interval``). The agent runs it as the configured
command (by default the built-in example, :mod:`superfactory.agent.examples.mlp`) with one step standing for
``seconds_per_step`` productive seconds: ``steps = work / seconds_per_step``; the checkpoint interval in steps
is ``interval / seconds_per_step``. The training seed is derived from the spec's ``id`` (the job's name), so
every incarnation of a job — at any site — trains the same model on the same data (and a failure-free run of
the same spec is the reference it must match bit for bit).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

from superfactory.agent.config import AgentConfig
from superfactory.agent.executor import ProcessSpec
from superfactory.agent.kms import kms_env
from superfactory.agent.meshconf import job_mesh_dict, lawful_targets, write_job_mesh_config
from superfactory.agent.runtime import Assignment
from superfactory.errors import SuperfactoryError

__all__ = ["JobPlan", "LaunchError", "plan_job", "process_spec"]


class LaunchError(SuperfactoryError):
    """An assignment cannot be run here (spec not runnable, no lawful checkpoint targets ...)."""


@dataclass(frozen=True, slots=True)
class JobPlan:
    """How an assignment maps onto the job command: steps, checkpoint interval, seed, productive s per step."""

    steps: int
    checkpoint_interval_steps: int
    seed: int
    seconds_per_step: float
    step_wall_s: float | None = None

    def params(self) -> dict[str, Any]:
        wall = self.seconds_per_step if self.step_wall_s is None else self.step_wall_s
        return {"steps": self.steps, "checkpoint_interval_steps": self.checkpoint_interval_steps,
                "seed": self.seed, "step_sleep_s": wall}

    def progress_s(self, step: int) -> float:
        """Productive seconds on the declared gang after ``step`` steps."""
        return round(step * self.seconds_per_step, 6)


def _duration_s(value: Any, what: str) -> float:
    """A duration: a string with a unit (``"90s"``), or a number of seconds (how the API echoes a spec)."""
    from superfactory.scenario.units import UnitError, parse_duration_s

    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(parse_duration_s(value))
    except UnitError as exc:
        raise LaunchError(f"{what}: {exc}") from None


def plan_job(cfg: AgentConfig, assignment: dict[str, Any]) -> JobPlan:
    """The plan of one assignment; LaunchError when its spec cannot be run by this agent."""
    spec = assignment.get("spec") or {}
    work = spec.get("work")
    if (isinstance(work, str) and work.rstrip().endswith("FLOP")) or isinstance(work, int | float):
        raise LaunchError(f"job {assignment['job_id']}: work {work!r} is compute; this agent runs jobs whose work "
                          f"is productive time (e.g. work: 2min)")
    sps = cfg.job.seconds_per_step
    steps = max(1, math.ceil(_duration_s(work, "work") / sps))
    if steps > cfg.job.max_steps:
        raise LaunchError(f"job {assignment['job_id']}: {steps} steps exceed job.max_steps={cfg.job.max_steps}")
    ckpt = spec.get("checkpoint") or {}
    interval = cfg.job.checkpoint_interval_steps
    if ckpt.get("interval"):
        interval = max(1, round(_duration_s(ckpt["interval"], "checkpoint.interval") / sps))
    seed = int.from_bytes(hashlib.sha256(str(spec.get("id") or assignment["job_id"]).encode()).digest()[:4],
                          "little")
    return JobPlan(steps, interval, seed, sps, cfg.job.step_wall_s)


def process_spec(cfg: AgentConfig, assignment: dict[str, Any], plan: JobPlan, attempt: int,
                 devices: tuple[str, ...]) -> tuple[ProcessSpec, Assignment]:
    """The process to start for ``assignment`` and the assignment it receives in its environment."""
    job_id, token = str(assignment["job_id"]), int(assignment["fencing_token"])
    spec = assignment.get("spec") or {}
    classes = tuple(spec.get("sovereignty") or ())
    jobdir = cfg.state_dir / "jobs" / job_id
    incarnation = jobdir / f"token-{token}"
    targets = lawful_targets(cfg.storage_targets(), cfg.sovereignty, classes)
    if not targets:
        raise LaunchError(f"job {job_id}: none of the agent's {len(cfg.storage)} storage targets is cleared for "
                          f"its sovereignty classes {list(classes)}; add lawful storage to the agent config")
    mesh_cfg = write_job_mesh_config(
        incarnation / "mesh.yaml",
        job_mesh_dict(job_id, targets, cfg.keyring, sovereignty=cfg.sovereignty, fsync=cfg.mesh_fsync,
                      audit_log=jobdir / "mesh-audit.jsonl"),
    )
    resume = assignment.get("resume_checkpoint") or {}
    job = Assignment(job_id=job_id, fencing_token=token, mesh_config=mesh_cfg,
                     progress_path=incarnation / "progress.jsonl", attempt=attempt,
                     resume_step=resume.get("step"), sovereignty=classes, params=plan.params(), devices=devices,
                     lease_path=cfg.state_dir / "lease.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERFACTORY_")}
    env.update(job.to_env())
    if cfg.keys == "server":  # keys and the commit ledger from the control plane, never a copied file
        env.update(kms_env(cfg.server, cfg.resolved_token()))
    env["PYTHONUNBUFFERED"] = "1"
    if cfg.job.real_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    argv = tuple(sys.executable if a == "{python}" else a for a in cfg.job.command)
    cmd = cfg.job.command
    warm = cmd[2] if cfg.job.warm_start and len(cmd) >= 3 and cmd[0] == "{python}" and cmd[1] == "-m" else None
    return ProcessSpec(job_id, token, argv, env, incarnation, jobdir / "job.log", cfg.limits(), warm), job
