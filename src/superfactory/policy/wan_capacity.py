"""Checkpoint-sync bandwidth as a capacity row of geo's assignment (issue 16; the source's "subject to
checkpoint-sync bandwidth").

A training job in factory ``f`` replicates its checkpoint's critical tier to ``copies`` regions every checkpoint
interval, a sustained WAN egress of ``copies × critical bytes × 8 / interval`` (Gb/s) out of ``f``. Each factory's
egress for checkpoint sync is what its up links leave after inference traffic (``WanState.sync_capacity_gbps``).
:func:`with_checkpoint_sync_rows` adds one row per factory to an assignment problem: a column that places or
moves a job into ``f`` uses the job's sync rate on ``f``'s row, whose capacity is ``f``'s sync egress minus what
the jobs already there (staying) use. So geo places no more checkpointing work on a site than its links can
replicate — before, WAN bandwidth entered geo only as the cost of a migration.

Only when the world models its WAN (``snapshot.wan`` is not ``None``); otherwise the problem is returned as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from superfactory.domain.fleet import FleetSnapshot, JobView
from superfactory.domain.job import TrainingJob
from superfactory.domain.transfer import WanState
from superfactory.policy.assignment import AssignmentProblem


def sync_gbps(job: TrainingJob, wan: WanState) -> float:
    """Sustained WAN egress of ``job``'s checkpoint replication, Gb/s."""
    ck = job.checkpoint
    return wan.copies * ck.size_bytes * wan.critical_share * 8 / 1e9 / max(1, ck.interval_s)


def with_checkpoint_sync_rows(problem: AssignmentProblem, snap: FleetSnapshot,
                              views: Sequence[JobView]) -> AssignmentProblem:
    """``problem`` with a checkpoint-sync egress row per factory (``problem.row_cap.size + factory index``); the
    same problem when ``snap.wan`` is ``None``. ``views[j]`` is job ``j`` of the problem."""
    wan = snap.wan
    if wan is None:
        return problem
    nf = len(snap.factories)
    index = {f.id: i for i, f in enumerate(snap.factories)}
    cap = np.zeros(nf)
    for fid, gbps in wan.sync_capacity_gbps:
        if fid in index:
            cap[index[fid]] = gbps
    demand = np.array([sync_gbps(v.job, wan) for v in views])
    held = np.zeros(nf)
    for v, d in zip(views, demand, strict=True):
        if v.factory_id is not None and v.factory_id in index:
            held[index[v.factory_id]] += d
    base = problem.row_cap.size
    jobs = problem.col_job()
    moves = (problem.col_rows[:, 0] >= 0) & (problem.col_bin >= 0)  # columns that take capacity (not stay/wait)
    rows = np.where(moves, base + problem.col_bin, -1)
    use = np.where(moves, demand[jobs] if jobs.size else 0.0, 0.0)
    return AssignmentProblem(
        problem.job_ptr, problem.col_bin, problem.col_cost,
        np.concatenate([problem.col_rows, rows[:, None]], axis=1).astype(np.int64),
        np.concatenate([problem.col_use, use[:, None]], axis=1),
        np.concatenate([problem.row_cap, np.maximum(0.0, cap - held)]),
        problem.job_keys, problem.current)
