"""Stores for the live control plane's tests: SQLite files and a real, throwaway PostgreSQL.

One PostgreSQL cluster per pytest session (so one per xdist worker: each worker is its own session, with its own
temporary folder and free port), started on first use and stopped at the end of the session. Each test
gets a fresh schema in one database (``CREATE DATABASE`` costs a checkpoint, ~1.5 s; a schema ~0.1 s) and the
store's migrations run in it, as they would on a new production database. Without PostgreSQL binaries
the PostgreSQL variants skip and say so. Import the fixtures into a conftest: ``from live_pg import *``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from superfactory.live.context import Live, ManualClock, Settings, ensure_epoch
from superfactory.live.services.auth import bootstrap_admin, forget_cached
from superfactory.live.store.db import open_store
from superfactory.live.store.pgtemp import TempPostgres, find_bin_dir

_schemas = iter(range(1, 1_000_000))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[TempPostgres]:
    """A running throwaway cluster with a database ``tests`` (skips without PostgreSQL)."""
    if find_bin_dir() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: PostgreSQL variants of the store tests skip; "
                    "install PostgreSQL 15 or set SUPERFACTORY_PG_BIN")
    pg = TempPostgres().start()
    try:
        pg.create_database("tests")
        yield pg
    finally:
        pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A fresh, migrated store of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    pg: TempPostgres = request.getfixturevalue("pg_cluster")
    schema = f"t{next(_schemas)}"
    admin = sa.create_engine(pg.url("tests"), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    return pg.url("tests") + f"&options=-csearch_path%3D{schema}"


@pytest.fixture
def live(store_url: str) -> Iterator[Live]:
    """A :class:`Live` on a fresh store, a manual clock at fleet time 0, and short lease timeouts."""
    engine = open_store(store_url)
    clock = ManualClock()
    ensure_epoch(engine, clock.unix_s())
    lv = Live(engine, clock, Settings(suspect_after_s=30, lost_after_s=300, cycle_s=1))
    lv.extras["admin_token"] = bootstrap_admin(engine, clock.unix_s())
    forget_cached()
    yield lv
    engine.dispose()


def make_test_client(app: Any) -> Any:
    """Starlette's TestClient (imported here, silencing its import-time deprecation notice about httpx)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app)


def wait_until(pred: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


__all__ = ["live", "make_test_client", "pg_cluster", "store_url", "wait_until"]
