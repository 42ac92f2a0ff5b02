"""Security: every route refuses another tenant's token (and the wrong role); tokens compared in constant time;
the server binds to loopback by default."""

from __future__ import annotations

import inspect

from superfactory.cli import live as live_cli
from superfactory.live.services import auth

JOB = {"id": "mine", "accelerator": "H100-SXM", "gpus": 64, "work": "2d"}

# every route and how a foreign token must be refused: "job" routes hide another tenant's job (404);
# "admin" routes need an admin token (403); "agent" routes need an agent token (403); "read" routes are open to
# any tenant and show no tenant's jobs; "public" needs no token.
ROUTES = {
    ("POST", "/v1/jobs"): "submit",
    ("GET", "/v1/jobs"): "list",
    ("GET", "/v1/jobs/{job_id}"): "job",
    ("GET", "/v1/jobs/{job_id}/pending"): "job",
    ("GET", "/v1/jobs/{job_id}/events"): "job",
    ("POST", "/v1/jobs/{job_id}/cancel"): "job",
    ("POST", "/v1/jobs/{job_id}/hold"): "job",
    ("POST", "/v1/jobs/{job_id}/release"): "job",
    ("GET", "/v1/health"): "public",
    ("GET", "/v1/whoami"): "read",
    ("POST", "/v1/tenants"): "admin",
    ("GET", "/v1/tenants"): "admin",
    ("PATCH", "/v1/tenants/{tenant_id}"): "admin",
    ("POST", "/v1/tenants/{tenant_id}/tokens"): "admin",
    ("POST", "/v1/fleet/import"): "admin",
    ("GET", "/v1/factories"): "read",
    ("GET", "/v1/factories/{factory_id}"): "read",
    ("POST", "/v1/factories/{factory_id}/cordon"): "admin",
    ("POST", "/v1/factories/{factory_id}/drain"): "admin",
    ("POST", "/v1/factories/{factory_id}/uncordon"): "admin",
    ("POST", "/v1/factories/{factory_id}/tokens"): "admin",
    ("GET", "/v1/policies"): "read",
    ("PUT", "/v1/policies/active"): "admin",
    ("POST", "/v1/signals"): "admin",
    ("GET", "/v1/signals/{kind}/{key}"): "read",
    ("POST", "/v1/scheduler/cycle"): "admin",
    ("GET", "/v1/actions"): "admin",
    ("POST", "/v1/agent/register"): "agent",
    ("POST", "/v1/agent/heartbeat"): "agent",
    ("GET", "/v1/agent/assignments"): "agent",
    ("POST", "/v1/agent/jobs/{job_id}/report"): "agent",
    ("POST", "/v1/agent/jobs/{job_id}/checkpoints"): "agent",
    ("POST", "/v1/agent/mesh-status"): "agent",
    ("POST", "/v1/kms/jobs/{job_id}"): "agent",
}


def _api_routes(app):
    """Every (method, path) the API publishes in its OpenAPI document."""
    return {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}


def test_every_route_is_classified(api):
    assert _api_routes(api.app) == set(ROUTES), "classify new routes in ROUTES so the isolation test covers them"


def test_every_route_refuses_another_tenants_token(api):
    api.import_fleet()
    owner, intruder = api.tenant("owner"), api.tenant("intruder")
    agent = api.agent("texas")
    jid = api.submit(owner, JOB)["id"]
    bodies = {  # valid bodies, so what refuses the call is the token and nothing else
        "/v1/jobs": JOB, "/v1/tenants": {"id": "x"}, "/v1/tenants/{tenant_id}": {"priority": 1},
        "/v1/fleet/import": {"scenario": "default"}, "/v1/policies/active": {"name": "geo"},
        "/v1/signals": {"points": [{"kind": "price", "key": "ERCOT", "value": 1.0, "hour": 0}]},
        "/v1/agent/register": {"agent_id": "x"}, "/v1/agent/heartbeat": {"lease_epoch": 1},
        "/v1/agent/mesh-status": {"lease_epoch": 1, "sync_queue": {"virginia": 1}},
        "/v1/agent/jobs/{job_id}/report": {"fencing_token": 1, "state": "running"},
        "/v1/agent/jobs/{job_id}/checkpoints": {"fencing_token": 1, "step": 1, "progress_s": 1, "location": "x"},
        "/v1/kms/jobs/{job_id}": {"fencing_token": 1, "op": "fencing_token", "args": {"mesh": "job-1"}},
    }
    for (method, path), kind in ROUTES.items():
        url = path.format(job_id=jid, tenant_id="owner", factory_id="texas", kind="price", key="ERCOT")
        body = bodies.get(path, {})
        for token, who in ((intruder, "tenant"), (agent, "agent")):
            r = api.client.request(method, url, headers=token, json=body if method != "GET" else None)
            if kind == "job":
                want = 404 if who == "tenant" else 403
                assert r.status_code == want, (method, path, who, r.text)
                assert r.json()["error"]["code"] in ("job_not_found", "wrong_role")
            elif (kind == "admin" or (kind == "agent" and who == "tenant")
                  or (kind in ("read", "list", "submit") and who == "agent" and path != "/v1/whoami")):
                assert r.status_code == 403, (method, path, who, r.text)
            elif kind == "list":
                assert r.status_code == 200 and all(j["tenant"] == "intruder" for j in r.json()["jobs"])
    # the owner's job is untouched and still theirs
    job = api.call("GET", f"/v1/jobs/{jid}", owner)
    assert job["state"] == "pending" and [e["kind"] for e in job["history"]] == ["submitted"]
    assert api.call("GET", "/v1/jobs?tenant=owner", intruder, expect=403)["error"]["code"] == "wrong_tenant"
    assert api.call("POST", "/v1/jobs?tenant=owner", intruder, json=JOB, expect=403)["error"]["code"] == "wrong_tenant"


def test_agent_tokens_act_only_for_their_factory(api):
    api.import_fleet()
    owner = api.tenant("owner")
    tx, va = api.agent("texas"), api.agent("virginia")
    jid = api.submit(owner, JOB)["id"]
    api.cycle()
    job = api.job(jid)
    other = va if job["factory_id"] == "texas" else tx
    r = api.call("POST", f"/v1/agent/jobs/{jid}/report", other, expect=409,
                 json={"fencing_token": job["fencing_token"], "state": "running"})
    assert r["error"]["code"] == "stale_fencing_token"
    assert api.call("GET", "/v1/agent/assignments", other)["assignments"] == []


def test_tokens_compared_in_constant_time_and_loopback_default():
    src = inspect.getsource(auth.authenticate)
    assert "hmac.compare_digest" in src and "==" not in src.split("digest = _digest(secret)")[1].split("raise bad")[0]
    host = inspect.signature(live_cli.serve).parameters["host"].default
    assert host == "127.0.0.1"
