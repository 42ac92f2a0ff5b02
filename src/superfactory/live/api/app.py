"""The app factory: ``create_app(live)`` wires routes, error handling and the scheduler thread.

Tests build a :class:`~superfactory.live.context.Live` on their own store and clock and pass it in;
``superfactory serve`` calls :func:`app_from_env` (also the uvicorn factory for ``--workers N``). Every error
leaves as ``{"error": {"code", "message"}}``: bad input is 422 with the field named, a refusal is its 4xx, and
an unexpected failure is a 500 with a correlation-free generic message (details go to the server log).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from superfactory.live.api import admin, agent, fleet, jobs
from superfactory.live.api import keys as kms
from superfactory.live.context import Live, Settings, WallClock, ensure_epoch
from superfactory.live.errors import ApiError
from superfactory.live.metrics import router as metrics_router
from superfactory.live.metrics_worker import close_worker
from superfactory.live.scheduler.service import SchedulerService
from superfactory.live.store.db import open_store

log = logging.getLogger("superfactory.live.api")
API_VERSION = "1"


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",)) or "body"


def create_app(live: Live, scheduler: bool = True) -> FastAPI:
    """The API over ``live``; with ``scheduler`` a background thread runs the scheduler while the app runs."""
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        thread = None
        if scheduler:
            sched = live.extras["scheduler"]
            thread = threading.Thread(target=sched.run, args=(stop,), name="scheduler", daemon=True)
            thread.start()
        yield
        stop.set()
        live.wake.set()
        if thread is not None:
            thread.join(timeout=5)
        close_worker(live)  # the metrics worker process exits with the server

    app = FastAPI(title="superfactory control plane", version=API_VERSION, lifespan=lifespan,
                  description="Submit training jobs to a fleet of AI factories; agents run them. "
                  "See docs/control-plane.md and docs/agent-protocol.md.")
    app.state.live = live
    # /metrics is rendered in a worker process unless SUPERFACTORY_METRICS_WORKER=0 (or the caller set it)
    live.extras.setdefault("metrics_worker", os.environ.get("SUPERFACTORY_METRICS_WORKER", "1") != "0")
    if scheduler or "scheduler" not in live.extras:
        live.extras.setdefault("scheduler", SchedulerService(live))
    # jobs first: routes are matched in order, and POST /v1/jobs is the hot path
    for r in (jobs.router, admin.router, fleet.router, agent.router, kms.router):
        app.include_router(r)
    app.include_router(metrics_router)  # GET /metrics (live/metrics.py)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = [f"{_loc(err['loc'])}: {err['msg']}" for err in e.errors()[:10]]
        return JSONResponse(ApiError(422, "invalid_request", "; ".join(problems)).body(), status_code=422)

    @app.exception_handler(sa.exc.DataError)
    async def _data(_: Request, e: sa.exc.DataError) -> JSONResponse:
        msg = str(e.orig).splitlines()[0] if e.orig is not None else "value out of range"
        return JSONResponse(ApiError(422, "invalid_value", f"a value cannot be stored: {msg}").body(),
                            status_code=422)

    @app.exception_handler(Exception)
    async def _bug(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=e)
        return JSONResponse(ApiError(500, "internal", "internal error; the server log has the details").body(),
                            status_code=500)

    return app


def make_live(db_url: str, settings: Settings | None = None) -> Live:
    """A :class:`Live` on a migrated store with a wall clock (the store's epoch is set on first use)."""
    import time

    engine = open_store(db_url)
    epoch = ensure_epoch(engine, time.time())
    return Live(engine, WallClock(epoch), settings or Settings())


def app_from_env() -> FastAPI:
    """The app for ``SUPERFACTORY_DB`` (uvicorn factory; one per worker process). ``SUPERFACTORY_SCHEDULER=0``
    runs without the scheduler thread; several workers elect one scheduler through the store's lock."""
    live = make_live(os.environ.get("SUPERFACTORY_DB", "sqlite:///.superfactory/superfactory.db"),
                     _settings_from_env())
    return create_app(live, scheduler=os.environ.get("SUPERFACTORY_SCHEDULER", "1") != "0")


def _settings_from_env() -> Settings:
    kw: dict[str, Any] = {}
    for field, env in (("suspect_after_s", "SUPERFACTORY_SUSPECT_AFTER_S"), ("lost_after_s",
                       "SUPERFACTORY_LOST_AFTER_S"), ("cycle_s", "SUPERFACTORY_CYCLE_S")):
        if os.environ.get(env):
            kw[field] = float(os.environ[env])
    return Settings(**kw)
