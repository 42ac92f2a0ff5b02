"""`superfactory up` starts a control plane and three agents from nothing; `down` leaves no process behind;
chaos commands refuse bad input with one message and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from superfactory.agent.executor import group_pids, process_start_ticks


def _cli(cwd: Path, *args: str, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERFACTORY_")}
    return subprocess.run([sys.executable, "-m", "superfactory.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def test_up_then_down_leaves_no_process(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = _cli(tmp_path, "up", "--port", str(port), "--no-demo-jobs", "--json")
    try:
        assert started.returncode == 0, started.stderr
        doc = json.loads(started.stdout)  # --json: pure JSON on stdout
        assert set(doc["pids"]) == {"server", "agent:texas", "agent:atlanta", "agent:wisconsin"}
        assert all(process_start_ticks(pid) is not None for pid in doc["pids"].values())
        # the CLI config points at the fleet: the control plane's own commands work
        factories = _cli(tmp_path, "factories", "--json")
        assert factories.returncode == 0, factories.stderr
        assert {f["id"] for f in json.loads(factories.stdout)} == {"texas", "atlanta", "wisconsin"}
        again = _cli(tmp_path, "up", "--no-demo-jobs", "--json")  # idempotent: starts only what is missing
        assert again.returncode == 0 and json.loads(again.stdout)["started"] == {}
        for args, message in ((("chaos", "fail-node", "texas/7"), "texas has nodes 0..1, not 7"),
                              (("chaos", "fail-node", "texas"), "fail-node takes FACTORY/NODE"),
                              (("chaos", "kill-agent", "mars"), "unknown site 'mars'"),
                              (("chaos", "price-shock", "ERCOT", "xten"), "factor must look like x10"),
                              (("chaos", "kill-job", "99"), "job 99 has no running process"),
                              (("logs", "99"), "no logs of job 99")):
            bad = _cli(tmp_path, *args)
            assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, (args, bad)
        shock = _cli(tmp_path, "chaos", "price-shock", "ERCOT", "x10", "--json")
        assert shock.returncode == 0 and json.loads(shock.stdout)["market"] == "ERCOT", shock.stderr
        # the shock is the live price signal policies see: this hour's ERCOT price is 10x what it was
        from superfactory.agent.fleet import LocalFleet

        sent = json.loads(shock.stdout)
        hourly = LocalFleet(tmp_path / ".superfactory").api("GET", "/v1/signals/price/ERCOT")["hourly"]
        assert hourly[-1] == sent["usd_per_mwh"] == 10 * sent["was_usd_per_mwh"] > 0, (hourly, sent)
    finally:
        stopped = _cli(tmp_path, "down", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {"stopped": True, "left_pids": []}
    assert all(group_pids(pid) == [] for pid in doc["pids"].values())
    assert _cli(tmp_path, "down").returncode == 0  # idempotent
    (tmp_path / "elsewhere").mkdir()
    none = _cli(tmp_path / "elsewhere", "down")
    assert none.returncode == 2 and "no local fleet" in none.stderr
