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
  process, restarts = placements - 1), current prices and carbon intensity. Node failures are counted when a
  node appears in a heartbeat's ``down_nodes`` between two scrapes.
- **Power, energy, cost and carbon are metered** by :class:`~superfactory.live.power_meter.PowerMeter` at each
  scrape from the GPUs jobs hold.
- **The checkpoint mesh** as the agents last reported it (:mod:`superfactory.live.mesh_status`): the sync queue
  per link (both endpoints' uploads towards each other summed), the quorum wait per factory, and ``link_up``
  (0 when an endpoint lost its lease or reports the other site's storage unreachable).

Who sees what: no token -> 401; an agent token -> 403; a tenant token -> fleet-level series plus only its own
jobs (``job_id``/``job_name``/``tenant`` of other tenants never appear); an admin token or the read-only metrics
token (``SUPERFACTORY_METRICS_TOKEN``, meant for Prometheus' ``authorization`` setting) -> everything.
Live states are named as in :class:`~superfactory.domain.lifecycle.JobLifecycle` where one corresponds
(``assigned`` -> ``starting``, ``stopping`` -> ``draining``, ``succeeded`` -> ``completed``).
"""

from __future__ import annotations

import hmac
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

from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
from superfactory.live import mesh_status
from superfactory.live.context import Live
from superfactory.live.errors import ApiError
from superfactory.live.power_meter import PowerMeter
from superfactory.live.services.auth import authenticate
from superfactory.live.services.fleet import lease_status, load_fleet
from superfactory.live.services.jobs_common import HOLDING
from superfactory.live.services.signals import histories
from superfactory.live.store import tables as t
from superfactory.observe.metrics_catalog import BY_NAME, MetricDef, bounded_cause, link_name

METRICS_TOKEN_ENV = "SUPERFACTORY_METRICS_TOKEN"
STATE_NAMES = {"assigned": "starting", "stopping": "draining", "succeeded": "completed"}
PLANNED = frozenset({"preempt", "drain", "migrate", "cancel", "stopped"})
FOLD_BATCH = 5000
#: the event kinds the fold reads (submissions and agents' running reports, half of a busy log, are skipped)
FOLDED_KINDS = ("assigned", "stopping", "requeued", "failed", "succeeded", "audit_refusal", "checkpoint")
SIGNALS_TTL_S = 30
JOB_FAMILIES = ("job_gpus", "job_progress_ratio", "job_flop_per_second", "job_theoretical_flop_per_second",
                "job_tokens_per_second", "job_restarts_total", "job_checkpoints_total", "job_checkpoint_bytes_total",
                "job_checkpoint_duration_seconds")


Families = dict[str, list[tuple[tuple[str, ...], float]]]  # metric name without prefix -> (label values, value)


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
        #: job -> (theoretical FLOP/s, work in productive s, declared checkpoint bytes, GPUs)
        self.jobs: dict[int, tuple[float, float, float, int]] = {}
        self.scrape_s = 0.0
        self.job_cache: dict[int, tuple[Any, tuple[str | None, ...]]] = {}
        self.job_block: dict[str, list[str]] = {}
        self.signals: tuple[int, dict[str, float], dict[str, float]] | None = None
        self.where: dict[int, str] = {}  # job -> factory of its current (or last) placement
        self.committed: dict[int, float] = {}  # job -> highest committed progress, s
        self.gains: list[tuple[str, int, float]] = []  # (factory, job, progress s made durable) not yet in FLOP
        self.productive_flop: Counter[str] = Counter()
        self.ckpt_duration: dict[int, float] = {}  # job -> its last checkpoint's save duration, s
        self.replicated: Counter[tuple[str, str]] = Counter()  # (job's factory, storage site) -> bytes
        self.meter = PowerMeter()

    # -- the fold -----------------------------------------------------------------------------------------
    def _fold(self, conn: sa.Connection) -> None:
        while True:
            rows = conn.execute(sa.select(t.job_events.c.id, t.job_events.c.job_id, t.job_events.c.at_unix_s,
                                          t.job_events.c.kind, t.job_events.c.data)
                                .where(t.job_events.c.id > self.cursor, t.job_events.c.kind.in_(FOLDED_KINDS))
                                .order_by(t.job_events.c.id).limit(FOLD_BATCH)).all()
            for r in rows:
                self._apply(r.job_id, r.at_unix_s, r.kind, r.data or {})
                self.cursor = r.id
            if len(rows) < FOLD_BATCH:
                return

    def _apply(self, job: int, at: float, kind: str, d: dict[str, Any]) -> None:
        factory = str(d.get("factory_id") or "")
        if kind == "assigned":
            self.placements[factory] += 1
            self.where[job] = factory
            move = self.moving.pop(job, None)
            if move is not None or d.get("cause") == "migrate":
                src = move[0] if move is not None else str(d.get("from") or "")
                self.migrations[(src, factory, "succeeded")] += 1
                self.moved.append((src, factory, job, at - move[2] if move is not None else 0.0))
            self.fence[job] = int(d.get("fencing_token") or 0)
            self.marks.pop(job, None)
            self.rate.pop(job, None)
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
        elif kind == "succeeded":
            self.completions[factory] += 1
        elif kind == "audit_refusal":
            self.refusals[factory] += 1
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
            fams = self._families(scope)
            text = exposition(fams, self.job_block)
            self.scrape_s = time.perf_counter() - t0
        return text + exposition({"metrics_scrape_duration_seconds": [((), self.scrape_s)]}, {})

    def _families(self, scope: Scope) -> Families:
        live = self.live
        fleet = load_fleet(live)
        now_s = live.clock.now_s()
        with live.engine.connect() as conn:
            self._fold(conn)
            frows = {r.id: r for r in conn.execute(sa.select(t.factories))}
            busy = {(f, acc): int(n or 0) for f, acc, n in conn.execute(
                sa.select(t.jobs.c.factory_id, t.jobs.c.accelerator, sa.func.sum(t.jobs.c.gpus))
                .where(t.jobs.c.state.in_(HOLDING)).group_by(t.jobs.c.factory_id, t.jobs.c.accelerator))}
            q = sa.select(t.jobs.c.state, t.jobs.c.tenant_id, sa.func.count()).group_by(t.jobs.c.state,
                                                                                           t.jobs.c.tenant_id)
            jq = sa.select(t.jobs.c.id, t.jobs.c.name, t.jobs.c.tenant_id, t.jobs.c.factory_id, t.jobs.c.gpus,
                           t.jobs.c.progress_s, t.jobs.c.tokens_per_s, t.jobs.c.attempts
                           ).where(t.jobs.c.state.in_(HOLDING))
            if scope.tenant is not None:
                q = q.where(t.jobs.c.tenant_id == scope.tenant)
                jq = jq.where(t.jobs.c.tenant_id == scope.tenant)
            states = conn.execute(q).all()
            holding = conn.execute(jq.order_by(t.jobs.c.id)).all()
            self._load_jobs(conn, sorted({r[0] for r in holding if r[0] not in self.jobs}
                                         | {m[2] for m in self.moved if m[2] not in self.jobs}
                                         | {g[1] for g in self.gains if g[1] not in self.jobs}))
        for src, dst, job_id, held_s in self.moved:  # a move's cost: the checkpoint it carried, GPUs held meanwhile
            _, _, ckpt_bytes, gpus = self.jobs[job_id]
            self.migration_bytes[(src, dst)] += ckpt_bytes
            self.migration_gpu_s[(src, dst)] += gpus * held_s
        self.moved.clear()
        for fid, job_id, gain_s in self.gains:  # durable work: progress made durable x the gang's FLOP/s
            self.productive_flop[fid] += gain_s * self.jobs[job_id][0]
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
        reports = mesh_status.fresh(live)
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
        self.job_block = self._job_lines(holding)
        scheduler = live.extras.get("scheduler")
        if scheduler is not None and scheduler.loop is not None:
            put("scheduler_cycles_total", (), scheduler.loop.cycles)
        return out

    def _job_lines(self, holding: list[Any]) -> dict[str, list[str]]:
        """Rendered sample lines of the job-level families, by metric name. A job whose row and measurements
        did not change since the last scrape reuses its lines (most of 1,000 tracked jobs, most seconds)."""
        cache: dict[int, tuple[Any, tuple[str | None, ...]]] = {}
        block: list[list[str]] = [[] for _ in JOB_FAMILIES]
        old, rates, checkpoints = self.job_cache, self.rate, self.checkpoints
        for row in holding:
            jid, name, tenant, factory, gpus, progress_s, tokens_per_s, attempts = row
            key = (row, rates.get(jid), checkpoints[jid], self.ckpt_duration.get(jid))
            hit = old.get(jid)
            if hit is not None and hit[0] == key:
                lines = hit[1]
            else:
                flop_per_s, work_s, ckpt_bytes, _ = self.jobs[jid]
                rate, n_ckpt = key[1], key[2]
                lbl = (f'job_id="{jid}",job_name="{_escape(name)}",tenant="{_escape(tenant)}",'
                       f'factory="{_escape(factory or "")}"')
                values: tuple[float | None, ...] = (
                    gpus, min(1.0, progress_s / work_s) if work_s > 0 else 1.0,
                    None if rate is None else rate * flop_per_s, flop_per_s, tokens_per_s,
                    max(0, attempts - 1), n_ckpt, n_ckpt * ckpt_bytes, key[3])
                lines = tuple(None if v is None else f"superfactory_{fam}{{{lbl}}} {_value(v)}\n"
                              for fam, v in zip(JOB_FAMILIES, values, strict=True))
            cache[jid] = (key, lines)
            for i, line in enumerate(lines):
                if line is not None:
                    block[i].append(line)
        self.job_cache = cache
        return {fam: lines for fam, lines in zip(JOB_FAMILIES, block, strict=True) if lines}

    def _signals(self, now_s: int) -> tuple[dict[str, float], dict[str, float]]:
        """Current prices and carbon intensities, re-read at most every :data:`SIGNALS_TTL_S` (they change hourly
        or when a feed pushes; recomputing them every second was a sixth of a scrape)."""
        if self.signals is None or abs(now_s - self.signals[0]) >= SIGNALS_TTL_S or self.live.extras.get(
                "signals_dirty"):
            _, _, price_now, carbon_now = histories(self.live, now_s)
            self.signals = (now_s, price_now, carbon_now)
        return self.signals[1], self.signals[2]

    def _load_jobs(self, conn: sa.Connection, ids: list[int]) -> None:
        """Read the figures of jobs not seen before (a spec never changes, so once per job and process)."""
        if not ids:
            return
        wanted = set(ids)
        spec = t.jobs.c.spec
        q = sa.select(  # the numbers only, extracted by the database: no JSON parsed here
            t.jobs.c.id, t.jobs.c.accelerator, t.jobs.c.gpus, spec[("job", "work_flop")].as_float(),
            spec[("job", "mfu")].as_float(), spec[("job", "checkpoint", "size_bytes")].as_float())
        lo, hi = min(ids), max(ids)
        if hi - lo < 4 * len(ids):
            # mostly consecutive ids (a burst of new placements): one primary-key range scan filtered here;
            # compiling an IN list of hundreds of bound parameters cost more than the rows it selected
            batches = [q.where(t.jobs.c.id.between(lo, hi))]
        else:
            batches = [q.where(t.jobs.c.id.in_(ids[i:i + 500])) for i in range(0, len(ids), 500)]
        for r in (row for b in batches for row in conn.execute(b)):
            jid, accelerator, gpus, work_flop, mfu, ckpt_bytes = r
            if jid in wanted:
                job = TrainingJob(str(jid), accelerator, gpus, work_flop, mfu, 0, CheckpointSpec(0, 0, ckpt_bytes, 0.0),
                                  RecoverySpec(0, 0))  # for its FLOP/s and work_s, as the scheduler computes them
                self.jobs[jid] = (job.flop_per_s, job.work_s, ckpt_bytes, gpus)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(v: float) -> str:
    """Go-parsable number: ints as such, floats by ``repr`` (``nan``/``inf`` parse case-insensitively)."""
    return str(v) if type(v) is int else repr(v)


def exposition(fams: Families, rendered: dict[str, list[str]]) -> bytes:
    """The Prometheus text format (0.0.4) of ``fams`` and of already ``rendered`` sample lines, in catalog order.

    Written here rather than with prometheus_client's ``generate_latest``, which spent ~70 % of a scrape with
    1,000 jobs validating and escaping label names per sample; the format is the same (a test parses it back
    with prometheus_client's parser)."""
    lines: list[str] = []
    for name in sorted(set(fams) | set(rendered), key=lambda n: _ORDER.get(n, 1 << 30)):
        m: MetricDef = BY_NAME["superfactory_" + name]
        help_text = m.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {m.name} {help_text}\n# TYPE {m.name} {m.type}\n")
        if name in rendered:
            lines.extend(rendered[name])
            continue
        samples = fams[name]
        keys = m.labels
        if not keys:
            lines.extend(f"{m.name} {_value(v)}\n" for _, v in samples)
            continue
        for values, v in samples:
            lbl = _LABELS.get((keys, values))
            if lbl is None:
                if len(_LABELS) > _LABELS_MAX:
                    _LABELS.clear()
                lbl = _LABELS[(keys, values)] = ",".join(
                    f'{k}="{_escape(x)}"' for k, x in zip(keys, values, strict=True))
            lines.append(f"{m.name}{{{lbl}}} {_value(v)}\n")
    return "".join(lines).encode()


_LABELS: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}  # rendered label sets, reused across scrapes
_LABELS_MAX = 100_000


_ORDER = {m.name.removeprefix("superfactory_"): i for i, m in enumerate(BY_NAME.values())}


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
    """The text exposition of everything ``scope`` may see."""
    return metrics_for(live).render(scope)


router = APIRouter()
router.include_router(mesh_status.router)  # POST /v1/agent/mesh-status: the agents' view of the mesh


@router.get("/metrics", include_in_schema=False)
def get_metrics(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus text exposition (see the module docstring for who sees what)."""
    live: Live = request.app.state.live
    return Response(render(live, scope_of(live, authorization)), media_type=CONTENT_TYPE_LATEST)
