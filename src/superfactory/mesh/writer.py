"""The save data path: stripe → encode → encrypt → write, pipelined across fragment threads, with a barrier.

Pipeline (one save)::

    caller thread (encoder)                fragment threads (one per tier × fragment)
    ─────────────────────────              ───────────────────────────────────────────
    take a free stripe slot                take the next slot from its queue
    k data chunks: views into the payload  encrypt its chunk (AES-GCM, into a private reused buffer),
      (zero copy) or gathered into the       release the slot (the last one frees it for the encoder)
      slot's staging buffers               write the buffer to the target
    ISA-L: m parity chunks into the slot   …after the last stripe: fsync + rename (commit the fragment)
    hand the slot to every fragment queue

Buffers are allocated once per save (``slots`` stripe slots plus one chunk buffer per fragment thread); no
allocation per chunk. ISA-L, AES-GCM and file I/O release the GIL, so the threads use every core.

The barrier: the checkpoint commits (its MANIFEST is written) as soon as at least ``quorum`` distinct fragment
indices are durable, i.e. every stripe has a quorum. A fragment thread that stops taking stripes for
``timeout_s`` is abandoned (its partial file is dropped) so one hung target cannot stall the save; if fewer
than ``quorum`` fragments can still finish, the save fails with QuorumError and nothing is committed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from superfactory.mesh.backend import Backend, FragmentSink
from superfactory.mesh.crypto import TAG_BYTES, ChunkCipher
from superfactory.mesh.erasure import ErasureCode
from superfactory.mesh.gf256 import U8Array
from superfactory.mesh.layout import Payload, StripeLayout

__all__ = ["FragmentJob", "FragmentOutcome", "write_fragments"]


@dataclass(frozen=True, slots=True)
class FragmentJob:
    """One fragment file to write: fragment ``index`` to ``target`` (in ``tier``) at ``path``."""

    index: int
    tier: str
    target: str
    backend: Backend
    path: str


@dataclass(frozen=True, slots=True)
class FragmentOutcome:
    """What happened to one fragment job: durable or not, the error if any, and when it finished."""

    job: FragmentJob
    durable: bool
    error: str | None
    finished_s: float


class _Slot:
    __slots__ = ("data", "length", "lock", "parity", "pending", "staging", "stripe")

    def __init__(self, k: int, m: int, chunk_bytes: int) -> None:
        self.staging = [np.empty(chunk_bytes, dtype=np.uint8) for _ in range(k)]
        self.parity = [np.empty(chunk_bytes, dtype=np.uint8) for _ in range(m)]
        self.data: list[U8Array] = []
        self.stripe = -1
        self.length = 0
        self.pending = 0
        self.lock = threading.Lock()

    def chunk(self, index: int) -> U8Array:
        k = len(self.data)
        return self.data[index] if index < k else self.parity[index - k][: self.length]


class _SlotPool:
    """Stripe slots kept between saves: big buffers are faulted in once, not on every checkpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Slot] = []

    def take(self, k: int, m: int, chunk_bytes: int, count: int) -> list[_Slot]:
        with self._lock:
            fits = [
                s
                for s in self._idle
                if len(s.staging) == k
                and len(s.parity) == m
                and s.staging[0].size >= chunk_bytes
                and s.staging[0].size <= 2 * chunk_bytes
            ][:count]
            for s in fits:
                self._idle.remove(s)
        return fits + [_Slot(k, m, chunk_bytes) for _ in range(count - len(fits))]

    def give(self, slots: list[_Slot]) -> None:
        with self._lock:
            # keep a bounded number: enough for one save of the largest geometry seen recently
            self._idle = (slots + self._idle)[:8]


_POOL = _SlotPool()


