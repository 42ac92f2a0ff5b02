"""The live control plane: the service users submit training jobs to, scheduled by the same policies as the twin.

- :mod:`.api`: the FastAPI app (v1) built by :func:`~superfactory.live.api.app.create_app`;
- :mod:`.services`: tenants, tokens, jobs (idempotent submit), fleet, leases, agents, signals, why-pending;
- :mod:`.store`: SQLAlchemy 2 tables, Alembic migrations, engines (SQLite embedded, PostgreSQL in production);
- :mod:`.scheduler`: the loop's ports against the store (a wall clock, a ``FleetView``, an ``Actuator``).

See docs/control-plane.md and docs/agent-protocol.md. Nothing here imports the twin (:mod:`superfactory.sim`).
"""
