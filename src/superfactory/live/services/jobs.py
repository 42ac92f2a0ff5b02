"""What users do with jobs: submit (idempotently), list, show, cancel, hold, release, follow events.

A tenant sees and changes only its own jobs: another tenant's job answers ``404 job_not_found`` exactly like a
job that does not exist. Admins see every job. Submissions are compiled with the same code as a scenario's
``jobs:`` entries (the imported scenario's ``defaults:`` apply), so a job means the same in the twin and here.

Submissions are committed by :mod:`.commit` (group commit: concurrent submissions share a transaction; each is
durable before its answer). Idempotency: a submission with an ``Idempotency-Key`` is stored under
``(tenant, key)`` with a unique constraint; repeating it returns the job created the first time
(``created: false``), whatever happened in between (a crash, a lost response), and the same key with a different
body is refused with 409.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from superfactory.live.codec import encode_job
from superfactory.live.context import FleetCache, Live
from superfactory.live.errors import ApiError, not_found
from superfactory.live.services.auth import Principal
from superfactory.live.services.commit import GroupCommitter
from superfactory.live.services.fleet import cached_fleet, load_fleet
from superfactory.live.services.jobs_common import STATES, TERMINAL, add_event, job_doc
from superfactory.live.store import tables as t
from superfactory.scenario.compiler import _job as compile_job  # the scenario compiler's own job rules
from superfactory.scenario.schema import JobDefaults, JobSpec

TENANT_TTL_S = 2.0
MAX_WAIT_S = 30.0
_NULL_ROW: dict[str, None] = {c.name: None for c in t.jobs.c}


def _tenant_priority(live: Live, tenant_id: str) -> int | None:
    """The tenant's priority if cached and fresh (``None``: read it with :func:`_load_tenant_priority`)."""
    hit = live.extras.get("tenant_priority", {}).get(tenant_id)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def _load_tenant_priority(live: Live, tenant_id: str) -> int:
    cache: dict[str, tuple[float, int]] = live.extras.setdefault("tenant_priority", {})
    with live.engine.connect() as conn:
        prio = conn.execute(sa.select(t.tenants.c.priority).where(t.tenants.c.id == tenant_id)).scalar()
    if prio is None:
        raise not_found("tenant", tenant_id)
    cache[tenant_id] = (time.monotonic() + TENANT_TTL_S, int(prio))
    return int(prio)


def _defaults(fleet: FleetCache) -> SimpleNamespace:
    """The imported scenario's job defaults, validated once per fleet version (what the compiler reads)."""
    if fleet.compiled_defaults is None:
        fleet.compiled_defaults = SimpleNamespace(defaults=JobDefaults.model_validate(fleet.job_defaults))
    return fleet.compiled_defaults


def _committer(live: Live) -> GroupCommitter:
    c = live.extras.get("committer")
    if c is None:
        with live.lock:
            c = live.extras.setdefault("committer", GroupCommitter(live.engine))
    return c  # type: ignore[no-any-return]


def _owner(p: Principal, tenant: str | None) -> str:
    if p.role == "tenant":
        if tenant is not None and tenant != p.tenant_id:
            raise ApiError(403, "wrong_tenant", "a tenant token acts only for its own tenant; drop 'tenant'")
        assert p.tenant_id is not None
        return p.tenant_id
    if p.is_admin:
        if tenant is None:
            raise ApiError(422, "invalid_request", "an admin submits on behalf of a tenant: add ?tenant=NAME")
        return tenant
    raise ApiError(403, "wrong_role", f"this route needs a tenant or admin token; yours is a {p.role} token")


