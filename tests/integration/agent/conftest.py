"""Helpers for the agent integration tests: run the built-in example job as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from superfactory.agent.meshconf import StorageTarget, job_mesh_dict, write_job_mesh_config
from superfactory.agent.runtime import Assignment, ProgressReader

#: small and quick, but with >= 10 steps between checkpoints as the issue demands
JOB_PARAMS = {"steps": 40, "checkpoint_interval_steps": 10, "seed": 7, "step_sleep_s": 0.03}


def job_mesh(root: Path, job_id: str) -> Path:
    """A job mesh config over six directory targets at three 'sites' under ``root``."""
    targets = [StorageTarget(f"site{i % 3}-t{i}", str(root / f"site{i % 3}" / f"t{i}"), f"region-{i % 3}", "US")
               for i in range(6)]
    return write_job_mesh_config(root / f"{job_id}.mesh.yaml",
                                 job_mesh_dict(job_id, targets, root / "keys" / "keyring.json", fsync=False))


MLP = "superfactory.agent.examples.mlp"


class WarmProc:
    """The part of :class:`subprocess.Popen` the tests use, for a job process forked by a zygote (the agents'
    default way of starting jobs); its exit status comes from the zygote, its output goes to ``log``."""

    stderr = None

    def __init__(self, zygote: Any, pid: int, log: Path) -> None:
        self.zygote, self.pid, self.log = zygote, pid, log
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.exit_status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(MLP, timeout or 0.0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode


class JobProcess:
    """One example-job process with its assignment; records are read from its progress file. Started cold
    (``exec``, a fresh torch import) or, given a ready ``zygote``, forked warm."""

    def __init__(self, root: Path, job_id: str, token: int, params: dict[str, Any], zygote: Any = None) -> None:
        self.assignment = Assignment(job_id=job_id, fencing_token=token, mesh_config=job_mesh(root, job_id),
                                     progress_path=root / f"{job_id}.progress.jsonl", params=params)
        env = {**os.environ, **self.assignment.to_env()}
        self.proc: Any
        if zygote is not None:
            log = root / f"{job_id}-{token}.log"
            pid = zygote.spawn(MLP, [], env, root, log, {"core_bytes": 0})
            self.proc = WarmProc(zygote, pid, log)
        else:
            self.proc = subprocess.Popen([sys.executable, "-m", MLP], env=env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
        self.reader = ProgressReader(self.assignment.progress_path)
        self.records: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        new = self.reader.poll()
        self.records.extend(new)
        return new

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0) -> dict[str, Any]:
        """The first new record of this process matching ``pred``; fails if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for rec in self.poll():
                if rec.get("pid") == self.proc.pid and pred(rec):
                    return rec
            if self.proc.poll() is not None and not self.reader.poll():
                raise AssertionError(f"job exited {self.proc.returncode} first: {self.stderr()}")
            time.sleep(0.005)
        raise AssertionError(f"timed out waiting for a record; last: {self.records[-3:]}")

    def finish(self, timeout_s: float = 120.0) -> int:
        rc = self.proc.wait(timeout_s)
        self.poll()
        return rc

    def stderr(self) -> str:
        if isinstance(self.proc, WarmProc):
            return self.proc.log.read_text(errors="replace")[-2000:] if self.proc.log.exists() else ""
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def job_params() -> dict[str, Any]:
    """Parameters of the example job in these tests (a fresh copy)."""
    return dict(JOB_PARAMS)


