"""The CLI against a real `superfactory serve`: config written on first start (0600), the Slurm-like verbs,
`--json` output, and errors as one message with exit code 2."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import httpx
import pytest

from live_pg import wait_until
from superfactory.cli.main import main
from superfactory.live.store.pgtemp import free_port

FLEET = """
name: cli
duration: 1d
factories:
  - {id: texas, region: r, market: ERCOT, power_cap: 50MW, cooling_capacity: 50MW,
     systems: [{system: dgx-h100, nodes: 16}]}
"""
JOB = "{id: pretrain, accelerator: H100-SXM, gpus: 64, work: 2d}\n"


def _cli(capsys, monkeypatch, args, code=0, token=None):
    """Run ``superfactory ARGS`` in-process through ``main()`` (real exit codes); returns stdout + stderr."""
    if token:
        monkeypatch.setenv("SUPERFACTORY_TOKEN", token)
    else:
        monkeypatch.delenv("SUPERFACTORY_TOKEN", raising=False)
    monkeypatch.setattr(sys, "argv", ["superfactory", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    assert int(e.value.code or 0) == code, (args, out, err)
    assert "Traceback" not in err
    return out + err


def test_cli_end_to_end(tmp_path, capsys, monkeypatch):
    port = free_port()
    state = tmp_path / "state"
    cfg = state / "config.json"
    env = {**os.environ, "SUPERFACTORY_CONFIG": str(cfg)}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "superfactory.cli.main", "serve", "--port", str(port),
                               "--state-dir", str(state)], env=env, stderr=log, stdout=log)
    monkeypatch.setenv("SUPERFACTORY_CONFIG", str(cfg))
    try:
        def up() -> bool:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "serve to answer")
        assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
        assert json.loads(cfg.read_text())["url"] == f"http://127.0.0.1:{port}"

        def run(*args: str, code: int = 0, token: str | None = None) -> str:
            return _cli(capsys, monkeypatch, args, code, token)

        (tmp_path / "fleet.yaml").write_text(FLEET)
        assert "texas" in run("fleet", "import", str(tmp_path / "fleet.yaml"))
        token = run("tenant", "add", "acme", "--quota", "H100-SXM=128").strip()
        (tmp_path / "job.yaml").write_text(JOB)
        job_id = int(run("submit", str(tmp_path / "job.yaml"), token=token).strip())
        again = run("submit", str(tmp_path / "job.yaml"), "--idempotency-key", "k", token=token)
        assert "already" not in again  # a new key: a new job
        jobs = json.loads(run("queue", "--json", token=token))
        assert [j["state"] for j in jobs] == ["pending", "pending"] and jobs[0]["id"] == job_id
        assert "pending" in run("queue", "--state", "pending", token=token)
        shown = run("show", str(job_id), token=token)
        assert f"JobId={job_id}" in shown and "Why pending:" in shown and "cordoned" in shown
        assert "held" in run("hold", str(job_id), token=token)
        assert "pending" in run("release", str(job_id), token=token)
        assert "cancelled" in run("cancel", str(job_id), token=token)
        assert "texas" in run("factories")
        assert "cordoned" in run("cordon", "texas")
        assert "active" in run("uncordon", "texas")
        assert run("agent-token", "texas").startswith("sft_")
        err = run("show", "999", token=token, code=2)
        assert "no job 999" in err and "Traceback" not in err
        assert "wrong_role" not in run("cordon", "texas", token=token, code=2)  # the message, not the code
    finally:
        server.terminate()
        server.wait(10)
        log.close()
    assert "no control plane at" in _cli(capsys, monkeypatch, ["queue"], code=2)
