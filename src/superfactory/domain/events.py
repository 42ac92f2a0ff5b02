"""Domain events: what happened in the fleet, emitted identically by the twin and the live control plane.

One flat record type (:class:`Event`) with a :class:`EventKind` tag rather than a class per kind: the twin
emits hundreds of thousands of them per simulated month, metrics fold over them, and tables/hashes need a
fixed set of columns. Unused fields are empty (``""``, ``-1`` or ``0.0``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class EventKind(StrEnum):
    """What happened. Values are stable strings (they appear in event tables)."""

    JOB_SUBMITTED = "JobSubmitted"
    JOB_PLACED = "JobPlaced"  # gang allocated; restart/start cost begins
    JOB_RUNNING = "JobRunning"  # productive work (re)starts
    JOB_INTERRUPTED = "JobInterrupted"  # unexpected: a component under the job failed
    JOB_PLANNED_STOP = "JobPlannedStop"  # planned interruption (maintenance): checkpoints first
    JOB_PREEMPTED = "JobPreempted"
    JOB_MIGRATED = "JobMigrated"
    JOB_COMPLETED = "JobCompleted"
    JOB_REJECTED = "JobRejected"  # can never run (no factory could ever hold it)
    CHECKPOINT_COMMITTED = "CheckpointCommitted"
    NODE_FAILED = "NodeFailed"
    NODE_REPAIRED = "NodeRepaired"
    FACTORY_LOST = "FactoryLost"
    FACTORY_RESTORED = "FactoryRestored"
    LINK_PARTITIONED = "LinkPartitioned"
    LINK_RESTORED = "LinkRestored"
    PRICE_CHANGED = "PriceChanged"
    AUDIT_REFUSAL = "AuditRefusal"  # a placement refused by a hard rule (sovereignty, carbon budget)
    REPLICAS_SCALED = "ReplicasScaled"  # inference replicas of a service at a factory changed (value = new count)
    WEIGHT_SYNC_STARTED = "WeightSyncStarted"  # model weights start crossing the WAN (value = seconds)
    WEIGHT_SYNC_COMPLETED = "WeightSyncCompleted"


@dataclass(frozen=True, slots=True)
class Event:
    """One domain event.

    Attributes:
        time_s: when, simulated or wall seconds since the run's start.
        kind: what happened.
        job: job id, or ``""``.
        factory: factory id, or ``""``.
        node: node index inside the factory, or -1.
        cause: failure cause / reason text, or ``""``.
        value: a number whose meaning depends on ``kind`` (lost work seconds for interruptions, progress
            seconds for checkpoints, USD/MWh for prices, GPUs for placements), or 0.0.
    """

    time_s: int
    kind: EventKind
    job: str = ""
    factory: str = ""
    node: int = -1
    cause: str = ""
    value: float = 0.0

    def line(self) -> str:
        """A canonical one-line text form (used for hashing and logs)."""
        return f"{self.time_s}|{self.kind.value}|{self.job}|{self.factory}|{self.node}|{self.cause}|{self.value!r}"


def event_log_digest(events: Iterable[Event]) -> str:
    """SHA-256 over the canonical lines of an event log: equal digests mean identical logs."""
    h = hashlib.sha256()
    for e in events:
        h.update(e.line().encode())
        h.update(b"\n")
    return h.hexdigest()
