"""KMS routes (live/services/keys.py): per-job checkpoint keys and the mesh's commit ledger, for agents only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from superfactory.live.api.deps import ERRORS, AgentDep, LiveDep
from superfactory.live.api.schemas import INT32
from superfactory.live.services import keys as svc

router = APIRouter(prefix="/v1/kms", tags=["kms"], responses=ERRORS)  # type: ignore[arg-type]
JobId = Annotated[int, Path(ge=1, le=INT32)]
Op = Literal["current_key_id", "wrap", "unwrap", "rotate", "destroy", "keys", "commit_record", "fencing_token",
             "fence", "begin_save", "renew_lease", "check_lease", "commit_save", "end_save", "leases",
             "revoke_lease", "retire"]


class KmsCall(BaseModel):
    """One KeyProvider / CommitLedger operation on the job's keyring, under the job's current fencing token."""

    model_config = ConfigDict(extra="forbid")
    fencing_token: int = Field(ge=0, le=INT32, description="the job's current fencing token (from assignments)")
    op: Op
    args: dict[str, Any] = Field(default_factory=dict, description="the operation's arguments (see the service)")


class KmsResult(BaseModel):
    result: Any = None


@router.post("/jobs/{job_id}", response_model=KmsResult)
def kms_call(job_id: JobId, body: KmsCall, live: LiveDep, p: AgentDep) -> dict[str, Any]:
    """Wrap/unwrap a data key, rotate or list KEKs, or run a commit-ledger operation for the job's mesh.
    KEK material never leaves the server; a superseded incarnation (stale fencing token) gets 409."""
    return {"result": svc.call(live, p, job_id, body.fencing_token, body.op, body.args)}
