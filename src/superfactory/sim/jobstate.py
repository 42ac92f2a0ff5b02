"""Per-job runtime state in the twin and the job state machine.

States and transitions (``token`` increments on every transition so stale scheduled callbacks are ignored;
``incarnation`` increments on every interruption so in-flight checkpoint writes of a dead incarnation never
commit)::

    PENDING --place--> STARTING --restart_s--> RUNNING <--> CHECKPOINTING (blocking_s)
    RUNNING/CHECKPOINTING --done--> COMPLETED
    STARTING/RUNNING/CHECKPOINTING --node failure--> DETECTING --detect_s--> PENDING (progress = last commit)
    RUNNING/CHECKPOINTING --planned stop / preempt--> DRAINING (final checkpoint) --> PENDING (no loss)
    RUNNING/CHECKPOINTING --migrate--> DRAINING --> MIGRATING (WAN transfer) --> STARTING at the destination

Progress is measured in productive seconds on the declared gang; it advances only in RUNNING, at ``speed``
productive seconds per second (1.0 unless a placement is degraded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import HOLDS_NODES, JobLifecycle

__all__ = ["HOLDS_NODES", "JobRuntime", "JobState"]

#: the twin's name for the shared lifecycle enum (:class:`superfactory.domain.lifecycle.JobLifecycle`)
JobState = JobLifecycle


@dataclass(slots=True)
class JobRuntime:
    """Mutable twin-side state of one training job (never shown to policies; they get JobView)."""

    job: TrainingJob
    index: int
    state: JobState = JobState.PENDING
    submitted: bool = False
    factory: int = -1
    nodes: tuple[int, ...] = ()
    progress_s: float = 0.0
    committed_s: float = 0.0
    run_since_s: int = 0
    token: int = 0
    incarnation: int = 0
    waiting_since_s: int = 0
    last_factory: int = -1
    last_nodes: tuple[int, ...] = ()
    speed: float = 1.0
    next_ckpt_s: int = 0
    migrate_to: int = -1
    migrate_nodes: tuple[int, ...] = ()
    migrations: int = 0
    restart_cost_s: int = 0
    held_power_w: float = -1.0  # training power of the held nodes (IT, W); -1 = not computed yet
    first_start_s: int = -1
    completed_s: int = -1
    interruptions: int = 0
    planned_stops: int = 0
    preemptions: int = 0
    lost_work_s: float = 0.0
    recovery_s: float = 0.0  # time holding nodes while detecting/restarting after interruptions
    checkpoints: int = 0
    checkpoint_stall_s: float = 0.0
    held_gpu_s: float = 0.0  # GPU-seconds allocated (busy power drawn)
    held_since_s: int = -1
    recovering: bool = False  # current STARTING is a restart after an interruption
    energy_j: float = 0.0  # facility energy attributed to the job
    cost_usd: float = 0.0
    carbon_g: float = 0.0
    interruptions_by_cause: dict[str, int] = field(default_factory=dict)
    # the JobView last shown to policies and what it depended on (see SimulatedFleet._view)
    view_key: tuple[int, float, float, int] = (-1, 0.0, 0.0, -1)
    view: object = None
    # the job's constants the event hot path reads (computed properties of TrainingJob / CheckpointSpec, read
    # once here: ~10^6 checkpoint events in a fleet-year)
    work_s: float = field(init=False)
    ckpt_interval_s: int = field(init=False)
    ckpt_blocking_s: int = field(init=False)
    ckpt_write_s: int = field(init=False)

    def __post_init__(self) -> None:
        ck = self.job.checkpoint
        self.work_s = self.job.work_s
        self.ckpt_interval_s, self.ckpt_blocking_s, self.ckpt_write_s = ck.interval_s, ck.blocking_s, ck.async_write_s

    def bump(self, state: JobState) -> int:
        """Move to ``state`` and invalidate every callback scheduled for earlier states."""
        self.state = state
        self.token += 1
        return self.token

    def accrue_progress(self, now_s: int) -> None:
        """Fold the current RUNNING segment into ``progress_s``."""
        if self.state is JobState.RUNNING:
            self.progress_s += (now_s - self.run_since_s) * self.speed
            self.run_since_s = now_s
