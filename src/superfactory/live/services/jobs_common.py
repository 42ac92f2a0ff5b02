"""Pieces of the job state machine shared by the user, agent, fleet and scheduler services.

States (see docs/agent-protocol.md): ``pending``, ``held``, ``assigned``, ``running``, ``stopping`` and the
terminal ``succeeded``, ``failed``, ``cancelled``. Jobs in :data:`HOLDING` hold nodes. Fencing tokens come from
one store-wide counter (``meta.fence``), so they strictly increase across every assignment of every job and
order running jobs by when they were placed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from superfactory.live.context import Live
from superfactory.live.store import tables as t

STATES = ("pending", "held", "assigned", "running", "stopping", "succeeded", "failed", "cancelled")
HOLDING = ("assigned", "running", "stopping")
TERMINAL = ("succeeded", "failed", "cancelled")
#: live state -> the twin's state name policies know (:class:`~superfactory.domain.fleet.JobView.state`)
TWIN_STATE = {"pending": "pending", "assigned": "starting", "running": "running", "stopping": "draining"}


def add_event(conn: sa.Connection, job_id: int, at_unix_s: float, kind: str, data: dict[str, Any]) -> None:
    conn.execute(t.job_events.insert().values(job_id=job_id, at_unix_s=at_unix_s, kind=kind, data=data))


def next_fence(conn: sa.Connection, n: int = 1) -> int:
    """Reserve ``n`` fencing tokens; returns the first (they are ``first .. first + n - 1``)."""
    new = conn.execute(
        t.meta.update().where(t.meta.c.key == "fence")
        .values(value=sa.cast(sa.cast(t.meta.c.value, sa.Integer) + n, sa.String))
        .returning(t.meta.c.value)
    ).scalar_one()
    return int(new) - n + 1


def requeue_rows(conn: sa.Connection, live: Live, rows: Iterable[Any], first_fence: int, kind: str,
                 why: str) -> None:
    """Return holding jobs to ``pending`` after an interruption: progress falls back to the last committed
    checkpoint, the fencing token moves on (the old incarnation is fenced out), the attempt is counted, and a job
    out of attempts fails instead."""
    now_unix = live.clock.unix_s()
    now_s = live.clock.now_s()
    for i, r in enumerate(rows):
        out_of_attempts = r.attempts >= live.settings.max_attempts
        values: dict[str, Any] = {
            "state": "failed" if out_of_attempts else "pending", "factory_id": None, "nodes": [],
            "last_factory_id": r.factory_id, "last_nodes": r.nodes, "progress_s": r.committed_progress_s,
            "interrupted": True, "preempted": False, "stop_reason": None, "migrate_to": None,
            "fencing_token": first_fence + i, "waiting_since_s": now_s, "updated_at_unix_s": now_unix,
        }
        conn.execute(t.jobs.update().where(t.jobs.c.id == r.id).values(**values))
        add_event(conn, r.id, now_unix, "failed" if out_of_attempts else "requeued",
                  {"cause": kind, "message": why, "factory_id": r.factory_id,
                   "resume_progress_s": r.committed_progress_s, "attempts": r.attempts})


def job_doc(row: Any, detail: bool = False) -> dict[str, Any]:
    """The API's view of a job row (``detail`` adds nodes, the spec and the last checkpoint)."""
    d: dict[str, Any] = {
        "id": row.id, "name": row.name, "tenant": row.tenant_id, "state": row.state,
        "accelerator": row.accelerator, "gpus": row.gpus, "priority": row.priority, "factory_id": row.factory_id,
        "fencing_token": row.fencing_token, "progress_s": row.progress_s,
        "committed_progress_s": row.committed_progress_s, "attempts": row.attempts,
        "submitted_at_unix_s": row.submitted_at_unix_s, "updated_at_unix_s": row.updated_at_unix_s,
        "waiting_reason": row.waiting_reason, "stop_reason": row.stop_reason,
    }
    if detail:
        d.update({
            "nodes": list(row.nodes), "last_factory_id": row.last_factory_id, "interrupted": row.interrupted,
            "preempted": row.preempted, "checkpoint": row.checkpoint, "step": row.step,
            "tokens_per_s": row.tokens_per_s, "spec": row.spec["request"],
            "migrate_to_factory_id": row.migrate_to["factory_id"] if row.migrate_to else None,
        })
    return d