async def submit(live: Live, p: Principal, spec: JobSpec, idempotency_key: str | None,
                 tenant: str | None = None) -> tuple[dict[str, Any], bool]:
    """Create a pending job from a scenario job entry; returns ``(job, created)``.

    Runs on the server's event loop: the work is CPU only while the fleet and the tenant's priority are cached;
    a cache miss, the commit (:mod:`.commit`) and a repeat's lookup run in threads.
    """
    tenant_id = _owner(p, tenant)
    if spec.submit:
        raise ApiError(422, "invalid_request", "live jobs start when submitted: remove 'submit' from the job")
    if idempotency_key is not None and not (1 <= len(idempotency_key) <= 128):
        raise ApiError(422, "invalid_request", "Idempotency-Key must be 1 to 128 characters")
    digest = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
    fleet = cached_fleet(live) or await asyncio.to_thread(load_fleet, live)
    if not fleet.factories:
        raise ApiError(409, "no_fleet", "the control plane has no factories yet: an admin runs "
                       "`superfactory fleet import default` (or POST /v1/fleet/import)")
    errors: list[tuple[Any, str]] = []
    job = compile_job(spec, _defaults(fleet), ("job",), list(fleet.factories), errors)  # type: ignore[arg-type]
    if errors or job is None:
        found = (await asyncio.to_thread(_by_key, live, tenant_id, idempotency_key, digest)
                 if idempotency_key is not None else None)
        if found is not None:  # a repeat of a job accepted before the fleet changed
            return found, False
        raise ApiError(422, "invalid_job", "; ".join(f"{'.'.join(map(str, path[1:]))}: {msg}" for path, msg in errors))
    now_unix, now_s = live.clock.unix_s(), live.clock.now_s()
    # Insert first: the unique (tenant, key) constraint decides, atomically, whether this is a repeat.
    try:
        base = _tenant_priority(live, tenant_id)
        if base is None:
            base = await asyncio.to_thread(_load_tenant_priority, live, tenant_id)
        values = {
            "tenant_id": tenant_id, "name": spec.id, "idempotency_key": idempotency_key,
            "request_sha256": digest, "spec": {"request": spec.model_dump(mode="json"), "job": encode_job(job)},
            "accelerator": job.accelerator, "gpus": job.gpus, "priority": spec.priority + base, "state": "pending",
            "nodes": [], "last_nodes": [], "submit_s": now_s, "waiting_since_s": now_s,
            "submitted_at_unix_s": now_unix, "updated_at_unix_s": now_unix, "fencing_token": 0, "progress_s": 0.0,
            "committed_progress_s": 0.0, "interrupted": False, "preempted": False, "attempts": 0,
            "carbon_spent_tco2": 0.0,
        }
        job_id = await _committer(live).insert(values, {"at_unix_s": now_unix, "kind": "submitted",
                                                        "data": {"tenant": tenant_id, "gpus": job.gpus}})
        # the row as stored: every column was given above (nothing is left to a server default)
        row = SimpleNamespace(**{**_NULL_ROW, **values, "id": job_id})
    except sa.exc.IntegrityError:
        if idempotency_key is None:
            raise
        # submitted before (or by a concurrent retry)
        found = await asyncio.to_thread(_by_key, live, tenant_id, idempotency_key, digest)
        if found is None:
            raise
        return found, False
    live.wake.set()
    return job_doc(row, detail=True), True


def _by_key(live: Live, tenant_id: str, key: str, digest: str) -> dict[str, Any] | None:
    with live.engine.connect() as conn:
        row = conn.execute(sa.select(t.jobs).where(t.jobs.c.tenant_id == tenant_id,
                                                   t.jobs.c.idempotency_key == key)).first()
    if row is None:
        return None
    if row.request_sha256 != digest:
        raise ApiError(409, "idempotency_key_reused", f"Idempotency-Key {key!r} was used for a different job "
                       f"(job {row.id}); use a new key for a new job")
    return job_doc(row, detail=True)


def _visible(p: Principal, conn: sa.Connection, job_id: int) -> Any:
    q = sa.select(t.jobs).where(t.jobs.c.id == job_id)
    if not p.is_admin:
        if p.role != "tenant":
            raise ApiError(403, "wrong_role", f"this route needs a tenant or admin token; yours is a {p.role} token")
        q = q.where(t.jobs.c.tenant_id == p.tenant_id)
    row = conn.execute(q).first()
    if row is None:
        raise not_found("job", job_id)
    return row


def get_job(live: Live, p: Principal, job_id: int) -> Any:
    with live.engine.connect() as conn:
        return _visible(p, conn, job_id)


