"""The metrics worker: ``/metrics`` rendered in a process of its own, so the scheduler's process does no rendering.

The standard exporter split, kept inside the control plane: the serving process authenticates the scrape and
decides its scope (:func:`superfactory.live.metrics.scope_of`, unchanged), then forwards a :class:`Request` to a
worker process it started (``multiprocessing``'s ``spawn`` context, a pipe each way) and waits on the pipe; the
wait holds no GIL, so the scheduler thread runs meanwhile. The request carries what only the serving process
knows: the scope, its clock's time now, the agents' mesh-status reports, the scheduler's cycle counter and the
signals' push generation (so a push shows at the next scrape). The worker keeps the incremental state (the
event-log fold and the job-level series cache of :class:`~superfactory.live.metrics.LiveMetrics`, the power
meter), reads the store on its own connection (SQLite file or PostgreSQL), renders and sends the bytes back.

Contract:

- The worker starts at the first scrape. If it dies (or stops answering for :data:`RENDER_TIMEOUT_S`), the
  scrape that finds out gets ``503 metrics_worker_restarting`` and a new worker is started; the next scrape
  waits for it (a new worker re-folds the history from the store and reaches the same counters; its power meter
  starts at 0 again, which Prometheus reads as a counter reset).
- The worker exits with the server: :meth:`MetricsWorker.close` (the app's shutdown) ends it, it is a daemon
  process (ended at interpreter exit), and it exits on its own when its pipe closes (the server died).
- A store the worker cannot open (an in-memory SQLite database) keeps rendering in-process.
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from typing import Any

from superfactory.live.context import Live, Settings
from superfactory.live.errors import ApiError
from superfactory.live.mesh_status import MeshStatus
from superfactory.live.services.signals import GENERATION
from superfactory.live.services.signals import generation as signals_generation

RENDER_TIMEOUT_S = 120.0  # a first render re-folds the whole history; longer than that = a stuck worker
STOP_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class Request:
    """One scrape as the worker needs it: the scope and what only the serving process knows."""

    tenant: str | None
    now_unix_s: float
    now_s: int
    reports: dict[str, MeshStatus]
    cycles: int | None
    signals_generation: int


class SetClock:
    """The worker's clock: the serving process's time at the scrape being rendered."""

    def __init__(self) -> None:
        self.t_unix_s = 0.0
        self.t_s = 0

    def unix_s(self) -> float:
        return self.t_unix_s

    def now_s(self) -> int:
        return self.t_s


def _serve(conn: Any, db_url: str, settings: Settings) -> None:
    """The worker's loop: one request at a time until the pipe closes."""
    from superfactory.live.metrics import LiveMetrics, Scope
    from superfactory.live.store.db import make_engine

    clock = SetClock()
    live = Live(make_engine(db_url), clock, settings)
    lm = LiveMetrics(live)
    while True:
        try:
            req: Request = conn.recv()
        except (EOFError, OSError):
            break
        clock.t_unix_s, clock.t_s = req.now_unix_s, req.now_s
        live.extras[GENERATION] = req.signals_generation
        lm.forwarded = req
        try:
            body = lm.render(Scope(req.tenant))
            reply: tuple[Any, ...] = ("ok", body, lm.render_cpu_s)
        except Exception as e:
            reply = ("error", f"{type(e).__name__}: {e}", lm.render_cpu_s)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            break
    live.engine.dispose()


class MetricsWorker:
    """The serving process's handle on its metrics worker (one per :class:`Live`)."""

    def __init__(self, live: Live, db_url: str) -> None:
        self.live = live
        self.db_url = db_url
        self.lock = threading.Lock()
        self.proc: Any = None
        self.conn: Any = None
        self.starts = 0
        self.closed = False
        self.scrapes_started = self.scrapes_done = 0  # as LiveMetrics counts them (for the scrape benchmark)
        self.render_cpu_s = 0.0  # the worker's render CPU, summed over its lives

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_serve, args=(theirs, self.db_url, self.live.settings),
                                name="superfactory-metrics", daemon=True)
        self.proc.start()
        theirs.close()  # the worker's end lives in the worker only: its death closes our end
        self.conn = ours
        self.starts += 1
        self._base_cpu = self.render_cpu_s

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(STOP_WAIT_S)
            self.proc = None

    def render(self, req: Request) -> bytes:
        """The exposition for ``req``, or ApiError 503 while the worker restarts."""
        with self.lock:
            if self.closed:
                raise ApiError(503, "metrics_worker_stopped", "the metrics worker stopped with the server")
            if self.proc is None:
                self._start()
            elif not self.proc.is_alive():
                code = self.proc.exitcode
                self._drop()
                self._start()
                raise ApiError(503, "metrics_worker_restarting", f"the metrics worker exited (code {code}); a new "
                               "one is starting: scrape again shortly")
            self.scrapes_started += 1
            try:
                self.conn.send(req)
                if not self.conn.poll(RENDER_TIMEOUT_S):
                    raise TimeoutError
                status, payload, cpu_s = self.conn.recv()
            except (EOFError, OSError, TimeoutError) as e:
                self._drop()
                self._start()
                raise ApiError(503, "metrics_worker_restarting", f"the metrics worker stopped answering "
                               f"({type(e).__name__}); a new one is starting: scrape again shortly") from None
            self.render_cpu_s = self._base_cpu + cpu_s
            self.scrapes_done += 1
        if status != "ok":
            raise ApiError(503, "metrics_render_failed", f"the metrics worker could not render: {payload}")
        return payload  # type: ignore[no-any-return]

    def close(self) -> None:
        """End the worker (idempotent): close its pipe, then wait for it; kill it if it does not exit."""
        with self.lock:
            self.closed = True
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            if self.proc is not None:
                self.proc.join(STOP_WAIT_S)
                if self.proc.is_alive():
                    self.proc.kill()
                    self.proc.join(STOP_WAIT_S)
                self.proc = None


def worker_url(live: Live) -> str | None:
    """The store URL a worker can open, or None (an in-memory SQLite store lives only in this process)."""
    url = live.engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    return url.render_as_string(hide_password=False)


def worker_for(live: Live) -> MetricsWorker | None:
    """The metrics worker of ``live`` when metrics render out of process (``live.extras["metrics_worker"]``
    true and a store a worker can open), else None (render in-process)."""
    with live.lock:
        w = live.extras.get("metrics_worker_handle")
        if w is None and live.extras.get("metrics_worker"):
            url = worker_url(live)
            if url is not None:
                w = live.extras["metrics_worker_handle"] = MetricsWorker(live, url)
    return w  # type: ignore[no-any-return]


def close_worker(live: Live) -> None:
    """End ``live``'s metrics worker, if it has one."""
    w = live.extras.get("metrics_worker_handle")
    if w is not None:
        w.close()


def request_for(live: Live, tenant: str | None, reports: dict[str, MeshStatus]) -> Request:
    scheduler = live.extras.get("scheduler")
    cycles = scheduler.loop.cycles if scheduler is not None and scheduler.loop is not None else None
    return Request(tenant, live.clock.unix_s(), live.clock.now_s(), reports, cycles,
                   signals_generation(live))

