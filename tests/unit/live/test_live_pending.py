"""Why pending: every reason code, with requested vs available figures."""

from __future__ import annotations

from superfactory.domain.fleet import Plan, Preempt
from superfactory.live.scheduler.actuator import StoreActuator

from scenario_builders import factory, scenario

JOB = {"id": "j", "accelerator": "H100-SXM", "gpus": 64, "work": "2d"}


def _reasons(api, jid, token):
    return {r["code"]: r for r in api.call("GET", f"/v1/jobs/{jid}/pending", token)["reasons"]}


def test_held_quota_cordoned_capacity(api):
    api.import_fleet()
    acme = api.tenant("acme")
    capped = api.tenant("capped", quotas={"H100-SXM": 32})
    held = api.submit(acme, JOB)["id"]
    api.call("POST", f"/v1/jobs/{held}/hold", acme)
    r = _reasons(api, held, acme)
    assert "release" in r["held"]["message"] and (r["held"]["requested"], r["held"]["available"]) == (64, 0)
    over = api.submit(capped, JOB)["id"]
    q = _reasons(api, over, capped)["quota"]
    assert (q["requested"], q["available"], q["unit"]) == (64, 32, "GPUs")
    c = _reasons(api, over, capped)["cordoned"]  # no agent holds a lease anywhere yet
    assert c["requested"] == 64 and c["available"] == 0 and "texas" in c["message"]
    for f in ("texas", "virginia"):
        api.agent(f)
    big = [api.submit(acme, {**JOB, "id": f"big{i}", "gpus": 128})["id"] for i in range(3)]
    api.cycle()
    cap = _reasons(api, big[2], acme)["capacity"]
    assert (cap["requested"], cap["available"], cap["unit"]) == (128, 0, "GPUs")
    api.call("POST", "/v1/factories/texas/cordon")
    api.call("POST", "/v1/factories/virginia/cordon")
    assert "cordoned" in _reasons(api, big[2], acme)


def test_sovereignty_power_cooling_carbon(api):
    fleet = [factory("tight", market="ERCOT", nodes=16, power_cap="0.06MW", cooling_capacity="0.06MW"),
             factory("eu", market="NORDPOOL_SE2", nodes=16, clearances=("EU", "EU_PERSONAL"), jurisdiction="EU")]
    api.import_fleet(yaml_text=scenario(fleet, []))
    for f in ("tight", "eu"):
        api.agent(f)
    acme = api.tenant("acme")
    personal = api.submit(acme, {**JOB, "id": "p", "sovereignty": ["EU_PERSONAL"]})["id"]
    # the EU site loses its clearance (re-declared): nothing may run the job now
    fleet[1] = factory("eu", market="NORDPOOL_SE2", nodes=16, clearances=("EU",), jurisdiction="EU")
    api.import_fleet(yaml_text=scenario(fleet, []))
    s = _reasons(api, personal, acme)["sovereignty"]
    assert "EU_PERSONAL" in s["message"] and (s["requested"], s["available"]) == (1, 0)
    api.call("POST", "/v1/factories/eu/cordon")
    hot = api.submit(acme, {**JOB, "id": "hot"})["id"]
    pc = _reasons(api, hot, acme)["power_cooling"]
    assert pc["unit"] == "W" and pc["requested"] > pc["available"] >= 0
    api.call("POST", "/v1/factories/eu/uncordon")
    dirty = api.submit(acme, {**JOB, "id": "dirty", "carbon_budget_tco2": 0.01})["id"]
    cb = _reasons(api, dirty, acme)["carbon_budget"]
    assert cb["unit"] == "tCO2" and cb["requested"] > cb["available"] == 0.01


def test_price_and_preempted(api):
    api.import_fleet()
    for f in ("texas", "virginia", "sweden"):
        api.agent(f)
    acme = api.tenant("acme")
    api.live.clock.t = 48 * 3600  # two days of replayed prices behind us
    for f in ("texas", "virginia", "sweden"):
        api.heartbeat(f)
    # a price spike now (far above what a GPU-hour is worth): geo defers work it can run later for less
    spike = [{"kind": "price", "key": m, "value": 50000.0, "hour": 48} for m in ("ERCOT", "PJM", "NORDPOOL_SE2")]
    api.call("POST", "/v1/signals", json={"points": spike})
    hist = api.call("GET", "/v1/signals/price/ERCOT")["hourly"]
    assert len(hist) == 49 and hist[-1] == 50000.0 and max(hist[:-1]) < 50000.0
    api.call("PUT", "/v1/policies/active", json={"name": "geo"})
    jid = api.submit(acme, JOB)["id"]
    api.cycle()
    job = api.job(jid)
    assert job["state"] == "pending", job
    p = {r["code"]: r for r in job["pending"]["reasons"]}["price"]
    assert p["unit"] == "USD/MWh" and p["requested"] == 50000.0 and p["available"] > 0
    # preempted: a policy's Preempt, carried out by the agent, puts the job back in the queue
    api.call("PUT", "/v1/policies/active", json={"name": "gang"})
    api.cycle()
    job = api.job(jid)
    hdr = api.agents[job["factory_id"]][0]
    api.call("POST", f"/v1/agent/jobs/{jid}/report", hdr, json={"fencing_token": job["fencing_token"],
                                                                  "state": "running"})
    (out,) = StoreActuator(api.live).apply(Plan((Preempt(str(jid), "a higher-priority gang", action_id="t:0:0"),)))
    assert out.in_force
    api.call("POST", f"/v1/agent/jobs/{jid}/report", hdr, json={"fencing_token": job["fencing_token"],
                                                                  "state": "stopped"})
    pre = _reasons(api, jid, acme)["preempted"]
    assert pre["unit"] == "s" and pre["available"] == 0 and pre["requested"] == 2 * 86400  # work: 2d, none kept
