"""Engines for the store (SQLite embedded, PostgreSQL in production) and schema migration with Alembic.

``open_store(url)`` returns a migrated :class:`sqlalchemy.Engine`. SQLite runs in WAL mode with a busy
timeout so several threads (API workers and the scheduler) can share one file; PostgreSQL runs with its
defaults (``synchronous_commit`` on: every committed transaction is durable).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from superfactory.live.errors import ApiError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` (psycopg 3 is the driver), ``sqlite:///file`` or a bare file path."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser()}"
    return url


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url`` (not migrated; see :func:`open_store`)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # durable commits, like PostgreSQL's default
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql"):
        # no pre-ping (a round trip per checkout); connections are recycled instead, and a dropped one fails one
        # request, which the caller retries (submissions are idempotent)
        return sa.create_engine(url, pool_size=10, max_overflow=20, pool_recycle=300)
    raise ApiError(400, "unsupported_database", f"database URL {url.split(':', 1)[0]!r} is not supported; "
                   "use sqlite:///path or postgresql://user@host/db")


def alembic_config(engine: sa.Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (idempotent; safe on every start)."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: sa.Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def open_store(url: str) -> sa.Engine:
    """A migrated engine for ``url``; for SQLite file URLs the parent folder is created."""
    url = normalise_url(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    migrate(engine)
    return engine
