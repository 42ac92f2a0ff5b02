"""API schemas (pydantic): what goes over the wire, kept apart from the store's tables and the domain types.

Every input model forbids unknown fields and bounds its numbers, so bad input is a 422 with the field named,
never a database error. Integers stored in 32-bit columns are bounded to ``INT32``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

INT32 = 2**31 - 1
Identifier = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", min_length=1, max_length=64)


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    schema_revision: str | None
    now_s: int


class Whoami(BaseModel):
    role: str
    tenant: str | None
    factory_id: str | None


# -- tenants --------------------------------------------------------------------------------------------------
class TenantIn(In):
    id: str = Identifier
    priority: int = Field(default=0, ge=-1000, le=1000)
    quotas: dict[str, int] = Field(default_factory=dict, description="accelerator -> GPUs held at once")


class TenantPatch(In):
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    quotas: dict[str, int] | None = None


class TenantOut(BaseModel):
    id: str
    priority: int
    quotas: dict[str, int]
    created_at_unix_s: float


class TenantCreated(TenantOut):
    token: str


class TokenOut(BaseModel):
    token: str


# -- jobs -----------------------------------------------------------------------------------------------------
class JobOut(BaseModel):
    id: int
    name: str
    tenant: str
    state: str
    accelerator: str
    gpus: int
    priority: int
    factory_id: str | None
    fencing_token: int
    progress_s: float
    committed_progress_s: float
    attempts: int
    submitted_at_unix_s: float
    updated_at_unix_s: float
    waiting_reason: str | None
    stop_reason: str | None


class JobDetail(JobOut):
    nodes: list[int]
    last_factory_id: str | None
    interrupted: bool
    preempted: bool
    checkpoint: dict[str, Any] | None
    step: int | None
    tokens_per_s: float | None
    spec: dict[str, Any]
    migrate_to_factory_id: str | None


class Submitted(JobDetail):
    created: bool


class JobList(BaseModel):
    jobs: list[JobOut]
    next_after_id: int | None


class PendingReason(BaseModel):
    code: str
    message: str
    requested: float | None
    available: float | None
    unit: str


class PendingOut(BaseModel):
    job_id: int
    state: str
    reasons: list[PendingReason]
    policy_reason: str | None
    waiting_s: int | None


class EventOut(BaseModel):
    id: int
    at_unix_s: float
    kind: str
    data: dict[str, Any]


class EventList(BaseModel):
    events: list[EventOut]
    next_after_id: int


class JobShow(JobDetail):
    pending: PendingOut | None
    history: list[EventOut]


# -- fleet ----------------------------------------------------------------------------------------------------
class FleetImportIn(In):
    scenario: str | None = Field(default=None, max_length=256, description="a built-in scenario name")
    yaml: str | None = Field(default=None, max_length=2_000_000, description="scenario YAML text")


class FleetImportOut(BaseModel):
    scenario: str
    factories: list[str]
    links: int
    markets: list[str]
    grids: list[str]


class Capacity(BaseModel):
    total_gpus: int
    busy_gpus: int
    down_gpus: int
    free_gpus: int


class FactoryOut(BaseModel):
    id: str
    region: str
    market: str
    grid: str
    state: str
    lease: str
    lease_epoch: int
    agent_id: str | None
    last_heartbeat_unix_s: float | None
    schedulable: bool
    nodes: int
    clearances: list[str]
    power_cap_w: float
    capacity: dict[str, Capacity]


class PolicyIn(In):
    name: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class PolicyActive(BaseModel):
    name: str
    params: dict[str, Any]


class PolicyList(BaseModel):
    active: PolicyActive
    available: dict[str, str]


class SignalPoint(In):
    kind: Literal["price", "carbon"]
    key: str = Field(min_length=1, max_length=64, description="market (price) or grid (carbon)")
    value: float = Field(ge=-1e6, le=1e6)
    hour: int | None = Field(default=None, ge=0, le=10_000_000, description="fleet hour; or give at_unix_s")
    at_unix_s: float | None = Field(default=None, ge=0, le=1e11)


class SignalsIn(In):
    points: list[SignalPoint] = Field(min_length=1, max_length=10_000)


class SignalsOut(BaseModel):
    stored: int


class SignalHistory(BaseModel):
    kind: str
    key: str
    unit: str
    hourly: list[float]


class CycleOut(BaseModel):
    actions: int
    waiting: int
    outcomes: dict[str, int]


class ActionOut(BaseModel):
    id: int
    policy: str
    action_id: str
    kind: str
    job_id: str
    factory_id: str | None
    outcome: str
    reason: str
    at_unix_s: float


# -- agents ---------------------------------------------------------------------------------------------------
class NodeIn(In):
    index: int = Field(ge=0, le=INT32)
    accelerator: str = Field(max_length=32)
    gpus: int = Field(ge=0, le=1024)
    domain: int = Field(ge=0, le=INT32)


class RegisterIn(In):
    agent_id: str = Field(min_length=1, max_length=128)
    nodes: list[NodeIn] | None = Field(default=None, description="the site's nodes; omitted = as declared")
    down_nodes: list[int] = Field(default_factory=list, max_length=1_000_000)


class LeaseOut(BaseModel):
    factory_id: str
    lease_epoch: int
    suspect_after_s: float
    lost_after_s: float
    heartbeat_interval_s: float


class Registered(LeaseOut):
    factory: dict[str, Any]


class HeartbeatIn(In):
    lease_epoch: int = Field(ge=0, le=INT32)
    down_nodes: list[int] = Field(default_factory=list, max_length=1_000_000)


class Assignment(BaseModel):
    job_id: int
    fencing_token: int
    action: Literal["run", "stop"]
    stop_reason: str | None
    state: str
    nodes: list[int]
    spec: dict[str, Any]
    resume_progress_s: float
    resume_checkpoint: dict[str, Any] | None


class Assignments(BaseModel):
    assignments: list[Assignment]


class ReportIn(In):
    fencing_token: int = Field(ge=0, le=INT32)
    state: Literal["running", "succeeded", "failed", "stopped"]
    progress_s: float | None = Field(default=None, ge=0, le=1e12)
    step: int | None = Field(default=None, ge=0, le=INT32)
    tokens_per_s: float | None = Field(default=None, ge=0, le=1e15)
    message: str | None = Field(default=None, max_length=4000)
    retryable: bool = True


class CheckpointMeshIn(In):
    """What the agent measured of the save (optional; /metrics exposes it): the save's duration, the time from
    its start to the replica quorum, and the fragment bytes written to each site's storage."""

    duration_s: float | None = Field(default=None, ge=0, le=1e7)
    quorum_s: float | None = Field(default=None, ge=0, le=1e7)
    replicated_bytes: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)],
                           Annotated[float, Field(ge=0, le=1e18)]] = Field(default_factory=dict, max_length=256)


class CheckpointIn(In):
    fencing_token: int = Field(ge=0, le=INT32)
    step: int = Field(ge=0, le=INT32)
    progress_s: float = Field(ge=0, le=1e12)
    location: str = Field(min_length=1, max_length=2000)
    mesh: CheckpointMeshIn | None = None
