"""A local fleet on one machine: the control plane, one agent per site (three sites in three markets) and demo
jobs — what ``superfactory up`` starts and ``superfactory down`` stops, and what the fault tests drive.

Everything lives under ``<state_dir>/fleet/``: the SQLite store, the CLI config with the admin token, agent
configs and tokens (0600), each agent's state folder (job logs, progress files, ``down_nodes.json``,
``partitioned``), checkpoint storage (two directory targets per site, so a job's mesh spans three regions) and
``pids.json``, the processes started (pid and start time, so a reused pid is never signalled). Every process is
a session of its own; ``stop`` ends agents (their jobs checkpoint), then the server, then kills whatever is
left of any recorded process group, and returns what survived (nothing, or it says so).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from superfactory.agent.executor import group_pids, process_start_ticks
from superfactory.errors import SuperfactoryError

__all__ = ["DEMO_JOBS", "SITES", "FleetError", "FleetOptions", "LocalFleet", "demo_scenario"]

#: (factory, region, market): three sites in three electricity markets
SITES = (("texas", "us-south", "ERCOT"), ("atlanta", "us-southeast", "SERC"), ("wisconsin", "us-central", "MISO"))

DEMO_JOBS: tuple[dict[str, Any], ...] = (
    {"id": "demo-llm", "accelerator": "H100-SXM", "gpus": 8, "work": "120s",
     "checkpoint": {"interval": "1s", "blocking": "0s", "size": "1MB"}},
    {"id": "demo-vision", "accelerator": "H100-SXM", "gpus": 8, "work": "90s",
     "checkpoint": {"interval": "2s", "blocking": "0s", "size": "1MB"}},
    {"id": "demo-speech", "accelerator": "H100-SXM", "gpus": 16, "work": "60s",
     "checkpoint": {"interval": "1s", "blocking": "0s", "size": "1MB"}},
)


#: policy parameters at the demo's scale (its jobs run minutes): geo's once-per-hour move limit -> 10 s
DEMO_POLICY_PARAMS: dict[str, dict[str, Any]] = {"geo": {"min_move_interval_s": 10}}


class FleetError(SuperfactoryError):
    """The local fleet could not be started, reached or stopped; the message says which part and why."""


@dataclass(frozen=True)
class FleetOptions:
    """Ports, timeouts and the step scale of a local fleet (tests shorten the timeouts)."""

    port: int = 8787
    suspect_after_s: float = 10.0
    lost_after_s: float = 30.0
    heartbeat_interval_s: float = 1.0
    cycle_s: float = 1.0
    hang_s: float = 60.0
    startup_s: float = 300.0
    stop_grace_s: float = 10.0
    tick_s: float = 0.2
    seconds_per_step: float = 0.1
    step_wall_s: float | None = None
    nodes_per_site: int = 2
    mesh_fsync: bool = True
    policy: str | None = None
    warm_start: bool = True  # agents fork jobs from a zygote with torch imported (agent.zygote)


def demo_scenario(nodes_per_site: int = 2) -> dict[str, Any]:
    """The fleet a local fleet declares: three small DGX H100 sites (``nodes_per_site`` × 8 logical GPUs)."""
    return {
        "name": "local-fleet",
        "description": "superfactory up: three sites in three markets on this machine",
        "duration": "30d",
        "factories": [{"id": f, "region": r, "market": m, "power_cap": "1MW", "cooling_capacity": "1MW",
                       "systems": [{"system": "dgx-h100", "nodes": nodes_per_site}]} for f, r, m in SITES],
        "links": [{"a": a[0], "b": b[0], "bandwidth": "400Gbps", "latency": "20ms"}
                  for i, a in enumerate(SITES) for b in SITES[i + 1 :]],
        "jobs": [],
    }


def _wait(pred: Any, timeout_s: float, what: str, poll_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(poll_s)
    raise FleetError(f"timed out after {timeout_s:g} s waiting for {what}")


class LocalFleet:
    """The local fleet under ``state_dir/fleet`` (see the module docstring)."""

    def __init__(self, state_dir: Path, options: FleetOptions | None = None) -> None:
        self.root = Path(state_dir).resolve() / "fleet"
        saved = self.root / "fleet.json"
        if options is None and saved.exists():
            options = FleetOptions(**json.loads(saved.read_text()))
        self.options = options or FleetOptions()
        self.url = f"http://127.0.0.1:{self.options.port}"
        self._procs: dict[str, list[subprocess.Popen[bytes]]] = {}  # children of this process, reaped by reap()

    # -- layout ----------------------------------------------------------------------------------------------
    def agent_dir(self, site: str) -> Path:
        return self.root / "agents" / site

    @property
    def pids_path(self) -> Path:
        return self.root / "pids.json"

    def _pids(self) -> dict[str, dict[str, Any]]:
        try:
            return dict(json.loads(self.pids_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _record(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        pids = self._pids()
        pids[name] = {"pid": proc.pid, "start_ticks": process_start_ticks(proc.pid) or 0}
        self.pids_path.write_text(json.dumps(pids, indent=1))

    def alive(self, name: str) -> bool:
        """Whether the recorded process ``name`` (``server``, ``agent:texas``) is running."""
        rec = self._pids().get(name)
        return rec is not None and process_start_ticks(rec["pid"]) == rec["start_ticks"]

    def pid(self, name: str) -> int | None:
        rec = self._pids().get(name)
        return rec["pid"] if rec is not None and self.alive(name) else None

    def _spawn(self, name: str, argv: list[str]) -> int:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.root / "logs" / f"{name.replace(':', '-')}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=self.root)
        self._record(name, proc)
        self._procs.setdefault(name, []).append(proc)
        return proc.pid

    def reap(self) -> None:
        """Collect the exit status of children of this process that ended (no zombies are left behind)."""
        for procs in self._procs.values():
            for proc in procs:
                proc.poll()

    # -- control plane ---------------------------------------------------------------------------------------
    def admin_token(self) -> str:
        try:
            return str(json.loads((self.root / "cli-config.json").read_text())["token"])
        except (OSError, ValueError, KeyError) as exc:
            raise FleetError(f"no admin token in {self.root / 'cli-config.json'} ({exc}); is the fleet up?") from None

    def api(self, method: str, path: str, **kw: Any) -> Any:
        """Call the control plane as admin; FleetError with the server's message on a refusal."""
        try:
            r = httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {self.admin_token()}",
                                                                **kw.pop("headers", {})}, timeout=10.0, **kw)
        except httpx.HTTPError as exc:
            raise FleetError(f"{method} {self.url}{path}: {exc}") from None
        if r.status_code >= 400:
            where = f" (server log: {self.root / 'logs' / 'server.log'})" if r.status_code >= 500 else ""
            raise FleetError(f"{method} {path}: {r.status_code} {r.text[:500]}{where}")
        return r.json()

    def start_server(self) -> int:
        o = self.options
        argv = [sys.executable, "-m", "superfactory.agent.controlplane", "--db",
                f"sqlite:///{self.root / 'control-plane.db'}", "--port", str(o.port),
                "--config-out", str(self.root / "cli-config.json"), "--suspect-after-s", str(o.suspect_after_s),
                "--lost-after-s", str(o.lost_after_s), "--heartbeat-interval-s", str(o.heartbeat_interval_s),
                "--cycle-s", str(o.cycle_s)]
        if o.policy:
            argv += ["--policy", o.policy]
        pid = self._spawn("server", argv)
        _wait(lambda: self._healthy() or (not self.alive("server") and self._dead("server")), 60.0,
              f"the control plane on {self.url} (log {self.root / 'logs' / 'server.log'})")
        return pid

    def _dead(self, name: str) -> bool:
        raise FleetError(f"{name} exited at start; see {self.root / 'logs' / (name.replace(':', '-') + '.log')}")

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/v1/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def bootstrap(self) -> None:
        """Declare the fleet, the demo tenant and one agent token + config per site (once)."""
        marker = self.root / "bootstrapped"
        if marker.exists():
            return
        scenario = demo_scenario(self.options.nodes_per_site)
        (self.root / "fleet.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
        self.api("POST", "/v1/fleet/import", json={"yaml": yaml.safe_dump(scenario, sort_keys=False)})
        with contextlib.suppress(FleetError):  # exists already after a partial bootstrap
            self.api("POST", "/v1/tenants", json={"id": "demo"})
        if self.options.policy in DEMO_POLICY_PARAMS:
            self.api("PUT", "/v1/policies/active", json={"name": self.options.policy,
                                                          "params": DEMO_POLICY_PARAMS[self.options.policy]})
        from superfactory.agent.nodes import factory_nodes
        from superfactory.scenario.loader import load_scenario

        factories = {f.id: f for f in load_scenario(str(self.root / "fleet.yaml")).factories}
        storage = [{"name": f"{site}-{x}", "url": str(self.root / "storage" / site / x), "region": region,
                    "jurisdiction": "US", "site": site} for site, region, _ in SITES for x in ("a", "b")]
        o = self.options
        for site, _region, _market in SITES:
            token = self.api("POST", f"/v1/factories/{site}/tokens")["token"]
            d = self.agent_dir(site)
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / "token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(token)
            cfg = {"factory": site, "server": self.url, "token_file": str(d / "token"), "agent_id": f"{site}-agent",
                   "state_dir": str(d), "power_w": 1e6, "cooling_w": 1e6, "nodes": factory_nodes(factories[site]),
                   "storage": storage, "keyring": str(self.root / "keys" / "keyring.json"),
                   "mesh_fsync": o.mesh_fsync,
                   "job": {"seconds_per_step": o.seconds_per_step, "step_wall_s": o.step_wall_s,
                           "warm_start": o.warm_start},
                   "timeouts": {"hang_s": o.hang_s, "startup_s": o.startup_s, "stop_grace_s": o.stop_grace_s,
                                "tick_s": o.tick_s}}
            (d / "agent.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        marker.write_text("ok\n")

    # -- agents ----------------------------------------------------------------------------------------------
    def start_agent(self, site: str) -> int:
        return self._spawn(f"agent:{site}", [sys.executable, "-m", "superfactory.agent", "--config",
                                             str(self.agent_dir(site) / "agent.yaml")])

    def up(self, demo_jobs: bool = True) -> dict[str, int]:
        """Start what is not running (server, bootstrap, agents) and submit the demo jobs once."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "fleet.json").write_text(json.dumps(asdict(self.options)))
        started = {}
        if not self.alive("server"):
            started["server"] = self.start_server()
        self.bootstrap()
        for site, _, _ in SITES:
            if not self.alive(f"agent:{site}"):
                started[f"agent:{site}"] = self.start_agent(site)
        if demo_jobs:
            for spec in DEMO_JOBS:
                self.submit(spec)
        return started

    def wait_warm(self, timeout_s: float = 180.0) -> None:
        """Wait until every agent's zygote is ready, so job starts are warm (no-op without ``warm_start``)."""
        if not self.options.warm_start:
            return

        def warm() -> bool:
            for site, _, _ in SITES:
                try:
                    if not json.loads((self.agent_dir(site) / "agent.json").read_text()).get("warm"):
                        return False
                except (OSError, ValueError):
                    return False
            return True

        _wait(warm, timeout_s, "the agents' zygotes to import torch (agents/*/zygote.log)", poll_s=0.2)

    def submit(self, spec: dict[str, Any], key: str | None = None) -> int:
        """Submit a job for the demo tenant (idempotent by ``key``, default the spec's id); returns its id."""
        ans = self.api("POST", "/v1/jobs?tenant=demo", json=spec, headers={"Idempotency-Key": key or spec["id"]})
        return int(ans["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.api("GET", f"/v1/jobs/{job_id}"))

    def events(self, job_id: int) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/v1/jobs/{job_id}/events?after_id=0&wait_s=0")["events"])

    # -- processes -------------------------------------------------------------------------------------------
    def signal(self, name: str, sig: int) -> int | None:
        """Send ``sig`` to the recorded process ``name`` (and its group); its pid, or None if not running."""
        pid = self.pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            if sig == signal.SIGKILL:
                for proc in self._procs.get(name, []):
                    if proc.pid == pid:
                        proc.wait()
        return pid

    def job_groups(self) -> list[dict[str, Any]]:
        """Job incarnations the agents record (``agent.json``): job id, token, pid, pgid, start time."""
        out = []
        for site, _, _ in SITES:
            with contextlib.suppress(OSError, ValueError):
                state = json.loads((self.agent_dir(site) / "agent.json").read_text())
                out += [{**j["handle"], "site": site} for j in state.get("jobs", [])]
        return out

    def down(self, grace_s: float | None = None) -> list[int]:
        """Stop everything ``up`` started; returns the pids still alive afterwards (empty = clean)."""
        grace = self.options.stop_grace_s if grace_s is None else grace_s
        names = [n for n in self._pids() if n.startswith("agent:")]
        for name in names:
            self.signal(name, signal.SIGTERM)  # agents stop their jobs gracefully (checkpoint first)
        with contextlib.suppress(FleetError):
            _wait(lambda: not any(self.alive(n) for n in names), grace + 10.0, "agents to stop")
        self.signal("server", signal.SIGTERM)
        with contextlib.suppress(FleetError):
            _wait(lambda: not self.alive("server"), 10.0, "the server to stop")
        groups = {rec["pid"] for rec in self._pids().values()} | {j["pgid"] for j in self.job_groups()}
        for pgid in groups:
            if group_pids(pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(FleetError):
            _wait(lambda: not any(group_pids(g) for g in groups), 10.0, "killed processes to exit")
        for procs in self._procs.values():
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5.0)
        left = sorted(p for g in groups for p in group_pids(g))
        if not left:
            with contextlib.suppress(OSError):
                self.pids_path.unlink()
        return left
