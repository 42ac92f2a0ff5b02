"""How long a training job can hold nodes in the twin, and NVLink-domain fill patterns: the inputs of the
time-coupled rows (5) of the occupancy bound (:mod:`superfactory.policy.occupancy_bound`).

**Hold cap.** A job's nodes are held from a ``Place`` until its release; in between it is STARTING, RUNNING,
CHECKPOINTING, DETECTING or DRAINING (``domain.lifecycle.HOLDS_NODES``; MIGRATING needs a second factory and a
``Migrate``, and is left out: see below). Read from ``sim/fleet.py`` and ``sim/hotswap.py``, for one job with
``F`` failure interruptions and ``D`` drains or hot swaps (``Preempt``, planned stops, ``SwapNodes``) in the
horizon, write ``I, b, w`` for the checkpoint interval, blocking and asynchronous-write times, ``r`` for
``max(restart_s, hot_swap_s)``, ``d`` for ``detect_s``, ``v`` for the slowest speed a placement can give
(``placement_throughput``: :data:`~superfactory.models.collective.DEGRADED_THROUGHPUT` = 0.6 when the job has
TP groups - split across domains or on a degraded domain - else 1), ``W`` for ``work_s``:

- **starts**: every ``Place`` holds ``restart_s`` (``hot_swap_s`` for a hot-swap placement) before RUNNING; a
  ``Place`` needs the job PENDING, which after the first start only a requeue (after a failure's detection or
  a drain) gives: at most ``1 + F + D`` starts, ``<= r`` each; a ``SwapNodes`` pauses ``hot_swap_s <= r``;
- **detection**: each failure interruption holds ``d`` more (DETECTING);
- **drains**: each drain holds ``b + w`` (the final checkpoint) and loses nothing;
- **productive time**: progress advances only while RUNNING outside a checkpoint's blocking window, at speed
  ``>= v``. The progress ever accrued is the final progress (``<= W``) plus what failures roll back. A failure
  rolls back the progress since the snapshot of the last committed checkpoint; checkpoints begin ``I`` after
  RUNNING starts and ``I`` apart and commit ``b + w`` after they begin, so at most ``I + w`` productive seconds
  (speed ``<= 1``) are rolled back per failure. Productive time ``<= (W + F (I + w)) / v + 1`` (the completion
  is scheduled at the ceiling of the remaining work over the speed: one second of rounding);
- **checkpoint stalls**: blocking windows begin at least ``P = max(I, b + 1)`` after RUNNING starts and apart
  (``_checkpoint_begin``: ``nxt = now + I``, or ``until + 1``), so within a hold of length ``L`` at most
  ``L / P`` windows of ``<= b`` each: stalls ``<= (b / P) x hold``.

Adding the terms, ``hold <= [ (W + F (I + w)) / v + 1 + r (1 + F + D) + d F + (b + w) D ] / (1 - b / P)``,
i.e. ``base + F x per_failure + D x per_drain`` (:class:`HoldCap`), and of course ``hold <= horizon - submit``.
Assumptions, stated: no modelled WAN (a WAN restore may start later and roll back further), no ``Migrate``
(its transfer time is not bounded here), and no factory outage (it interrupts every job on the site without
a ``NodeFailed``): the bound's caller counts the failures (one per outage spell: a failure that hits a down
node is discarded, and one node is held by at most one job) and states the drain budget ``D`` as the set of
schedules it covers.

**Fill patterns.** :func:`fill_patterns`: the maximal multisets of TP-unit sizes (nodes) that fit one NVLink
domain; at any instant every domain holds one pattern's units (or fewer), so a slot's time-average is a convex
combination of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from superfactory.domain.job import TrainingJob
from superfactory.models.collective import DEGRADED_THROUGHPUT


@dataclass(frozen=True, slots=True)
class HoldCap:
    """Upper bound on the seconds a job holds nodes: ``base_s + failures x per_failure_s + drains x
    per_drain_s`` (module docstring); ``min_speed`` is the ``v`` it assumed."""

    base_s: float
    per_failure_s: float
    per_drain_s: float
    min_speed: float

    def hold_s(self, failures: float = 0.0, drains: float = 0.0) -> float:
        """The cap for a job hit by ``failures`` failures and ``drains`` drains or hot swaps."""
        return self.base_s + failures * self.per_failure_s + drains * self.per_drain_s


def min_speed(job: TrainingJob) -> float:
    """The slowest speed any placement gives ``job`` in the twin (``placement_throughput``: 1 without TP
    groups, else :data:`DEGRADED_THROUGHPUT`)."""
    return 1.0 if max(1, min(job.tp_size, job.gpus)) == 1 else DEGRADED_THROUGHPUT


def hold_cap(job: TrainingJob, speed: float | None = None) -> HoldCap:
    """The :class:`HoldCap` of ``job`` (module docstring); ``speed`` overrides the slowest speed (tests)."""
    v = min_speed(job) if speed is None else speed
    if v <= 0:
        raise ValueError(f"speed must be > 0, got {v}")
    ck, rec = job.checkpoint, job.recovery
    interval, block, write = ck.interval_s, ck.blocking_s, ck.async_write_s
    start = max(rec.restart_s, rec.hot_swap_s)
    period = max(interval, block + 1)
    stretch = 1.0 / (1.0 - block / period)
    return HoldCap(base_s=stretch * (job.work_s / v + 1.0 + start),
                   per_failure_s=stretch * ((interval + write) / v + start + rec.detect_s),
                   per_drain_s=stretch * (start + block + write), min_speed=v)


def fill_patterns(per_domain: int, sizes: Iterable[int]) -> list[tuple[int, ...]]:
    """The maximal multisets (sorted, largest first) of ``sizes`` (nodes > 1) whose sum is ``<= per_domain``:
    no further unit of any size fits. The empty pattern when none fits."""
    units = sorted({u for u in sizes if 1 < u <= per_domain}, reverse=True)
    if not units:
        return [()]
    out: list[tuple[int, ...]] = []
    smallest = units[-1]
    ranges = [range(per_domain // u + 1) for u in units]
    for counts in itertools.product(*ranges):
        used = sum(c * u for c, u in zip(counts, units, strict=True))
        if used <= per_domain < used + smallest:
            out.append(tuple(u for c, u in zip(counts, units, strict=True) for _ in range(c)))
    return out
