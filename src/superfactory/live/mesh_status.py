"""``POST /v1/agent/mesh-status``: what an agent sees of its jobs' checkpoint replication, for ``/metrics``.

An agent reports, after each heartbeat (``superfactory.agent.meshwatch`` measures it on its checkpoint
targets):

- ``sync_queue``: fragment uploads of its jobs in flight towards each site's storage (by site id), now;
- ``quorum_wait_s``: the age of the oldest checkpoint save of its jobs that has started and not reached its
  replica quorum yet (0 when none waits);
- ``unreachable``: the sites whose checkpoint storage it cannot reach.

Contract: agent tokens only, bound to their factory; the body must carry the factory's current lease epoch
(``409 stale_lease_epoch`` otherwise, ``409 lease_lost`` once the factory was declared lost), as heartbeats do.
Reports are gauges kept in the server's memory (not the store): a report older than the lease's short timeout
(``suspect_after_s``) is no longer exposed, and a restarted server exposes nothing until the next report.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import Field, StringConstraints

from superfactory.live.api.deps import ERRORS, AgentDep, LiveDep
from superfactory.live.api.schemas import INT32, In
from superfactory.live.context import Live
from superfactory.live.errors import ApiError, not_found
from superfactory.live.store import tables as t

Site = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class MeshStatusIn(In):
    lease_epoch: int = Field(ge=0, le=INT32)
    sync_queue: dict[Site, Annotated[int, Field(ge=0, le=1_000_000)]] = Field(default_factory=dict, max_length=256)
    quorum_wait_s: float = Field(default=0.0, ge=0, le=1e7)
    unreachable: list[Site] = Field(default_factory=list, max_length=256)


@dataclass(frozen=True, slots=True)
class MeshStatus:
    """One factory's last report."""

    at_unix_s: float
    sync_queue: dict[str, int]
    quorum_wait_s: float
    unreachable: frozenset[str]


_LOCK = threading.Lock()


def store(live: Live) -> dict[str, MeshStatus]:
    """The reports of ``live`` by factory id (made on first use)."""
    with _LOCK:
        return live.extras.setdefault("mesh_status", {})  # type: ignore[no-any-return]


def fresh(live: Live) -> dict[str, MeshStatus]:
    """Reports younger than the lease's short timeout, by factory id."""
    now = live.clock.unix_s()
    return {f: s for f, s in list(store(live).items()) if now - s.at_unix_s <= live.settings.suspect_after_s}


router = APIRouter(prefix="/v1/agent", tags=["agent"], responses=ERRORS)  # type: ignore[arg-type]


@router.post("/mesh-status")
def mesh_status(body: MeshStatusIn, live: LiveDep, p: AgentDep) -> dict[str, Any]:
    """Report the checkpoint replication the agent sees now (see the module docstring)."""
    with live.engine.connect() as conn:
        row = conn.execute(sa.select(t.factories).where(t.factories.c.id == p.factory_id)).first()
    if row is None:
        raise not_found("factory", p.factory_id)
    if body.lease_epoch != row.lease_epoch:
        raise ApiError(409, "stale_lease_epoch", f"lease epoch {body.lease_epoch} is not the current one "
                       f"({row.lease_epoch}) of {row.id}")
    if row.lost:
        raise ApiError(409, "lease_lost", f"factory {row.id} was declared lost; register again")
    store(live)[row.id] = MeshStatus(live.clock.unix_s(), dict(body.sync_queue), body.quorum_wait_s,
                                     frozenset(body.unreachable))
    return {"factory_id": row.id, "accepted": True}
