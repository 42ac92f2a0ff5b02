"""Executors run job processes. The embedded default, :class:`ProcessExecutor`, runs each job as its own
process group on this host; Ray and Slurm executors implement the same :class:`Executor` interface later.

Contract of an executor (what the agent relies on):

* :meth:`Executor.start` launches a job with its environment, working directory, resource limits and a log
  file that receives stdout and stderr, and returns a :class:`JobHandle` that can be persisted (``to_dict``)
  so a restarted agent can :meth:`~Executor.adopt` a job that kept running while the agent was down.
* :meth:`Executor.poll` returns the exit status once the job ended (None while it runs). For a job the
  executor did not start itself (adopted), the status is unknown: :data:`EXIT_UNKNOWN`.
* :meth:`Executor.terminate` is the graceful stop: SIGTERM to the whole group now, SIGKILL to the whole group
  once ``grace_s`` passed (escalated by :meth:`poll`/:meth:`reap`); :meth:`Executor.kill` is SIGKILL now.
  After a job's end is reported, no process of its group is left (stragglers are killed).
"""

from __future__ import annotations

import abc
import contextlib
import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EXIT_UNKNOWN", "Executor", "JobHandle", "ProcessExecutor", "ProcessSpec", "ResourceLimits",
           "group_pids", "process_start_ticks"]

#: exit status reported for an adopted job whose real status cannot be known (it was not our child)
EXIT_UNKNOWN = -1000


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """Per-process limits applied with ``setrlimit`` in the child before ``exec`` (None = inherit)."""

    address_space_bytes: int | None = None
    cpu_time_s: int | None = None
    open_files: int | None = None
    core_bytes: int | None = 0

    def apply(self) -> None:
        """Set the limits (called in the child between fork and exec)."""
        for res, value in ((resource.RLIMIT_AS, self.address_space_bytes), (resource.RLIMIT_CPU, self.cpu_time_s),
                           (resource.RLIMIT_NOFILE, self.open_files), (resource.RLIMIT_CORE, self.core_bytes)):
            if value is not None:
                _soft, hard = resource.getrlimit(res)
                cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
                resource.setrlimit(res, (cap, hard))


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """What to run for one job incarnation."""

    job_id: str
    fencing_token: int
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    warm_module: str | None = None  # ``argv`` is ``python -m warm_module ...``: the zygote may fork it warm


@dataclass
class JobHandle:
    """A running (or ended) job incarnation; ``to_dict``/``from_dict`` persist it across agent restarts."""

    job_id: str
    fencing_token: int
    pid: int
    pgid: int
    start_ticks: int
    log_path: Path
    started_unix_s: float
    stop_deadline: float | None = None  # monotonic time of the SIGKILL escalation, when a stop was asked
    exit_status: int | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    zygote: Any = field(default=None, repr=False, compare=False)  # the Zygote that forked it (warm start)

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "fencing_token": self.fencing_token, "pid": self.pid, "pgid": self.pgid,
                "start_ticks": self.start_ticks, "log_path": str(self.log_path),
                "started_unix_s": self.started_unix_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobHandle:
        return cls(str(d["job_id"]), int(d["fencing_token"]), int(d["pid"]), int(d["pgid"]),
                   int(d["start_ticks"]), Path(d["log_path"]), float(d["started_unix_s"]))


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc), None if it does not exist.

    With the pid it identifies a process uniquely (pids are reused, start times are not)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie has exited; only its exit status is left
    return int(fields[19])


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


class Executor(abc.ABC):
    """How an agent runs job processes. Implementations: :class:`ProcessExecutor` (here); Ray, Slurm (later)."""

    kind: str = "abstract"

    @abc.abstractmethod
    def start(self, spec: ProcessSpec) -> JobHandle:
        """Launch one incarnation of a job; OSError if it cannot be started."""

    @abc.abstractmethod
    def poll(self, handle: JobHandle) -> int | None:
        """Exit status once the job ended (negative = killed by that signal), else None; escalates stops."""

    @abc.abstractmethod
    def terminate(self, handle: JobHandle, grace_s: float) -> None:
        """Ask the job to stop (SIGTERM); it is killed when still running ``grace_s`` later."""

    @abc.abstractmethod
    def kill(self, handle: JobHandle) -> None:
        """Kill every process of the job now."""

    @abc.abstractmethod
    def adopt(self, record: dict[str, Any]) -> JobHandle | None:
        """Re-attach to a job a previous agent instance started (None if it is gone)."""

    def stop(self, handle: JobHandle, grace_s: float, poll_s: float = 0.02) -> int:
        """Graceful stop, blocking: terminate, wait for the end (at most ``grace_s`` + a little), return status."""
        self.terminate(handle, grace_s)
        while True:
            status = self.poll(handle)
            if status is not None:
                return status
            time.sleep(poll_s)


