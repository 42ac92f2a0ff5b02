"""Domain events: what happened in the fleet, emitted identically by the twin and the live control plane.

One flat record type (:class:`Event`) with a :class:`EventKind` tag rather than a class per kind: the twin
emits hundreds of thousands of them per simulated month, metrics fold over them, and tables/hashes need a
fixed set of columns. Unused fields are empty (``""``, ``-1`` or ``0.0``).

Schema: :data:`EVENT_SCHEMA_VERSION` names the set of kinds and fields below; event tables carry it so a
reader can refuse a record it does not understand. Version history: 1 = wave 1 (no ``action`` field, no
action-outcome or shadow kinds); 2 = action ids and outcomes, shadow decisions, link probes; 3 = WAN transfers
(``TransferCompleted``, ``CheckpointDurable``, ``CheckpointSyncQueueDepth``, ``CheckpointSyncStall``).

Meaning of ``value`` per kind (the contract metrics fold over): ``JobSubmitted``/``JobPlaced``: GPUs;
``JobRunning``/``JobCompleted``/``CheckpointCommitted``: productive progress, s; ``JobInterrupted``: work lost,
s; ``JobMigrated``: transfer time, s; ``FactoryLost``/``LinkPartitioned``: duration, s; ``PriceChanged``:
USD/MWh; ``ReplicasScaled``: new replica count; ``WeightSyncStarted``: transfer time, s; ``LinkProbed``:
measured fraction of nominal bandwidth (``node`` = NVLink domain); ``ShadowAction``: nodes (Place/Migrate) or 0;
``JobProgress``: productive progress, s. ``Metered``: ``cause`` names the quantity, ``value`` is the amount and
``time_s``/``node`` the period's start and length (s): per factory and accounting hour ``facility_mwh``,
``it_mwh``, ``usd``, ``tco2``, ``busy_gpu_s``, ``gpu_s`` (capacity); per job ``recovery_s`` (detection and
restart time, at the instant it is spent).

WAN kinds (issue 16; only when a scenario models its WAN): ``TransferCompleted``: ``job`` = transfer id,
``factory`` = ``"SRC->DST"``, ``cause`` = traffic class, ``value`` = lateness s (arrival − deadline; <= 0 on
time). ``CheckpointDurable``: ``job``, ``factory`` = where it was written, ``value`` = progress s now safe,
``node`` = regions holding it, ``cause`` = ``""`` or ``"reduced durability: N of M regions lawful"``.
``CheckpointSyncQueueDepth``: ``factory`` = link ``"A-B"`` (as ``LinkPartitioned``), ``cause`` = direction
``"SRC->DST"``, ``value`` = checkpoint transfers in flight through it (emitted when it changes; alarm > 5).
``CheckpointSyncStall``: ``job``, ``factory``, ``value`` = seconds the job waited at its barrier for its previous
checkpoint to become durable, ``node`` = the job's GPUs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

#: version of the event schema (kinds, fields and the meaning of ``value``); see the module docstring
EVENT_SCHEMA_VERSION = 3


class EventKind(StrEnum):
    """What happened. Values are stable strings (they appear in event tables)."""

    JOB_SUBMITTED = "JobSubmitted"
    JOB_PLACED = "JobPlaced"  # gang allocated; restart/start cost begins
    JOB_RUNNING = "JobRunning"  # productive work (re)starts
    JOB_INTERRUPTED = "JobInterrupted"  # unexpected: a component under the job failed
    JOB_PLANNED_STOP = "JobPlannedStop"  # planned interruption (maintenance): checkpoints first
    JOB_PREEMPTED = "JobPreempted"
    JOB_MIGRATED = "JobMigrated"
    JOB_HOT_SWAPPED = "JobHotSwapped"  # ranks of a running job moved to other nodes (value = pause s; issue 19)
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
    ACTION_APPLIED = "ActionApplied"  # an action's outcome (``action`` = its id; see domain/outcome.py)
    ACTION_PARTIAL = "ActionPartial"
    ACTION_REFUSED = "ActionRefused"
    ACTION_FAILED = "ActionFailed"
    ACTION_TIMED_OUT = "ActionTimedOut"
    SHADOW_ACTION = "ShadowAction"  # an action a shadow policy decided (recorded, never applied)
    LINK_PROBED = "LinkProbed"  # an all-reduce probe measured an NVLink domain below nominal (value = ratio)
    METERED = "Metered"  # a metered quantity over a period: cause = quantity, value = amount, node = period s
    JOB_PROGRESS = "JobProgress"  # telemetry: a job's productive progress, s (at the end of a run)
    TRANSFER_COMPLETED = "TransferCompleted"  # a WAN transfer's last bit arrived (value = lateness, s)
    CHECKPOINT_DURABLE = "CheckpointDurable"  # a checkpoint's replication quorum arrived (value = progress, s)
    CHECKPOINT_SYNC_QUEUE_DEPTH = "CheckpointSyncQueueDepth"  # checkpoint transfers in flight on a link direction
    CHECKPOINT_SYNC_STALL = "CheckpointSyncStall"  # a job waited at its barrier for durability (value = s)


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
        value: a number whose meaning depends on ``kind`` (see the module docstring), or 0.0.
        action: the id of the action this event reports the outcome of (or, for ``ShadowAction``, the
            shadow action's id), else ``""``.
    """

    time_s: int
    kind: EventKind
    job: str = ""
    factory: str = ""
    node: int = -1
    cause: str = ""
    value: float = 0.0
    action: str = ""

    def line(self) -> str:
        """A canonical one-line text form (used for hashing and logs)."""
        return f"{self.time_s}|{self.kind.value}|{self.job}|{self.factory}|{self.node}|{self.cause}|{self.value!r}" + (
            f"|{self.action}" if self.action else "")


def event_log_digest(events: Iterable[Event]) -> str:
    """SHA-256 over the canonical lines of an event log: equal digests mean identical logs."""
    h = hashlib.sha256()
    for e in events:
        h.update(e.line().encode())
        h.update(b"\n")
    return h.hexdigest()