@pytest.fixture(scope="session")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A zygote (torch imported once) that forks the example job warm, as agents do; shared by the session."""
    from superfactory.agent.zygote import Zygote

    z = Zygote(log_path=tmp_path_factory.mktemp("zygote") / "zygote.log")
    yield z
    z.close()


@pytest.fixture
def start_job(tmp_path: Path, zygote: Any, reference_digest: Any) -> Any:
    """Start the example job warm (forked by the session's zygote). The cold failure-free reference run is
    requested first: it imports torch while the zygote does."""
    started: list[JobProcess] = []
    assert zygote.wait_ready(300), "the zygote did not finish importing torch"

    def start(job_id: str, token: int, params: dict[str, Any] | None = None, root: Path | None = None) -> JobProcess:
        job = JobProcess(root or tmp_path, job_id, token, dict(params or JOB_PARAMS), zygote)
        started.append(job)
        return job

    yield start
    for job in started:
        job.close()


class Reference(str):
    """The final-state SHA-256 of a failure-free run; ``mesh_config`` holds its checkpoints."""

    mesh_config: Path


@pytest.fixture(scope="session")
def reference_digest(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The failure-free run of :data:`JOB_PARAMS` (one process, run once per session)."""
    root = tmp_path_factory.mktemp("reference")
    job = JobProcess(root, "reference", 1, dict(JOB_PARAMS, step_sleep_s=0.0))
    try:
        assert job.finish() == 0, job.stderr()
        done = [r for r in job.records if r["kind"] == "completed"]
        assert len(done) == 1 and done[0]["step"] == JOB_PARAMS["steps"]
        ref = Reference(done[0]["state_sha256"])
        ref.mesh_config = job.assignment.mesh_config
        return ref
    finally:
        job.close()


# -- a local fleet (control plane + three agents) shared by the fault tests of one module ----------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProcessWatch:
    """Samples the process table: which live processes carry ``SUPERFACTORY_JOB_ID=<job>`` (and their tokens),
    counting only jobs whose progress file lies under ``root`` (other fleets may run beside this one)."""

    def __init__(self, root: Path) -> None:
        import threading

        self.root = str(root)
        self.seen: dict[tuple[int, int], tuple[str, int] | None] = {}
        self.first_seen: dict[tuple[int, int], float] = {}
        self.max_live: dict[str, int] = {}
        self.tokens: dict[str, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _identity(self, pid: int) -> tuple[str, int] | None:
        """(job, token) of a job process: its working directory is its incarnation folder
        ``<root>/agents/<site>/jobs/<job>/token-<n>`` (warm and cold starts), or its environment names them
        (a cold start's /proc environ; a warm-forked process shows its zygote's start environment there)."""
        import re

        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        m = re.fullmatch(re.escape(self.root) + r"/agents/[^/]+/jobs/([^/]+)/token-(\d+)", cwd)
        if m:
            return m.group(1), int(m.group(2))
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return None
        kv = dict(e.split(b"=", 1) for e in env if b"=" in e)
        if b"SUPERFACTORY_JOB_ID" not in kv or b"SUPERFACTORY_FENCING_TOKEN" not in kv:
            return None
        if not kv.get(b"SUPERFACTORY_PROGRESS_PATH", b"").decode().startswith(self.root):
            return None
        return kv[b"SUPERFACTORY_JOB_ID"].decode(), int(kv[b"SUPERFACTORY_FENCING_TOKEN"])

    def _run(self) -> None:
        from superfactory.agent.executor import process_start_ticks

        while not self._stop.is_set():
            live: dict[str, set[int]] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                pid = int(entry)
                ticks = process_start_ticks(pid)  # (pid, start time) names a process: pids are reused
                if ticks is None:
                    continue
                key = (pid, ticks)
                if key not in self.seen:
                    ident = self._identity(pid)
                    # a process between fork and exec still has its parent's environment: decide only once it
                    # has run for a while (or carries a job id)
                    if ident is not None or time.monotonic() - self.first_seen.setdefault(key, time.monotonic()) > 3:
                        self.seen[key] = ident
                ident = self.seen.get(key)
                if ident is None:
                    continue
                live.setdefault(ident[0], set()).add(pid)
                toks = self.tokens.setdefault(ident[0], [])
                if not toks or toks[-1] != ident[1]:
                    toks.append(ident[1])
            for job, pids in live.items():
                self.max_live[job] = max(self.max_live.get(job, 0), len(pids))
            self._stop.wait(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A running local fleet with short lease timeouts; stopped (and checked clean) at the end of the module."""
    from superfactory.agent.fleet import FleetOptions, LocalFleet

    opts = FleetOptions(port=free_port(), suspect_after_s=3.0, lost_after_s=10.0, heartbeat_interval_s=0.5,
                        cycle_s=0.5, hang_s=6.0, startup_s=120.0, stop_grace_s=5.0, tick_s=0.1, seconds_per_step=0.1,
                        mesh_fsync=False)
    f = LocalFleet(tmp_path_factory.mktemp("fleet"), opts)
    watch = ProcessWatch(f.root)
    f.watch = watch  # type: ignore[attr-defined]
    try:
        f.up(demo_jobs=False)
        f.wait_warm()  # every job start forks a warm interpreter (agent.zygote), not a fresh torch import
        yield f
    finally:
        watch.close()
        left = f.down(grace_s=5.0)
        assert left == [], f"processes left after down: {left}"
