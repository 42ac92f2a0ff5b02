"""Asynchronous saves: snapshot the payload into a reused host buffer, return, finish in a background thread.

The caller's stall is one copy into a host buffer that is allocated once and reused (at most two exist: one
being saved, one being filled); a third save waits for the oldest to finish (back-pressure). The save itself
runs :meth:`CheckpointMesh.save` unchanged in a single background thread, so saves commit in order.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from superfactory.mesh.gf256 import U8Array
from superfactory.mesh.layout import Payload
from superfactory.mesh.naming import validate_fencing_token, validate_step

if TYPE_CHECKING:
    from superfactory.mesh.receipt import SaveReceipt

__all__ = ["AsyncSaves", "SaveHandle"]


class SaveHandle:
    """An async save in flight: ``stall_s`` is what the caller waited; ``result()`` waits for the commit."""

    def __init__(self, future: Future[SaveReceipt], step: int, stall_s: float) -> None:
        self._future = future
        self.step = step
        self.stall_s = stall_s

    def done(self) -> bool:
        """True once the save finished (committed or failed)."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> SaveReceipt:
        """The receipt once the quorum is durable and the manifest written; re-raises a failed save's
        error.
        """
        return self._future.result(timeout)


class AsyncSaves:
    """The async half of :class:`~superfactory.mesh.mesh.CheckpointMesh` (which provides ``save``)."""

    save: Any

    def _init_async(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._staging: list[U8Array] = []
        self._staging_lock = threading.Lock()
        self._inflight: list[tuple[Future[SaveReceipt], U8Array]] = []

    def _staging_buffer(self, size: int) -> U8Array:
        """A snapshot buffer of at least ``size`` bytes, reused across async saves (at most two exist)."""
        with self._staging_lock:
            busy = {id(buf) for fut, buf in self._inflight if not fut.done()}
            self._inflight = [(f, b) for f, b in self._inflight if not f.done()]
            for buf in self._staging:
                if id(buf) not in busy and buf.size >= size:
                    return buf
            if len(self._staging) < 2:
                buf = np.empty(max(size, 1), dtype=np.uint8)
                self._staging.append(buf)
                return buf
            oldest = self._inflight[0][0] if self._inflight else None
        if oldest is not None:
            oldest.exception()  # back-pressure: wait for a buffer to come free
        with self._staging_lock:
            self._staging = [b for b in self._staging if id(b) not in busy or b.size >= size][:1]
        return self._staging_buffer(size)

    def save_async(self, data: Any, step: int, **kwargs: Any) -> SaveHandle:
        """Snapshot ``data`` into a reused host buffer, return, and finish the save in the background.

        The caller may modify ``data`` as soon as this returns. ``handle.result()`` returns the receipt
        when the
        quorum is durable (or raises the save's error).
        """
        t0 = time.monotonic()
        validate_step(step)  # fail in the caller's thread, before the snapshot
        validate_fencing_token(kwargs.get("fencing_token"))
        payload = (
            data if isinstance(data, Payload) else Payload(list(data) if isinstance(data, list | tuple) else [data])
        )
        buf = self._staging_buffer(payload.size_bytes)
        payload.copy_into(buf)
        snapshot = Payload([buf[: payload.size_bytes]])
        stall_s = time.monotonic() - t0
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mesh-async-save")
        future = self._executor.submit(self.save, snapshot, step, _snapshot_s=stall_s, **kwargs)
        with self._staging_lock:
            self._inflight.append((future, buf))
        return SaveHandle(future, step, stall_s)

    def wait(self) -> None:
        """Block until every async save finished."""
        for fut, _ in list(self._inflight):
            fut.exception()

    def close(self) -> None:
        """Wait for async saves and stop the background thread."""
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
