"""Checkpoint restores over the twin's WAN: a job (re)starting far from every copy of its checkpoint waits for one.

When a scenario models its WAN, :class:`~superfactory.sim.wan_replication.CheckpointReplication` knows where each
job's checkpoints are: the factory that wrote one holds it, every replication copy that arrived holds it, a
migration carries it to its destination, and a restore leaves a copy where it lands (:class:`Holders`). When the
fleet starts a job on a placement (:meth:`Restores.start`, the hook in ``SimulatedFleet._place``):

- a job with nothing committed (a first start), or whose new factory's *region* already holds a copy of the
  checkpoint it restarts from, starts exactly as without the WAN: it runs after its restart time;
- otherwise the twin opens a ``RESTORE`` transfer of the checkpoint's critical tier (``critical_share`` of its
  bytes) from the nearest factory holding a copy (by WAN latency; a holder that is down is used only when no
  holder is up — the restore then waits for it) to the new factory. Copies sit only at lawful sites, and the new
  factory was checked for the job's clearances when it was placed, so a restore never moves data unlawfully.
  The ``wan`` role routes it like any transfer (deadline: the normal restart time); the fabric serves restores
  before every other class. The job begins computing at ``max(normal restart time, restore arrival)``.

What shows it: the ``TransferCompleted`` event with cause ``restore`` (job = ``<job>~restore<n>-><factory>``,
factory = ``SRC->DST``), and the wait beyond the normal restart time counts in the job's recovery time (its
``Metered recovery_s`` events, ``recovery_s`` in the job table). A job interrupted while it waits cancels its
restore. A factory with no WAN link (nothing to carry the bytes) restarts without one, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from superfactory.domain.transfer import TrafficClass, Transfer, WanSettings
from superfactory.sim.kernel import PRIO_JOB
from superfactory.sim.wan import WanFabric

if TYPE_CHECKING:
    from superfactory.sim.fleet import SimulatedFleet
    from superfactory.sim.jobstate import JobRuntime


class Holders:
    """Where each job's checkpoints are: per job, the latest one written and the last durable one, each as
    ``(progress_s, set of factory ids holding a copy)`` (the two may be the same record)."""

    def __init__(self) -> None:
        self.latest: dict[int, tuple[float, set[str]]] = {}
        self.durable: dict[int, tuple[float, set[str]]] = {}

    def written(self, job_index: int, progress_s: float, factory_id: str) -> set[str]:
        """A checkpoint was committed at ``factory_id``: it holds the only copy so far (the set, to add to)."""
        held = {factory_id}
        self.latest[job_index] = (progress_s, held)
        return held

    def made_durable(self, job_index: int, progress_s: float, held: set[str]) -> None:
        old = self.durable.get(job_index)
        if old is None or progress_s >= old[0]:
            self.durable[job_index] = (progress_s, held)

    def of(self, job_index: int, progress_s: float) -> set[str] | None:
        """The factories holding the job's checkpoint at ``progress_s`` (``None``: no such checkpoint known)."""
        for rec in (self.latest.get(job_index), self.durable.get(job_index)):
            if rec is not None and rec[0] == progress_s:
                return rec[1]
        return None


@dataclass(slots=True)
class _Restore:
    transfer_id: str
    token: int
    placed_s: int
    restart_s: int
    ready: bool = False  # the normal restart time has passed
    arrived: bool = False  # the restore's last bit has arrived


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """Restores over a run: how many were carried, how many started a job later than its normal restart time,
    and the total wall time jobs waited beyond it, s (their GPU-seconds: ``wait_gpu_s``)."""

    restores: int = 0
    delayed: int = 0
    wait_s: float = 0.0
    wait_gpu_s: float = 0.0


