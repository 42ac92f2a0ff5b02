"""A twin run as Prometheus time series: fold the run's domain events into the catalog's metrics and write them
in the OpenMetrics text format with timestamps (``superfactory simulate --metrics-out FILE``).

The file backfills a Prometheus::

    promtool tsdb create-blocks-from openmetrics run.om ./data
    prometheus --storage.tsdb.path=./data --storage.tsdb.retention.time=10y ...

Contract:

- Names, types, units, labels and help come from :mod:`superfactory.observe.metrics_catalog`; only metrics the
  twin produces (``"twin" in worlds``) appear. Families are not interleaved and each series' samples are
  contiguous and in time order, as the OpenMetrics specification requires; the file ends with ``# EOF``.
- Samples lie on a regular grid of ``step_s`` simulated seconds (a scrape interval), from 0 to the run's end,
  stamped ``start_unix_s + t`` (seconds). Job series exist only while the job holds GPUs.
- Everything job-, factory-, link- and migration-related is folded from the run's domain events (the same
  events the live plane emits). Energy, power, cost and carbon come from the twin's per-factory-hour accounting
  (``hours``: objects with ``factory``, ``hour``, ``it_energy_mwh``, ``facility_energy_mwh``, ``cost_usd``,
  ``carbon_t``), accrued at each hour's mean rate; carbon intensity and prices at t = 0 come from the
  scenario's signal series.
- Effective throughput (``job_flop_per_second``) is measured as the live plane measures it: productive
  progress between consecutive progress reports (start of running, checkpoint commits) over the time between
  them, times the gang's theoretical FLOP/s. A commit reports the progress at its snapshot, so the first
  interval after a (re)start is measured up to the snapshot (``blocking_s + async_write_s`` before the commit).
- Tokens/s (``job_tokens_per_second``): the effective FLOP/s over 6 FLOP per parameter per token (forward and
  backward pass, Kaplan et al. 2020), the parameters estimated from the declared checkpoint size at
  :data:`CHECKPOINT_BYTES_PER_PARAM` (bf16 weights + fp32 master weights + fp32 Adam moments); none for a job
  that declares no checkpoint size.
- Quorum wait (``checkpoint_quorum_wait_seconds``): a checkpoint write waits from the start of its write (the
  end of the blocking snapshot, ``async_write_s`` before its ``CheckpointCommitted``; for a synchronous
  checkpoint, the snapshot's start) until its replica quorum: the job's first
  ``CheckpointDurable`` covering its progress when the run models its WAN (a run with any ``CheckpointDurable``
  or ``CheckpointSyncQueueDepth`` event), else the commit itself. A write whose replication is given up stops
  waiting then: superseded by the job's next commit (which waits from its own snapshot) or cancelled by an
  interruption; one still waiting at the end of the run waits to the end. The gauge is the age
  of the oldest waiting write at the factory (0 when none waits): it rises with slope 1 and drops at the quorum.
- Sync queue (``checkpoint_sync_queue_depth``): the ``CheckpointSyncQueueDepth`` events of a run that models its
  WAN, both directions of a link summed (0 on every link from t = 0); absent from runs that do not.
- The same inputs give the same bytes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from superfactory.domain.events import Event, EventKind
from superfactory.domain.job import TrainingJob
from superfactory.errors import SuperfactoryError
from superfactory.observe.metrics_catalog import METRICS, MetricDef, bounded_cause, link_name
from superfactory.scenario.model import Scenario

HOUR_S = 3600
CHECKPOINT_BYTES_PER_PARAM = 14.0  # bf16 weights (2) + fp32 master copy (4) + fp32 Adam m and v (8)
FLOP_PER_PARAM_PER_TOKEN = 6.0  # training: 2 forward + 4 backward
DEFAULT_STEP_S = 60
DEFAULT_START_UNIX_S = 1_690_848_000  # 2023-08-01T00:00:00Z: the month the built-in markets are calibrated on
JOB_STATES = ("pending", "starting", "running", "migrating", "completed", "rejected")
_STATE_OF = {
    EventKind.JOB_SUBMITTED: "pending", EventKind.JOB_PLACED: "starting", EventKind.JOB_RUNNING: "running",
    EventKind.JOB_INTERRUPTED: "pending", EventKind.JOB_PLANNED_STOP: "pending",
    EventKind.JOB_PREEMPTED: "pending", EventKind.JOB_MIGRATED: "migrating",
    EventKind.JOB_COMPLETED: "completed", EventKind.JOB_REJECTED: "rejected",
}
_RELEASES = frozenset({EventKind.JOB_INTERRUPTED, EventKind.JOB_PLANNED_STOP, EventKind.JOB_PREEMPTED,
                       EventKind.JOB_COMPLETED})


class HourRecord(Protocol):
    """One factory-hour of the twin's energy accounting (``sim.factorystate.HourRow`` satisfies it)."""

    factory: str
    hour: int
    it_energy_mwh: float
    facility_energy_mwh: float
    cost_usd: float
    carbon_t: float


