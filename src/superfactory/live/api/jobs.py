"""Job routes: submit, list, show, cancel, hold, release, events, why-pending (tenant or admin tokens)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from superfactory.live.api.deps import ERRORS, LiveDep, PrincipalDep
from superfactory.live.api.schemas import INT32, EventList, JobDetail, JobList, JobShow, PendingOut, Submitted
from superfactory.live.context import Live
from superfactory.live.errors import ApiError
from superfactory.live.services import jobs as svc
from superfactory.live.services.auth import authenticate
from superfactory.live.services.jobs_common import job_doc
from superfactory.live.services.pending import pending_doc
from superfactory.scenario.schema import JobSpec

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)  # type: ignore[arg-type]
JobId = Annotated[int, Path(ge=1, le=INT32, description="the job's id")]
MAX_PRIORITY = 1_000_000


# The submission route reads its request itself (the hot path: one request per job). FastAPI's dependency and
# body machinery costs more CPU per request than the rest of the route, so the route takes the raw Request and
# validates the body with JobSpec.model_validate_json (the same model, the same 422s); `_SUBMIT_OPENAPI` documents
# exactly what FastAPI would have (body, header, query, bearer auth). Its answer is built field by field from the
# row (job_doc) and sent as is, not validated again against `Submitted` (which still documents it).


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with its ``$ref``s to ``defs`` replaced by the definitions (JobSpec's nesting is not recursive)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inlined(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
        return {k: _inlined(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inlined(v, defs) for v in schema]
    return schema


_SPEC_SCHEMA = JobSpec.model_json_schema()
_SPEC_SCHEMA = _inlined(_SPEC_SCHEMA, _SPEC_SCHEMA.pop("$defs", {}))
_SUBMIT_OPENAPI: dict[str, Any] = {
    "security": [{"HTTPBearer": []}],
    "parameters": [
        {"name": "idempotency-key", "in": "header", "required": False,
         "schema": {"anyOf": [{"type": "string", "maxLength": 128}, {"type": "null"}], "title": "Idempotency-Key"}},
        {"name": "tenant", "in": "query", "required": False, "description": "admin only: submit for",
         "schema": {"anyOf": [{"type": "string", "maxLength": 64}, {"type": "null"}], "title": "Tenant"}},
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": _SPEC_SCHEMA}}},
}


@router.post("", response_model=Submitted, status_code=201, responses={200: {"model": Submitted}},
             openapi_extra=_SUBMIT_OPENAPI)
async def submit(request: Request) -> Response:
    """Submit a job (a scenario's `jobs:` entry). With `Idempotency-Key`, a repeat returns the first job (200)."""
    live: Live = request.app.state.live
    p = authenticate(live.engine, request.headers.get("authorization"))
    key = request.headers.get("idempotency-key")
    tenant = request.query_params.get("tenant")
    if key is not None and len(key) > 128:
        raise ApiError(422, "invalid_request", "idempotency-key: String should have at most 128 characters")
    if tenant is not None and len(tenant) > 64:
        raise ApiError(422, "invalid_request", "tenant: String should have at most 64 characters")
    body = await request.body()
    try:
        spec = JobSpec.model_validate_json(body)
    except ValidationError as e:
        problems = [f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()[:10]]
        raise ApiError(422, "invalid_request", "; ".join(problems)) from None
    if abs(spec.priority) > MAX_PRIORITY:
        raise ApiError(422, "invalid_request", f"priority must be within ±{MAX_PRIORITY}")
    doc, created = await svc.submit(live, p, spec, key, tenant)
    return JSONResponse({**doc, "created": created}, status_code=201 if created else 200)


@router.get("", response_model=JobList)
def list_jobs(live: LiveDep, p: PrincipalDep,
              state: Annotated[str | None, Query(max_length=16)] = None,
              factory: Annotated[str | None, Query(max_length=64)] = None,
              tenant: Annotated[str | None, Query(max_length=64)] = None,
              after_id: Annotated[int, Query(ge=0, le=INT32)] = 0,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """Jobs by id (like squeue); page with `after_id` = the previous page's `next_after_id`."""
    return svc.list_jobs(live, p, state, factory, tenant, after_id, limit)


@router.get("/{job_id}", response_model=JobShow)
def show(job_id: JobId, live: LiveDep, p: PrincipalDep) -> dict[str, Any]:
    """A job in full: state, placement, history, and why it is pending (like `scontrol show job`)."""
    row = svc.get_job(live, p, job_id)
    pending = pending_doc(live, row) if row.state in ("pending", "held") else None
    history = svc.events(live, p, job_id, 0, 0.0)["events"][-100:]
    return {**job_doc(row, detail=True), "pending": pending, "history": history}


@router.get("/{job_id}/pending", response_model=PendingOut)
def why_pending(job_id: JobId, live: LiveDep, p: PrincipalDep) -> dict[str, Any]:
    """Why the job is not running: reason codes with requested vs available figures."""
    return pending_doc(live, svc.get_job(live, p, job_id))


@router.get("/{job_id}/events", response_model=EventList)
def events(job_id: JobId, live: LiveDep, p: PrincipalDep,
           after_id: Annotated[int, Query(ge=0, le=INT32)] = 0,
           wait_s: Annotated[float, Query(ge=0, le=30)] = 0.0) -> dict[str, Any]:
    """The job's event stream (long poll): events after `after_id`, waiting up to `wait_s` for new ones."""
    return svc.events(live, p, job_id, after_id, wait_s)


@router.post("/{job_id}/cancel", response_model=JobDetail)
def cancel(job_id: JobId, live: LiveDep, p: PrincipalDep) -> dict[str, Any]:
    """Cancel: a pending or held job ends now; a placed one is stopped (checkpoint first) and then ends."""
    return svc.cancel(live, p, job_id)


@router.post("/{job_id}/hold", response_model=JobDetail)
def hold(job_id: JobId, live: LiveDep, p: PrincipalDep) -> dict[str, Any]:
    """Keep a pending job from being scheduled until it is released."""
    return svc.hold(live, p, job_id)


@router.post("/{job_id}/release", response_model=JobDetail)
def release(job_id: JobId, live: LiveDep, p: PrincipalDep) -> dict[str, Any]:
    """Let a held job be scheduled again."""
    return svc.release(live, p, job_id)
