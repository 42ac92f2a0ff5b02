"""The live scheduler on both stores: the registered policies place jobs through the loop; leases with two
timeouts; fencing tokens; drain, quotas and agent reports."""

from __future__ import annotations

import pytest

JOB = {"id": "train", "accelerator": "H100-SXM", "gpus": 64, "work": "2d"}


def _assigned(api, factory_id):
    return api.call("GET", "/v1/agent/assignments", api.agents[factory_id][0])["assignments"]


def test_gang_places_only_where_an_agent_holds_a_lease(api):
    api.import_fleet()
    acme = api.tenant("acme")
    api.agent("texas")
    ids = [api.submit(acme, {**JOB, "id": f"j{i}"})["id"] for i in range(3)]
    out = api.cycle()
    assert out["outcomes"] == {"applied": 2}  # texas has 128 H100 GPUs: two 64-GPU gangs; no agent elsewhere
    jobs = [api.job(i) for i in ids]
    assert [j["state"] for j in jobs] == ["assigned", "assigned", "pending"]
    assert {j["factory_id"] for j in jobs[:2]} == {"texas"}
    assert jobs[0]["fencing_token"] < jobs[1]["fencing_token"]
    assert len(set(jobs[0]["nodes"]) | set(jobs[1]["nodes"])) == 16  # disjoint nodes
    got = _assigned(api, "texas")
    assert [(a["job_id"], a["action"], a["fencing_token"]) for a in got] == [
        (j["id"], "run", j["fencing_token"]) for j in jobs[:2]]
    why = {r["code"]: r for r in jobs[2]["pending"]["reasons"]}
    assert why["capacity"]["requested"] == 64 and why["capacity"]["available"] == 0
    actions = api.call("GET", "/v1/actions")
    assert [a["outcome"] for a in actions] == ["applied", "applied"]
    assert all(a["policy"] == "gang" and a["kind"] == "ActionApplied" for a in actions)


def test_short_timeout_stops_new_work_long_timeout_requeues(api):
    api.import_fleet()
    acme = api.tenant("acme")
    api.agent("texas")
    first = api.submit(acme, JOB)["id"]
    api.cycle()
    job = api.job(first)
    assert job["factory_id"] == "texas"
    hdr = api.agents["texas"][0]
    api.call("POST", f"/v1/agent/jobs/{first}/report", hdr, json={"fencing_token": job["fencing_token"],
                                                                     "state": "running", "progress_s": 100})
    api.call("POST", f"/v1/agent/jobs/{first}/checkpoints", hdr, json={
        "fencing_token": job["fencing_token"], "step": 10, "progress_s": 60, "location": "mesh://ck/10"})
    api.live.clock.advance(31)  # past the short timeout: suspect
    second = api.submit(acme, {**JOB, "id": "second"})["id"]
    api.cycle()
    assert api.job(second)["state"] == "pending"
    assert api.job(first)["state"] == "running"  # work already there stays
    fac = api.call("GET", "/v1/factories/texas")
    assert fac["lease"] == "suspect" and not fac["schedulable"]
    codes = [r["code"] for r in api.call("GET", f"/v1/jobs/{second}/pending")["reasons"]]
    assert codes == ["cordoned"]
    api.live.clock.advance(300)  # past the long timeout: lost, jobs requeued from their last checkpoint
    api.agent("virginia")
    api.cycle()
    moved = api.job(first)
    assert moved["factory_id"] == "virginia" and moved["state"] == "assigned"
    assert moved["fencing_token"] > job["fencing_token"] and moved["attempts"] == 2
    assert moved["progress_s"] == 60.0 and moved["committed_progress_s"] == 60.0
    kinds = [e["kind"] for e in moved["history"]]
    assert kinds.count("requeued") == 1 and kinds[-1] == "assigned"
    stale = api.call("POST", f"/v1/agent/jobs/{first}/report", hdr, expect=409,
                     json={"fencing_token": job["fencing_token"], "state": "running"})
    assert stale["error"]["code"] == "stale_fencing_token"
    assert api.heartbeat("texas", expect=409)["error"]["code"] == "lease_lost"


def test_drain_moves_running_jobs_after_a_checkpoint(api):
    api.import_fleet()
    acme = api.tenant("acme")
    tx = api.agent("texas")
    jid = api.submit(acme, JOB)["id"]
    api.cycle()
    tok = api.job(jid)["fencing_token"]
    api.call("POST", f"/v1/agent/jobs/{jid}/report", tx, json={"fencing_token": tok, "state": "running"})
    api.agent("virginia")
    assert api.call("POST", "/v1/factories/texas/drain")["state"] == "draining"
    (a,) = _assigned(api, "texas")
    assert a["action"] == "stop" and a["stop_reason"] == "drain"
    api.call("POST", f"/v1/agent/jobs/{jid}/checkpoints", tx, json={
        "fencing_token": tok, "step": 5, "progress_s": 500, "location": "mesh://x"})
    j = api.call("POST", f"/v1/agent/jobs/{jid}/report", tx, json={"fencing_token": tok, "state": "stopped"})
    assert j["state"] == "pending" and j["progress_s"] == 500 and not j["interrupted"]
    api.cycle()
    j = api.job(jid)
    assert j["state"] == "assigned" and j["factory_id"] == "virginia"


def test_quota_holds_back_the_tenants_excess(api):
    api.import_fleet()
    for f in ("texas", "virginia"):
        api.agent(f)
    acme = api.tenant("acme", quotas={"H100-SXM": 64})
    a = api.submit(acme, JOB)["id"]
    b = api.submit(acme, {**JOB, "id": "b"})["id"]
    api.cycle()
    assert api.job(a)["state"] == "assigned" and api.job(b)["state"] == "pending"
    (q,) = [r for r in api.job(b)["pending"]["reasons"] if r["code"] == "quota"]
    assert q["requested"] == 64 and q["available"] == 0 and q["unit"] == "GPUs"


