"""The agent side of the contract (docs/agent-protocol.md): register, heartbeat, assignments, reports,
checkpoint commits.

Every call is bound to the factory of the agent's token. Reports and commits must carry the job's current
fencing token and come from the factory the job is assigned to; anything else is ``409 stale_fencing_token``, so
an incarnation the control plane has given up on can never change the job again.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from superfactory.live.codec import decode_factory
from superfactory.live.context import Live
from superfactory.live.errors import ApiError, not_found
from superfactory.live.services.auth import Principal, require_role
from superfactory.live.services.fleet import schedulable
from superfactory.live.services.jobs_common import HOLDING, add_event, job_doc, next_fence, requeue_rows
from superfactory.live.store import tables as t

REPORTABLE = {
    "assigned": ("running", "failed", "stopped"),
    "running": ("running", "succeeded", "failed"),
    "stopping": ("running", "stopped", "succeeded", "failed"),
}


def _factory(conn: sa.Connection, p: Principal) -> Any:
    require_role(p, "agent")
    row = conn.execute(sa.select(t.factories).where(t.factories.c.id == p.factory_id)).first()
    if row is None:
        raise not_found("factory", p.factory_id)
    return row


def _lease(live: Live, row: Any, epoch: int) -> dict[str, Any]:
    s = live.settings
    return {"factory_id": row.id, "lease_epoch": epoch, "suspect_after_s": s.suspect_after_s,
            "lost_after_s": s.lost_after_s, "heartbeat_interval_s": s.heartbeat_interval_s}


def _check_nodes(f: Any, nodes: list[dict[str, Any]]) -> None:
    declared = {}
    for c in f.clusters:
        for n in range(c.node_offset, c.node_end):
            declared[n] = (c.accelerator, c.system.gpus_per_node, f.domain_of_node(n))
    got = {int(n["index"]): (n["accelerator"], int(n["gpus"]), int(n["domain"])) for n in nodes}
    missing = sorted(set(declared) - set(got))
    extra = sorted(set(got) - set(declared))
    wrong = sorted(i for i in set(got) & set(declared) if got[i] != declared[i])
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} declared nodes not reported (first: {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} nodes not in the declared factory (first: {extra[0]})")
        if wrong:
            i = wrong[0]
            parts.append(f"{len(wrong)} nodes differ from the declaration (node {i}: declared accelerator, gpus, "
                         f"domain {declared[i]}, reported {got[i]})")
        raise ApiError(422, "inventory_mismatch", f"factory {f.id}: " + "; ".join(parts) +
                       "; fix the agent's config or re-import the fleet")


def register(live: Live, p: Principal, agent_id: str, nodes: list[dict[str, Any]] | None,
             down_nodes: list[int]) -> dict[str, Any]:
    """Start a new lease (epoch + 1), fencing out any earlier agent instance of this factory."""
    now = live.clock.unix_s()
    with live.engine.begin() as conn:
        row = _factory(conn, p)
        f = decode_factory(row.spec)
        if nodes is not None:
            _check_nodes(f, nodes)
        _check_down(f.nodes, down_nodes)
        epoch = row.lease_epoch + 1
        conn.execute(t.factories.update().where(t.factories.c.id == row.id).values(
            lease_epoch=epoch, agent_id=agent_id, last_heartbeat_unix_s=now, lost=False,
            down_nodes=sorted(set(down_nodes))))
    live.wake.set()
    return {**_lease(live, row, epoch), "factory": row.spec}


def _check_down(n_nodes: int, down: list[int]) -> None:
    bad = [n for n in down if not 0 <= n < n_nodes]
    if bad:
        raise ApiError(422, "invalid_request", f"down_nodes: node {bad[0]} is outside 0..{n_nodes - 1}")


def heartbeat(live: Live, p: Principal, epoch: int, down_nodes: list[int]) -> dict[str, Any]:
    now = live.clock.unix_s()
    with live.engine.begin() as conn:
        row = _factory(conn, p)
        if epoch != row.lease_epoch:
            raise ApiError(409, "stale_lease_epoch", f"lease epoch {epoch} is not the current one "
                           f"({row.lease_epoch}): another agent registered for {row.id}; stop and re-register")
        if row.lost:
            raise ApiError(409, "lease_lost", f"factory {row.id} was silent past the lost timeout and its jobs "
                           "were requeued; kill local jobs and re-register")
        _check_down(decode_factory(row.spec).nodes, down_nodes)
        changed = sorted(set(down_nodes)) != sorted(row.down_nodes)
        conn.execute(t.factories.update().where(t.factories.c.id == row.id, t.factories.c.lease_epoch == epoch)
                     .values(last_heartbeat_unix_s=now, down_nodes=sorted(set(down_nodes))))
    if changed:
        live.wake.set()
    return _lease(live, row, epoch)


def assignments(live: Live, p: Principal) -> dict[str, Any]:
    with live.engine.connect() as conn:
        _factory(conn, p)
        rows = conn.execute(sa.select(t.jobs).where(t.jobs.c.factory_id == p.factory_id,
                                                    t.jobs.c.state.in_(HOLDING)).order_by(t.jobs.c.id)).all()
    return {"assignments": [
        {"job_id": r.id, "fencing_token": r.fencing_token, "action": "stop" if r.state == "stopping" else "run",
         "stop_reason": r.stop_reason, "state": r.state, "nodes": list(r.nodes), "spec": r.spec["request"],
         "resume_progress_s": r.committed_progress_s, "resume_checkpoint": r.checkpoint}
        for r in rows
    ]}


def _fenced(conn: sa.Connection, p: Principal, job_id: int, token: int) -> Any:
    row = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id)).first()
    if row is None:
        raise not_found("job", job_id)
    if row.fencing_token != token or row.factory_id != p.factory_id or row.state not in HOLDING:
        raise ApiError(409, "stale_fencing_token", f"job {job_id} is not assigned to {p.factory_id} under fencing "
                       f"token {token}; kill this incarnation and do not report on it again")
    return row


def report(live: Live, p: Principal, job_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """Apply an agent's report of a state transition and/or progress (idempotent for a repeated state)."""
    now = live.clock.unix_s()
    with live.engine.begin() as conn:
        _factory(conn, p)
        row = _fenced(conn, p, job_id, body["fencing_token"])
        new = body["state"]
        if new not in REPORTABLE[row.state]:
            raise ApiError(409, "invalid_transition", f"job {job_id} is {row.state}; an agent may report "
                           f"{', '.join(REPORTABLE[row.state])}", allowed=list(REPORTABLE[row.state]))
        progress = {k: body[k] for k in ("progress_s", "step", "tokens_per_s") if body.get(k) is not None}
        where = (t.jobs.c.id == job_id, t.jobs.c.fencing_token == row.fencing_token)
        if new == "running":
            values: dict[str, Any] = {**progress, "updated_at_unix_s": now}
            if row.state == "assigned":
                values["state"] = "running"
                add_event(conn, job_id, now, "running", {"factory_id": row.factory_id,
                                                         "fencing_token": row.fencing_token})
            conn.execute(t.jobs.update().where(*where).values(**values))
        elif new == "succeeded":
            conn.execute(t.jobs.update().where(*where).values(state="succeeded", updated_at_unix_s=now, **progress))
            add_event(conn, job_id, now, "succeeded", {"factory_id": row.factory_id})
        elif new == "failed":
            if body.get("retryable", True):
                requeue_rows(conn, live, [row], next_fence(conn), "job_failed", body.get("message") or "job failed")
            else:
                conn.execute(t.jobs.update().where(*where).values(state="failed", updated_at_unix_s=now))
                add_event(conn, job_id, now, "failed", {"message": body.get("message") or "", "retryable": False})
        else:  # stopped
            _stopped(conn, live, row, now)
        out = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id)).one()
    live.wake.set()
    return job_doc(out, detail=True)