@dataclass(slots=True)
class _Series:
    """A series as change points: the value in force from ``times[i]`` (NaN = absent), or, if ``linear``,
    points to interpolate between."""

    times: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    linear: bool = False

    def put(self, t: int, v: float) -> None:
        if self.times and self.times[-1] == t:
            self.values[-1] = v
        else:
            self.times.append(t)
            self.values.append(v)

    def last(self) -> float:
        return self.values[-1] if self.values and not math.isnan(self.values[-1]) else 0.0


@dataclass(slots=True)
class _JobFold:
    job: TrainingJob
    factory: str = ""  # where it holds GPUs, or ""
    last_factory: str = ""  # where it last held GPUs (a draining job's final checkpoint commits after release)
    ever_placed: bool = False
    restarts: int = 0
    checkpoints: int = 0
    checkpoint_bytes: float = 0.0
    committed_s: float = 0.0
    mark: tuple[float, float] | None = None  # (time of the progress reading, progress_s) in this segment
    migration: tuple[str, str] | None = None  # (source, destination) of a migration in flight

    @property
    def flop_per_token(self) -> float:
        """Training FLOP per token, from the parameters the checkpoint size implies (0: unknown)."""
        return FLOP_PER_PARAM_PER_TOKEN * self.job.checkpoint.size_bytes / CHECKPOINT_BYTES_PER_PARAM


