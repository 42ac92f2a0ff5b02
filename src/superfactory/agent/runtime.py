"""The job runtime: what a job process receives from its agent, and how it talks back.

An agent starts a job process with its assignment in the environment (see :data:`ENV`); the job reads it with
:meth:`Assignment.from_env`. The job reports back by appending JSON lines to the file named by
``SUPERFACTORY_PROGRESS_PATH`` (:class:`ProgressWriter`); the agent tails that file (:class:`ProgressReader`)
and forwards progress and committed checkpoints to the control plane. A file, not a pipe, so that a report
survives the agent dying and being restarted while the job keeps running.

Progress record kinds (every record has ``kind``, ``t_unix_s``, ``job_id``, ``fencing_token``):

* ``started``  — ``step`` (the step training resumes from), ``restored_checkpoint`` (id or null)
* ``progress`` — ``step``, ``tokens`` (cumulative in this process), ``tokens_per_s``
* ``checkpoint`` — ``step``, ``checkpoint_id``, ``payload_bytes``, ``save_s`` (a *committed* checkpoint)
* ``stopping`` — ``step``, ``reason`` (SIGTERM received: a final checkpoint follows)
* ``completed`` — ``step``, ``state_sha256`` (digest of the final parameters and optimizer state)

Exit codes: 0 completed; :data:`EXIT_STOPPED` stopped on request after a final checkpoint; 2 bad assignment;
anything else is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from superfactory.errors import SuperfactoryError

__all__ = ["ENV", "EXIT_STOPPED", "Assignment", "AssignmentError", "ProgressReader", "ProgressWriter", "StopFlag",
           "lease_expired", "write_lease"]

#: exit code of a job that checkpointed and exited because it was asked to stop (SIGTERM)
EXIT_STOPPED = 75

#: environment variables of the assignment (name → meaning)
ENV = {
    "SUPERFACTORY_JOB_ID": "job id (required)",
    "SUPERFACTORY_FENCING_TOKEN": "fencing token of this placement, a non-negative integer (required)",
    "SUPERFACTORY_ATTEMPT": "how many times the job was started before, 0-based (default 0)",
    "SUPERFACTORY_RANK": "global rank of this process (default 0)",
    "SUPERFACTORY_WORLD_SIZE": "number of processes of the job (default 1)",
    "SUPERFACTORY_LOCAL_RANK": "rank on this node (default 0)",
    "SUPERFACTORY_RESUME_STEP": "last committed step the control plane knows of (hint; default none)",
    "SUPERFACTORY_MESH_CONFIG": "path of the job's mesh config YAML (required)",
    "SUPERFACTORY_SOVEREIGNTY": "comma-separated sovereignty classes of the job's data (default none)",
    "SUPERFACTORY_PROGRESS_PATH": "JSON-lines file the job appends its reports to (required)",
    "SUPERFACTORY_JOB_PARAMS": "JSON object of job parameters (default {})",
    "SUPERFACTORY_DEVICES": "logical accelerator slots given to this process, comma-separated (default none)",
    "SUPERFACTORY_LEASE_PATH": "the agent's lease file; the job stops (after a checkpoint) once it expired",
}


class AssignmentError(SuperfactoryError):
    """The environment does not hold a valid assignment (missing or malformed variable)."""


def _int(env: dict[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None and name in ("SUPERFACTORY_FENCING_TOKEN",):
            raise AssignmentError(f"{name} is not set; the agent sets it to the placement's fencing token")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise AssignmentError(f"{name}={raw!r} is not an integer") from None
    if value < 0:
        raise AssignmentError(f"{name}={value} must be >= 0")
    return value


@dataclass(frozen=True, slots=True)
class Assignment:
    """One job process's assignment, as set by its agent. See :data:`ENV`."""

    job_id: str
    fencing_token: int
    mesh_config: Path
    progress_path: Path
    attempt: int = 0
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    resume_step: int | None = None
    sovereignty: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ()
    lease_path: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Assignment:
        """Parse the assignment; AssignmentError names the variable that is missing or wrong."""
        env = dict(os.environ if env is None else env)
        missing = [n for n in ("SUPERFACTORY_JOB_ID", "SUPERFACTORY_MESH_CONFIG", "SUPERFACTORY_PROGRESS_PATH")
                   if not env.get(n)]
        if missing:
            raise AssignmentError(f"missing environment variable(s) {', '.join(missing)}; a job is started by "
                                  f"its agent, which sets them (see superfactory.agent.runtime.ENV)")
        try:
            params = json.loads(env.get("SUPERFACTORY_JOB_PARAMS") or "{}")
        except ValueError as exc:
            raise AssignmentError(f"SUPERFACTORY_JOB_PARAMS is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise AssignmentError("SUPERFACTORY_JOB_PARAMS must be a JSON object")
        token = _int(env, "SUPERFACTORY_FENCING_TOKEN", None)
        rank = _int(env, "SUPERFACTORY_RANK", 0) or 0
        world = _int(env, "SUPERFACTORY_WORLD_SIZE", 1) or 1
        if rank >= world:
            raise AssignmentError(f"SUPERFACTORY_RANK={rank} must be < SUPERFACTORY_WORLD_SIZE={world}")
        split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
        assert token is not None
        return cls(
            job_id=env["SUPERFACTORY_JOB_ID"],
            fencing_token=token,
            mesh_config=Path(env["SUPERFACTORY_MESH_CONFIG"]),
            progress_path=Path(env["SUPERFACTORY_PROGRESS_PATH"]),
            attempt=_int(env, "SUPERFACTORY_ATTEMPT", 0) or 0,
            rank=rank,
            world_size=world,
            local_rank=_int(env, "SUPERFACTORY_LOCAL_RANK", 0) or 0,
            resume_step=_int(env, "SUPERFACTORY_RESUME_STEP", None) if env.get("SUPERFACTORY_RESUME_STEP") else None,
            sovereignty=split(env.get("SUPERFACTORY_SOVEREIGNTY", "")),
            params=params,
            devices=split(env.get("SUPERFACTORY_DEVICES", "")),
            lease_path=Path(env["SUPERFACTORY_LEASE_PATH"]) if env.get("SUPERFACTORY_LEASE_PATH") else None,
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables that :meth:`from_env` reads back into an equal assignment."""
        env = {
            "SUPERFACTORY_JOB_ID": self.job_id,
            "SUPERFACTORY_FENCING_TOKEN": str(self.fencing_token),
            "SUPERFACTORY_ATTEMPT": str(self.attempt),
            "SUPERFACTORY_RANK": str(self.rank),
            "SUPERFACTORY_WORLD_SIZE": str(self.world_size),
            "SUPERFACTORY_LOCAL_RANK": str(self.local_rank),
            "SUPERFACTORY_MESH_CONFIG": str(self.mesh_config),
            "SUPERFACTORY_SOVEREIGNTY": ",".join(self.sovereignty),
            "SUPERFACTORY_PROGRESS_PATH": str(self.progress_path),
            "SUPERFACTORY_JOB_PARAMS": json.dumps(self.params, sort_keys=True),
            "SUPERFACTORY_DEVICES": ",".join(self.devices),
        }
        if self.resume_step is not None:
            env["SUPERFACTORY_RESUME_STEP"] = str(self.resume_step)
        if self.lease_path is not None:
            env["SUPERFACTORY_LEASE_PATH"] = str(self.lease_path)
        return env


class ProgressWriter:
    """Appends report records (one JSON object per line, flushed and fsync-ed) to the progress file."""

    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment
        assignment.progress_path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(assignment.progress_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def emit(self, kind: str, *, durable: bool = False, **fields: Any) -> None:
        """Append one record with a single ``write`` of a whole line (a reader never sees half a record);
        ``durable`` also fsyncs it (state changes and checkpoints; per-step progress need not survive a crash).
        """
        record = {"kind": kind, "t_unix_s": time.time(), "job_id": self.assignment.job_id,
                  "fencing_token": self.assignment.fencing_token, "pid": os.getpid(), **fields}
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            if durable:
                os.fsync(self._fd)

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)


class ProgressReader:
    """Tails a progress file: :meth:`poll` returns the records appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        """New complete records (a malformed line is skipped: the file is the job's, not trusted)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("kind"), str):
                out.append(record)
        return out


def write_lease(path: Path, expires_unix_s: float) -> None:
    """Write the agent's lease file (atomically): jobs keep running only while ``expires_unix_s`` is ahead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"expires_unix_s": expires_unix_s}), encoding="utf-8")
    tmp.replace(path)


def lease_expired(path: Path | None, now_unix_s: float | None = None) -> bool:
    """True when the agent's lease file says the lease ran out (its agent stopped renewing it: the agent is
    dead, hung or cut off, and the control plane is about to give the job to another site). A missing or
    unreadable file is not an expiry (a job started by hand has no agent)."""
    if path is None:
        return False
    try:
        expires = float(json.loads(path.read_text(encoding="utf-8"))["expires_unix_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (time.time() if now_unix_s is None else now_unix_s) > expires


class StopFlag:
    """Set by SIGTERM (and SIGINT): the training loop checks it after each step, checkpoints and exits."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None

    def install(self) -> StopFlag:
        """Install the handlers (main thread only) and return self."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