def _stopped(conn: sa.Connection, live: Live, row: Any, now: float) -> None:
    """The job's process has stopped after a checkpoint: finish what the stop was for."""
    reason = row.stop_reason
    base = {"updated_at_unix_s": now, "last_factory_id": row.factory_id, "last_nodes": row.nodes,
            "progress_s": row.committed_progress_s, "stop_reason": None, "migrate_to": None}
    if reason == "cancel":
        conn.execute(t.jobs.update().where(t.jobs.c.id == row.id).values(state="cancelled", **base))
        add_event(conn, row.id, now, "cancelled", {"factory_id": row.factory_id})
        return
    if reason == "migrate" and row.migrate_to:
        dest = conn.execute(sa.select(t.factories).where(t.factories.c.id == row.migrate_to["factory_id"])).first()
        if dest is not None and schedulable(live, dest):
            token = next_fence(conn)
            conn.execute(t.jobs.update().where(t.jobs.c.id == row.id).values(
                state="assigned", factory_id=dest.id, nodes=row.migrate_to["nodes"], fencing_token=token,
                attempts=row.attempts + 1, **{k: v for k, v in base.items() if k not in ("migrate_to",)},
                migrate_to=None))
            add_event(conn, row.id, now, "assigned", {"factory_id": dest.id, "fencing_token": token,
                                                      "from": row.factory_id, "cause": "migrate"})
            return
    token = next_fence(conn)
    conn.execute(t.jobs.update().where(t.jobs.c.id == row.id).values(
        state="pending", factory_id=None, nodes=[], fencing_token=token, waiting_since_s=live.clock.now_s(),
        preempted=reason == "preempt", interrupted=False, **base))
    add_event(conn, row.id, now, "requeued", {"cause": reason or "stopped", "factory_id": row.factory_id,
                                              "resume_progress_s": row.committed_progress_s})


def commit_checkpoint(live: Live, p: Principal, job_id: int, token: int, step: int, progress_s: float,
                      location: str, mesh: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record a durable checkpoint: what a requeued or moved job resumes from (``mesh``: the agent's
    measurements of the save, kept in the event for /metrics)."""
    now = live.clock.unix_s()
    with live.engine.begin() as conn:
        _factory(conn, p)
        row = _fenced(conn, p, job_id, token)
        if progress_s >= row.committed_progress_s:
            conn.execute(t.jobs.update().where(t.jobs.c.id == job_id, t.jobs.c.fencing_token == token).values(
                committed_progress_s=progress_s, checkpoint={"step": step, "progress_s": progress_s,
                                                             "location": location}, updated_at_unix_s=now))
        add_event(conn, job_id, now, "checkpoint", {"step": step, "progress_s": progress_s, "location": location,
                                                    **({"mesh": mesh} if mesh else {})})
        out = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id)).one()
    return job_doc(out, detail=True)
