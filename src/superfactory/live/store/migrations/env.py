"""Alembic environment for the control plane's store, usable programmatically and from the ``alembic`` CLI.

Programmatic use (what ``superfactory serve`` and the tests do, see :func:`superfactory.live.store.db.migrate`)
passes an open connection in ``config.attributes["connection"]``; otherwise the URL comes from
``sqlalchemy.url`` in the config (``alembic -x`` is not needed).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from superfactory.live.store.tables import metadata

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = engine_from_config(config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