class ProcessExecutor(Executor):
    """Each job is a session and process group of its own on this host (``setsid``), with rlimits and a log.

    With ``warm=True`` a :class:`~superfactory.agent.zygote.Zygote` (started at once, importing ``preload``)
    forks jobs whose spec names a ``warm_module``, once it is ready; before that, or if it fails, jobs start
    cold (``exec``). Both kinds are the same to the rest of this class: a process group, a log, rlimits, and
    the exit status (the zygote reports it for the processes it forked)."""

    kind = "process"

    def __init__(self, warm: bool = False, preload: tuple[str, ...] | None = None,
                 zygote_log: Path | None = None) -> None:
        self.zygote: Any = None
        self._warm = (preload, zygote_log) if warm else None
        if warm:
            self._start_zygote()

    def _start_zygote(self) -> None:
        from superfactory.agent.zygote import DEFAULT_PRELOAD, Zygote

        assert self._warm is not None
        preload, log = self._warm
        self.zygote = Zygote(tuple(preload) if preload is not None else DEFAULT_PRELOAD, log)

    def close(self) -> None:
        """End the zygote, if any (job processes live on)."""
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None

    def _start_warm(self, spec: ProcessSpec) -> JobHandle | None:
        from dataclasses import asdict

        from superfactory.agent.zygote import ZygoteError

        zyg = self.zygote
        if spec.warm_module is None or zyg is None:
            return None
        if zyg.proc.poll() is not None:  # it died: a new one warms up while this job starts cold
            self._start_zygote()
            return None
        if not zyg.ready():
            return None
        try:
            pid = zyg.spawn(spec.warm_module, list(spec.argv[3:]), spec.env, spec.cwd, spec.log_path,
                            asdict(spec.limits))
        except ZygoteError:
            self.zygote = None
            self._start_zygote()
            return None
        ticks = process_start_ticks(pid) or 0
        return JobHandle(spec.job_id, spec.fencing_token, pid, pid, ticks, spec.log_path, time.time(), zygote=zyg)

    def start(self, spec: ProcessSpec) -> JobHandle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec.cwd.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab", buffering=0) as log:
            warm = self.zygote is not None and spec.warm_module is not None and self.zygote.ready()
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} start job {spec.job_id} "
                      f"fencing token {spec.fencing_token}{' (warm)' if warm else ''}: "
                      f"{' '.join(spec.argv)}\n".encode())
        handle = self._start_warm(spec)
        if handle is not None:
            return handle
        with open(spec.log_path, "ab", buffering=0) as log:
            # preexec_fn runs only ResourceLimits.apply: setrlimit calls on an already-imported module, no
            # allocation-heavy work or locks, which is what makes it safe enough in the threaded agent
            proc = subprocess.Popen(
                list(spec.argv), env=spec.env, cwd=spec.cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                preexec_fn=spec.limits.apply,  # noqa: PLW1509
            )
        ticks = process_start_ticks(proc.pid) or 0
        return JobHandle(spec.job_id, spec.fencing_token, proc.pid, proc.pid, ticks, spec.log_path, time.time(),
                         popen=proc)

    def _alive(self, handle: JobHandle) -> bool:
        ticks = process_start_ticks(handle.pid)
        return ticks is not None and ticks == handle.start_ticks

    def poll(self, handle: JobHandle) -> int | None:
        if handle.exit_status is not None:
            return handle.exit_status
        if handle.popen is not None:
            status = handle.popen.poll()
        elif self._alive(handle):
            status = None
        elif handle.zygote is not None:  # forked warm: the zygote reaps it and reports the status
            status = handle.zygote.exit_status(handle.pid)
            if status is None and handle.zygote.settled(handle.pid):
                status = EXIT_UNKNOWN
        else:
            status = EXIT_UNKNOWN
        if status is None:
            if handle.stop_deadline is not None and time.monotonic() >= handle.stop_deadline:
                self._signal_group(handle, signal.SIGKILL)
            return None
        # the leader is gone: make sure nothing of its group outlives it
        if group_pids(handle.pgid):
            self._signal_group(handle, signal.SIGKILL)
        handle.exit_status = status
        return status

    def _signal_group(self, handle: JobHandle, sig: signal.Signals) -> None:
        if handle.pgid in (0, 1, os.getpgid(0)):
            return  # never our own group (or init's): a job always has a group of its own
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(handle.pgid, sig)

    def terminate(self, handle: JobHandle, grace_s: float) -> None:
        if handle.exit_status is not None:
            return
        if handle.stop_deadline is None:
            handle.stop_deadline = time.monotonic() + max(grace_s, 0.0)
            self._signal_group(handle, signal.SIGTERM)
            # a stopped (SIGSTOP-ed, hung in a debugger) job cannot act on SIGTERM until continued
            self._signal_group(handle, signal.SIGCONT)

    def kill(self, handle: JobHandle) -> None:
        self._signal_group(handle, signal.SIGKILL)
        handle.stop_deadline = time.monotonic()
        if handle.popen is not None:
            handle.popen.wait()
        elif handle.zygote is not None:
            end = time.monotonic() + 2.0
            while self._alive(handle) and time.monotonic() < end:
                time.sleep(0.005)
        deadline = time.monotonic() + 5.0
        while group_pids(handle.pgid) and time.monotonic() < deadline:
            self._signal_group(handle, signal.SIGKILL)
            time.sleep(0.005)
        self.poll(handle)

    def adopt(self, record: dict[str, Any]) -> JobHandle | None:
        handle = JobHandle.from_dict(record)
        if not self._alive(handle):
            # the leader is gone; a straggler of its group must not outlive it either. Only when no process
            # holds the leader's pid: a group id is not reused while the group has members, so those are ours,
            # but a pid that was reused by an unrelated process (its own group) must be left alone.
            if not Path(f"/proc/{handle.pgid}").exists() and group_pids(handle.pgid):
                self._signal_group(handle, signal.SIGKILL)
            return None
        return handle


EXECUTORS: dict[str, type[Executor]] = {"process": ProcessExecutor}
__all__ += ["EXECUTORS"]
