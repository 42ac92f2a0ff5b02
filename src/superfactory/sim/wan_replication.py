"""Checkpoint replication over the twin's WAN: a checkpoint is durable once its quorum of copies has arrived.

When a training job commits a checkpoint (the fleet calls :meth:`CheckpointReplication.written`), its critical
tier (``critical_share`` of its bytes) becomes one transfer to each of ``copies`` target regions, chosen lawfully
as the fleet places jobs: a target factory must hold every clearance the job's data classes need, and sits in a
region other than the source's and the other targets' (the nearest such factory of each region by WAN latency,
nearest regions first). Where fewer lawful regions are reachable (e.g. EU personal data with one cleared site),
every lawful one is used and the ``CheckpointDurable`` event says the durability is reduced. The deadline is the
job's next barrier (or one interval away for a drain checkpoint), or ``durability_slo_s`` after the write when
that comes first. The checkpoint becomes *durable* when
``quorum`` copies (default all) have arrived; a newer checkpoint of the job supersedes an older one still in
flight (its transfers are cancelled).

What durability changes in the fleet (the hooks in :mod:`superfactory.sim.fleet`):

- **restore**: an unexpected interruption restores the job to its last *durable* checkpoint
  (:meth:`restore_point`), not merely the last one written locally, and cancels replication in flight;
- **barrier stall** (``stall_at_barrier``): a job reaching its next barrier while its previous checkpoint is not
  durable yet waits there, holding its GPUs, until it is (:meth:`holds_barrier`); the wait is a
  ``CheckpointSyncStall`` event and counts in the job's checkpoint stall time;
- **migration**: a migrating job's drained checkpoint crosses the fabric as a ``MIGRATION`` transfer
  (:meth:`migrate`), instead of taking the fleet's fixed size ÷ bandwidth time;
- **restore** at a (re)start: a job placed where its region holds no copy of the checkpoint it restarts from
  waits for a ``RESTORE`` transfer from the nearest copy (:meth:`start`; :mod:`superfactory.sim.wan_restore`);
  the copies are tracked here (the writer, each arrived replica, a migration's destination, a restore's);
- **barrier jitter** (``barrier_jitter``): each job's first barrier after a (re)start is offset by ±10 % of its
  interval from its factory's hash (:func:`~superfactory.domain.transfer.barrier_offset_s`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from superfactory.domain.events import Event, EventKind
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import JobLifecycle
from superfactory.domain.transfer import TrafficClass, Transfer, WanSettings, barrier_offset_s
from superfactory.sim.kernel import PRIO_JOB
from superfactory.sim.wan import WanFabric
from superfactory.sim.wan_restore import Holders, RestoreReport, Restores

if TYPE_CHECKING:
    from superfactory.sim.fleet import SimulatedFleet
    from superfactory.sim.jobstate import JobRuntime


@dataclass(slots=True)
class _Sync:
    """One checkpoint's replication in flight."""

    seq: int
    progress_s: float
    src: str
    transfer_ids: tuple[str, ...]
    quorum: int
    lawful_regions: int
    held: set[str]  # factories holding this checkpoint (the writer, then each copy that arrives)
    arrived: int = 0
    durable: bool = False


@dataclass(frozen=True, slots=True)
class ReplicationReport:
    """Checkpoint durability over a run: checkpoints made durable, those with reduced durability (fewer than
    ``copies`` lawful regions), barrier stalls and the GPU time they cost, checkpoints superseded while still
    replicating, migrations carried over the fabric."""

    durable: int
    reduced_durability: int
    stalls: int
    stall_gpu_s: float
    superseded: int
    migrations: int = 0
    restores: RestoreReport = field(default_factory=RestoreReport)


