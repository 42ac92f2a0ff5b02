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

Folded checkpoints (issue 12): the blocking part of a periodic checkpoint is usually not an event of its own. At
the checkpoint's begin the fleet records the blocking window ``[ckpt_began_s, ckpt_until_s)`` and leaves the
job physically RUNNING with ``run_since_s = ckpt_until_s`` (progress resumes there); :attr:`JobRuntime.state`
reads CHECKPOINTING inside the window, exactly as the unfolded state machine would show it. At the window's end
instant itself, events that run before the unfolded unblock would have (priority below ``PRIO_JOB``: failures,
signals, planned stops) still see CHECKPOINTING; later ones (decisions) see RUNNING.

Chained checkpoints (issue 12, session 5): when a checkpoint's commit comes no later than the next checkpoint's
begin, the begin is not a kernel event either. The commit *opens the next window early*: it does at the commit
what the begin would do at ``ckpt_began_s`` (a future instant) — progress up to the begin, the window, the stall,
the next commit and what follows — and keeps what it overwrote in :attr:`JobRuntime.early_cell`
(``[valid, progress_s, run_since_s, next_ckpt_s]``). Until the window's begin (at the begin instant itself: for
events of priority below ``PRIO_JOB``, which ran before the begin event would have) the job is *before its
window*: :attr:`state` reads RUNNING, :meth:`progress_now` reads progress from the kept fields, and anything that
changes the job's schedule (:meth:`accrue_progress`, :meth:`bump`) first puts the kept fields back exactly
(:meth:`drop_early`), marks the early commit void (``early_cell[0] = False``) and takes the stall back. From the
begin on, the window is an ordinary folded window. So each periodic checkpoint is one kernel event (its commit)
instead of two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import HOLDS_NODES, JobLifecycle
from superfactory.sim.kernel import PRIO_JOB, Kernel

__all__ = ["HOLDS_NODES", "JobRuntime", "JobState"]

#: the twin's name for the shared lifecycle enum (:class:`superfactory.domain.lifecycle.JobLifecycle`)
JobState = JobLifecycle
_RUNNING = JobState.RUNNING
_CHECKPOINTING = JobState.CHECKPOINTING


@dataclass(slots=True)
class JobRuntime:
    """Mutable twin-side state of one training job (never shown to policies; they get JobView)."""

    job: TrainingJob
    index: int
    _state: JobState = JobState.PENDING  # the physical state; read :attr:`state` (folded checkpoints)
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
    # a folded checkpoint's blocking window [ckpt_began_s, ckpt_until_s) (-1: none), and the kernel whose clock
    # says whether now is inside it (module docstring)
    ckpt_began_s: int = -1
    ckpt_until_s: int = -1
    # a window opened early by the previous commit, with what that overwrote (module docstring), else None
    early_cell: list[float | bool] | None = None
    # ``nodes`` as an index array and the tuple it was made from (see node_array)
    _node_arr: npt.NDArray[np.intp] | None = field(default=None, repr=False, compare=False)
    _node_arr_of: tuple[int, ...] = field(default=(), repr=False, compare=False)
    kernel: Kernel | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        ck = self.job.checkpoint
        self.work_s = self.job.work_s
        self.ckpt_interval_s, self.ckpt_blocking_s, self.ckpt_write_s = ck.interval_s, ck.blocking_s, ck.async_write_s

    @property
    def state(self) -> JobState:
        """The job's state now: CHECKPOINTING inside a folded checkpoint's blocking window (module docstring)."""
        s = self._state
        if s is _RUNNING and self.ckpt_until_s >= 0:
            k = self.kernel
            if k is not None:
                now, b = k.now, self.ckpt_began_s
                if ((now < self.ckpt_until_s or (now == self.ckpt_until_s and k.prio < PRIO_JOB))
                        and (now > b or (now == b and k.prio >= PRIO_JOB))):
                    return _CHECKPOINTING
        return s

    @state.setter
    def state(self, state: JobState) -> None:
        self.drop_early()
        self._state = state
        self.ckpt_until_s = -1

    def node_array(self) -> npt.NDArray[np.intp]:
        """``nodes`` as an index array (read-only use), made once per node set: whoever assigns ``nodes`` a new
        tuple gets a new array on the next call (issue 12: a 1,024-node tuple costs ~30 us to convert, at each
        release and power look-up)."""
        arr = self._node_arr
        if arr is None or self._node_arr_of is not self.nodes:
            arr = self._node_arr = np.asarray(self.nodes, dtype=np.intp)
            self._node_arr_of = self.nodes
        return arr

    def before_early_window(self) -> bool:
        """Whether a window opened early by a commit has not begun yet (module docstring)."""
        if self.early_cell is None:
            return False
        k = self.kernel
        assert k is not None
        return k.now < self.ckpt_began_s or (k.now == self.ckpt_began_s and k.prio < PRIO_JOB)

    def drop_early(self) -> None:
        """Forget the early-opened window's kept fields; before its begin, first undo it exactly: the fields it
        overwrote come back, its stall is taken back and its commit is marked void (module docstring)."""
        cell = self.early_cell
        if cell is None:
            return
        if self.before_early_window():
            cell[0] = False
            self.progress_s, self.run_since_s, self.next_ckpt_s = cell[1], cell[2], cell[3]  # type: ignore[assignment]
            self.checkpoint_stall_s -= self.ckpt_until_s - self.ckpt_began_s
            self.ckpt_began_s = self.ckpt_until_s = -1
        self.early_cell = None

    def progress_now(self, now_s: int) -> float:
        """Productive seconds done by ``now_s`` (now), without folding anything in."""
        if self.early_cell is not None and self.before_early_window():
            cell = self.early_cell
            return cell[1] + (now_s - cell[2]) * self.speed
        if self.state is _RUNNING:
            return self.progress_s + (now_s - self.run_since_s) * self.speed
        return self.progress_s

    def in_ckpt_window(self) -> bool:
        """Whether the job is inside a folded checkpoint's blocking window now (its state reads CHECKPOINTING
        while physically RUNNING)."""
        return self._state is _RUNNING and self.ckpt_until_s >= 0 and self.state is _CHECKPOINTING

    def bump(self, state: JobState) -> int:
        """Move to ``state`` and invalidate every callback scheduled for earlier states (ends a folded window;
        undoes one opened early that has not begun)."""
        if self.early_cell is not None:
            self.drop_early()
        self._state = state
        self.ckpt_until_s = -1
        self.token += 1
        return self.token

    def accrue_progress(self, now_s: int) -> None:
        """Fold the current RUNNING segment into ``progress_s`` (none before ``run_since_s``: a folded
        checkpoint's window sets it to the window's end; a window opened early that has not begun is undone
        first)."""
        if self.early_cell is not None:
            self.drop_early()
        if self._state is _RUNNING and now_s > self.run_since_s:
            self.progress_s += (now_s - self.run_since_s) * self.speed
            self.run_since_s = now_s