def test_failures_requeue_from_the_last_checkpoint_and_success_frees_nodes(api):
    api.import_fleet()
    acme = api.tenant("acme")
    tx = api.agent("texas")
    jid = api.submit(acme, {**JOB, "gpus": 128})["id"]
    api.cycle()
    tok = api.job(jid)["fencing_token"]
    api.call("POST", f"/v1/agent/jobs/{jid}/checkpoints", tx, json={
        "fencing_token": tok, "step": 3, "progress_s": 30, "location": "m"})
    j = api.call("POST", f"/v1/agent/jobs/{jid}/report", tx, json={
        "fencing_token": tok, "state": "failed", "message": "NCCL timeout"})
    assert j["state"] == "pending" and j["interrupted"] and j["progress_s"] == 30
    api.cycle()
    j = api.job(jid)
    assert j["state"] == "assigned" and j["fencing_token"] > tok
    bad = api.call("POST", f"/v1/agent/jobs/{jid}/report", tx, expect=409,
                   json={"fencing_token": j["fencing_token"], "state": "succeeded"})
    assert bad["error"]["code"] == "invalid_transition"
    for state in ("running", "succeeded"):
        api.call("POST", f"/v1/agent/jobs/{jid}/report", tx, json={"fencing_token": j["fencing_token"],
                                                                     "state": state})
    cap = api.call("GET", "/v1/factories/texas")["capacity"]["H100-SXM"]
    assert cap["free_gpus"] == 128 and cap["busy_gpus"] == 0


@pytest.mark.parametrize("policy", ["geo", "greedy"])
def test_other_registered_policies_place_through_the_same_loop(api, policy):
    api.import_fleet()
    for f in ("texas", "virginia", "sweden"):
        api.agent(f)
    assert api.call("PUT", "/v1/policies/active", json={"name": policy})["active"]["name"] == policy
    acme = api.tenant("acme")
    ids = [api.submit(acme, {**JOB, "id": f"j{i}"})["id"] for i in range(3)]
    api.cycle()
    placed = [api.job(i) for i in ids]
    assert sum(j["state"] == "assigned" for j in placed) >= 2
    for j in placed:  # geo may hold a job back for cheaper power: then why-pending says so, with prices
        if j["state"] != "assigned":
            (price,) = [r for r in j["pending"]["reasons"] if r["code"] == "price"]
            assert policy == "geo" and price["unit"] == "USD/MWh" and price["requested"] > 0 < price["available"]
    assert {a["policy"] for a in api.call("GET", "/v1/actions")} == {policy}
    e = api.call("PUT", "/v1/policies/active", json={"name": "nope"}, expect=422)["error"]
    assert e["code"] == "unknown_policy" and "gang" in e["message"]


def test_scheduler_thread_pass_places_after_a_submission_and_only_one_leader_acts(api):
    from superfactory.live.context import Live
    from superfactory.live.scheduler.service import SchedulerService

    api.import_fleet()
    api.agent("texas")
    acme = api.tenant("acme")
    other_process = Live(api.live.engine, api.live.clock, api.live.settings)  # same store, its own wake-ups
    leader, follower = SchedulerService(api.live), SchedulerService(other_process)
    assert leader.tick() and not follower.tick()  # the lock is a lease: one scheduler at a time
    jid = api.submit(acme, JOB)["id"]  # wakes the scheduler
    assert api.live.wake.is_set()
    assert not follower.tick() and api.job(jid)["state"] == "pending"
    assert leader.tick()
    assert api.job(jid)["state"] == "assigned"
    api.live.clock.advance(11)  # the leader goes quiet past its lock lease: another process takes over
    assert follower.tick() and not leader.tick()


def test_migrate_moves_a_running_job_under_a_new_token(api):
    from superfactory.domain.fleet import Migrate, Plan
    from superfactory.live.scheduler.actuator import StoreActuator
    from superfactory.live.scheduler.view import StoreFleetView

    api.import_fleet()
    tx, _ = api.agent("texas"), api.agent("virginia")
    acme = api.tenant("acme")
    jid = api.submit(acme, JOB)["id"]
    api.cycle()
    job = api.job(jid)
    assert job["factory_id"] == "texas"  # gang fills sites in import order
    api.call("POST", f"/v1/agent/jobs/{jid}/report", tx, json={"fencing_token": job["fencing_token"],
                                                                 "state": "running"})
    dest = tuple(range(8, 16))
    (out,) = StoreActuator(api.live).apply(Plan((Migrate(str(jid), "virginia", dest, "cheaper", "t:0:0"),)))
    assert out.in_force, out
    (a,) = _assigned(api, "texas")
    assert a["action"] == "stop" and a["stop_reason"] == "migrate"
    snap = StoreFleetView(api.live).snapshot()
    va = snap.states[snap.factory_index("virginia")]
    assert all(va.node_status[n] == 1 for n in dest)  # reserved at the destination while the source stops
    (again,) = StoreActuator(api.live).apply(Plan((Migrate(str(jid), "virginia", dest, "", "t:1:0"),)))
    assert not again.in_force  # stopping already: refused, with the reason
    moved = api.call("POST", f"/v1/agent/jobs/{jid}/report", tx, json={"fencing_token": job["fencing_token"],
                                                                         "state": "stopped"})
    assert moved["state"] == "assigned" and moved["factory_id"] == "virginia" and moved["nodes"] == list(dest)
    assert moved["fencing_token"] > job["fencing_token"]
    assert _assigned(api, "texas") == [] and _assigned(api, "virginia")[0]["job_id"] == jid
