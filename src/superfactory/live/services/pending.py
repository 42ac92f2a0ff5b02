"""Why a job is pending: structured reason codes with requested vs available figures.

Codes (each with ``message``, ``requested``, ``available`` and ``unit``):

=================  ==========================================================================================
``held``           a user holds the job (``release`` it): GPUs requested vs 0 given while held
``quota``          the tenant's quota for the accelerator: GPUs requested vs quota left
``sovereignty``    no factory with the accelerator is cleared for the job's data classes
``cordoned``       every factory that could run it is cordoned, draining or has no live agent lease
``capacity``       GPUs requested vs the most free GPUs of that type at any schedulable, cleared factory
``power_cooling``  enough GPUs are free but the facility power cap or cooling has too little headroom (W)
``carbon_budget``  the job's estimated emissions at the cleanest eligible factory exceed its budget left (tCO2)
``price``          the policy waits for cheaper power: cheapest eligible price now vs its 24 h mean (USD/MWh)
``preempted``      the policy preempted the job; it waits to be placed again (work left vs progress kept, s)
=================  ==========================================================================================

Reasons are computed from the store now (not cached) and listed most specific first; the policy's own words
from its last decision come with them (``policy_reason``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa

from superfactory.domain.fleet import NODE_FREE
from superfactory.live.codec import decode_job
from superfactory.live.context import Live
from superfactory.live.scheduler.view import StoreFleetView
from superfactory.live.services.fleet import lease_status, schedulable
from superfactory.live.services.tenants import usage
from superfactory.live.store import tables as t

CODES = ("held", "quota", "sovereignty", "cordoned", "capacity", "power_cooling", "carbon_budget", "price",
         "preempted")


def _reason(code: str, message: str, requested: float | None, available: float | None, unit: str) -> dict[str, Any]:
    return {"code": code, "message": message, "requested": requested, "available": available, "unit": unit}


def _why_closed(live: Live, frow: Any) -> str:
    lease = lease_status(live, frow)
    if frow.state != "active":
        return frow.state
    return {"none": "no agent has registered", "suspect": "agent silent past the short timeout",
            "lost": "agent lost"}.get(lease, lease)


def why_pending(live: Live, row: Any) -> list[dict[str, Any]]:
    """The reasons job ``row`` (pending or held) is not running; empty for any other state."""
    if row.state not in ("pending", "held"):
        return []
    out: list[dict[str, Any]] = []
    job = decode_job(str(row.id), row.spec["job"], row.submit_s, row.priority)
    if row.state == "held":
        out.append(_reason("held", "held by a user: `superfactory release JOB` lets it be scheduled", row.gpus, 0,
                           "GPUs"))
    with live.engine.connect() as conn:
        quota = (conn.execute(sa.select(t.tenants.c.quotas).where(t.tenants.c.id == row.tenant_id)).scalar() or {})
        used = usage(conn, row.tenant_id).get((row.tenant_id, row.accelerator), 0)
    cap = quota.get(row.accelerator)
    if cap is not None and used + row.gpus > cap:
        out.append(_reason("quota", f"tenant {row.tenant_id} holds {used} of its {cap} {row.accelerator} GPUs; "
                           f"this job needs {row.gpus}", row.gpus, max(0, cap - used), "GPUs"))
    snap = StoreFleetView(live).snapshot()
    with_acc = [i for i, f in enumerate(snap.factories) if f.gpus_of(job.accelerator) >= job.gpus]
    cleared = [i for i in with_acc if job.sovereignty <= snap.factories[i].clearances]
    if with_acc and not cleared:
        out.append(_reason("sovereignty", f"no factory with {job.gpus} {job.accelerator} GPUs is cleared for "
                           f"{', '.join(sorted(job.sovereignty))} (cleared factories: none of "
                           f"{', '.join(snap.factories[i].id for i in with_acc)})", len(job.sovereignty), 0,
                           "data classes"))
    with live.engine.connect() as conn:
        frows = {r.id: r for r in conn.execute(sa.select(t.factories))}
    open_ = [i for i in cleared if schedulable(live, frows[snap.factories[i].id])]
    if cleared and not open_:
        states = ", ".join(f"{snap.factories[i].id} ({_why_closed(live, frows[snap.factories[i].id])})"
                           for i in cleared)
        out.append(_reason("cordoned", f"every factory that could run it takes no new work now: {states}",
                           job.gpus, 0, "GPUs"))
    free_by: dict[int, int] = {}
    for i in open_:
        f, st = snap.factories[i], snap.states[i]
        status = np.frombuffer(st.node_status, dtype=np.uint8)
        free_by[i] = sum(int((status[c.node_offset:c.node_end] == NODE_FREE).sum()) * c.system.gpus_per_node
                         for c in f.clusters_of(job.accelerator))
    if open_ and max(free_by.values()) < job.gpus:
        best = max(open_, key=lambda i: free_by[i])
        out.append(_reason("capacity", f"needs {job.gpus} {job.accelerator} GPUs; the most free at a schedulable "
                           f"factory is {free_by[best]} at {snap.factories[best].id}", job.gpus, free_by[best], "GPUs"))
    fitting = [i for i in open_ if free_by[i] >= job.gpus]
    if fitting:
        need_w = {}
        headroom = {}
        for i in fitting:
            f, st = snap.factories[i], snap.states[i]
            c = f.clusters_of(job.accelerator)[0]
            nodes = -(-job.gpus // c.system.gpus_per_node)
            need_w[i] = nodes * (c.system.training_power_per_node_w - c.system.idle_power_per_node_w)
            headroom[i] = min(f.power_cap_w / f.pue - st.it_power_w, f.cooling_capacity_w - st.it_power_w)
        if all(need_w[i] > headroom[i] for i in fitting):
            best = max(fitting, key=lambda i: headroom[i])
            out.append(_reason("power_cooling", f"enough GPUs are free but {snap.factories[best].id} (the most "
                               f"headroom) has {headroom[best] / 1e6:.2f} MW of power/cooling left; the job adds "
                               f"{need_w[best] / 1e6:.2f} MW", need_w[best], max(0.0, headroom[best]), "W"))
        if job.carbon_budget_tco2 is not None:
            left = job.carbon_budget_tco2 - row.carbon_spent_tco2
            est = {}
            for i in fitting:
                f, st = snap.factories[i], snap.states[i]
                c = f.clusters_of(job.accelerator)[0]
                it_w = -(-job.gpus // c.system.gpus_per_node) * c.system.training_power_per_node_w
                remaining_s = max(0.0, job.work_s - row.committed_progress_s)
                est[i] = it_w * f.pue * remaining_s / 3.6e6 * st.carbon_g_per_kwh / 1e6  # kWh x g/kWh -> t
            best = min(fitting, key=lambda i: est[i])
            if est[best] > left:
                out.append(_reason("carbon_budget", f"at today's carbon intensity the job would emit "
                                   f"{est[best]:.1f} tCO2 even at {snap.factories[best].id} (the cleanest); "
                                   f"{left:.1f} tCO2 of its budget is left", est[best], left, "tCO2"))
        policy_words = (row.waiting_reason or "").lower()
        if "price" in policy_words or "cheaper power" in policy_words:
            best = min(fitting, key=lambda i: snap.states[i].price_usd_per_mwh)
            hist = snap.price_history.get(snap.factories[best].market, ())[-24:]
            mean = float(np.mean(hist)) if hist else snap.states[best].price_usd_per_mwh
            out.append(_reason("price", f"the policy waits for cheaper power: {snap.states[best].price_usd_per_mwh:.1f}"
                               f" USD/MWh now at {snap.factories[best].id} (the cheapest that fits) vs a 24 h mean of "
                               f"{mean:.1f}", snap.states[best].price_usd_per_mwh, mean, "USD/MWh"))
    if row.preempted:
        left = max(0.0, job.work_s - row.committed_progress_s)
        out.append(_reason("preempted", f"preempted (checkpointed first) and waiting to be placed again; "
                           f"{row.committed_progress_s:.0f} s of progress kept, {left:.0f} s of work left", left,
                           row.committed_progress_s, "s"))
    return out


def pending_doc(live: Live, row: Any) -> dict[str, Any]:
    reasons = why_pending(live, row)
    return {"job_id": row.id, "state": row.state, "reasons": reasons, "policy_reason": row.waiting_reason,
            "waiting_s": max(0, live.clock.now_s() - row.waiting_since_s) if row.state == "pending" else None}

