"""``GET /metrics``: the control plane's Prometheus exposition, scoped by the caller's token.

Names, units and labels come from :mod:`superfactory.observe.metrics_catalog` (the twin's ``--metrics-out``
writes the same names, so one set of dashboards and alert rules serves both worlds).

How values are obtained (at each scrape, under a lock):

- **Counters are folded from the store's event log** (``job_events``, read from a cursor, so each event is
  folded once per server process; a restarted process re-folds the history and reaches the same totals):
  placements (``assigned``), completions (``succeeded``), audit refusals, interruptions (a ``requeued`` or
  ``failed`` whose cause is not a planned stop: preempt, drain, migrate, cancel), migrations and their outcome
  (a ``stopping`` for a migration followed by ``assigned`` at the destination = succeeded, by a requeue =
  failed; its cost: the job's declared checkpoint size carried and its GPUs x the time from the stop to the
  new assignment), and per-job checkpoints (bytes: the declared checkpoint size per commit, as in the twin).
  Effective throughput is measured as in the twin: progress between consecutive checkpoint commits of one
  placement over the time between them, times the gang's theoretical FLOP/s.
  Checkpoint events carry what the agent measured of the save (``mesh``): its duration (the job's
  ``job_checkpoint_duration_seconds``) and the fragment bytes written to each site's storage (bytes to another
  site count as traffic on the link between the job's factory and that site). Durable work
  (``factory_productive_flop_total``) is each commit's progress gain over the job's previous commit.
- **Gauges are read from the store**: factories (capacity, lease, cordon state, down nodes, power cap,
  cooling), jobs per state and tenant, the jobs holding GPUs (GPUs, progress, tokens/s reported by the job
  process, restarts = placements - 1; kept as rendered lines per job between scrapes by
  :mod:`superfactory.live.job_series`), current prices and carbon intensity. Node failures are counted when a
  node appears in a heartbeat's ``down_nodes`` between two scrapes.

Nothing here runs outside a scrape: the placement path carries no metrics code, and what a scrape costs is paid
by the scrape (the fold reads each event once per process; the database aggregates what is only counted and
extracts a placement's few fields, so no document is parsed per placement; a job's lines are rendered again only
when its figures change). ``benchmarks/metrics_scrape_bench.py`` measures what that costs the scheduler.
- **Power, energy, cost and carbon are metered** by :class:`~superfactory.live.power_meter.PowerMeter` at each
  scrape from the GPUs jobs hold.
- **The checkpoint mesh** as the agents last reported it (:mod:`superfactory.live.mesh_status`): the sync queue
  per link (both endpoints' uploads towards each other summed), the quorum wait per factory, and ``link_up``
  (0 when an endpoint lost its lease or reports the other site's storage unreachable).

Where it runs: the serving process authenticates and scopes the scrape (:func:`scope_of`), then, by default,
forwards it to its metrics worker process (:mod:`superfactory.live.metrics_worker`), which holds the
:class:`LiveMetrics` below and renders there, so the scheduler's process does no rendering; with
``live.extras["metrics_worker"]`` false (``SUPERFACTORY_METRICS_WORKER=0``) it renders in-process.

Who sees what: no token -> 401; an agent token -> 403; a tenant token -> fleet-level series plus only its own
jobs (``job_id``/``job_name``/``tenant`` of other tenants never appear); an admin token or the read-only metrics
token (``SUPERFACTORY_METRICS_TOKEN``, meant for Prometheus' ``authorization`` setting) -> everything.
Live states are named as in :class:`~superfactory.domain.lifecycle.JobLifecycle` where one corresponds
(``assigned`` -> ``starting``, ``stopping`` -> ``draining``, ``succeeded`` -> ``completed``).
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from superfactory.live import mesh_status, metrics_worker
from superfactory.live.context import Live
from superfactory.live.errors import ApiError
from superfactory.live.exposition import Exposition, Families
from superfactory.live.job_series import JobSeries
from superfactory.live.power_meter import PowerMeter
from superfactory.live.services.auth import authenticate
from superfactory.live.services.fleet import lease_status, load_fleet
from superfactory.live.services.jobs_common import HOLDING, STATES, TERMINAL
from superfactory.live.services.signals import generation as signals_generation
from superfactory.live.services.signals import histories
from superfactory.live.store import tables as t
from superfactory.observe.metrics_catalog import BY_NAME, bounded_cause, link_name

METRICS_TOKEN_ENV = "SUPERFACTORY_METRICS_TOKEN"
STATE_NAMES = {"assigned": "starting", "stopping": "draining", "succeeded": "completed"}
PLANNED = frozenset({"preempt", "drain", "migrate", "cancel", "stopped"})
FOLD_SPAN = 20_000  # event ids per step of the fold (bounds what one step reads)
GAP_WAIT_S = 300.0  # how long an event id skipped by an uncommitted transaction is looked for again
GAPS_MAX = 100_000
#: the event kinds the fold reads in order (submissions and agents' running reports, half of a busy log, are
#: skipped), and those it only counts per factory (the database aggregates them)
ORDERED_KINDS = ("assigned", "stopping", "requeued", "failed", "checkpoint")
COUNTED_KINDS = ("succeeded", "audit_refusal")
LIVE_STATES = tuple(s for s in STATES if s not in TERMINAL)
EXPOSITION = Exposition(BY_NAME.values())
SIGNALS_TTL_S = 30


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose job-level series a scrape may see: every tenant's, or one tenant's."""

    tenant: str | None  # None = all tenants


