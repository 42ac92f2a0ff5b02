"""The control plane's tables (SQLAlchemy 2 Core), kept apart from the API schemas and the domain types.

Times are wall-clock UNIX seconds (``*_unix_s``, double precision) or fleet seconds (``*_s``, integer seconds
since the fleet's epoch, the ``now_s`` policies see). JSON columns hold lists and small documents; the job's
submitted spec is kept verbatim (``spec``) so a job can always be recompiled. The schema is created and
evolved only by the Alembic migrations in ``migrations/versions`` (a test checks they match these tables).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: key/value facts about the store: ``epoch_unix_s`` (fleet time 0), ``fleet_version``.
meta = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

tenants = sa.Table(
    "tenants", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("quotas", sa.JSON, nullable=False),  # {accelerator: max GPUs held at once}; absent = unlimited
    sa.Column("created_at_unix_s", sa.Float, nullable=False),
)

#: API tokens: only ``sha256(secret)`` is stored. ``role`` is admin | tenant | agent.
tokens = sa.Table(
    "tokens", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=True),
    sa.Column("factory_id", sa.String(64), nullable=True),
    sa.Column("created_at_unix_s", sa.Float, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
)

#: One row per declared factory. ``spec`` is the serialised :class:`~superfactory.domain.factory.Factory`;
#: ``state`` is active | cordoned | draining; the lease columns are written by the factory's agent.
factories = sa.Table(
    "factories", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="active"),
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("agent_id", sa.String(128), nullable=True),
    sa.Column("last_heartbeat_unix_s", sa.Float, nullable=True),
    sa.Column("lost", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("down_nodes", sa.JSON, nullable=False),
)

links = sa.Table(
    "links", metadata,
    sa.Column("a", sa.String(64), primary_key=True),
    sa.Column("b", sa.String(64), primary_key=True),
    sa.Column("bandwidth_gbps", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("egress_usd_per_gb", sa.Float, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
)

#: Replayed signal series (from a scenario): ``kind`` price | carbon, ``key`` market or grid.
series = sa.Table(
    "series", metadata,
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("unit", sa.String(16), nullable=False),
    sa.Column("step_s", sa.Integer, nullable=False),
    sa.Column("points", sa.JSON, nullable=False),  # one value per step from fleet time 0
)

#: Pushed signal values (from a feed), one per fleet hour; they override the replayed series.
signals = sa.Table(
    "signals", metadata,
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("hour", sa.Integer, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(128), nullable=True),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("accelerator", sa.String(32), nullable=False),
    sa.Column("gpus", sa.Integer, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("factory_id", sa.String(64), nullable=True),
    sa.Column("nodes", sa.JSON, nullable=False),
    sa.Column("fencing_token", sa.Integer, nullable=False, server_default="0"),
    sa.Column("stop_reason", sa.String(16), nullable=True),
    sa.Column("migrate_to", sa.JSON, nullable=True),  # {"factory_id", "nodes"} while stopping for a move
    sa.Column("progress_s", sa.Float, nullable=False, server_default="0"),
    sa.Column("committed_progress_s", sa.Float, nullable=False, server_default="0"),
    sa.Column("checkpoint", sa.JSON, nullable=True),  # last committed: {"step", "progress_s", "location"}
    sa.Column("step", sa.Integer, nullable=True),
    sa.Column("tokens_per_s", sa.Float, nullable=True),
    sa.Column("submit_s", sa.Integer, nullable=False),
    sa.Column("waiting_since_s", sa.Integer, nullable=False),
    sa.Column("last_factory_id", sa.String(64), nullable=True),
    sa.Column("last_nodes", sa.JSON, nullable=False),
    sa.Column("interrupted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("preempted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("carbon_spent_tco2", sa.Float, nullable=False, server_default="0"),
    sa.Column("waiting_reason", sa.Text, nullable=True),  # the policy's words at its last decision
    sa.Column("submitted_at_unix_s", sa.Float, nullable=False),
    sa.Column("updated_at_unix_s", sa.Float, nullable=False),
    sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
)
sa.Index("ix_jobs_state", jobs.c.state)
sa.Index("ix_jobs_tenant_state", jobs.c.tenant_id, jobs.c.state)
sa.Index("ix_jobs_factory", jobs.c.factory_id)

#: A job's history (the event stream): submitted, placed, running, stopped, requeued ...
job_events = sa.Table(
    "job_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
    sa.Column("at_unix_s", sa.Float, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)
sa.Index("ix_job_events_job", job_events.c.job_id, job_events.c.id)

#: Every action a policy proposed and what became of it (applied, or refused with the reason).
actions = sa.Table(
    "actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("policy", sa.String(64), nullable=False),
    sa.Column("action_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("factory_id", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at_unix_s", sa.Float, nullable=False),
)

#: Leader election for the scheduler (one scheduler acts at a time, even with several server processes).
locks = sa.Table(
    "locks", metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_unix_s", sa.Float, nullable=False),
)

#: Per-job checkpoint keys and the mesh's commit ledger (live/services/keys.py): one JSON document per job,
#: encrypted at rest with the server's master key (AES-GCM, bound to the job and tenant); ``version`` makes
#: every change a compare-and-swap, so concurrent callers never lose an update.
job_keyrings = sa.Table(
    "job_keyrings", metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("nonce", sa.LargeBinary, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("updated_at_unix_s", sa.Float, nullable=False),
)
