"""The job-level series of ``/metrics`` (one sample per job holding GPUs in each of :data:`JOB_FAMILIES`),
kept as rendered text per job and re-rendered only for jobs whose figures changed.

With 1,000 jobs tracked this is most of an exposition (about 6,000 of ~6,200 samples), so its cost decides what a
scrape costs; it is built the way client libraries keep their series (state kept between scrapes, rendering
only what changed):

- **A job's figures** that never change for it (its name, tenant, theoretical FLOP/s and productive seconds of
  work as the scheduler computes them, its declared checkpoint size) are read **once per job and server
  process** (:meth:`JobSeries.load`), as numbers extracted by the database from the job's spec (no JSON parsed
  here), and forgotten once it no longer holds GPUs (memory stays bounded by the jobs tracked).
- **At each scrape** one narrow query reads what changes of the jobs holding GPUs (factory, GPUs, progress,
  tokens/s the job reported, placements), plain numbers only; with the measured rates and checkpoint figures of
  the event fold, that is a job's key. A job whose key equals the one it had at the previous scrape keeps its
  rendered lines; the others are rendered again (9 lines, from a label prefix rendered once per job).

Contract: :meth:`JobSeries.render` returns sample lines by metric name without the ``superfactory_`` prefix
(families with no sample are absent), for the jobs in ``HOLDING`` of one tenant or of all; a tenant scope
never yields another tenant's job (the tenant filter is in the query).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
from superfactory.live.exposition import escape, value_text
from superfactory.live.services.jobs_common import HOLDING
from superfactory.live.store import tables as t

JOB_FAMILIES = ("job_gpus", "job_progress_ratio", "job_flop_per_second", "job_theoretical_flop_per_second",
                "job_tokens_per_second", "job_restarts_total", "job_checkpoints_total", "job_checkpoint_bytes_total",
                "job_checkpoint_duration_seconds")
_PREFIX = tuple(f"superfactory_{fam}{{" for fam in JOB_FAMILIES)
IN_LIST_MAX = 500
FORGET_SLACK = 1000  # figures of jobs no longer holding GPUs kept before they are forgotten (in one sweep)

Lines = tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class JobFigures:
    """What never changes for a job: read once per job and process."""

    flop_per_s: float  # theoretical, of its declared gang
    work_s: float  # productive seconds of work on that gang
    ckpt_bytes: float  # declared checkpoint size
    gpus: int
    tenant: str
    label_head: str  # 'job_id="..",job_name="..",tenant="..",factory="' (the factory's value follows)


class JobSeries:
    """Per-job figures and rendered lines, kept between scrapes (one per :class:`LiveMetrics`)."""

    def __init__(self) -> None:
        self.figures: dict[int, JobFigures] = {}
        self._gang_flop: dict[tuple[str, int, float], float] = {}
        self._cache: dict[int, tuple[tuple[Any, ...], Lines]] = {}
        self.rendered = 0  # jobs rendered again (a key changed), over the process' life: for tests and tuning

    def load(self, conn: sa.Connection, ids: list[int]) -> None:
        """Read the figures of the jobs ``ids`` not loaded before."""
        wanted = {i for i in ids if i not in self.figures}
        if not wanted:
            return
        spec = t.jobs.c.spec
        q = sa.select(  # the numbers only, extracted by the database: no JSON parsed here
            t.jobs.c.id, t.jobs.c.name, t.jobs.c.tenant_id, t.jobs.c.accelerator, t.jobs.c.gpus,
            spec[("job", "work_flop")].as_float(), spec[("job", "mfu")].as_float(),
            spec[("job", "checkpoint", "size_bytes")].as_float())
        lo, hi = min(wanted), max(wanted)
        if hi - lo < 4 * len(wanted):
            # mostly consecutive ids (a burst of new placements): one primary-key range scan filtered here;
            # compiling an IN list of hundreds of bound parameters cost more than the rows it selected
            batches = [q.where(t.jobs.c.id.between(lo, hi))]
        else:
            ordered = sorted(wanted)
            batches = [q.where(t.jobs.c.id.in_(ordered[i:i + IN_LIST_MAX]))
                       for i in range(0, len(ordered), IN_LIST_MAX)]
        for b in batches:
            for jid, name, tenant, accelerator, gpus, work_flop, mfu, ckpt_bytes in conn.execute(b):
                if jid not in wanted:
                    continue
                flop_per_s = self._flop_per_s(accelerator, gpus, mfu)
                self.figures[jid] = JobFigures(
                    flop_per_s, work_flop / flop_per_s, ckpt_bytes, gpus, tenant,
                    f'job_id="{jid}",job_name="{escape(name)}",tenant="{escape(tenant)}",factory="')

    def _flop_per_s(self, accelerator: str, gpus: int, mfu: float) -> float:
        """A gang's theoretical FLOP/s as the scheduler computes it (:attr:`TrainingJob.flop_per_s`; a job's
        work in productive seconds is ``work_flop / flop_per_s``, :attr:`TrainingJob.work_s`), kept per gang
        shape: building the frozen job to ask it cost half of loading a job."""
        key = (accelerator, gpus, mfu)
        got = self._gang_flop.get(key)
        if got is None:
            got = self._gang_flop[key] = TrainingJob("", accelerator, gpus, 1.0, mfu, 0, CheckpointSpec(0, 0, 0, 0.0),
                                                     RecoverySpec(0, 0)).flop_per_s
        return got

    def render(self, conn: sa.Connection, tenant: str | None, rates: Mapping[int, float],
               checkpoints: Mapping[int, int], durations: Mapping[int, float]) -> dict[str, list[str]]:
        """Sample lines of the jobs holding GPUs (of ``tenant``, or of all when None), by metric name.

        ``rates``: productive seconds per second at a job's last measurement; ``checkpoints``: its checkpoint
        commits; ``durations``: its last checkpoint's save duration, s (all from the event fold)."""
        q = sa.select(t.jobs.c.id, t.jobs.c.factory_id, t.jobs.c.gpus, t.jobs.c.progress_s,
                      t.jobs.c.tokens_per_s, t.jobs.c.attempts).where(t.jobs.c.state.in_(HOLDING))
        if tenant is not None:
            q = q.where(t.jobs.c.tenant_id == tenant)
        rows = conn.execute(q.order_by(t.jobs.c.id)).all()
        self.load(conn, [r[0] for r in rows if r[0] not in self.figures])
        old = self._cache
        cache = dict(old) if tenant is not None else {}  # a tenant's scrape keeps the other tenants' entries
        out: list[Lines] = []
        for jid, factory, gpus, progress_s, tokens_per_s, attempts in rows:
            key = (factory, gpus, progress_s, tokens_per_s, attempts, rates.get(jid), checkpoints.get(jid, 0),
                   durations.get(jid))
            hit = old.get(jid)
            if hit is not None and hit[0] == key:
                lines = hit[1]
            else:
                lines = self._lines(jid, key)
                self.rendered += 1
            cache[jid] = (key, lines)
            out.append(lines)
        self._cache = cache
        if tenant is None and len(self.figures) > len(cache) + FORGET_SLACK:  # forget jobs that ended
            self.figures = {jid: f for jid, f in self.figures.items() if jid in cache}  # (read again if needed)
        block = {fam: [ls[i] for ls in out if ls[i] is not None] for i, fam in enumerate(JOB_FAMILIES)}
        return {fam: lines for fam, lines in block.items() if lines}  # type: ignore[misc]

    def _lines(self, jid: int, key: tuple[Any, ...]) -> Lines:
        factory, gpus, progress_s, tokens_per_s, attempts, rate, n_ckpt, duration_s = key
        f = self.figures[jid]
        lbl = f'{f.label_head}{escape(factory or "")}"}} '
        values: tuple[float | None, ...] = (
            gpus, min(1.0, progress_s / f.work_s) if f.work_s > 0 else 1.0,
            None if rate is None else rate * f.flop_per_s, f.flop_per_s, tokens_per_s,
            max(0, attempts - 1), n_ckpt, n_ckpt * f.ckpt_bytes, duration_s)
        return tuple(None if v is None else f"{p}{lbl}{value_text(v)}\n" for p, v in zip(_PREFIX, values,
                                                                                         strict=True))
