"""The job lifecycle: the states a training job goes through, shared by every world and every policy.

Both worlds (the twin and the live plane) report a job's state with :class:`JobLifecycle`; policies compare
against these members, never against strings of their own. Transitions (the twin's state machine, see
``sim/README.md``)::

    PENDING --Place--> STARTING --restart--> RUNNING <--> CHECKPOINTING
    RUNNING/CHECKPOINTING --done--> COMPLETED
    STARTING/RUNNING/CHECKPOINTING --failure--> DETECTING --> PENDING (progress = last durable checkpoint)
    RUNNING/CHECKPOINTING --planned stop / Preempt--> DRAINING --> PENDING (nothing lost)
    RUNNING/CHECKPOINTING --Migrate--> DRAINING --> MIGRATING --> STARTING at the destination
"""

from __future__ import annotations

from enum import StrEnum


class JobLifecycle(StrEnum):
    """Where a job is in its life. Values are stable strings (they appear in tables and APIs)."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    CHECKPOINTING = "checkpointing"
    DETECTING = "detecting"
    DRAINING = "draining"
    MIGRATING = "migrating"
    COMPLETED = "completed"


#: states in which a job holds nodes
HOLDS_NODES = frozenset({
    JobLifecycle.STARTING, JobLifecycle.RUNNING, JobLifecycle.CHECKPOINTING, JobLifecycle.DETECTING,
    JobLifecycle.DRAINING, JobLifecycle.MIGRATING,
})

#: states in which a world accepts ``Preempt`` and ``Migrate`` for a job
MOVABLE = frozenset({JobLifecycle.RUNNING, JobLifecycle.CHECKPOINTING})
