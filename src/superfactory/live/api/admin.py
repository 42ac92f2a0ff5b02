"""Health, identity and tenant routes (tenants: admin only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from superfactory.live.api.deps import ERRORS, AdminDep, LiveDep, PrincipalDep
from superfactory.live.api.schemas import Health, TenantCreated, TenantIn, TenantOut, TenantPatch, TokenOut, Whoami
from superfactory.live.services import tenants as svc
from superfactory.live.store.db import current_revision

router = APIRouter(prefix="/v1", responses=ERRORS)  # type: ignore[arg-type]
TenantId = Annotated[str, Path(max_length=64)]


@router.get("/health", response_model=Health, tags=["meta"])
def health(live: LiveDep) -> dict[str, Any]:
    """Liveness and the store's schema revision (no token needed)."""
    return {"status": "ok", "schema_revision": current_revision(live.engine), "now_s": live.clock.now_s()}


@router.get("/whoami", response_model=Whoami, tags=["meta"])
def whoami(p: PrincipalDep) -> dict[str, Any]:
    return {"role": p.role, "tenant": p.tenant_id, "factory_id": p.factory_id}


@router.post("/tenants", response_model=TenantCreated, status_code=201, tags=["tenants"])
def create_tenant(body: TenantIn, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    """Create a tenant with a priority and quotas; the answer carries its first token (shown once)."""
    return svc.create_tenant(live, body.id, body.priority, body.quotas)


@router.get("/tenants", response_model=list[TenantOut], tags=["tenants"])
def list_tenants(live: LiveDep, _: AdminDep) -> list[dict[str, Any]]:
    return svc.list_tenants(live)


@router.patch("/tenants/{tenant_id}", response_model=TenantOut, tags=["tenants"])
def update_tenant(tenant_id: TenantId, body: TenantPatch, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    """Change a tenant's priority or quotas (effective from the next scheduling decision)."""
    return svc.update_tenant(live, tenant_id, body.priority, body.quotas)


@router.post("/tenants/{tenant_id}/tokens", response_model=TokenOut, status_code=201, tags=["tenants"])
def tenant_token(tenant_id: TenantId, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    return {"token": svc.new_tenant_token(live, tenant_id)}