class Restores:
    """Restore transfers for jobs starting away from their checkpoint's copies (see the module docstring)."""

    def __init__(self, fleet: SimulatedFleet, fabric: WanFabric, settings: WanSettings, holders: Holders,
                 latency_ms: dict[str, dict[str, float]]) -> None:
        self.fleet = fleet
        self.fabric = fabric
        self.settings = settings
        self.holders = holders
        self._latency = latency_ms
        self._open: dict[int, _Restore] = {}
        self._count: dict[int, int] = {}
        self._restores = self._delayed = 0
        self._wait_s = self._wait_gpu_s = 0.0

    def start(self, jr: JobRuntime, token: int, restart_s: int) -> None:
        """``jr`` was placed (state STARTING, ``token``): run it after ``restart_s``, or after its restore."""
        fleet = self.fleet
        src = self.source(jr)
        size_gbit = jr.job.checkpoint.size_bytes * self.settings.critical_share * 8 / 1e9
        if src is None or size_gbit <= 0:
            fleet.k.after(restart_s, PRIO_JOB, fleet._begin_running, jr, token)
            return
        now = fleet.k.now_s()
        dst = fleet.factories[jr.factory].id
        n = self._count[jr.index] = self._count.get(jr.index, 0) + 1
        r = _Restore(f"{jr.job.id}~restore{n}->{dst}", token, now, restart_s)
        self._open[jr.index] = r
        self._restores += 1
        held = self.holders.of(jr.index, jr.committed_s)
        self.fabric.add(Transfer(r.transfer_id, src, dst, size_gbit, now, now + max(1, restart_s),
                                 TrafficClass.RESTORE, jr.job.gpus), partial(self._arrived, jr, r, held))
        fleet.k.after(restart_s, PRIO_JOB, self._restart_done, jr, r)

    def source(self, jr: JobRuntime) -> str | None:
        """Where ``jr``'s restore comes from, or ``None`` when it needs none (nothing committed, a copy in the
        new factory's region, no WAN link at the new factory, or no holder on the WAN)."""
        if jr.committed_s <= 0 or jr.factory < 0:
            return None
        held = self.holders.of(jr.index, jr.committed_s)
        if not held:
            return None
        fleet = self.fleet
        dst = fleet.factories[jr.factory]
        region = {f.id: f.region for f in fleet.factories}
        if any(region.get(h) == dst.region for h in held) or dst.id not in self.fabric.sites:
            return None
        lat = self._latency.get(dst.id, {})
        reachable = sorted((lat[h], h) for h in held if h in lat and h != dst.id)
        if not reachable:
            return None
        up = [c for c in reachable if c[1] not in self.fabric.site_down]
        return (up or reachable)[0][1]

    def cancel(self, jr: JobRuntime) -> None:
        """The job was interrupted: a restore it waited for is no longer wanted."""
        r = self._open.pop(jr.index, None)
        if r is not None:
            self.fabric.cancel(r.transfer_id)

    def _restart_done(self, jr: JobRuntime, r: _Restore) -> None:
        if self._open.get(jr.index) is not r or jr.token != r.token:
            return
        r.ready = True
        if r.arrived:
            self._go(jr, r)

    def _arrived(self, jr: JobRuntime, r: _Restore, held: set[str] | None, tr: Transfer, now: int) -> None:
        del now
        if held is not None:  # the copy stays where it landed, whatever happens to the job
            held.add(tr.dst)
        if self._open.get(jr.index) is not r or jr.token != r.token:
            return
        r.arrived = True
        if r.ready:
            self._go(jr, r)

    def _go(self, jr: JobRuntime, r: _Restore) -> None:
        fleet = self.fleet
        del self._open[jr.index]
        extra = fleet.k.now_s() - r.placed_s - r.restart_s
        if extra > 0:  # the restore, not the relaunch, set the start: the wait is recovery time
            self._delayed += 1
            self._wait_s += extra
            self._wait_gpu_s += extra * jr.job.gpus
            if jr.recovering:  # _begin_running meters the whole restart
                jr.restart_cost_s = r.restart_s + extra
            else:
                jr.recovery_s += extra
                fleet._meter_recovery(jr, extra)
        fleet._begin_running(jr, r.token)

    def report(self) -> RestoreReport:
        return RestoreReport(self._restores, self._delayed, self._wait_s, self._wait_gpu_s)