class CheckpointReplication:
    """The fleet's checkpoint hooks when a scenario models its WAN (see the module docstring)."""

    def __init__(self, fleet: SimulatedFleet, fabric: WanFabric, settings: WanSettings,
                 emit: Callable[[Event], None]) -> None:
        self.fleet = fleet
        self.fabric = fabric
        self.settings = settings
        self.emit = emit
        self.durable_s: dict[int, float] = {}  # job index -> durable progress, s
        self._sync: dict[int, _Sync] = {}
        self._seq: dict[int, int] = {}
        self._stalled: dict[int, tuple[int, int]] = {}  # job index -> (token, barrier time)
        self._targets: dict[tuple[str, frozenset[str]], tuple[tuple[str, ...], int]] = {}
        self._latency = _latencies(fabric)
        self.holders = Holders()
        self.restores = Restores(fleet, fabric, settings, self.holders, self._latency)
        self._durable = self._reduced = self._stalls = self._superseded = self._migrations = 0
        self._stall_gpu_s = 0.0

    # == fleet hooks =============================================================================================
    def written(self, jr: JobRuntime, progress_s: float) -> None:
        """A checkpoint of ``jr`` at ``progress_s`` was committed locally: replicate its critical tier."""
        if jr.factory < 0:
            return
        now = self.fleet.k.now_s()
        src = self.fleet.factories[jr.factory]
        old = self._sync.pop(jr.index, None)
        if old is not None:  # a newer checkpoint supersedes the one still replicating
            self._superseded += 1
            for tid in old.transfer_ids:
                self.fabric.cancel(tid)
        targets, lawful = self.targets(src.id, jr.job)
        size_gbit = jr.job.checkpoint.size_bytes * self.settings.critical_share * 8 / 1e9
        seq = self._seq[jr.index] = self._seq.get(jr.index, 0) + 1
        held = self.holders.written(jr.index, progress_s, src.id)
        if not targets or size_gbit <= 0 or src.id not in self.fabric.sites:
            self._make_durable(jr, progress_s, src.id, 0, lawful, held)
            return
        interval = jr.job.checkpoint.interval_s
        deadline = jr.next_ckpt_s if jr.next_ckpt_s > now else now + interval
        if self.settings.durability_slo_s > 0:
            deadline = min(deadline, now + self.settings.durability_slo_s)
        ids = tuple(f"{jr.job.id}#{seq}->{dst}" for dst in targets)
        quorum = min(len(targets), self.settings.quorum or len(targets))
        self._sync[jr.index] = _Sync(seq, progress_s, src.id, ids, quorum, lawful, held)
        for tid, dst in zip(ids, targets, strict=True):
            self.fabric.add(Transfer(tid, src.id, dst, size_gbit, now, deadline, TrafficClass.CHECKPOINT,
                                     jr.job.gpus), partial(self._arrived, jr, seq))

    def restore_point(self, jr: JobRuntime) -> float:
        """An interruption: the progress the job restarts from (its last durable checkpoint); replication in
        flight and any barrier stall of the job end here."""
        sync = self._sync.pop(jr.index, None)
        if sync is not None:
            for tid in sync.transfer_ids:
                self.fabric.cancel(tid)
        self._stalled.pop(jr.index, None)
        self.restores.cancel(jr)
        return self.durable_s.get(jr.index, 0.0)

    def start(self, jr: JobRuntime, token: int, restart_s: int) -> None:
        """``jr`` was placed: it runs after ``restart_s``, or, where its new factory's region holds no copy of
        its checkpoint, once a ``RESTORE`` transfer from the nearest copy has also arrived."""
        self.restores.start(jr, token, restart_s)

    def holds_barrier(self, jr: JobRuntime, token: int, began_s: int) -> bool:
        """At a barrier: ``True`` when the job must wait for its previous checkpoint to become durable (the
        replication resumes it through the fleet's ``_checkpoint_unblock`` once it is)."""
        if not self.settings.stall_at_barrier:
            return False
        sync = self._sync.get(jr.index)
        if sync is None or sync.durable:
            return False
        self._stalled[jr.index] = (token, began_s)
        return True

    def migrate(self, jr: JobRuntime) -> None:
        """A migrating job's drained checkpoint crosses the fabric as a ``MIGRATION`` transfer (sharing links
        with replication and inference); the job arrives when its last bit does. Deadline: twice the transfer
        time the links would give it alone. Without a link at either end, the fleet's own transfer model."""
        fleet = self.fleet
        src, dst = fleet.factories[jr.factory].id, fleet.factories[jr.migrate_to].id
        alone_s = fleet.transfer_s(src, dst, jr.job.checkpoint.size_bytes)
        if src not in self.fabric.sites or dst not in self.fabric.sites or jr.job.checkpoint.size_bytes <= 0:
            fleet._transfer(jr)
            return
        token = jr.bump(JobLifecycle.MIGRATING)
        now = fleet.k.now_s()
        self._migrations += 1
        tid = f"{jr.job.id}~migration{jr.migrations}->{dst}"
        self.fabric.add(Transfer(tid, src, dst, jr.job.checkpoint.size_bytes * 8 / 1e9, now,
                                 now + max(60, 2 * alone_s), TrafficClass.MIGRATION, jr.job.gpus),
                        partial(self._migrated, jr, token, self.holders.of(jr.index, jr.committed_s)))

    def _migrated(self, jr: JobRuntime, token: int, held: set[str] | None, tr: Transfer, now: int) -> None:
        del now
        if held is not None:  # the drained checkpoint is now held at the destination too
            held.add(tr.dst)
        self.fleet._arrive(jr, token)

    def barrier_offset_s(self, jr: JobRuntime) -> int:
        """Offset of the job's first barrier after a (re)start (0 unless ``barrier_jitter``)."""
        if not self.settings.barrier_jitter or jr.factory < 0:
            return 0
        return barrier_offset_s(self.fleet.factories[jr.factory].id, jr.job.checkpoint.interval_s)

    # == targets ==================================================================================================
    def targets(self, src: str, job: TrainingJob) -> tuple[tuple[str, ...], int]:
        """The factories a checkpoint of ``job`` written at ``src`` is replicated to (nearest lawful factory of
        each of the nearest lawful regions, at most ``copies``), and how many lawful regions are reachable."""
        key = (src, job.sovereignty)
        if key not in self._targets:
            home = next(f for f in self.fleet.factories if f.id == src)
            lat = self._latency.get(src, {})
            best: dict[str, tuple[float, str]] = {}
            for f in self.fleet.factories:
                if f.id == src or f.region == home.region or f.id not in lat or not job.sovereignty <= f.clearances:
                    continue
                cand = (lat[f.id], f.id)
                if f.region not in best or cand < best[f.region]:
                    best[f.region] = cand
            ranked = sorted(best.values())
            self._targets[key] = (tuple(fid for _, fid in ranked[: self.settings.copies]), len(ranked))
        return self._targets[key]

    # == arrivals =================================================================================================
    def _arrived(self, jr: JobRuntime, seq: int, tr: Transfer, now: int) -> None:
        del now
        sync = self._sync.get(jr.index)
        if sync is None or sync.seq != seq:
            return
        sync.arrived += 1
        sync.held.add(tr.dst)
        if not sync.durable and sync.arrived >= sync.quorum:
            sync.durable = True
            self._make_durable(jr, sync.progress_s, sync.src, sync.arrived, sync.lawful_regions, sync.held)
        if sync.arrived == len(sync.transfer_ids):
            del self._sync[jr.index]

    def _make_durable(self, jr: JobRuntime, progress_s: float, src: str, regions: int, lawful: int,
                      held: set[str]) -> None:
        now = self.fleet.k.now_s()
        self.durable_s[jr.index] = max(self.durable_s.get(jr.index, 0.0), progress_s)
        self.holders.made_durable(jr.index, progress_s, held)
        self._durable += 1
        cause = ""
        if lawful < self.settings.copies:
            self._reduced += 1
            cause = f"reduced durability: {lawful} of {self.settings.copies} regions lawful"
        self.emit(Event(now, EventKind.CHECKPOINT_DURABLE, jr.job.id, src, regions, cause, progress_s))
        stalled = self._stalled.pop(jr.index, None)
        if stalled is not None and jr.token == stalled[0]:
            token, began_s = stalled
            waited = now - began_s
            self._stalls += 1
            self._stall_gpu_s += waited * jr.job.gpus
            self.emit(Event(now, EventKind.CHECKPOINT_SYNC_STALL, jr.job.id, src, jr.job.gpus, value=float(waited)))
            fleet = self.fleet
            fleet.k.after(jr.job.checkpoint.blocking_s, PRIO_JOB, fleet._checkpoint_unblock, jr, token, began_s,
                          jr.progress_s)

    def report(self) -> ReplicationReport:
        return ReplicationReport(self._durable, self._reduced, self._stalls, self._stall_gpu_s, self._superseded,
                                 self._migrations, self.restores.report())


def _latencies(fabric: WanFabric) -> dict[str, dict[str, float]]:
    """Shortest WAN latency between every pair of linked factories (Dijkstra from each), ms."""
    adj: dict[str, list[tuple[str, float]]] = {}
    for lk in fabric.links:
        adj.setdefault(lk.a, []).append((lk.b, lk.latency_ms))
        adj.setdefault(lk.b, []).append((lk.a, lk.latency_ms))
    out: dict[str, dict[str, float]] = {}
    for src in sorted(adj):
        dist = {src: 0.0}
        heap = [(0.0, src)]
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            for v, w in adj[u]:
                if d + w < dist.get(v, float("inf")):
                    dist[v] = d + w
                    heapq.heappush(heap, (d + w, v))
        out[src] = dist
    return out