def list_jobs(live: Live, p: Principal, state: str | None, factory: str | None, tenant: str | None,
              after_id: int, limit: int) -> dict[str, Any]:
    """Jobs by id, filtered; ``next_after_id`` pages on (null on the last page)."""
    if state is not None and state not in STATES:
        raise ApiError(422, "invalid_request", f"unknown state {state!r}; states are {', '.join(STATES)}")
    if not 1 <= limit <= 1000:
        raise ApiError(422, "invalid_request", f"limit must be 1..1000, got {limit}")
    q = sa.select(t.jobs).where(t.jobs.c.id > after_id).order_by(t.jobs.c.id).limit(limit + 1)
    if p.role == "tenant":
        if tenant is not None and tenant != p.tenant_id:
            raise ApiError(403, "wrong_tenant", "a tenant token lists only its own jobs; drop 'tenant'")
        q = q.where(t.jobs.c.tenant_id == p.tenant_id)
    elif not p.is_admin:
        raise ApiError(403, "wrong_role", f"this route needs a tenant or admin token; yours is a {p.role} token")
    elif tenant is not None:
        q = q.where(t.jobs.c.tenant_id == tenant)
    if state is not None:
        q = q.where(t.jobs.c.state == state)
    if factory is not None:
        q = q.where(t.jobs.c.factory_id == factory)
    with live.engine.connect() as conn:
        rows = conn.execute(q).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"jobs": [job_doc(r) for r in rows], "next_after_id": rows[-1].id if more else None}


def _transition(live: Live, p: Principal, job_id: int, verb: str) -> dict[str, Any]:
    now = live.clock.unix_s()
    with live.engine.begin() as conn:
        row = _visible(p, conn, job_id)
        values: dict[str, Any] | None = None
        if verb == "cancel":
            if row.state in TERMINAL:
                raise ApiError(409, "invalid_transition", f"job {job_id} is already {row.state}")
            if row.state in ("pending", "held"):
                values = {"state": "cancelled"}
            elif row.state in ("assigned", "running"):
                values = {"state": "stopping", "stop_reason": "cancel"}
            else:  # stopping: whatever it stops for, it ends cancelled
                values = {"stop_reason": "cancel", "migrate_to": None}
        elif verb == "hold":
            if row.state not in ("pending", "held"):
                raise ApiError(409, "invalid_transition", f"only a pending job can be held; job {job_id} is "
                               f"{row.state} (cancel it, or hold it before it is placed)")
            values = {"state": "held"} if row.state == "pending" else None
        elif verb == "release":
            if row.state not in ("pending", "held"):
                raise ApiError(409, "invalid_transition", f"only a held job can be released; job {job_id} is "
                               f"{row.state}")
            values = {"state": "pending", "waiting_since_s": live.clock.now_s()} if row.state == "held" else None
        if values is not None:
            # the state we read must still be the state we change (a scheduler may have placed it meanwhile)
            n = conn.execute(t.jobs.update().where(t.jobs.c.id == job_id, t.jobs.c.state == row.state,
                                                   t.jobs.c.fencing_token == row.fencing_token)
                             .values(updated_at_unix_s=now, **values)).rowcount
            if n == 0:
                raise ApiError(409, "conflict", f"job {job_id} changed while you asked; look at it and retry")
            add_event(conn, job_id, now, {"cancel": "cancel_requested" if values.get("state") != "cancelled"
                                          else "cancelled", "hold": "held", "release": "released"}[verb],
                      {"by": p.tenant_id or p.role})
        out = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id)).one()
    if verb == "release":
        live.wake.set()
    return job_doc(out, detail=True)


def cancel(live: Live, p: Principal, job_id: int) -> dict[str, Any]:
    return _transition(live, p, job_id, "cancel")


def hold(live: Live, p: Principal, job_id: int) -> dict[str, Any]:
    return _transition(live, p, job_id, "hold")


def release(live: Live, p: Principal, job_id: int) -> dict[str, Any]:
    return _transition(live, p, job_id, "release")


def events(live: Live, p: Principal, job_id: int, after_id: int, wait_s: float) -> dict[str, Any]:
    """The job's events with id > ``after_id``; waits up to ``wait_s`` (long poll) when there are none yet."""
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise ApiError(422, "invalid_request", f"wait_s must be 0..{MAX_WAIT_S:g}, got {wait_s}")
    deadline = time.monotonic() + wait_s
    while True:
        with live.engine.connect() as conn:
            _visible(p, conn, job_id)
            rows = conn.execute(sa.select(t.job_events).where(t.job_events.c.job_id == job_id,
                                                              t.job_events.c.id > after_id)
                                .order_by(t.job_events.c.id).limit(500)).all()
        if rows or time.monotonic() >= deadline:
            break
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    evs = [{"id": r.id, "at_unix_s": r.at_unix_s, "kind": r.kind, "data": r.data} for r in rows]
    return {"events": evs, "next_after_id": evs[-1]["id"] if evs else after_id}
