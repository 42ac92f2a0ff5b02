"""Warm starts: jobs forked from a zygote that already imported torch are real job processes — a session and
process group of their own, the job's environment, rlimits, working directory and log, exit statuses as
Popen gives them — and the example job forked warm, killed mid-interval and resumed warm ends bit-identical
to a cold (``exec``) failure-free run."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from superfactory.agent.executor import ProcessExecutor, ProcessSpec, ResourceLimits, group_pids
from superfactory.agent.meshconf import StorageTarget, job_mesh_dict, write_job_mesh_config
from superfactory.agent.runtime import Assignment

# a job module: starts a grandchild in its group, reports rlimit, env, cwd, session; checkpoints on SIGTERM
JOB = """
import os, resource, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("nofile", resource.getrlimit(resource.RLIMIT_NOFILE)[0], "env", os.environ.get("JOB_COLOR"),
      "cwd", os.getcwd(), "sid", os.getsid(0) == os.getpid(), "args", sys.argv[1:], flush=True)
def on_term(*_):
    print("checkpointing on SIGTERM", flush=True)
    sys.exit(75)
if sys.argv[1] == "graceful":
    signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(60)
"""
MODULE = "sf_zygote_testjob"
MLP = "superfactory.agent.examples.mlp"


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessExecutor]:
    """One warm executor for the module (the zygote imports torch once)."""
    lib = tmp_path_factory.mktemp("lib")
    (lib / f"{MODULE}.py").write_text(JOB)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(lib), *([old] if old else [])])
    try:
        ex = ProcessExecutor(warm=True, zygote_log=lib / "zygote.log")
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    assert ex.zygote.wait_ready(180), (lib / "zygote.log").read_text()
    yield ex
    ex.close()


def _spec(tmp_path: Path, mode: str, limits: ResourceLimits | None = None) -> ProcessSpec:
    return ProcessSpec("j1", 3, (sys.executable, "-m", MODULE, mode), {"JOB_COLOR": "blue", "PATH": os.environ["PATH"]},
                       tmp_path / "work", tmp_path / "logs" / "j1.log", limits or ResourceLimits(), MODULE)


def _wait_log(path: Path, text: str, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    content = ""
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.01)
    raise AssertionError(f"{text!r} not in log: {content!r}")


def test_a_warm_job_is_a_group_of_its_own_with_env_limits_cwd_and_log(warm: ProcessExecutor, tmp_path: Path) -> None:
    handle = warm.start(_spec(tmp_path, "graceful", ResourceLimits(open_files=77)))
    assert handle.zygote is not None and handle.popen is None  # forked by the zygote, not exec'd
    log = _wait_log(handle.log_path, "\nready")
    assert f"nofile 77 env blue cwd {tmp_path / 'work'} sid True args ['graceful']" in log
    assert "(warm)" in log.splitlines()[0]
    assert os.readlink(f"/proc/{handle.pid}/cwd") == str(tmp_path / "work")
    assert handle.pgid == handle.pid and len(group_pids(handle.pgid)) == 2  # the job and its grandchild
    assert warm.poll(handle) is None
    assert warm.stop(handle, grace_s=10.0) == 75  # the exit status comes from the zygote
    assert "checkpointing on SIGTERM" in handle.log_path.read_text()
    assert group_pids(handle.pgid) == []


def test_a_killed_warm_job_reports_the_signal(warm: ProcessExecutor, tmp_path: Path) -> None:
    handle = warm.start(_spec(tmp_path, "stubborn"))
    _wait_log(handle.log_path, "\nready")
    os.killpg(handle.pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (status := warm.poll(handle)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert status == -signal.SIGKILL
    assert group_pids(handle.pgid) == []


def _mlp_spec(root: Path, token: int, steps: int, sleep_s: float) -> ProcessSpec:
    targets = [StorageTarget(f"t{i}", str(root / f"t{i}"), f"region-{i}", "US") for i in range(3)]
    mesh = write_job_mesh_config(root / "mesh.yaml", job_mesh_dict("m", targets, root / "keyring.json", fsync=False))
    a = Assignment(job_id="m", fencing_token=token, mesh_config=mesh, progress_path=root / f"p{token}.jsonl",
                   params={"steps": steps, "checkpoint_interval_steps": 10, "seed": 11, "step_sleep_s": sleep_s})
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SUPERFACTORY_")}, **a.to_env()}
    return ProcessSpec("m", token, (sys.executable, "-m", MLP), env, root / f"token-{token}", root / "job.log",
                       ResourceLimits(), MLP)


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _finish(ex: ProcessExecutor, spec: ProcessSpec) -> int:
    handle = ex.start(spec)
    deadline = time.monotonic() + 120
    while (status := ex.poll(handle)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert status is not None
    return status


def test_warm_kill_and_resume_is_bit_identical_to_a_cold_run(warm: ProcessExecutor, tmp_path: Path) -> None:
    cold = _mlp_spec(tmp_path / "cold", 1, 30, 0.0)
    assert _finish(ProcessExecutor(), replace(cold, warm_module=None)) == 0
    ref = next(r for r in _records(tmp_path / "cold" / "p1.jsonl") if r["kind"] == "completed")["state_sha256"]

    first = warm.start(_mlp_spec(tmp_path / "warm", 1, 30, 0.02))
    assert first.zygote is not None
    deadline = time.monotonic() + 60
    while not any(r["kind"] == "progress" and r["step"] == 15 for r in _records(tmp_path / "warm" / "p1.jsonl")):
        assert time.monotonic() < deadline, _records(tmp_path / "warm" / "p1.jsonl")[-3:]
        time.sleep(0.005)
    warm.kill(first)  # mid-interval: steps 11..15 are lost
    assert warm.poll(first) in (-signal.SIGKILL, None)
    assert _finish(warm, _mlp_spec(tmp_path / "warm", 2, 30, 0.0)) == 0
    recs = _records(tmp_path / "warm" / "p2.jsonl")
    assert [r["step"] for r in recs if r["kind"] == "started"] == [10]
    assert [r["state_sha256"] for r in recs if r["kind"] == "completed"] == [ref]


def test_closing_the_executor_ends_the_zygote_and_not_its_jobs(tmp_path: Path) -> None:
    ex = ProcessExecutor(warm=True, preload=("json",))  # a zygote that warms up fast
    assert ex.zygote.wait_ready(60)
    spec = ProcessSpec("j2", 1, (sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"),
                       {"PATH": os.environ["PATH"]}, tmp_path / "w", tmp_path / "j2.log", ResourceLimits(),
                       "http.server")
    handle = ex.start(spec)
    zygote = ex.zygote.proc
    _wait_log(handle.log_path, "Serving HTTP")
    ex.close()
    assert zygote.poll() is not None  # the zygote is gone ...
    assert group_pids(handle.pgid) == [handle.pid]  # ... its job lives on, as a cold-started one would
    os.killpg(handle.pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_pids(handle.pgid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert group_pids(handle.pgid) == []
