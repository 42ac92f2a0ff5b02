"""Job routes: submit, list, show, cancel, hold, release, events, why-pending (tenant or admin tokens)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from superfactory.live.api.deps import ERRORS, LiveDep, PrincipalDep
from superfactory.live.api.schemas import INT32, EventList, JobDetail, JobList, JobShow, PendingOut, Submitted
from superfactory.live.errors import ApiError
from superfactory.live.services import jobs as svc
from superfactory.live.services.jobs_common import job_doc
from superfactory.live.services.pending import pending_doc
from superfactory.scenario.schema import JobSpec

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)  # type: ignore[arg-type]
JobId = Annotated[int, Path(ge=1, le=INT32, description="the job's id")]
MAX_PRIORITY = 1_000_000


@router.post("", response_model=Submitted, status_code=201, responses={200: {"model": Submitted}})
def submit(spec: JobSpec, live: LiveDep, p: PrincipalDep, response: Response,
           idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
           tenant: Annotated[str | None, Query(max_length=64, description="admin only: submit for")] = None,
           ) -> dict[str, Any]:
    """Submit a job (a scenario's `jobs:` entry). With `Idempotency-Key`, a repeat returns the first job (200)."""
    if abs(spec.priority) > MAX_PRIORITY:
        raise ApiError(422, "invalid_request", f"priority must be within ±{MAX_PRIORITY}")
    doc, created = svc.submit(live, p, spec, idempotency_key, tenant)
    if not created:
        response.status_code = 200
    return {**doc, "created": created}


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
