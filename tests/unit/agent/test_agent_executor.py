"""The process executor: a process group per job, environment, rlimits, a log, graceful stop, adoption."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from superfactory.agent.executor import (
    EXIT_UNKNOWN,
    ProcessExecutor,
    ProcessSpec,
    ResourceLimits,
    group_pids,
)

# a job that starts a grandchild in its group, reports its rlimit and env, and checkpoints on SIGTERM
JOB = """
import os, resource, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("nofile", resource.getrlimit(resource.RLIMIT_NOFILE)[0], "env", os.environ.get("JOB_COLOR"), flush=True)
def on_term(*_):
    print("checkpointing on SIGTERM", flush=True)
    sys.exit(75)
if sys.argv[1] == "graceful":
    signal.signal(signal.SIGTERM, on_term)
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def _spec(tmp_path: Path, mode: str, limits: ResourceLimits | None = None) -> ProcessSpec:
    return ProcessSpec("j1", 3, (sys.executable, "-c", JOB, mode), {**os.environ, "JOB_COLOR": "blue"},
                       tmp_path / "work", tmp_path / "logs" / "j1.log", limits or ResourceLimits())


def _wait_log(path: Path, text: str, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.01)
    raise AssertionError(f"{text!r} not in log: {content!r}")


def test_graceful_stop_terminates_the_whole_group_and_captures_the_log(tmp_path: Path) -> None:
    ex = ProcessExecutor()
    handle = ex.start(_spec(tmp_path, "graceful", ResourceLimits(open_files=77)))
    log = _wait_log(handle.log_path, "\nready")
    assert "nofile 77 env blue" in log
    assert handle.pgid == handle.pid and len(group_pids(handle.pgid)) == 2  # the job and its grandchild
    assert ex.poll(handle) is None
    assert ex.stop(handle, grace_s=10.0) == 75
    assert "checkpointing on SIGTERM" in handle.log_path.read_text()
    assert group_pids(handle.pgid) == []  # the grandchild did not outlive the job


def test_a_job_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    ex = ProcessExecutor()
    handle = ex.start(_spec(tmp_path, "stubborn"))
    _wait_log(handle.log_path, "\nready")
    ex.terminate(handle, grace_s=0.3)
    time.sleep(0.1)
    assert ex.poll(handle) is None  # still inside its grace period
    assert ex.stop(handle, grace_s=0.3) == -9
    assert group_pids(handle.pgid) == []


def test_a_restarted_agent_adopts_a_live_job_and_not_a_dead_one(tmp_path: Path) -> None:
    handle = ProcessExecutor().start(_spec(tmp_path, "graceful"))
    _wait_log(handle.log_path, "\nready")
    record = handle.to_dict()
    other = ProcessExecutor()  # "the agent restarted"
    adopted = other.adopt(record)
    assert adopted is not None and adopted.pid == handle.pid
    assert other.poll(adopted) is None
    other.kill(adopted)
    assert group_pids(handle.pgid) == []
    assert other.poll(adopted) == EXIT_UNKNOWN  # not our child: its status is unknowable
    assert handle.popen is not None and handle.popen.wait() == -9
    assert other.adopt(record) is None
    # a reused pid is not mistaken for the job: the start time is part of its identity
    assert other.adopt({**record, "pid": os.getpid(), "pgid": os.getpgid(0)}) is None
