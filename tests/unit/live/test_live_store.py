"""The store, on SQLite and PostgreSQL: migrations, hashed tokens, idempotent submissions, listing, the user's
state transitions."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from superfactory.live.store import tables as t
from superfactory.live.store.db import current_revision, head_revision, migrate

JOB = {"id": "pretrain", "accelerator": "H100-SXM", "gpus": 64, "work": "2d"}


def test_migrations_create_exactly_the_tables(live):
    with live.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diffs == []
    assert current_revision(live.engine) == head_revision(live.engine)
    migrate(live.engine)  # idempotent on every start
    assert current_revision(live.engine) == head_revision(live.engine)


def test_tokens_are_stored_hashed(api):
    tok = api.tenant("acme")["Authorization"].split()[1]
    secret = tok.split(".", 1)[1]
    with api.live.engine.connect() as conn:
        stored = [r.secret_sha256 for r in conn.execute(sa.select(t.tokens))]
    assert stored and all(secret not in s for s in stored)
    bad = {"Authorization": f"Bearer {tok[:-2]}xx"}
    assert api.call("GET", "/v1/whoami", bad, expect=401)["error"]["code"] == "unauthenticated"
    assert api.call("GET", "/v1/whoami", {"Authorization": f"Bearer {tok}"})["tenant"] == "acme"


def test_idempotent_submit(api):
    api.import_fleet()
    acme = api.tenant("acme")
    first = api.submit(acme, JOB, key="k-1")
    again = api.submit(acme, JOB, key="k-1", expect=200)
    assert again["id"] == first["id"] and first["created"] and not again["created"]
    clash = api.submit(acme, {**JOB, "gpus": 128}, key="k-1", expect=409)
    assert clash["error"]["code"] == "idempotency_key_reused"
    other = api.tenant("other")
    assert api.submit(other, JOB, key="k-1")["id"] != first["id"]  # keys are per tenant


def test_concurrent_retries_make_one_job(api):
    api.import_fleet()
    acme = api.tenant("acme")
    ids: list[int] = []

    def go() -> None:
        r = api.client.post("/v1/jobs", json=JOB, headers={**acme, "Idempotency-Key": "same"})
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["id"])

    threads = [threading.Thread(target=go) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert len(api.call("GET", "/v1/jobs", acme)["jobs"]) == 1


def test_list_filters_and_pages(api):
    api.import_fleet()
    acme, other = api.tenant("acme"), api.tenant("other")
    mine = [api.submit(acme, {**JOB, "id": f"j{i}"})["id"] for i in range(5)]
    api.submit(other, JOB)
    api.call("POST", f"/v1/jobs/{mine[1]}/hold", acme)
    seen, after = [], 0
    while True:
        page = api.call("GET", f"/v1/jobs?limit=2&after_id={after}", acme)
        seen += [j["id"] for j in page["jobs"]]
        if page["next_after_id"] is None:
            break
        after = page["next_after_id"]
    assert seen == mine
    assert [j["id"] for j in api.call("GET", "/v1/jobs?state=held", acme)["jobs"]] == [mine[1]]
    assert len(api.call("GET", "/v1/jobs")["jobs"]) == 6  # the admin sees every tenant
    assert len(api.call("GET", "/v1/jobs?tenant=other")["jobs"]) == 1
    assert api.call("GET", "/v1/jobs?state=bogus", acme, expect=422)["error"]["code"] == "invalid_request"


def test_hold_release_cancel(api):
    api.import_fleet()
    acme = api.tenant("acme")
    jid = api.submit(acme, JOB)["id"]
    assert api.call("POST", f"/v1/jobs/{jid}/hold", acme)["state"] == "held"
    assert api.call("POST", f"/v1/jobs/{jid}/release", acme)["state"] == "pending"
    assert api.call("POST", f"/v1/jobs/{jid}/cancel", acme)["state"] == "cancelled"
    err = api.call("POST", f"/v1/jobs/{jid}/release", acme, expect=409)["error"]
    assert err["code"] == "invalid_transition" and "cancelled" in err["message"]
    kinds = [e["kind"] for e in api.call("GET", f"/v1/jobs/{jid}/events", acme)["events"]]
    assert kinds == ["submitted", "held", "released", "cancelled"]


def test_bad_input_is_a_clear_4xx(api):
    acme = api.tenant("acme")
    assert api.submit(acme, JOB, expect=409)["error"]["code"] == "no_fleet"
    api.import_fleet()
    e = api.submit(acme, {**JOB, "gpus": 10**6}, expect=422)["error"]
    assert e["code"] == "invalid_job" and "fits in no factory" in e["message"]
    e = api.submit(acme, {**JOB, "work": "12 parsecs"}, expect=422)["error"]
    assert "work" in e["message"]
    e = api.submit(acme, {**JOB, "accelerator": "Z80"}, expect=422)["error"]
    assert e["code"] == "invalid_request" and "accelerator" in e["message"]
    assert api.call("GET", "/v1/jobs/999", acme, expect=404)["error"]["code"] == "job_not_found"


def test_group_commit_gives_every_request_its_own_answer(api):
    """Concurrent submissions share transactions; a repeated key inside a batch is settled row by row."""
    api.import_fleet()
    acme = api.tenant("acme")
    got: dict[int, int] = {}

    def go(i: int) -> None:
        key = "dup" if i % 4 == 0 else f"k{i}"
        r = api.client.post("/v1/jobs", json={**JOB, "id": f"j{i}" if key != "dup" else "dup"},
                            headers={**acme, "Idempotency-Key": key})
        assert r.status_code in (200, 201), r.text
        got[i] = r.json()["id"]

    threads = [threading.Thread(target=go, args=(i,)) for i in range(24)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    dups = {got[i] for i in got if i % 4 == 0}
    others = [got[i] for i in got if i % 4]
    assert len(dups) == 1 and len(set(others)) == len(others) == 18 and not dups & set(others)
    committer = api.live.extras["committer"]
    assert committer.committed == 19  # 18 distinct jobs + the first "dup"
    with api.live.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.jobs)).scalar() == 19
        assert conn.execute(sa.select(sa.func.count()).select_from(t.job_events)).scalar() == 19
