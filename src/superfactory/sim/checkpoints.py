"""Periodic checkpoints of running jobs: the folded window and the checkpoint chain (issue 12).

Part of :class:`~superfactory.sim.fleet.SimulatedFleet` (a mixin over its state). A periodic checkpoint blocks
the job for ``blocking_s``, then its write completes ``async_write_s`` later (the commit). Without a modelled WAN
the blocking window is *folded* (no unblock event: :meth:`CheckpointMixin._checkpoint_begin`) and usually
*chained* (no begin event either: the previous commit opens the next window early,
:meth:`CheckpointMixin._chain_commit`), so each periodic checkpoint is one kernel event, its commit. The job-side
bookkeeping (the window, what an early window overwrote and how it is undone) is in
:mod:`superfactory.sim.jobstate`; with a WAN (its replication barrier can hold a begin) every step stays an event.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from superfactory.domain.events import Event, EventKind
from superfactory.domain.factory import Factory
from superfactory.sim.jobstate import JobRuntime, JobState
from superfactory.sim.kernel import PRIO_JOB, Kernel
from superfactory.sim.records import EventShell as _EventShell
from superfactory.sim.records import new_event

if TYPE_CHECKING:
    from superfactory.sim.wan_replication import CheckpointReplication

_heappush = heapq.heappush
_ceil = math.ceil
_new_object = object.__new__
_PRIO_ASYNC = PRIO_JOB - 1  # an async commit runs before a begin at the same instant (see _open_window)
_COMMITTED = EventKind.CHECKPOINT_COMMITTED


class CheckpointMixin:
    """Scheduling a running segment's end, checkpoints' windows, commits and the chain (uses SimulatedFleet's
    state: the kernel and its heap, the pending set, the event sink, the WAN replication if any)."""

    k: Kernel
    factories: tuple[Factory, ...]
    pending: Any  # the fleet's _PendingSet
    emit: Callable[[Event], None]
    wan: CheckpointReplication | None
    fold_checkpoints: bool
    _heap: list[tuple[int, int, int, Callable[..., None], tuple[Any, ...]]]
    _fids: tuple[str, ...]  # the factories' ids, then "" (so index -1, a job in no factory, reads "")
    _next_seq: Callable[[], int]
    _chain_cb: Callable[..., None]
    _complete_cb: Callable[..., None]
    _begin_cb: Callable[..., None]
    _complete: Callable[[JobRuntime, int], None]  # the job's completion (SimulatedFleet)

    def _schedule_running(self, jr: JobRuntime, tok: int, next_ckpt_s: int, from_s: int = -1) -> None:
        """Schedule what ends the RUNNING segment that starts at ``from_s`` (default now): the next checkpoint's
        begin at ``next_ckpt_s``, or the completion when the work is done first."""
        now = self.k.now if from_s < 0 else from_s
        jr.next_ckpt_s = next_ckpt_s
        finish_s = now + max(0, math.ceil((jr.work_s - jr.progress_s) / jr.speed))
        if finish_s <= next_ckpt_s:
            self.k.at(finish_s, PRIO_JOB, self._complete, jr, tok)
        else:
            self.k.at(next_ckpt_s, PRIO_JOB, self._checkpoint_begin, jr, tok)

    def _checkpoint_begin(self, jr: JobRuntime, tok: int) -> None:
        """A periodic checkpoint begins. Without a modelled WAN it is *folded* (issue 12): the blocking window
        is recorded on the job (its state reads CHECKPOINTING until the window ends; sim/jobstate.py) and what
        the unblock would do is done now for the window's end: the stall is counted, the commit and the next
        begin (or the completion) are scheduled from there. One kernel event fewer per checkpoint; an
        interruption or drain inside the window takes the stall back (:meth:`_cut_window`), and its commit is
        dropped by the incarnation check as before. Mostly the begin is not an event either: the previous
        commit opened its window early (:meth:`_chain_commit`); this event runs only for a job's first checkpoint
        after it starts or is rescheduled, and where a commit comes after the next begin. With a WAN, the begin
        may be held by the replication barrier, so the unblock stays an event of its own."""
        if jr.token != tok:
            return
        k = self.k
        now = k.now
        if not self.fold_checkpoints:
            jr.accrue_progress(now)
            tok = jr.bump(JobState.CHECKPOINTING)
            if self.wan is not None and self.wan.holds_barrier(jr, tok, now):
                return  # the previous checkpoint is not durable yet: the WAN resumes the barrier when it is
            k.at(now + jr.ckpt_blocking_s, PRIO_JOB, self._checkpoint_unblock, jr, tok, now, jr.progress_s)
            return
        # hot path (~10^6 checkpoints a fleet-year): jr.accrue_progress, jr.bump and _schedule_running inlined
        if now > jr.run_since_s:  # RUNNING (the token says so)
            jr.progress_s += (now - jr.run_since_s) * jr.speed
        self._open_window(jr, now, tok + 1, None)

    def _open_window(self, jr: JobRuntime, began: int, tok: int, cell: list[float | bool] | None) -> None:
        """A folded checkpoint's begin at ``began``, progress already brought up to it: now (a begin event), or
        later (opened early by the previous commit, which kept what it overwrote in ``cell``; sim/jobstate.py).
        Records the window, counts its stall and schedules its commit and what follows its window: the
        completion, or nothing when the commit comes no later than the next begin (the commit then opens that
        window early: :meth:`_chain_commit`), or else the next begin as an event of its own."""
        until = began + jr.ckpt_blocking_s
        jr.token = tok
        jr.ckpt_began_s, jr.ckpt_until_s, jr.run_since_s = began, until, until
        jr.checkpoint_stall_s += until - began
        write_s = jr.ckpt_write_s
        progress = jr.progress_s
        heap, seq = self._heap, self._next_seq
        nxt = began + jr.ckpt_interval_s
        if nxt <= until:
            nxt = until + 1
        jr.next_ckpt_s = nxt
        commit_s = until + write_s
        run_s = _ceil((jr.work_s - progress) / jr.speed)
        finish_s = until + (run_s if run_s > 0 else 0)  # max(0, run_s) without the call
        # the commit is scheduled where the unfolded begin scheduled its unblock: at the same point of the event
        # order, so a commit with no async write lands exactly where the unblock made it. At an equal instant an
        # async commit (priority PRIO_JOB - 1) runs before the next begin's PRIO_JOB slot: it may open it early.
        prio = _PRIO_ASYNC if write_s else PRIO_JOB
        if finish_s <= nxt:
            _heappush(heap, (commit_s, prio, seq(), self._chain_cb, (jr, jr.incarnation, progress, cell, -1)))
            _heappush(heap, (finish_s, PRIO_JOB, seq(), self._complete_cb, (jr, tok)))
        elif commit_s <= nxt:
            _heappush(heap, (commit_s, prio, seq(), self._chain_cb, (jr, jr.incarnation, progress, cell, tok)))
        else:
            _heappush(heap, (commit_s, prio, seq(), self._chain_cb, (jr, jr.incarnation, progress, cell, -1)))
            _heappush(heap, (nxt, PRIO_JOB, seq(), self._begin_cb, (jr, tok)))

    def _chain_commit(self, jr: JobRuntime, incarnation: int, progress_s: float, cell: list[float | bool] | None,
                      tok: int) -> None:
        """A folded checkpoint's commit (:meth:`_checkpoint_commit`). ``cell``: its window was opened early
        (void once undone before its begin). ``tok`` >= 0: no begin event follows the window; if nothing
        rescheduled the job since (its token is still ``tok``), this commit opens the next window early.

        The hottest path of a fleet-year (~2 M commits): :func:`~superfactory.sim.records.committed_event` is
        inlined here (session 7: the same statements in the same order, one Python call fewer, the job's fields
        read once); the next window is opened by :meth:`_open_window`, the one place that schedules a window."""
        if cell is not None:
            if cell[0] is False:
                return  # its window was undone before it began: this checkpoint never happened
            if jr.early_cell is cell:
                jr.early_cell = None  # begun and ended: nothing left to undo
        if jr.incarnation == incarnation and progress_s > jr.committed_s:  # _checkpoint_commit, inlined
            jr.committed_s = progress_s
            jr.checkpoints += 1
            if jr.index in self.pending:
                self.pending.touch(jr.index)
            e = _new_object(_EventShell)  # committed_event(now, job id, factory id, progress_s), inlined
            e.time_s = self.k.now
            e.kind = _COMMITTED
            e.job = jr.job.id
            e.factory = self._fids[jr.factory]  # (index -1, no factory: "")
            e.node = -1
            e.cause = ""
            e.value = progress_s
            e.action = ""
            e.__class__ = Event  # type: ignore[assignment]
            self.emit(e)  # type: ignore[arg-type]
        if tok < 0 or jr.token != tok:
            return
        # the commit came no later than the next begin: open that window early (keep what it overwrites)
        began = jr.next_ckpt_s
        run_since = jr.run_since_s
        progress = jr.progress_s
        jr.early_cell = early = [True, progress, run_since, began]
        if began > run_since:
            jr.progress_s = progress + (began - run_since) * jr.speed
        self._open_window(jr, began, tok + 1, early)

    def _cut_window(self, jr: JobRuntime) -> None:
        """The job leaves RUNNING/CHECKPOINTING now: if a folded checkpoint is still blocking, it never unblocked,
        so its stall (counted at its begin) is taken back."""
        if jr.ckpt_until_s >= 0 and jr.in_ckpt_window():
            jr.checkpoint_stall_s -= jr.ckpt_until_s - jr.ckpt_began_s
            jr.ckpt_until_s = -1

    def _checkpoint_unblock(self, jr: JobRuntime, tok: int, began_s: int, snap_progress_s: float) -> None:
        if jr.token != tok:
            return
        now = self.k.now
        jr.checkpoint_stall_s += now - began_s
        jr.run_since_s = now
        tok = jr.bump(JobState.RUNNING)
        write_s = jr.ckpt_write_s
        if write_s == 0:
            self._checkpoint_commit(jr, jr.incarnation, snap_progress_s)
        else:
            self.k.at(now + write_s, PRIO_JOB - 1, self._checkpoint_commit, jr, jr.incarnation, snap_progress_s)
        self._schedule_running(jr, tok, max(now + 1, began_s + jr.ckpt_interval_s))

    def _checkpoint_commit(self, jr: JobRuntime, incarnation: int, progress_s: float) -> None:
        if jr.incarnation != incarnation or progress_s <= jr.committed_s:
            return
        jr.committed_s = progress_s
        jr.checkpoints += 1
        if jr.index in self.pending:  # a waiting job's view shows its committed progress
            self.pending.touch(jr.index)
        fi = jr.factory
        self.emit(new_event(self.k.now, _COMMITTED, jr.job.id, self.factories[fi].id if fi >= 0 else "", -1, "",
                        progress_s))
        if self.wan is not None:  # replicate its critical tier; durable once the quorum arrives
            self.wan.written(jr, progress_s)
