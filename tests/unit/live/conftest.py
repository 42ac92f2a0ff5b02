"""Fixtures of the control plane's unit tests: stores of both kinds (SQLite, PostgreSQL), an API client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from live_pg import live, make_test_client, pg_cluster, store_url
from superfactory.live.api.app import create_app
from superfactory.live.context import Live

from scenario_builders import factory, scenario

__all__ = ["live", "pg_cluster", "store_url"]

#: two small H100 sites in different markets (16 DGX nodes = 128 GPUs each) and one EU site cleared for
#: personal data; fast to import (the built-in ``default`` takes ~1 s to compile)
SMALL_FLEET = scenario(
    [factory("texas", market="ERCOT", nodes=16), factory("virginia", market="PJM", nodes=16),
     factory("sweden", market="NORDPOOL_SE2", nodes=16, clearances=("EU", "EU_PERSONAL"), jurisdiction="EU")],
    [], links=[{"a": "texas", "b": "virginia", "bandwidth": "400Gbps", "latency": "20ms"}],
)


class Api:
    """A TestClient plus helpers: tokens, a fleet, agents that heartbeat."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.app = create_app(live, scheduler=False)
        self.client = make_test_client(self.app)
        self.admin = {"Authorization": f"Bearer {live.extras['admin_token']}"}
        self.agents: dict[str, tuple[dict[str, str], int]] = {}

    def call(self, method: str, path: str, token: dict[str, str] | None = None, expect: int | None = 200,
             **kw: Any) -> Any:
        r = self.client.request(method, path, headers={**(token if token is not None else self.admin),
                                                       **kw.pop("headers", {})}, **kw)
        if expect is not None:
            assert r.status_code == expect, (method, path, r.status_code, r.text)
        return r.json()

    def tenant(self, name: str, **kw: Any) -> dict[str, str]:
        tok = self.call("POST", "/v1/tenants", json={"id": name, **kw}, expect=201)["token"]
        return {"Authorization": f"Bearer {tok}"}

    def import_fleet(self, scenario: str | None = None, yaml_text: str | None = None) -> Any:
        """Import a built-in scenario by name, YAML text, or (neither) :data:`SMALL_FLEET`."""
        if scenario is None and yaml_text is None:
            yaml_text = SMALL_FLEET
        body = {"yaml": yaml_text} if yaml_text is not None else {"scenario": scenario}
        return self.call("POST", "/v1/fleet/import", json=body)

    def agent(self, factory_id: str) -> dict[str, str]:
        """Register an agent for ``factory_id`` (minting its token once); returns its auth header."""
        if factory_id not in self.agents:
            tok = self.call("POST", f"/v1/factories/{factory_id}/tokens", expect=201)["token"]
            hdr = {"Authorization": f"Bearer {tok}"}
            lease = self.call("POST", "/v1/agent/register", hdr, json={"agent_id": f"agent-{factory_id}"})
            self.agents[factory_id] = (hdr, lease["lease_epoch"])
        return self.agents[factory_id][0]

    def heartbeat(self, factory_id: str, down_nodes: list[int] | None = None, expect: int = 200) -> Any:
        hdr, epoch = self.agents[factory_id]
        return self.call("POST", "/v1/agent/heartbeat", hdr, json={"lease_epoch": epoch,
                                                                     "down_nodes": down_nodes or []}, expect=expect)

    def submit(self, token: dict[str, str], job: dict[str, Any], key: str | None = None, expect: int = 201) -> Any:
        headers = {"Idempotency-Key": key} if key else {}
        return self.call("POST", "/v1/jobs", token, json=job, headers=headers, expect=expect)

    def cycle(self) -> Any:
        return self.call("POST", "/v1/scheduler/cycle")

    def job(self, job_id: int) -> Any:
        return self.call("GET", f"/v1/jobs/{job_id}")


@pytest.fixture
def api(live: Live) -> Iterator[Api]:
    a = Api(live)
    yield a
    a.client.close()
