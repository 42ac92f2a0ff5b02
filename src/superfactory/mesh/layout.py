"""Stripe geometry and the scatter-gather input of a save.

A payload of ``P`` bytes is cut into stripes of ``k · chunk_bytes`` input bytes. Stripe ``s`` holds ``k`` data
chunks of ``chunk_len(s)`` bytes (the last stripe's chunks are ``ceil(rest / k)`` bytes, zero-padded),
from which
``m`` parity chunks are computed. Fragment ``i`` is the file holding chunk ``i`` of every stripe, each
followed
by its 16-byte GCM tag, so chunk ``(s, i)`` sits at offset ``s · (chunk_bytes + 16)`` of fragment ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from superfactory.mesh.crypto import TAG_BYTES
from superfactory.mesh.gf256 import U8Array

__all__ = ["Payload", "StripeLayout"]


@dataclass(frozen=True, slots=True)
class StripeLayout:
    """Where every byte of a payload lives in the fragments (see the module docstring)."""

    payload_bytes: int
    k: int
    chunk_bytes: int

    @property
    def stripe_input_bytes(self) -> int:
        """Input bytes covered by one full stripe."""
        return self.k * self.chunk_bytes

    @property
    def n_stripes(self) -> int:
        """Number of stripes (0 for an empty payload)."""
        return -(-self.payload_bytes // self.stripe_input_bytes)

    def chunk_len(self, stripe: int) -> int:
        """Plaintext bytes of each chunk of ``stripe``."""
        if stripe < self.n_stripes - 1:
            return self.chunk_bytes
        rest = self.payload_bytes - stripe * self.stripe_input_bytes
        return -(-rest // self.k)

    def fragment_offset(self, stripe: int) -> int:
        """Byte offset of ``stripe``'s chunk in every fragment file."""
        return stripe * (self.chunk_bytes + TAG_BYTES)

    @property
    def fragment_bytes(self) -> int:
        """Size of each fragment file (ciphertext and tags)."""
        if self.n_stripes == 0:
            return 0
        return self.fragment_offset(self.n_stripes - 1) + self.chunk_len(self.n_stripes - 1) + TAG_BYTES

    def data_span(self, stripe: int, j: int) -> tuple[int, int]:
        """``(payload offset, valid bytes)`` of data chunk ``j`` of ``stripe``; the rest of the chunk
        is padding.
        """
        length = self.chunk_len(stripe)
        start = stripe * self.stripe_input_bytes + j * length
        return start, max(0, min(length, self.payload_bytes - start))


class Payload:
    """The bytes of one save as a list of segments, read without joining them.

    Segments are any C-contiguous buffers (bytes, bytearray, memoryview, numpy arrays, tensor storages
    viewed as
    uint8); they are only read, and must not change until the save has taken what it needs (for a synchronous
    save: until it returns; an async save snapshots them first).
    """

    __slots__ = ("_ends", "_starts", "segments", "size_bytes")

    def __init__(self, segments: Sequence[Any]) -> None:
        self.segments: list[U8Array] = [
            np.frombuffer(memoryview(s).cast("B"), dtype=np.uint8)
            if not isinstance(s, np.ndarray)
            else s.reshape(-1).view(np.uint8)
            for s in segments
        ]
        self.segments = [s for s in self.segments if s.size]
        sizes = [s.size for s in self.segments]
        self._ends = np.cumsum(sizes, dtype=np.int64) if sizes else np.zeros(0, dtype=np.int64)
        self._starts = self._ends - np.asarray(sizes, dtype=np.int64)
        self.size_bytes = int(self._ends[-1]) if sizes else 0

    def view(self, offset: int, length: int) -> U8Array | None:
        """A zero-copy view of ``[offset, offset+length)`` when it lies inside one segment, else None."""
        if length == 0 or offset + length > self.size_bytes:
            return None
        idx = int(np.searchsorted(self._ends, offset, side="right"))
        start = int(self._starts[idx])
        if offset + length <= int(self._ends[idx]):
            return self.segments[idx][offset - start : offset - start + length]
        return None

    def gather(self, offset: int, out: U8Array) -> None:
        """Copy ``len(out)`` bytes from ``offset`` into ``out``; bytes past the end are zero (padding)."""
        pos = 0
        want = len(out)
        if offset < self.size_bytes and want:
            idx = int(np.searchsorted(self._ends, offset, side="right"))
            while pos < want and idx < len(self.segments):
                seg = self.segments[idx]
                seg_off = offset + pos - int(self._starts[idx])
                n = min(want - pos, seg.size - seg_off)
                out[pos : pos + n] = seg[seg_off : seg_off + n]
                pos += n
                idx += 1
        if pos < want:
            out[pos:] = 0

    def copy_into(self, out: U8Array) -> None:
        """Copy the whole payload into ``out`` (at least ``size_bytes`` long): the snapshot of an
        async save.
        """
        for seg, start in zip(self.segments, self._starts, strict=True):
            out[int(start) : int(start) + seg.size] = seg