class _FragmentThread(threading.Thread):
    def __init__(
        self,
        job: FragmentJob,
        cipher: ChunkCipher,
        chunk_bytes: int,
        release: Callable[[_Slot], None],
        done: Callable[[], None],
    ) -> None:
        super().__init__(name=f"mesh-frag-{job.tier}-{job.index}", daemon=True)
        self.job = job
        self.cipher = cipher
        self.buf = np.empty(chunk_bytes + TAG_BYTES, dtype=np.uint8)
        self.queue: queue.SimpleQueue[_Slot | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.abandoned = False
        self.error: str | None = None
        self.durable = False
        self.finished_s = 0.0
        self.last_progress_s = time.monotonic()
        self._release = release
        self._done = done

    def run(self) -> None:
        sink: FragmentSink | None = None
        try:
            sink = self.job.backend.open_write(self.job.path)
        except Exception as exc:
            self.error = str(exc)
        while True:
            slot = self.queue.get()
            if slot is None:
                break
            out: U8Array | None = None
            with self.lock:
                if self.abandoned:
                    continue  # the encoder already released our slots
                if self.error is None:
                    out = self.buf[: slot.length + TAG_BYTES]
                    self.cipher.encrypt_into(self.job.index, slot.stripe, slot.chunk(self.job.index), out)
                self._release(slot)
                self.last_progress_s = time.monotonic()
            if out is not None and sink is not None:
                try:
                    sink.write(out)
                except Exception as exc:
                    self.error = f"write failed: {exc}"
        try:
            if sink is not None:
                if self.error is None and not self.abandoned:
                    sink.commit()
                    self.durable = not self.abandoned
                else:
                    sink.abort()
        except Exception as exc:
            self.error = f"commit failed: {exc}"
            with contextlib.suppress(Exception):
                sink.abort()
        self.finished_s = time.monotonic()
        self._done()

    def abandon(self, reason: str) -> None:
        """Stop this fragment: release every slot it still holds; its file is dropped."""
        with self.lock:
            if self.abandoned or self.durable:
                return
            self.abandoned = True
            self.error = self.error or reason
            while True:
                try:
                    slot = self.queue.get_nowait()
                except queue.Empty:
                    break
                if slot is None:
                    self.queue.put(None)
                    break
                self._release(slot)


def write_fragments(
    payload: Payload,
    layout: StripeLayout,
    code: ErasureCode,
    cipher: ChunkCipher,
    *,
    jobs: list[FragmentJob],
    quorum: int,
    timeout_s: float,
    on_quorum: Callable[[], None],
    progress: Callable[[int], None] | None = None,
    slots: int = 4,
) -> list[FragmentOutcome]:
    """Encode, encrypt and write every fragment job; call ``on_quorum`` once ``quorum`` indices are durable.

    Returns one outcome per job, after every job finished or was abandoned. ``on_quorum`` runs in the caller's
    thread and is not called when the quorum is never reached.
    """
    k, m = code.k, code.m
    chunk_bytes = min(layout.chunk_bytes, max(1, layout.chunk_len(0) if layout.n_stripes else 1))
    free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
    owned = _POOL.take(k, m, chunk_bytes, max(1, min(slots, layout.n_stripes)))
    for slot in owned:
        free.put(slot)
    cond = threading.Condition()

    def release(slot: _Slot) -> None:
        with slot.lock:
            slot.pending -= 1
            last = slot.pending == 0
        if last:
            free.put(slot)

    def done() -> None:
        with cond:
            cond.notify_all()

    threads = [_FragmentThread(job, cipher, chunk_bytes, release, done) for job in jobs]
    for t in threads:
        t.start()

    def live() -> list[_FragmentThread]:
        return [t for t in threads if not t.abandoned and t.error is None]

    def durable_indices() -> set[int]:
        return {t.job.index for t in threads if t.durable}

    def possible_indices() -> set[int]:
        return {t.job.index for t in threads if t.durable or (not t.abandoned and t.error is None)}

    def give_up(reason: str) -> None:
        for t in threads:
            t.abandon(reason)

    try:
        for stripe in range(layout.n_stripes):
            while True:
                try:
                    slot = free.get(timeout=min(timeout_s, 1.0))
                    break
                except queue.Empty:
                    now = time.monotonic()
                    for t in live():
                        if now - t.last_progress_s > timeout_s and not t.queue.empty():
                            t.abandon(f"no progress for {timeout_s:g} s (target {t.job.target} hung?)")
                    if len(possible_indices()) < quorum:
                        give_up("quorum unreachable")
                        raise _QuorumLost from None
            length = layout.chunk_len(stripe)
            slot.stripe = stripe
            slot.length = length
            slot.data = []
            for j in range(k):
                start, valid = layout.data_span(stripe, j)
                view = payload.view(start, length) if valid == length else None
                if view is None:
                    view = slot.staging[j][:length]
                    payload.gather(start, view)
                slot.data.append(view)
            code.encode(slot.data, [p[:length] for p in slot.parity])
            receivers = live()
            if len({t.job.index for t in receivers} | durable_indices()) < quorum:
                give_up("quorum unreachable")
                raise _QuorumLost
            slot.pending = len(receivers)
            for t in receivers:
                t.queue.put(slot)
            if progress is not None:
                progress(min(layout.payload_bytes, (stripe + 1) * layout.stripe_input_bytes))
    except _QuorumLost:
        pass
    finally:
        for t in threads:
            t.queue.put(None)

    committed = False
    deadline = time.monotonic() + timeout_s
    while True:
        with cond:
            if not committed and len(durable_indices()) >= quorum:
                committed = True
            elif all(not t.is_alive() for t in threads):
                break
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    for t in threads:
                        if t.is_alive():
                            t.abandon(f"not durable within {timeout_s:g} s of the last stripe")
                    break
                cond.wait(timeout=min(remaining, 0.5))
                continue
        on_quorum()  # outside the lock: writes the manifests while stragglers finish
    if all(not t.is_alive() for t in threads):  # a hung thread may still hold a slot: then drop them
        _POOL.give(owned)
    return [FragmentOutcome(t.job, t.durable and not t.abandoned, t.error, t.finished_s) for t in threads]


class _QuorumLost(Exception):
    pass
