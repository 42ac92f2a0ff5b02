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


class JobProcess:
    """One example-job process with its assignment; records are read from its progress file."""

    def __init__(self, root: Path, job_id: str, token: int, params: dict[str, Any]) -> None:
        self.assignment = Assignment(job_id=job_id, fencing_token=token, mesh_config=job_mesh(root, job_id),
                                     progress_path=root / f"{job_id}.progress.jsonl", params=params)
        env = {**os.environ, **self.assignment.to_env()}
        self.proc = subprocess.Popen([sys.executable, "-m", "superfactory.agent.examples.mlp"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


@pytest.fixture
def start_job(tmp_path: Path) -> Any:
    started: list[JobProcess] = []

    def start(job_id: str, token: int, params: dict[str, Any] | None = None, root: Path | None = None) -> JobProcess:
        job = JobProcess(root or tmp_path, job_id, token, dict(params or JOB_PARAMS))
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
