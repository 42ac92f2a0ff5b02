"""Keys across sites: checkpoint keys and the commit ledger come only from the control plane (/v1/kms).

In-process control plane (the real app on a real store) and a real checkpoint mesh on temporary targets: a job
checkpointed at site A is moved by a drain and restored at site B with no keyring file anywhere; the superseded
incarnation at A can no longer fetch keys (409 -> StaleFencingTokenError); other tenants and other factories are
refused; the keyring row is encrypted at rest and bound to its job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from live_pg import live, make_test_client, pg_cluster, store_url
from superfactory.agent.kms import HttpKeyProvider
from superfactory.agent.meshconf import StorageTarget, job_mesh_dict, write_job_mesh_config
from superfactory.live.api.app import create_app
from superfactory.live.store import tables as t
from superfactory.mesh import CheckpointMesh, StaleFencingTokenError, load_config

from scenario_builders import factory, scenario

__all__ = ["live", "pg_cluster", "store_url"]

FLEET = scenario([factory("texas", market="ERCOT", nodes=4), factory("virginia", market="PJM", nodes=4)], [])
JOB = {"id": "kms-job", "accelerator": "H100-SXM", "gpus": 8, "work": "2d"}


class _Plane:
    def __init__(self, live: Any) -> None:
        self.client = make_test_client(create_app(live, scheduler=False))
        self.admin = {"Authorization": f"Bearer {live.extras['admin_token']}"}
        self.tokens: dict[str, str] = {}

    def call(self, method: str, path: str, hdr: dict[str, str] | None = None, expect: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, path, headers=hdr or self.admin, **kw)
        assert r.status_code == expect, (method, path, r.status_code, r.text)
        return r.json()

    def agent(self, fid: str) -> str:
        tok = self.call("POST", f"/v1/factories/{fid}/tokens", expect=201)["token"]
        self.call("POST", "/v1/agent/register", {"Authorization": f"Bearer {tok}"}, json={"agent_id": fid})
        self.tokens[fid] = tok
        return tok

    def keys(self, fid: str, job: dict[str, Any]) -> HttpKeyProvider:
        return HttpKeyProvider("http://testserver", self.tokens[fid], int(job["id"]), int(job["fencing_token"]),
                               http=self.client, retry_s=0)


def _mesh(tmp: Path, site: str, job_id: int, keys: HttpKeyProvider) -> CheckpointMesh:
    targets = [StorageTarget(f"t{i}", str(tmp / "targets" / f"t{i}"), f"r{i}", "US", site=f"s{i}") for i in range(3)]
    cfg = job_mesh_dict(str(job_id), targets, tmp / "never" / "keyring.json", fsync=False)
    return CheckpointMesh(load_config(write_job_mesh_config(tmp / site / "mesh.yaml", cfg)), keys=keys)


def test_checkpoint_at_a_restores_at_b_with_keys_only_from_the_control_plane(live: Any, tmp_path: Path) -> None:
    cp = _Plane(live)
    cp.call("POST", "/v1/fleet/import", json={"yaml": FLEET})
    owner = {"Authorization": f"Bearer {cp.call('POST', '/v1/tenants', json={'id': 'owner'}, expect=201)['token']}"}
    for fid in ("texas", "virginia"):
        cp.agent(fid)
    jid = cp.call("POST", "/v1/jobs", owner, json=JOB, expect=201)["id"]
    cp.call("POST", "/v1/scheduler/cycle")
    job_a = cp.call("GET", f"/v1/jobs/{jid}")
    site_a = job_a["factory_id"]
    site_b = "virginia" if site_a == "texas" else "texas"
    keys_a = cp.keys(site_a, job_a)
    mesh_a = _mesh(tmp_path, site_a, jid, keys_a)
    mesh_a.raise_fence(job_a["fencing_token"])
    payload = bytes(range(256)) * 512
    mesh_a.save(payload, step=10, fencing_token=job_a["fencing_token"])
    mesh_a.close()

    # the job moves: drain site A, A's agent reports the stop, the scheduler places it at B with a new token
    cp.call("POST", f"/v1/factories/{site_a}/drain")
    cp.call("POST", f"/v1/agent/jobs/{jid}/report", {"Authorization": f"Bearer {cp.tokens[site_a]}"},
            json={"fencing_token": job_a["fencing_token"], "state": "stopped"})
    cp.call("POST", "/v1/scheduler/cycle")
    job_b = cp.call("GET", f"/v1/jobs/{jid}")
    assert job_b["factory_id"] == site_b and job_b["fencing_token"] > job_a["fencing_token"]

    mesh_b = _mesh(tmp_path, site_b, jid, cp.keys(site_b, job_b))
    mesh_b.raise_fence(job_b["fencing_token"])
    restored = mesh_b.restore()
    assert restored.manifest.step == 10 and bytes(restored.data) == payload
    record = mesh_b.keys.commit_record(f"job-{jid}")
    assert record is not None and record.step == 10
    assert not (tmp_path / "never").exists(), "no keyring file may exist at any site"

    # the superseded incarnation at A: every key and ledger call is refused, and so is a late save
    for call in (lambda: keys_a.unwrap("any", b"x" * 24), lambda: keys_a.commit_record(f"job-{jid}"),
                 keys_a.current_key_id):
        with pytest.raises(StaleFencingTokenError):
            call()
    zombie = _mesh(tmp_path, site_a + "-zombie", jid, keys_a)
    with pytest.raises(StaleFencingTokenError):
        zombie.save(b"late" * 1000, step=20, fencing_token=job_a["fencing_token"])
    assert mesh_b.restore().manifest.step == 10

    # isolation: a tenant token (even the owner's) and the other factory's agent are refused
    body = {"fencing_token": job_b["fencing_token"], "op": "keys", "args": {}}
    intruder = {"Authorization": f"Bearer {cp.call('POST', '/v1/tenants', json={'id': 'other'}, expect=201)['token']}"}
    for hdr in (owner, intruder):
        assert cp.call("POST", f"/v1/kms/jobs/{jid}", hdr, json=body, expect=403)["error"]["code"] == "wrong_role"
    other_agent = {"Authorization": f"Bearer {cp.tokens[site_a]}"}
    assert cp.call("POST", f"/v1/kms/jobs/{jid}", other_agent, json=body,
                   expect=409)["error"]["code"] == "stale_fencing_token"
    # another tenant's job placed at B: B's agent may not reach it with this job's token
    jid2 = cp.call("POST", "/v1/jobs", intruder, json={**JOB, "id": "theirs"}, expect=201)["id"]
    cp.call("POST", "/v1/scheduler/cycle")
    assert cp.call("POST", f"/v1/kms/jobs/{jid2}", {"Authorization": f"Bearer {cp.tokens[site_b]}"}, json=body,
                   expect=409)["error"]["code"] == "stale_fencing_token"

    # at rest: encrypted, and bound to its job and tenant (a row copied onto another job does not decrypt)
    with live.engine.begin() as conn:
        row = conn.execute(sa.select(t.job_keyrings).where(t.job_keyrings.c.job_id == jid)).one()
        assert b"material_b64" not in bytes(row.ciphertext) and b"ledger" not in bytes(row.ciphertext)
        conn.execute(t.job_keyrings.insert().values(job_id=jid2, tenant_id="other", version=1, nonce=row.nonce,
                                                    ciphertext=row.ciphertext, updated_at_unix_s=0.0))
    job2 = cp.call("GET", f"/v1/jobs/{jid2}")
    if job2["factory_id"] is not None:
        tok2 = cp.tokens[job2["factory_id"]]
        r = cp.call("POST", f"/v1/kms/jobs/{jid2}", {"Authorization": f"Bearer {tok2}"},
                    json={**body, "fencing_token": job2["fencing_token"]}, expect=404)
        assert r["error"]["code"] == "key_not_found" and "does not decrypt" in r["error"]["message"]