class TwinMetricsFold:
    """Folds a twin run's events into catalog series (change points); :meth:`write` renders them."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], _Series] = {}
        self.jobs = {j.id: _JobFold(j) for j in scenario.jobs}
        self.factory_region = {f.id: f.region for f in scenario.factories}
        self.market_factories: dict[str, list[str]] = {}
        self.links = {}
        for lk in scenario.links:
            name = link_name(lk.a, lk.b)
            self.links[f"{lk.a}-{lk.b}"] = self.links[f"{lk.b}-{lk.a}"] = name
        self.link_bytes: dict[str, list[tuple[int, int, float]]] = {}
        self.ckpt_writes: list[tuple[str, int, int, str, float]] = []  # (factory, start, commit t, job, progress)
        self.durable: dict[str, list[tuple[int, float]]] = {}  # job -> (time, progress) of CheckpointDurable
        self.given_up: dict[str, list[int]] = {}  # job -> times its older writes stop waiting (commit, interruption)
        self.sync_depth: dict[str, dict[str, float]] = {}  # link -> direction -> transfers in flight
        self.causes: set[str] = set()
        self.state_count = dict.fromkeys(JOB_STATES, 0)
        self.job_state: dict[str, str] = {}
        for f in scenario.factories:
            self.market_factories.setdefault(f.market, []).append(f.id)
            for name, v in (("factory_gpus", f.gpus), ("factory_allocated_gpus", 0), ("factory_failed_nodes", 0),
                            ("factory_lease_up", 1), ("factory_power_cap_watts", f.power_cap_w),
                            ("factory_cooling_capacity_watts", f.cooling_capacity_w),
                            ("factory_productive_flop_total", 0), ("placements_total", 0),
                            ("audit_refusals_total", 0), ("job_completions_total", 0)):
                self._set(name, self._fl(f.id), 0, v)
            price = scenario.prices.get(f.market)
            if price is not None:
                self._set("factory_energy_price_usd_per_megawatt_hour", (*self._fl(f.id), ("market", f.market)),
                          0, price.at(0))
            carbon = scenario.carbon.get(f.grid)
            if carbon is not None:
                name = "factory_carbon_intensity_grams_per_kilowatt_hour"
                for k in range(-(-scenario.duration_s // carbon.step_s)):
                    self._set(name, self._fl(f.id), k * carbon.step_s, carbon.at(k * carbon.step_s))
        for a in scenario.factories:  # initialised to 0 so increase() sees a pair's first migration
            for b in scenario.factories:
                if a.id != b.id:
                    for outcome in ("succeeded", "failed"):
                        self._set("migrations_total", (("source", a.id), ("destination", b.id),
                                                       ("outcome", outcome)), 0, 0)
                    for name in ("migration_transfer_bytes_total", "migration_gpu_seconds_total"):
                        self._set(name, (("source", a.id), ("destination", b.id)), 0, 0)
        for name in self.links.values():
            lk = next(x for x in scenario.links if link_name(x.a, x.b) == name)
            self._set("link_capacity_bytes_per_second", (("link", name),), 0, lk.bandwidth_gbps * 1e9 / 8)
            self._set("link_up", (("link", name),), 0, 1)
        self._states(0)

    # -- helpers ------------------------------------------------------------------------------------------
    def _fl(self, factory: str) -> tuple[tuple[str, str], ...]:
        return (("factory", factory), ("region", self.factory_region.get(factory, "")))

    def _get(self, name: str, labels: tuple[tuple[str, str], ...]) -> _Series:
        key = ("superfactory_" + name, labels)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _Series()
        return s

    def _set(self, name: str, labels: tuple[tuple[str, str], ...], t: int, v: float) -> None:
        self._get(name, labels).put(t, float(v))

    def _add(self, name: str, labels: tuple[tuple[str, str], ...], t: int, dv: float) -> None:
        s = self._get(name, labels)
        s.put(t, s.last() + dv)

    def _states(self, t: int) -> None:
        for state, n in self.state_count.items():
            self._set("jobs", (("state", state), ("tenant", "")), t, n)

    def _job_labels(self, jf: _JobFold) -> tuple[tuple[str, str], ...]:
        return (("job_id", jf.job.id), ("tenant", ""), ("factory", jf.factory))

    def _job_gauges(self, jf: _JobFold, t: int, present: bool) -> None:
        lb = self._job_labels(jf)
        nan = math.nan
        self._set("job_gpus", lb, t, jf.job.gpus if present else nan)
        self._set("job_theoretical_flop_per_second", lb, t, jf.job.flop_per_s if present else nan)
        self._set("job_restarts_total", lb, t, jf.restarts if present else nan)
        self._set("job_checkpoints_total", lb, t, jf.checkpoints if present else nan)
        self._set("job_checkpoint_bytes_total", lb, t, jf.checkpoint_bytes if present else nan)
        if not present:
            for name in ("job_progress_ratio", "job_flop_per_second", "job_tokens_per_second",
                         "job_checkpoint_duration_seconds"):
                self._set(name, lb, t, nan)

    def _hold(self, jf: _JobFold, factory: str, t: int) -> None:
        if jf.factory == factory:
            return
        if jf.factory:
            self._release(jf, t)
        jf.factory = jf.last_factory = factory
        self._add("factory_allocated_gpus", self._fl(factory), t, jf.job.gpus)
        self._job_gauges(jf, t, True)

    def _release(self, jf: _JobFold, t: int) -> None:
        if not jf.factory:
            return
        self._add("factory_allocated_gpus", self._fl(jf.factory), t, -jf.job.gpus)
        self._job_gauges(jf, t, False)
        jf.factory, jf.mark = "", None

    def _progress(self, jf: _JobFold, t: int, progress_s: float, snapshot_t: float) -> None:
        """A progress reading: update the ratio and, against the previous reading, the effective FLOP/s."""
        if not jf.factory:
            return
        lb = self._job_labels(jf)
        self._set("job_progress_ratio", lb, t, min(1.0, progress_s / jf.job.work_s) if jf.job.work_s else 1.0)
        if jf.mark is not None and snapshot_t > jf.mark[0]:
            rate = max(0.0, progress_s - jf.mark[1]) / (snapshot_t - jf.mark[0])
            self._set("job_flop_per_second", lb, t, rate * jf.job.flop_per_s)
            if jf.flop_per_token > 0:
                self._set("job_tokens_per_second", lb, t, rate * jf.job.flop_per_s / jf.flop_per_token)
        jf.mark = (snapshot_t, progress_s)

    def _durable(self, jf: _JobFold, t: int, progress_s: float) -> None:
        gain = progress_s - jf.committed_s
        if gain > 0 and jf.last_factory:
            self._add("factory_productive_flop_total", self._fl(jf.last_factory), t, gain * jf.job.flop_per_s)
        jf.committed_s = max(jf.committed_s, progress_s)

    # -- the fold -------------------------------------------------------------------------------------------
    def apply(self, e: Event) -> None:
        """Fold one event (events must arrive in time order)."""
        t, k = e.time_s, e.kind
        jf = self.jobs.get(e.job) if e.job else None
        if jf is not None and k in _STATE_OF:
            old = self.job_state.get(e.job)
            new = _STATE_OF[k]
            if old != new:
                if old is not None:
                    self.state_count[old] -= 1
                self.state_count[new] += 1
                self.job_state[e.job] = new
                self._states(t)
        if jf is not None:
            self._job_event(jf, e)
        elif k is EventKind.NODE_FAILED:
            self._add("factory_failed_nodes", self._fl(e.factory), t, 1)
            self._add("node_failures_total", (*self._fl(e.factory), ("cause", bounded_cause(e.cause, self.causes))),
                      t, 1)
        elif k is EventKind.NODE_REPAIRED:
            self._add("factory_failed_nodes", self._fl(e.factory), t, -1)
        elif k in (EventKind.FACTORY_LOST, EventKind.FACTORY_RESTORED):
            self._set("factory_lease_up", self._fl(e.factory), t, 1 if k is EventKind.FACTORY_RESTORED else 0)
        elif k in (EventKind.LINK_PARTITIONED, EventKind.LINK_RESTORED) and e.factory in self.links:
            self._set("link_up", (("link", self.links[e.factory]),), t, 1 if k is EventKind.LINK_RESTORED else 0)
        elif k is EventKind.PRICE_CHANGED:
            for fid in self.market_factories.get(e.factory, ()):
                self._set("factory_energy_price_usd_per_megawatt_hour", (*self._fl(fid), ("market", e.factory)),
                          t, e.value)
        elif k is EventKind.CHECKPOINT_SYNC_QUEUE_DEPTH and e.factory in self.links:
            link = self.links[e.factory]
            depth = self.sync_depth.setdefault(link, {})
            depth[e.cause] = e.value
            self._set("checkpoint_sync_queue_depth", (("link", link),), t, sum(depth.values()))
        elif k is EventKind.AUDIT_REFUSAL and e.factory in self.factory_region:
            self._add("audit_refusals_total", self._fl(e.factory), t, 1)

    def _job_event(self, jf: _JobFold, e: Event) -> None:
        t, k, job = e.time_s, e.kind, jf.job
        if k in (EventKind.CHECKPOINT_COMMITTED, EventKind.JOB_INTERRUPTED):  # older writes stop waiting
            self.given_up.setdefault(job.id, []).append(t)
        if k is EventKind.JOB_PLACED:
            if jf.migration is not None:
                src, dst = jf.migration
                ok = e.cause == "migrated" and e.factory == dst
                self._add("migrations_total", (("source", src), ("destination", dst),
                                               ("outcome", "succeeded" if ok else "failed")), t, 1)
                jf.migration = None
            if jf.ever_placed:
                jf.restarts += 1
            jf.ever_placed = True
            self._hold(jf, e.factory, t)
            self._set("job_restarts_total", self._job_labels(jf), t, jf.restarts)
            self._add("placements_total", self._fl(e.factory), t, 1)
            jf.mark = None
        elif k is EventKind.JOB_RUNNING:
            jf.mark = None
            self._progress(jf, t, e.value, t)
        elif k is EventKind.CHECKPOINT_COMMITTED:
            ck = job.checkpoint
            jf.checkpoints += 1
            jf.checkpoint_bytes += ck.size_bytes
            if jf.factory:
                lb = self._job_labels(jf)
                self._set("job_checkpoints_total", lb, t, jf.checkpoints)
                self._set("job_checkpoint_bytes_total", lb, t, jf.checkpoint_bytes)
                self._set("job_checkpoint_duration_seconds", lb, t, ck.blocking_s + ck.async_write_s)
            self._progress(jf, t, e.value, t - ck.blocking_s - ck.async_write_s)
            self._durable(jf, t, e.value)
            where = jf.factory or jf.last_factory
            if where in self.factory_region:
                write_s = ck.async_write_s if ck.async_write_s > 0 else ck.blocking_s
                self.ckpt_writes.append((where, t - write_s, t, job.id, e.value))
        elif k is EventKind.CHECKPOINT_DURABLE:
            self.durable.setdefault(job.id, []).append((t, e.value))
        elif k is EventKind.JOB_COMPLETED:
            self._progress(jf, t, e.value, t)
            self._durable(jf, t, e.value)
            if jf.factory:
                self._add("job_completions_total", self._fl(jf.factory), t, 1)
        elif k is EventKind.JOB_INTERRUPTED:
            if jf.factory:
                self._add("interruptions_total",
                          (*self._fl(jf.factory), ("cause", bounded_cause(e.cause, self.causes))), t, 1)
        elif k is EventKind.JOB_MIGRATED:
            src = jf.factory or e.cause.split("->", 1)[0]
            dst = e.factory
            jf.migration = (src, dst)
            pair = (("source", src), ("destination", dst))
            self._add("migration_transfer_bytes_total", pair, t, job.checkpoint.size_bytes)
            self._add("migration_gpu_seconds_total", pair, t, job.gpus * e.value)
            link = self.links.get(f"{src}-{dst}")
            if link is not None:
                self.link_bytes.setdefault(link, []).append((t, t + max(1, int(e.value)), job.checkpoint.size_bytes))
            self._hold(jf, dst, t)  # the destination is reserved from now; the source drains
        if k in _RELEASES:
            self._release(jf, t)

    def add_hours(self, hours: Iterable[HourRecord]) -> None:
        """Fold the per-factory-hour energy accounting (power gauges; energy, cost and carbon counters)."""
        totals: dict[str, list[float]] = {}
        for h in sorted(hours, key=lambda h: (h.factory, h.hour)):
            t0 = h.hour * HOUR_S
            lb = self._fl(h.factory)
            self._set("factory_power_watts", lb, t0, h.facility_energy_mwh * 3.6e9 / HOUR_S)
            self._set("factory_it_power_watts", lb, t0, h.it_energy_mwh * 3.6e9 / HOUR_S)
            acc = totals.setdefault(h.factory, [0.0, 0.0, 0.0])
            for i, (name, v) in enumerate((("factory_energy_joules_total", h.facility_energy_mwh * 3.6e9),
                                           ("factory_energy_cost_usd_total", h.cost_usd),
                                           ("factory_carbon_grams_total", h.carbon_t * 1e6))):
                s = self._get(name, lb)
                s.linear = True
                s.put(t0, acc[i])
                acc[i] += v
                s.put(min(t0 + HOUR_S, self.sc.duration_s), acc[i])

    def finish(self) -> None:
        """Turn the migration transfers into piecewise-linear byte counters per link, and the checkpoint writes
        into each factory's quorum-wait gauge."""
        waits: dict[str, list[tuple[int, int]]] = {f: [] for f in self.factory_region}
        wan = bool(self.durable) or bool(self.sync_depth)
        for factory, start, commit_t, job_id, progress in self.ckpt_writes:
            end = commit_t
            if wan:
                end = min(next((t for t, v in self.durable.get(job_id, ()) if t >= commit_t and v >= progress),
                               self.sc.duration_s),
                          next((t for t in self.given_up.get(job_id, ()) if t > commit_t), self.sc.duration_s))
            if end > start:
                waits[factory].append((start, end))
        for factory, writes in waits.items():
            self._quorum_wait(factory, writes)
        if self.sync_depth:
            for name in self.links.values():
                s = self._get("checkpoint_sync_queue_depth", (("link", name),))
                if not s.times or s.times[0] > 0:
                    s.times.insert(0, 0)
                    s.values.insert(0, 0.0)
        for link, transfers in self.link_bytes.items():
            deltas: dict[int, float] = {}
            for start, end, nbytes in transfers:
                rate = nbytes / (end - start)
                deltas[start] = deltas.get(start, 0.0) + rate
                deltas[end] = deltas.get(end, 0.0) - rate
            s = self._get("link_transmitted_bytes_total", (("link", link),))
            s.linear = True
            total, rate, prev = 0.0, 0.0, 0
            s.put(0, 0.0)
            for t in sorted(deltas):
                total += rate * (t - prev)
                s.put(t, total)
                rate += deltas[t]
                prev = t
        for name in self.links.values():
            s = self._get("link_transmitted_bytes_total", (("link", name),))
            if not s.times:
                s.put(0, 0.0)


    def _quorum_wait(self, factory: str, writes: list[tuple[int, int]]) -> None:
        """Age of the oldest write in flight, as a piecewise-linear series (slope 1 while one is, else 0)."""
        s = self._get("checkpoint_quorum_wait_seconds", self._fl(factory))
        s.linear = True
        starts: dict[int, int] = {}
        edges: dict[int, list[tuple[int, int]]] = {}
        for a, b in writes:
            edges.setdefault(max(0, a), []).append((a, 1))
            edges.setdefault(b, []).append((a, -1))
        s.put(0, 0.0)
        points = sorted(edges)
        for i, b in enumerate(points):
            for a, d in edges[b]:
                starts[a] = starts.get(a, 0) + d
                if starts[a] == 0:
                    del starts[a]
            oldest = min(starts) if starts else None
            s.put(b, 0.0 if oldest is None else float(b - oldest))
            nxt = points[i + 1] if i + 1 < len(points) else self.sc.duration_s + 1
            if nxt - 1 > b:
                s.put(nxt - 1, 0.0 if oldest is None else float(nxt - 1 - oldest))