@dataclass(slots=True)
class _Mark:
    token: int
    at_unix_s: float
    progress_s: float


class LiveMetrics:
    """The fold over the store's event log and the scrape-time reads (one per :class:`Live`)."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.lock = threading.Lock()
        self.cursor = 0
        self.gaps: dict[int, float] = {}  # event ids not committed when their span was folded -> first missed
        self.placements: Counter[str] = Counter()
        self.completions: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.interruptions: Counter[tuple[str, str]] = Counter()
        self.node_failures: Counter[tuple[str, str]] = Counter()
        self.migrations: Counter[tuple[str, str, str]] = Counter()
        self.checkpoints: Counter[int] = Counter()
        self.marks: dict[int, _Mark] = {}
        self.rate: dict[int, float] = {}  # job -> productive seconds per second at its last measurement
        self.moving: dict[int, tuple[str, str, float]] = {}  # job -> (source, destination, since) of a move
        self.moved: list[tuple[str, str, int, float]] = []  # finished moves not yet costed: (src, dst, job, s)
        self.migration_bytes: Counter[tuple[str, str]] = Counter()
        self.migration_gpu_s: Counter[tuple[str, str]] = Counter()
        self.fence: dict[int, int] = {}  # job -> fencing token of its current placement
        self.down_seen: dict[str, set[int]] = {}
        self.causes: set[str] = set()
        #: (terminal state, tenant) -> jobs, from the terminal events (each job has one: its state is final);
        #: counting them in the jobs table instead cost a scan of the whole history at every scrape
        self.ended: Counter[tuple[str, str]] = Counter()
        self.series = JobSeries()  # the job-level series: each job's figures and rendered lines
        self.scrape_s = 0.0
        self.scrapes_started = self.scrapes_done = 0  # renders begun / finished by this process
        self.render_cpu_s = 0.0  # CPU time those renders took (their thread's), for the scrape benchmark
        self.signals: tuple[int, dict[str, float], dict[str, float], int] | None = None
        self.where: dict[int, str] = {}  # job -> factory of its current (or last) placement
        self.committed: dict[int, float] = {}  # job -> highest committed progress, s
        self.gains: list[tuple[str, int, float]] = []  # (factory, job, progress s made durable) not yet in FLOP
        self.productive_flop: Counter[str] = Counter()
        self.ckpt_duration: dict[int, float] = {}  # job -> its last checkpoint's save duration, s
        self.replicated: Counter[tuple[str, str]] = Counter()  # (job's factory, storage site) -> bytes
        self.meter = PowerMeter()
        #: in a metrics worker, what the serving process forwarded with the scrape (mesh reports, cycles)
        self.forwarded: Any = None

    # -- the fold -----------------------------------------------------------------------------------------
    def _fold(self, conn: sa.Connection) -> None:
        """Fold the events after the cursor, in id spans of :data:`FOLD_SPAN`: the per-factory counts of
        :data:`COUNTED_KINDS` are aggregated by the database; the other folded kinds are read in order, a
        placement's few fields extracted by the database and any other document read as text and parsed here
        (SQLAlchemy's JSON result processing cost more than the parse).

        On a database whose writers may commit out of id order (PostgreSQL: a sequence hands out ids at insert,
        and concurrent transactions commit in any order), an id in a folded span with no event yet is a gap:
        looked for again at each scrape for :data:`GAP_WAIT_S` (a rolled-back insert leaves one for good).
        SQLite has one writer at a time, so its ids commit in order and it has no gaps to watch."""
        ev = t.job_events.c
        hi = conn.execute(sa.select(sa.func.max(ev.id))).scalar() or 0
        if self.gaps:
            now = self.live.clock.unix_s()
            for i in [i for i, since in self.gaps.items() if now - since > GAP_WAIT_S]:
                del self.gaps[i]
            found = set(conn.execute(sa.select(ev.id).where(ev.id.in_(list(self.gaps)))).scalars())
            if found:
                self._fold_where(conn, ev.id.in_(sorted(found)))
                for i in found:
                    del self.gaps[i]
        while self.cursor < hi:
            top = min(hi, self.cursor + FOLD_SPAN)
            span = sa.and_(ev.id > self.cursor, ev.id <= top)
            if conn.dialect.name != "sqlite":
                present = set(conn.execute(sa.select(ev.id).where(span)).scalars())
                now = self.live.clock.unix_s()
                self.gaps.update((i, now) for i in range(self.cursor + 1, top + 1) if i not in present)
                while len(self.gaps) > GAPS_MAX:
                    del self.gaps[next(iter(self.gaps))]
            self._fold_where(conn, span)
            self.cursor = top

    def _fold_where(self, conn: sa.Connection, which: Any) -> None:
        ev = t.job_events.c
        factory = ev.data["factory_id"].as_string()
        counted = sa.select(ev.kind, factory, sa.func.count()).where(which, ev.kind.in_(COUNTED_KINDS)).group_by(
            ev.kind, factory)
        for kind, fid, n in conn.execute(counted):
            (self.completions if kind == "succeeded" else self.refusals)[fid or ""] += n
        ended = sa.select(ev.kind, t.jobs.c.tenant_id, sa.func.count()).select_from(
            t.job_events.join(t.jobs, t.jobs.c.id == ev.job_id)).where(which, ev.kind.in_(TERMINAL)).group_by(
            ev.kind, t.jobs.c.tenant_id)
        for kind, tenant, n in conn.execute(ended):
            self.ended[(kind, tenant)] += n
        ordered = sa.select(ev.job_id, ev.at_unix_s, ev.kind, factory, ev.data["fencing_token"].as_integer(),
                            ev.data["cause"].as_string(), ev.data["from"].as_string(),
                            sa.case((ev.kind == "assigned", sa.null()), else_=sa.cast(ev.data, sa.Text))
                            ).where(which, ev.kind.in_(ORDERED_KINDS)).order_by(ev.id)
        loads, apply, assigned = json.loads, self._apply, self._assigned
        for job, at, kind, fid, fence, cause, src, data in conn.execute(ordered):
            if data is None:
                assigned(job, at, fid or "", fence, cause, src)
            else:
                apply(job, at, kind, loads(data))

    def _assigned(self, job: int, at: float, factory: str, fence: int | None, cause: str | None,
                  src: str | None) -> None:
        self.placements[factory] += 1
        self.where[job] = factory
        move = self.moving.pop(job, None)
        if move is not None or cause == "migrate":
            origin = move[0] if move is not None else str(src or "")
            self.migrations[(origin, factory, "succeeded")] += 1
            self.moved.append((origin, factory, job, at - move[2] if move is not None else 0.0))
        self.fence[job] = int(fence or 0)
        self.marks.pop(job, None)
        self.rate.pop(job, None)

    def _apply(self, job: int, at: float, kind: str, d: dict[str, Any]) -> None:
        factory = str(d.get("factory_id") or "")
        if kind == "assigned":
            self._assigned(job, at, factory, d.get("fencing_token"), d.get("cause"), d.get("from"))
        elif kind == "stopping" and d.get("reason") == "migrate" and d.get("to"):
            self.moving[job] = (factory, str(d["to"]), at)
        elif kind in ("requeued", "failed"):
            move = self.moving.pop(job, None)
            if move is not None:
                self.migrations[(move[0], move[1], "failed")] += 1
            cause = str(d.get("cause") or "")
            if factory and cause not in PLANNED and (kind == "requeued" or d.get("retryable") is not False):
                self.interruptions[(factory, bounded_cause(cause, self.causes))] += 1
            self.marks.pop(job, None)
            self.rate.pop(job, None)
        elif kind == "checkpoint":
            self.checkpoints[job] += 1
            progress = float(d.get("progress_s") or 0.0)
            where = self.where.get(job, "")
            gain = progress - self.committed.get(job, 0.0)
            if gain > 0 and where:
                self.gains.append((where, job, gain))
            self.committed[job] = max(progress, self.committed.get(job, 0.0))
            mesh = d.get("mesh") or {}
            if mesh.get("duration_s") is not None:
                self.ckpt_duration[job] = float(mesh["duration_s"])
            for site, nbytes in (mesh.get("replicated_bytes") or {}).items():
                if where:
                    self.replicated[(where, str(site))] += float(nbytes)
            mark = self.marks.get(job)
            token = self.fence.get(job, 0)
            if mark is not None and mark.token == token and at > mark.at_unix_s:
                self.rate[job] = max(0.0, progress - mark.progress_s) / (at - mark.at_unix_s)
            self.marks[job] = _Mark(token, at, progress)

    # -- a scrape -------------------------------------------------------------------------------------------
    def render(self, scope: Scope) -> bytes:
        """Fold new events, read the store, and return the exposition of everything ``scope`` may see."""
        t0 = time.perf_counter()
        with self.lock:
            c0 = time.thread_time()
            self.scrapes_started += 1
            fams, job_lines = self._families(scope)
            text = EXPOSITION.render(fams, job_lines)
            self.scrape_s = time.perf_counter() - t0
            self.render_cpu_s += time.thread_time() - c0
            self.scrapes_done += 1
        return text + EXPOSITION.render({"metrics_scrape_duration_seconds": [((), self.scrape_s)]}, {})

    def _families(self, scope: Scope) -> tuple[Families, dict[str, list[str]]]:
        live = self.live
        fleet = load_fleet(live)
        now_s = live.clock.now_s()
        with live.engine.connect() as conn:
            self._fold(conn)
            frows = {r.id: r for r in conn.execute(sa.select(t.factories))}
            busy = {(f, acc): int(n or 0) for f, acc, n in conn.execute(
                sa.select(t.jobs.c.factory_id, t.jobs.c.accelerator, sa.func.sum(t.jobs.c.gpus))
                .where(t.jobs.c.state.in_(HOLDING)).group_by(t.jobs.c.factory_id, t.jobs.c.accelerator))}
            q = sa.select(t.jobs.c.state, t.jobs.c.tenant_id, sa.func.count()).where(
                t.jobs.c.state.in_(LIVE_STATES)).group_by(t.jobs.c.state, t.jobs.c.tenant_id)
            if scope.tenant is not None:
                q = q.where(t.jobs.c.tenant_id == scope.tenant)
            states = [*conn.execute(q).all(), *((state, tenant, n) for (state, tenant), n in self.ended.items()
                                                if scope.tenant in (None, tenant))]
            job_lines = self.series.render(conn, scope.tenant, self.rate, self.checkpoints, self.ckpt_duration)
            self.series.load(conn, [m[2] for m in self.moved] + [g[1] for g in self.gains])
        figures = self.series.figures
        for src, dst, job_id, held_s in self.moved:  # a move's cost: the checkpoint it carried, GPUs held meanwhile
            fig = figures[job_id]
            self.migration_bytes[(src, dst)] += fig.ckpt_bytes
            self.migration_gpu_s[(src, dst)] += fig.gpus * held_s
        self.moved.clear()
        for fid, job_id, gain_s in self.gains:  # durable work: progress made durable x the gang's FLOP/s
            self.productive_flop[fid] += gain_s * figures[job_id].flop_per_s
        self.gains.clear()
        price_now, carbon_now = self._signals(now_s)
        held: Counter[str] = Counter()
        for (fid, _), n in busy.items():
            held[fid] += n
        up = {f.id: frows.get(f.id) is not None and lease_status(live, frows[f.id]) in ("live", "suspect")
              for f in fleet.factories}
        down_now = {f.id: set(frows[f.id].down_nodes or []) if f.id in frows else set() for f in fleet.factories}
        power = self.meter.read(live.clock.unix_s(), list(fleet.factories), busy, down_now, up, price_now,
                                carbon_now)
        fwd = self.forwarded
        reports = mesh_status.fresh(live) if fwd is None else fwd.reports
        out: Families = {}

        def put(name: str, labels: tuple[str, ...], value: float) -> None:
            out.setdefault(name, []).append((labels, value))

        for f in fleet.factories:
            row = frows.get(f.id)
            fl = (f.id, f.region)
            down = set(row.down_nodes or []) if row is not None else set()
            new = down - self.down_seen.get(f.id, set())
            if new:
                self.node_failures[(f.id, "reported")] += len(new)
            self.down_seen[f.id] = down
            put("factory_gpus", fl, f.gpus)
            put("factory_allocated_gpus", fl, held.get(f.id, 0) or 0)
            put("factory_failed_nodes", fl, len(down))
            put("factory_lease_up", fl, 1 if up[f.id] else 0)
            put("factory_power_cap_watts", fl, f.power_cap_w)
            put("factory_power_watts", fl, power[f.id].power_w)
            put("factory_it_power_watts", fl, power[f.id].it_power_w)
            put("factory_energy_joules_total", fl, self.meter.energy_j[f.id])
            put("factory_energy_cost_usd_total", fl, self.meter.cost_usd[f.id])
            put("factory_carbon_grams_total", fl, self.meter.carbon_g[f.id])
            put("factory_productive_flop_total", fl, self.productive_flop[f.id])
            if f.id in reports:
                put("checkpoint_quorum_wait_seconds", fl, reports[f.id].quorum_wait_s)
            put("factory_cooling_capacity_watts", fl, f.cooling_capacity_w)
            if f.market in price_now:
                put("factory_energy_price_usd_per_megawatt_hour", (*fl, f.market), price_now[f.market])
            if f.grid in carbon_now:
                put("factory_carbon_intensity_grams_per_kilowatt_hour", fl, carbon_now[f.grid])
            put("placements_total", fl, self.placements[f.id])
            put("job_completions_total", fl, self.completions[f.id])
            put("audit_refusals_total", fl, self.refusals[f.id])
        region = {f.id: f.region for f in fleet.factories}
        for (fid, cause), n in sorted(self.interruptions.items()):
            put("interruptions_total", (fid, region.get(fid, ""), cause), n)
        for (fid, cause), n in sorted(self.node_failures.items()):
            put("node_failures_total", (fid, region.get(fid, ""), cause), n)
        for a in fleet.factories:
            for b in fleet.factories:
                if a.id != b.id:
                    for outcome in ("succeeded", "failed"):
                        put("migrations_total", (a.id, b.id, outcome), self.migrations[(a.id, b.id, outcome)])
                    put("migration_transfer_bytes_total", (a.id, b.id), self.migration_bytes[(a.id, b.id)])
                    put("migration_gpu_seconds_total", (a.id, b.id), self.migration_gpu_s[(a.id, b.id)])
        for lk in fleet.links:
            name = (link_name(lk.a, lk.b),)
            put("link_capacity_bytes_per_second", name, lk.bandwidth_gbps * 1e9 / 8)
            put("link_transmitted_bytes_total", name,
                self.replicated[(lk.a, lk.b)] + self.replicated[(lk.b, lk.a)])
            ends = [(a, b) for a, b in ((lk.a, lk.b), (lk.b, lk.a)) if a in reports]
            cut = not (up.get(lk.a) and up.get(lk.b)) or any(b in reports[a].unreachable for a, b in ends)
            put("link_up", name, 0 if cut else 1)
            if ends:
                put("checkpoint_sync_queue_depth", name, sum(reports[a].sync_queue.get(b, 0) for a, b in ends))
        for (state, tenant, n) in states:
            put("jobs", (STATE_NAMES.get(state, state), tenant), n)
        if fwd is not None:
            if fwd.cycles is not None:
                put("scheduler_cycles_total", (), fwd.cycles)
        else:
            scheduler = live.extras.get("scheduler")
            if scheduler is not None and scheduler.loop is not None:
                put("scheduler_cycles_total", (), scheduler.loop.cycles)
        return out, job_lines

    def _signals(self, now_s: int) -> tuple[dict[str, float], dict[str, float]]:
        """Current prices and carbon intensities, re-read at most every :data:`SIGNALS_TTL_S` (they change hourly
        or when a feed pushes, which bumps the push generation; recomputing them every second was a sixth of a
        scrape)."""
        gen = signals_generation(self.live)
        if self.signals is None or abs(now_s - self.signals[0]) >= SIGNALS_TTL_S or self.signals[3] != gen:
            _, _, price_now, carbon_now = histories(self.live, now_s)
            self.signals = (now_s, price_now, carbon_now, gen)
        return self.signals[1], self.signals[2]


def metrics_for(live: Live) -> LiveMetrics:
    """The :class:`LiveMetrics` of ``live`` (made on first use)."""
    with live.lock:
        lm = live.extras.get("metrics")
        if lm is None:
            lm = live.extras["metrics"] = LiveMetrics(live)
    return lm  # type: ignore[no-any-return]


def scope_of(live: Live, authorization: str | None) -> Scope:
    """The scope an ``Authorization`` header grants, or ApiError 401/403."""
    configured = live.extras.get("metrics_token") or os.environ.get(METRICS_TOKEN_ENV, "")
    if configured and authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), configured.encode()):
            return Scope(None)
    p = authenticate(live.engine, authorization)
    if p.role == "admin":
        return Scope(None)
    if p.role == "tenant" and p.tenant_id:
        return Scope(p.tenant_id)
    raise ApiError(403, "wrong_role", "/metrics needs the metrics token, an admin token or a tenant token "
                   f"(a tenant sees only its own jobs); yours is a {p.role} token")


def render(live: Live, scope: Scope) -> bytes:
    """The text exposition of everything ``scope`` may see: rendered by the metrics worker process when ``live``
    has one (:mod:`superfactory.live.metrics_worker`), else here."""
    worker = metrics_worker.worker_for(live)
    if worker is not None:
        return worker.render(metrics_worker.request_for(live, scope.tenant, mesh_status.fresh(live)))
    return metrics_for(live).render(scope)


router = APIRouter()
router.include_router(mesh_status.router)  # POST /v1/agent/mesh-status: the agents' view of the mesh


@router.get("/metrics", include_in_schema=False)
def get_metrics(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus text exposition (see the module docstring for who sees what)."""
    live: Live = request.app.state.live
    return Response(render(live, scope_of(live, authorization)), media_type=CONTENT_TYPE_LATEST)
