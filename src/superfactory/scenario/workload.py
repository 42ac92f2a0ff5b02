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
        while True:
            if backlog_gpus < spec.backlog * capacity:
                submit = 0
            else:
                t += rng.exponential(1.0 / rate_per_s)
                submit = int(t)
                if submit >= duration_s:
                    break
            pick = int(rng.choice(len(sizes), p=weights))
            gpus = int(gpus_opts[pick])
            dur = float(np.clip(rng.lognormal(mu, spec.duration_sigma), spec.min_duration, spec.max_duration))
            sovereign = rng.random() < spec.sovereign_share
            job = _make_job(f"{acc.lower()}-{n:04d}", acc, gpus, dur, submit, sovereign, spec, factories,
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


def _make_job(job_id: str, acc: str, gpus: int, duration_s: float, submit_s: int, sovereign: bool,
              spec: WorkloadSpec, factories: tuple[Factory, ...], defaults: JobDefaults,
              rng: np.random.Generator, tp_size: int | None = None) -> TrainingJob | None:
    classes = frozenset({spec.sovereign_class}) if sovereign else frozenset()
    homes = [f for f in factories if f.gpus_of(acc) >= gpus and classes <= f.clearances]
    if not homes and classes:
        # no cleared factory has this accelerator: the job carries no regulated data in this fleet
        classes = frozenset()
        homes = [f for f in factories if f.gpus_of(acc) >= gpus]
    if not homes:
        return None
    w = np.array([f.gpus_of(acc) for f in homes], dtype=float)
    home = homes[int(rng.choice(len(homes), p=w / w.sum()))]
    mfu = defaults.mfu
    flop = duration_s * gpus * ACCELERATORS[acc].bf16_dense_tflops * 1e12 * mfu
    ck = defaults.checkpoint
    rc = defaults.recovery
    return TrainingJob(
        id=job_id,
        accelerator=acc,
        gpus=gpus,
        work_flop=flop,
        mfu=mfu,
        submit_s=submit_s,
        checkpoint=CheckpointSpec(ck.interval, ck.blocking, spec.checkpoint_per_gpu * gpus, ck.write_bandwidth),
        recovery=RecoverySpec(rc.detect, rc.restart, rc.hot_swap),
        priority=int(rng.integers(spec.priority_levels)),
        tp_size=tp_size or 8,
        sovereignty=classes,
        home_factory=home.id,
    )
