"""A real Prometheus (the Debian package's /usr/bin/prometheus) for tests: started on a free loopback port with a
temporary storage folder, stopped (by its own pid) when the test ends; plus the HTTP API calls the tests use."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml


def binaries() -> tuple[str, str]:
    """``(prometheus, promtool)``; skips the test with the package name when either is missing."""
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if prom is None or tool is None:
        pytest.skip("prometheus/promtool not installed: Debian package 'prometheus' "
                    "(scripts/system-deps.sh installs it as root)")
    return prom, tool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """One Prometheus process. ``scrape`` is a list of scrape configs (may be empty: a backfilled TSDB)."""

    def __init__(self, folder: Path, scrape: list[dict[str, Any]] | None = None, scrape_interval_s: int = 1) -> None:
        self.binary, _ = binaries()
        self.folder = folder
        self.data = folder / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": f"{scrape_interval_s}s", "evaluation_interval": "1s"},
                  "scrape_configs": scrape or []}
        self.config = folder / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = folder / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> Prometheus:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.data}",
                 "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--web.enable-admin-api"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout_s} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def api(self, path: str, **params: object) -> Any:
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = r.json()
        assert r.status_code == 200 and body.get("status") == "success", f"{path} {params}: {r.text[:500]}"
        return body["data"]

    def query_range(self, expr: str, start: float, end: float, step_s: int) -> list[dict[str, Any]]:
        return list(self.api("query_range", query=expr, start=start, end=end, step=step_s)["result"])

    def targets_up(self) -> list[dict[str, Any]]:
        return [t for t in self.api("targets")["activeTargets"] if t.get("health") == "up"]
