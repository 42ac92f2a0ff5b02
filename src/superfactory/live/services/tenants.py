"""Tenants: who may submit, with what priority and how many GPUs of each accelerator at once (quota).

A tenant's ``priority`` is added to each of its jobs' own priority to give the priority the policies see. A quota
``{"H100-SXM": 1024}`` caps the GPUs of that type the tenant's jobs may hold at once (jobs assigned, running or
stopping); an accelerator absent from the quotas is unlimited.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from superfactory.domain.accelerator import ACCELERATORS
from superfactory.live.context import Live
from superfactory.live.errors import ApiError, not_found
from superfactory.live.services.auth import mint_token
from superfactory.live.store import tables as t

HOLDING = ("assigned", "running", "stopping")


def _check_quotas(quotas: dict[str, int]) -> None:
    for acc, gpus in quotas.items():
        if acc not in ACCELERATORS:
            raise ApiError(422, "invalid_request", f"quota for unknown accelerator {acc!r}; "
                           f"accelerators are {', '.join(ACCELERATORS)}")
        if gpus < 0:
            raise ApiError(422, "invalid_request", f"quota for {acc} must be >= 0 GPUs, got {gpus}")


def tenant_doc(row: Any) -> dict[str, Any]:
    return {"id": row.id, "priority": row.priority, "quotas": dict(row.quotas),
            "created_at_unix_s": row.created_at_unix_s}


def create_tenant(live: Live, tenant_id: str, priority: int, quotas: dict[str, int]) -> dict[str, Any]:
    """Create a tenant and its first token; returns the tenant with ``token`` (shown once)."""
    _check_quotas(quotas)
    now = live.clock.unix_s()
    with live.engine.begin() as conn:
        if conn.execute(sa.select(t.tenants.c.id).where(t.tenants.c.id == tenant_id)).first() is not None:
            raise ApiError(409, "tenant_exists", f"tenant {tenant_id!r} exists; mint another token with "
                           f"POST /v1/tenants/{tenant_id}/tokens")
        conn.execute(t.tenants.insert().values(id=tenant_id, priority=priority, quotas=quotas,
                                               created_at_unix_s=now))
        token = mint_token(conn, "tenant", now, tenant_id=tenant_id)
        row = conn.execute(sa.select(t.tenants).where(t.tenants.c.id == tenant_id)).one()
    return {**tenant_doc(row), "token": token}


def update_tenant(live: Live, tenant_id: str, priority: int | None, quotas: dict[str, int] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if priority is not None:
        values["priority"] = priority
    if quotas is not None:
        _check_quotas(quotas)
        values["quotas"] = quotas
    with live.engine.begin() as conn:
        if values:
            conn.execute(t.tenants.update().where(t.tenants.c.id == tenant_id).values(**values))
        row = conn.execute(sa.select(t.tenants).where(t.tenants.c.id == tenant_id)).first()
    if row is None:
        raise not_found("tenant", tenant_id)
    return tenant_doc(row)


def list_tenants(live: Live) -> list[dict[str, Any]]:
    with live.engine.connect() as conn:
        return [tenant_doc(r) for r in conn.execute(sa.select(t.tenants).order_by(t.tenants.c.id))]


def get_tenant(conn: sa.Connection, tenant_id: str) -> Any:
    row = conn.execute(sa.select(t.tenants).where(t.tenants.c.id == tenant_id)).first()
    if row is None:
        raise not_found("tenant", tenant_id)
    return row


def new_tenant_token(live: Live, tenant_id: str) -> str:
    with live.engine.begin() as conn:
        get_tenant(conn, tenant_id)
        return mint_token(conn, "tenant", live.clock.unix_s(), tenant_id=tenant_id)


def usage(conn: sa.Connection, tenant_id: str | None = None) -> dict[tuple[str, str], int]:
    """GPUs held per ``(tenant, accelerator)`` by jobs assigned, running or stopping."""
    q = (sa.select(t.jobs.c.tenant_id, t.jobs.c.accelerator, sa.func.sum(t.jobs.c.gpus))
         .where(t.jobs.c.state.in_(HOLDING)).group_by(t.jobs.c.tenant_id, t.jobs.c.accelerator))
    if tenant_id is not None:
        q = q.where(t.jobs.c.tenant_id == tenant_id)
    return {(r[0], r[1]): int(r[2] or 0) for r in conn.execute(q)}
