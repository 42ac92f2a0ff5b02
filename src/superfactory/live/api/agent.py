"""Agent routes (docs/agent-protocol.md): agent tokens only, each bound to its factory."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from superfactory.live.api.deps import ERRORS, AgentDep, LiveDep
from superfactory.live.api.schemas import (
    INT32,
    Assignments,
    CheckpointIn,
    HeartbeatIn,
    JobDetail,
    LeaseOut,
    Registered,
    RegisterIn,
    ReportIn,
)
from superfactory.live.services import agents as svc

router = APIRouter(prefix="/v1/agent", tags=["agent"], responses=ERRORS)  # type: ignore[arg-type]
JobId = Annotated[int, Path(ge=1, le=INT32)]


@router.post("/register", response_model=Registered)
def register(body: RegisterIn, live: LiveDep, p: AgentDep) -> dict[str, Any]:
    """Start a lease for this factory (fences out any older agent instance)."""
    nodes = [n.model_dump() for n in body.nodes] if body.nodes is not None else None
    return svc.register(live, p, body.agent_id, nodes, body.down_nodes)


@router.post("/heartbeat", response_model=LeaseOut)
def heartbeat(body: HeartbeatIn, live: LiveDep, p: AgentDep) -> dict[str, Any]:
    """Renew the lease and report the complete list of failed nodes."""
    return svc.heartbeat(live, p, body.lease_epoch, body.down_nodes)


@router.get("/assignments", response_model=Assignments)
def assignments(live: LiveDep, p: AgentDep) -> dict[str, Any]:
    """Jobs this factory must run or stop; any other local job must be killed."""
    return svc.assignments(live, p)


@router.post("/jobs/{job_id}/report", response_model=JobDetail)
def report(job_id: JobId, body: ReportIn, live: LiveDep, p: AgentDep) -> dict[str, Any]:
    """Report a state transition and/or progress under the job's fencing token."""
    return svc.report(live, p, job_id, body.model_dump())


@router.post("/jobs/{job_id}/checkpoints", response_model=JobDetail)
def checkpoint(job_id: JobId, body: CheckpointIn, live: LiveDep, p: AgentDep) -> dict[str, Any]:
    """Record a durable checkpoint (what a requeued or moved job resumes from)."""
    return svc.commit_checkpoint(live, p, job_id, body.fencing_token, body.step, body.progress_s, body.location,
                                 body.mesh.model_dump() if body.mesh is not None else None)