def fold_run(scenario: Scenario, events: Iterable[Event], hours: Iterable[HourRecord]) -> TwinMetricsFold:
    """Fold a whole run (events in time order plus its factory-hours)."""
    fold = TwinMetricsFold(scenario)
    for e in events:
        fold.apply(e)
    fold.add_hours(hours)
    fold.finish()
    return fold


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _grid_values(s: _Series, grid: np.ndarray) -> np.ndarray:
    times = np.asarray(s.times, dtype=np.int64)
    values = np.asarray(s.values, dtype=np.float64)
    if s.linear:
        out = np.interp(grid, times, values)
        out[grid < times[0]] = np.nan
        return out
    idx = np.searchsorted(times, grid, side="right") - 1
    return np.where(idx >= 0, values[np.maximum(idx, 0)], np.nan)


def write_openmetrics(fold: TwinMetricsFold, path: Path, start_unix_s: int = DEFAULT_START_UNIX_S,
                      step_s: int = DEFAULT_STEP_S) -> dict[str, int]:
    """Write ``fold``'s series to ``path``; return ``{"series": n, "samples": n}``."""
    if step_s <= 0:
        raise SuperfactoryError(f"--metrics-step {step_s}: the sample interval must be a positive number of seconds")
    grid = np.arange(0, fold.sc.duration_s + 1, step_s, dtype=np.int64)
    stamps = [str(start_unix_s + int(t)) for t in grid]
    by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], _Series]]] = {}
    for (name, labels), s in fold.series.items():
        by_name.setdefault(name, []).append((labels, s))
    n_series = n_samples = 0
    with path.open("w", encoding="utf-8") as out:
        for m in METRICS:
            rows = by_name.get(m.name)
            if not rows:
                continue
            _header(out, m)
            for labels, s in sorted(rows, key=lambda r: r[0]):
                values = _grid_values(s, grid)
                lbl = ",".join(f'{k}="{_escape(v)}"' for k, v in labels if v != "")
                head = f"{m.name}{{{lbl}}} " if lbl else f"{m.name} "
                lines = [f"{head}{_fmt(float(v))} {stamps[i]}\n" for i, v in enumerate(values) if not math.isnan(v)]
                if lines:
                    n_series += 1
                    n_samples += len(lines)
                    out.writelines(lines)
        out.write("# EOF\n")
    return {"series": n_series, "samples": n_samples}


