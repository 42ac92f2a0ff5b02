"""Synthetic mixed training workloads.

Model (per accelerator type ``a`` with ``C_a`` GPUs in the fleet):
- a backlog submitted at t = 0 whose gangs add up to ``backlog x C_a`` GPUs (a busy fleet at the start of the
  window, as in any real month);
- then Poisson arrivals at rate ``load x C_a / E[gpus x duration]``, so the offered demand averages ``load`` of
  the fleet's GPUs;
- gang sizes drawn from the ``sizes`` mix; productive durations log-normal (median ``median_duration``,
  log-std ``duration_sigma``) clipped to ``[min_duration, max_duration]``. Published LLM-cluster statistics
  (AcmeTrace, NSDI'24: most GPU jobs are small but GPU time is dominated by jobs of hundreds to thousands of GPUs
  running days) motivate a mix weighted to large gangs for a fleet-scale twin;
- each job's home factory is drawn in proportion to that factory's GPUs of the job's type (among factories
  cleared for its sovereignty class, for the ``sovereign_share`` of jobs that carry one).

Generation is deterministic given its generator: the ``workload`` stream of the run's seed tree, or
``WorkloadSpec.seed`` when the scenario pins it (see :mod:`.seeds`). At most ``MAX_GENERATED_JOBS`` jobs are
drawn; a spec that would generate more (a tiny median duration on a big fleet) is refused with the count.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import NoReturn

import numpy as np

from superfactory.domain.accelerator import ACCELERATORS
from superfactory.domain.factory import Factory
from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
from superfactory.scenario.schema import JobDefaults, WorkloadSpec

#: the twin keeps one record per job and every policy scans the queue at each decision: beyond ~50,000 jobs a
#: month-long run takes minutes instead of seconds. Bigger studies: raise median_duration or shorten the run.
MAX_GENERATED_JOBS = 50_000


class WorkloadTooLarge(ValueError):
    """The workload would generate more than ``MAX_GENERATED_JOBS`` jobs (the message says why and what to do)."""


def generate_jobs(spec: WorkloadSpec, factories: tuple[Factory, ...], duration_s: int,
                  defaults: JobDefaults, rng: np.random.Generator | None = None) -> tuple[TrainingJob, ...]:
    """The jobs of a synthetic workload, sorted by submission time then id.

    ``rng`` defaults to ``default_rng(spec.seed or 0)``.

    Raises:
        WorkloadTooLarge: more than ``MAX_GENERATED_JOBS`` jobs would be drawn.
    """
    rng = rng if rng is not None else np.random.default_rng(spec.seed or 0)
    jobs: list[TrainingJob] = []
    accelerators = sorted({a for f in factories for a in f.accelerators})
    for acc in accelerators:
        capacity = sum(f.gpus_of(acc) for f in factories)
        max_single = max(f.gpus_of(acc) for f in factories)
        sizes = ([s for s in spec.sizes if s.gpus <= max_single // 2]
                 or sorted((s for s in spec.sizes if s.gpus <= max_single), key=lambda s: s.gpus)[:1])
        if not sizes:  # no gang of the mix fits any factory of this type (scenario/sanity.py warns)
            continue
        gpus_opts = np.array([s.gpus for s in sizes])
        weights = np.array([s.weight for s in sizes], dtype=float)
        weights /= weights.sum()
        mean_gpus = float((gpus_opts * weights).sum())
        mu = math.log(spec.median_duration)
        mean_dur = _clipped_lognormal_mean(mu, spec.duration_sigma, spec.min_duration, spec.max_duration, rng)
        rate_per_s = spec.load * capacity / (mean_gpus * mean_dur)
        if rate_per_s * duration_s > MAX_GENERATED_JOBS:  # refuse up front rather than draw 50,000 jobs first
            _too_large(acc, rate_per_s, duration_s)
        t = 0.0
        backlog_gpus = 0
        n = 0
        size_cdf = _cdf(weights)
        homes = _Homes(acc, factories, spec.sovereign_class)
        lo, hi, sigma = spec.min_duration, spec.max_duration, spec.duration_sigma
        scale = 1.0 / rate_per_s
        backlog_goal = spec.backlog * capacity
        while True:
            if backlog_gpus < backlog_goal:
                submit = 0
            else:
                t += rng.exponential(scale)
                submit = int(t)
                if submit >= duration_s:
                    break
            pick = bisect_right(size_cdf, rng.random())  # == rng.choice(len(sizes), p=weights), same draw
            gpus = int(gpus_opts[pick])
            dur = float(min(max(rng.lognormal(mu, sigma), lo), hi))  # == np.clip for a non-NaN draw
            sovereign = rng.random() < spec.sovereign_share
            job = _make_job(f"{acc.lower()}-{n:04d}", acc, gpus, dur, submit, sovereign, spec, homes,
                            defaults, rng, sizes[pick].tp_size)
            if job is not None:
                jobs.append(job)
                if submit == 0:
                    backlog_gpus += gpus
            n += 1
            if len(jobs) > MAX_GENERATED_JOBS or n > 4 * MAX_GENERATED_JOBS:
                _too_large(acc, rate_per_s, duration_s)
    return tuple(sorted(jobs, key=lambda j: (j.submit_s, j.id)))


def _too_large(acc: str, rate_per_s: float, duration_s: int) -> NoReturn:
    raise WorkloadTooLarge(
        f"the workload would generate more than {MAX_GENERATED_JOBS:,} jobs (the twin's limit: it keeps one record "
        f"per job and policies scan the queue at every decision); {acc} alone offers {rate_per_s * 86400:,.0f} "
        f"jobs/day for {duration_s / 86400:g} days: raise median_duration, lower load or shorten the run")


def _clipped_lognormal_mean(mu: float, sigma: float, lo: float, hi: float, rng: np.random.Generator) -> float:
    sample = np.clip(rng.lognormal(mu, sigma, 20_000), lo, hi)
    return float(sample.mean())


def _cdf(p: np.ndarray) -> list[float]:
    """The cumulative table ``Generator.choice(len(p), p=p)`` searches, as plain floats.

    numpy's ``choice`` with ``p`` and no size computes ``cdf = p.cumsum(); cdf /= cdf[-1]``, draws one
    ``random()`` and returns ``cdf.searchsorted(u, side="right")``: ``bisect_right(_cdf(p), rng.random())``
    is the same index from the same single draw, so the generator's stream is unchanged
    (tests/unit/scenario/test_workload_draws.py checks it against ``choice``).
    """
    cdf = np.asarray(p, dtype=float).cumsum()
    cdf /= cdf[-1]
    return [float(x) for x in cdf]


class _Homes:
    """The candidate home factories of one accelerator's jobs, per (gang size, sovereign), computed once (and
    the jobs' checkpoint and recovery records per gang size, :meth:`specs`).

    Each entry is ``(classes, homes, cdf)`` exactly as a per-job scan of the factories would build them:
    ``homes`` are the factories (in scenario order) with at least ``gpus`` of the accelerator and every class
    in ``classes``; ``cdf`` is their draw table in proportion to their GPUs of the accelerator.
    """

    __slots__ = ("_cache", "_factories", "_sovereign", "_specs")

    def __init__(self, acc: str, factories: tuple[Factory, ...], sovereign_class: str) -> None:
        self._factories = [(f, f.gpus_of(acc)) for f in factories]
        self._sovereign = frozenset({sovereign_class})
        self._cache: dict[tuple[int, bool], tuple[frozenset[str], list[Factory], list[float] | None]] = {}
        self._specs: dict[int, tuple[CheckpointSpec, RecoverySpec]] = {}

    def get(self, gpus: int, sovereign: bool) -> tuple[frozenset[str], list[Factory], list[float] | None]:
        key = (gpus, sovereign)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._cache[key] = self._build(gpus, sovereign)
        return entry

    def specs(self, gpus: int, spec: WorkloadSpec, defaults: JobDefaults) -> tuple[CheckpointSpec, RecoverySpec]:
        """The checkpoint and recovery records of a gang of ``gpus`` (frozen values: one shared record per gang
        size, equal to a new one per job)."""
        got = self._specs.get(gpus)
        if got is None:
            ck = defaults.checkpoint
            rc = defaults.recovery
            got = self._specs[gpus] = (
                CheckpointSpec(ck.interval, ck.blocking, spec.checkpoint_per_gpu * gpus, ck.write_bandwidth),
                RecoverySpec(rc.detect, rc.restart, rc.hot_swap))
        return got

    def _build(self, gpus: int, sovereign: bool) -> tuple[frozenset[str], list[Factory], list[float] | None]:
        classes: frozenset[str] = self._sovereign if sovereign else frozenset()
        homes = [(f, g) for f, g in self._factories if g >= gpus and classes <= f.clearances]
        if not homes and classes:
            # no cleared factory has this accelerator: the job carries no regulated data in this fleet
            classes = frozenset()
            homes = [(f, g) for f, g in self._factories if g >= gpus]
        if not homes:
            return classes, [], None
        w = np.array([g for _, g in homes], dtype=float)
        return classes, [f for f, _ in homes], _cdf(w / w.sum())


def _make_job(job_id: str, acc: str, gpus: int, duration_s: float, submit_s: int, sovereign: bool,
              spec: WorkloadSpec, homes_of: _Homes, defaults: JobDefaults,
              rng: np.random.Generator, tp_size: int | None = None) -> TrainingJob | None:
    classes, homes, cdf = homes_of.get(gpus, sovereign)
    if cdf is None:
        return None
    home = homes[bisect_right(cdf, rng.random())]  # == rng.choice(len(homes), p=...), same single draw
    mfu = defaults.mfu
    flop = duration_s * gpus * ACCELERATORS[acc].bf16_dense_tflops * 1e12 * mfu
    checkpoint, recovery = homes_of.specs(gpus, spec, defaults)
    return TrainingJob(
        id=job_id,
        accelerator=acc,
        gpus=gpus,
        work_flop=flop,
        mfu=mfu,
        submit_s=submit_s,
        checkpoint=checkpoint,
        recovery=recovery,
        priority=int(rng.integers(spec.priority_levels)),
        tp_size=tp_size or 8,
        sovereignty=classes,
        home_factory=home.id,
    )
