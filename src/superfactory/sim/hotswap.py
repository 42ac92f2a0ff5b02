"""Hot-swapping ranks of a running job in the twin (the ``SwapNodes`` action; issue 19).

A gang whose TP groups ride an NVLink domain that silently degraded runs at a fraction of its speed. Besides
staying (slow) or being drained and restarted elsewhere from its checkpoint (``Preempt``: final checkpoint +
full restart + a new wait), a scheduler can *hot-swap* the affected ranks: the ranks on the listed nodes move to
free nodes of the same factory while the rest of the job keeps its nodes and its in-memory state. The twin
models this as:

1. validation (a bad swap is a policy bug: :class:`~superfactory.errors.SimulationError`): the job is RUNNING
   (not mid-checkpoint, starting, draining or detecting), every ``old`` node is one it holds, every ``new`` node
   is free, up and of its accelerator, no node appears twice;
2. progress is accrued up to now and kept (nothing is rolled back to the last checkpoint): the moved ranks take
   their parameters and optimizer state from their data-parallel peers, as elastic frameworks do;
3. the old nodes are freed and the new ones held at once (in the rank positions of the old ones, so TP groups
   stay whole), the job pauses (STARTING: holds its nodes, no progress) for ``RecoverySpec.hot_swap_s`` —
   metered as recovery time — and then runs at the speed its new placement gets; the checkpoint schedule is
   kept;
4. a ``JobHotSwapped`` event (value = the pause, s; cause = the policy's reason) makes the move visible.

Planned-stop timers and in-flight checkpoint writes of the job stay valid (its incarnation and hold start do not
change).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from superfactory.domain.events import Event, EventKind
from superfactory.domain.fleet import NODE_FREE, SwapNodes
from superfactory.domain.topology import topology_of
from superfactory.errors import SimulationError
from superfactory.models.collective import placement_throughput
from superfactory.sim.jobstate import JobRuntime, JobState
from superfactory.sim.kernel import PRIO_JOB

if TYPE_CHECKING:
    from superfactory.sim.fleet import SimulatedFleet


def swap_nodes(fleet: SimulatedFleet, a: SwapNodes) -> None:
    """Carry out ``a`` on ``fleet`` (module docstring); raises :class:`SimulationError` for an invalid swap."""
    jr = fleet.job_by_id.get(a.job_id)
    if jr is None or jr.state is not JobState.RUNNING:
        raise SimulationError(f"policy hot-swapped job {a.job_id!r} which is not running")
    fi = fleet.by_id.get(a.factory_id)
    if fi is None or fi != jr.factory:
        raise SimulationError(f"policy hot-swapped job {a.job_id!r} on {a.factory_id!r}, where it does not run")
    if not a.swaps:
        raise SimulationError(f"policy hot-swapped job {a.job_id!r} with no nodes to move")
    r = fleet.rt[fi]
    f = r.factory
    old = np.asarray([o for o, _ in a.swaps], dtype=np.intp)
    new = np.asarray([n for _, n in a.swaps], dtype=np.intp)
    held = np.asarray(jr.nodes, dtype=np.intp)
    if np.unique(old).size != old.size or np.unique(new).size != new.size or np.isin(new, old).any():
        raise SimulationError(f"hot swap of job {a.job_id!r} names a node twice")
    if not np.isin(old, held).all():
        raise SimulationError(f"hot swap of job {a.job_id!r} moves ranks off nodes it does not hold")
    if new.min() < 0 or new.max() >= f.nodes:
        raise SimulationError(f"hot swap of job {a.job_id!r} targets nodes outside {f.id} (0..{f.nodes - 1})")
    if np.any(r.status[new] != NODE_FREE):
        bad = int(new[r.status[new] != NODE_FREE][0])
        raise SimulationError(f"hot swap of job {a.job_id!r} targets node {bad} of {f.id}, which is not free")
    if np.any(r.node_cluster[new] != r.node_cluster[old]):
        for o, n in zip(old.tolist(), new.tolist(), strict=True):
            if f.clusters[int(r.node_cluster[n])].accelerator != f.clusters[int(r.node_cluster[o])].accelerator:
                raise SimulationError(f"hot swap of job {a.job_id!r} moves ranks to another accelerator")
    now = fleet.k.now_s()
    jr.accrue_progress(now)  # progress so far is kept: nothing rolls back to the last checkpoint
    r.accrue(now)
    fleet._accrue_job_energy(jr, now)
    moved = dict(zip(old.tolist(), new.tolist(), strict=True))
    nodes = tuple(moved.get(n, n) for n in jr.nodes)
    r.release(old)
    r.hold(new, jr.index)
    jr.nodes = nodes
    jr.held_power_w = -1.0  # recomputed for the new node set
    pause_s = jr.job.recovery.hot_swap_s
    tok = jr.bump(JobState.STARTING)
    jr.speed = placement_throughput(topology_of(f), nodes, jr.job, fleet.link_factors[fi])
    fleet.emit(Event(now, EventKind.JOB_HOT_SWAPPED, jr.job.id, f.id, cause=a.reason, value=float(pause_s)))
    jr.recovery_s += pause_s
    fleet._meter_recovery(jr, pause_s)
    fleet.k.after(pause_s, PRIO_JOB, _resume, fleet, jr, tok)


def _resume(fleet: SimulatedFleet, jr: JobRuntime, tok: int) -> None:
    """End of the hot-swap pause: the job runs again on its new nodes, its checkpoint schedule unchanged."""
    if jr.token != tok:
        return  # interrupted during the pause (a failure): the usual detection and requeue took over
    now = fleet.k.now_s()
    jr.run_since_s = now
    tok = jr.bump(JobState.RUNNING)
    fleet.emit(Event(now, EventKind.JOB_RUNNING, jr.job.id, fleet._fid(jr), value=jr.progress_s))
    fleet._schedule_running(jr, tok, max(now + 1, jr.next_ckpt_s))
