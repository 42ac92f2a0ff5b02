"""A control plane for the metrics tests: a store (SQLite file), an app, and either Starlette's TestClient (manual
clock) or a real uvicorn server on a free loopback port (wall clock) that a real Prometheus can scrape."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from live_pg import make_test_client
from superfactory.live.api.app import create_app
from superfactory.live.context import Live, ManualClock, Settings, WallClock, ensure_epoch
from superfactory.live.metrics_worker import close_worker
from superfactory.live.services.auth import bootstrap_admin, forget_cached
from superfactory.live.store.db import open_store

from scenario_builders import factory, scenario

#: two H100 sites (16 DGX nodes = 128 GPUs each) in two markets, joined by one link
FLEET = scenario([factory("texas", market="ERCOT", nodes=16), factory("virginia", market="PJM", nodes=16)], [],
                 links=[{"a": "texas", "b": "virginia", "bandwidth": "400Gbps", "latency": "20ms"}])
JOB = {"accelerator": "H100-SXM", "gpus": 64, "work": "2d"}
METRICS_TOKEN = "metrics-reader-secret-for-tests"


def make_live(folder: Path, manual: bool, url: str | None = None, worker: bool = False) -> Live:
    """A control plane's context; ``worker`` renders /metrics in a worker process (the default of ``serve``),
    otherwise in-process, where tests can look at the fold's state."""
    engine = open_store(url or f"sqlite:///{folder}/store.db")
    clock: Any = ManualClock() if manual else WallClock(time.time())
    ensure_epoch(engine, clock.epoch_unix_s)
    live = Live(engine, clock, Settings(suspect_after_s=60, lost_after_s=600, cycle_s=1))
    live.extras["admin_token"] = bootstrap_admin(engine, clock.unix_s())
    live.extras["metrics_token"] = METRICS_TOKEN
    live.extras["metrics_worker"] = worker
    forget_cached()
    return live


class Plane:
    """Calls against the app, through a TestClient or over HTTP to a uvicorn server."""

    def __init__(self, live: Live, serve: bool = False) -> None:
        self.live = live
        self.app = create_app(live, scheduler=False)
        self.admin = {"Authorization": f"Bearer {live.extras['admin_token']}"}
        self.agents: dict[str, tuple[dict[str, str], int]] = {}
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        if serve:
            from prometheus_harness import free_port

            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                        log_level="warning", lifespan="off"))
            self.thread = threading.Thread(target=self.server.run, name="control-plane", daemon=True)
            self.thread.start()
            deadline = time.monotonic() + 30
            while not self.server.started:
                assert time.monotonic() < deadline, "control plane did not start"
                time.sleep(0.05)
            self.client: Any = httpx.Client(base_url=self.url, timeout=30)
        else:
            self.client = make_test_client(self.app)

    def stop(self) -> None:
        close_worker(self.live)
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
            self.client.close()

    def call(self, method: str, path: str, token: dict[str, str] | None = None, expect: int | None = 200,
             **kw: Any) -> Any:
        r = self.client.request(method, path, headers={**(token if token is not None else self.admin),
                                                       **kw.pop("headers", {})}, **kw)
        if expect is not None:
            assert r.status_code == expect, (method, path, r.status_code, r.text)
        return r.json()

    def metrics(self, token: dict[str, str] | None) -> httpx.Response:
        return self.client.get("/metrics", headers=token or {})

    def tenant(self, name: str) -> dict[str, str]:
        tok = self.call("POST", "/v1/tenants", json={"id": name}, expect=201)["token"]
        return {"Authorization": f"Bearer {tok}"}

    def agent(self, factory_id: str) -> dict[str, str]:
        if factory_id not in self.agents:
            tok = self.call("POST", f"/v1/factories/{factory_id}/tokens", expect=201)["token"]
            hdr = {"Authorization": f"Bearer {tok}"}
            lease = self.call("POST", "/v1/agent/register", hdr, json={"agent_id": f"agent-{factory_id}"})
            self.agents[factory_id] = (hdr, lease["lease_epoch"])
        return self.agents[factory_id][0]

    def heartbeat(self, factory_id: str, down_nodes: list[int] | None = None) -> Any:
        hdr, epoch = self.agents[factory_id]
        return self.call("POST", "/v1/agent/heartbeat", hdr, json={"lease_epoch": epoch,
                                                                     "down_nodes": down_nodes or []})

    def submit(self, token: dict[str, str], name: str, **kw: Any) -> int:
        return int(self.call("POST", "/v1/jobs", token, json={**JOB, "id": name, **kw}, expect=201)["id"])

    def cycle(self) -> Any:
        return self.call("POST", "/v1/scheduler/cycle")

    def job(self, job_id: int) -> Any:
        return self.call("GET", f"/v1/jobs/{job_id}")

    def report(self, job_id: int, factory_id: str, **body: Any) -> Any:
        tok = self.job(job_id)["fencing_token"]
        return self.call("POST", f"/v1/agent/jobs/{job_id}/report", self.agents[factory_id][0],
                         json={"fencing_token": tok, **body})

    def checkpoint(self, job_id: int, factory_id: str, step: int, progress_s: float,
                   mesh: dict[str, Any] | None = None) -> Any:
        tok = self.job(job_id)["fencing_token"]
        body = {"fencing_token": tok, "step": step, "progress_s": progress_s, "location": f"mesh://ck/{step}"}
        return self.call("POST", f"/v1/agent/jobs/{job_id}/checkpoints", self.agents[factory_id][0],
                         json={**body, **({"mesh": mesh} if mesh else {})})

    def mesh_status(self, factory_id: str, expect: int | None = 200, **body: Any) -> Any:
        hdr, epoch = self.agents[factory_id]
        return self.call("POST", "/v1/agent/mesh-status", hdr, expect=expect, json={"lease_epoch": epoch, **body})


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of a Prometheus text exposition by name (labels parsed; enough for our label values)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = {}
        for part in filter(None, rest.rstrip("}").split('",')):
            k, _, v = part.partition('="')
            labels[k] = v.rstrip('"')
        out.setdefault(name, []).append((labels, float(value)))
    return out