def _header(out: object, m: MetricDef) -> None:
    w = out.write  # type: ignore[attr-defined]
    w(f"# HELP {m.family} {m.help}\n")
    w(f"# TYPE {m.family} {m.type}\n")
    if m.unit:
        w(f"# UNIT {m.family} {m.unit}\n")


def parse_start(text: str | None, duration_s: int, now_unix_s: float | None = None) -> int:
    """The Unix time (s) that simulated t = 0 maps to: ``None`` -> :data:`DEFAULT_START_UNIX_S`; ``"now"`` -> the
    run ends now (so it sits beside a live fleet in Grafana's "last N days"); else an ISO 8601 date or time
    (UTC unless it says otherwise). Raises :class:`SuperfactoryError` with a fix for anything else."""
    if text is None:
        return DEFAULT_START_UNIX_S
    if text.strip().lower() == "now":
        now = time.time() if now_unix_s is None else now_unix_s
        return int(now) - duration_s
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SuperfactoryError(f"--metrics-start {text!r}: expected 'now' or an ISO 8601 date/time such as "
                                "2023-08-01 or 2023-08-01T00:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def check_metrics_flags(path: Path, step_s: int, start: str | None) -> None:
    """Refuse unusable ``--metrics-*`` flags up front with a message saying what to change."""
    if step_s <= 0:
        raise SuperfactoryError(f"--metrics-step {step_s}: the sample interval must be a positive number of "
                                "seconds, e.g. 60")
    if path.is_dir():
        raise SuperfactoryError(f"--metrics-out {path}: is a folder; give a file name such as {path / 'run.om'}")
    if not path.parent.is_dir():
        raise SuperfactoryError(f"--metrics-out {path}: folder {path.parent} does not exist; create it first")
    parse_start(start, 0)


def write_twin_metrics(scenario: Scenario, events: Sequence[Event], hours: Iterable[HourRecord], path: Path,
                       start_unix_s: int = DEFAULT_START_UNIX_S, step_s: int = DEFAULT_STEP_S) -> dict[str, int]:
    """Fold a twin run and write it as OpenMetrics to ``path`` (the ``simulate --metrics-out`` entry point)."""
    return write_openmetrics(fold_run(scenario, events, hours), path, start_unix_s, step_s)
