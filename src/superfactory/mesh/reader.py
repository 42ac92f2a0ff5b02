"""The restore and verify data path: read authentic chunks, fastest copy first, and decode only what is lost.

Restore, in two phases:

1. One thread per *data* fragment reads its chunks in order and decrypts them straight into the output buffer
   (the code is systematic, so when nothing is lost there is no decoding at all). Each chunk is tried at every
   location that holds that fragment, fastest tier first — so fragments from different tiers mix freely.
2. For every stripe with a missing, short or unauthentic data chunk, parity chunks are read (again from any
   tier) until ``k`` authentic chunks are at hand, and the lost data chunks are rebuilt by the erasure code.
   With fewer than ``k`` authentic chunks the restore fails with InsufficientFragmentsError — it never returns
   bytes that were not authenticated or correctly decoded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from superfactory.mesh.backend import Backend
from superfactory.mesh.crypto import TAG_BYTES, ChunkCipher
from superfactory.mesh.erasure import ErasureCode
from superfactory.mesh.errors import AuthenticationError, InsufficientFragmentsError, StorageError
from superfactory.mesh.gf256 import U8Array
from superfactory.mesh.layout import StripeLayout

__all__ = ["FragmentCheck", "Location", "check_fragment", "restore_payload"]


@dataclass(frozen=True, slots=True)
class Location:
    """One stored copy of a fragment."""

    index: int
    target: str
    tier: str
    backend: Backend
    path: str


class _ChunkReader:
    """Reads chunk ``(stripe, index)`` from the first location that yields an authentic copy."""

    def __init__(self, locations: list[Location], layout: StripeLayout, cipher: ChunkCipher) -> None:
        self.locations = locations
        self.layout = layout
        self.cipher = cipher
        self.handles: dict[int, BinaryIO | None] = {}
        self.buf = np.empty(layout.chunk_bytes + TAG_BYTES, dtype=np.uint8)
        self.failures: list[str] = []
        self.bytes_read = 0

    def _handle(self, i: int) -> BinaryIO | None:
        if i not in self.handles:
            try:
                self.handles[i] = self.locations[i].backend.open_read(self.locations[i].path)
            except StorageError as exc:
                self.failures.append(f"{self.locations[i].target}: {exc}")
                self.handles[i] = None
        return self.handles[i]

    def read(self, stripe: int, out: U8Array) -> bool:
        """Decrypt the chunk into ``out`` (chunk_len bytes); False when no location has an authentic copy."""
        length = self.layout.chunk_len(stripe)
        want = length + TAG_BYTES
        for i, loc in enumerate(self.locations):
            fh = self._handle(i)
            if fh is None:
                continue
            try:
                fh.seek(self.layout.fragment_offset(stripe))
                view = memoryview(self.buf)[:want]
                got = 0
                while got < want:
                    n = fh.readinto(view[got:])
                    if not n:
                        break
                    got += n
                self.bytes_read += got
                if got < want:
                    self.failures.append(f"{loc.target}: fragment {loc.index} truncated at stripe {stripe}")
                    continue
                self.cipher.decrypt_into(loc.index, stripe, view, out)
                return True
            except AuthenticationError:
                self.failures.append(f"{loc.target}: fragment {loc.index} stripe {stripe} failed authentication")
            except OSError as exc:
                self.failures.append(f"{loc.target}: fragment {loc.index} read error {exc}")
        return False

    def close(self) -> None:
        for fh in self.handles.values():
            if fh is not None:
                fh.close()


def restore_payload(
    layout: StripeLayout,
    code: ErasureCode,
    cipher: ChunkCipher,
    locations: dict[int, list[Location]],
    progress: Callable[[int], None] | None = None,
) -> tuple[U8Array, dict[str, int]]:
    """Rebuild the payload; returns ``(bytes as a uint8 array, stats)``.

    ``locations[i]`` lists the copies of fragment ``i``, fastest first. Stats: ``decoded_stripes``,
    ``bytes_read``. Raises InsufficientFragmentsError naming the stripes that cannot be rebuilt.
    """
    k, n = code.k, code.n
    out = np.empty(layout.payload_bytes, dtype=np.uint8)
    bad: list[set[int]] = [set() for _ in range(k)]
    readers = {i: _ChunkReader(locations.get(i, []), layout, cipher) for i in range(n)}
    done_lock = threading.Lock()
    done_bytes = [0]

    def read_data_fragment(j: int) -> None:
        reader = readers[j]
        tmp = np.empty(layout.chunk_bytes, dtype=np.uint8)
        for s in range(layout.n_stripes):
            start, valid = layout.data_span(s, j)
            length = layout.chunk_len(s)
            direct = valid == length
            target = out[start : start + length] if direct else tmp[:length]
            if not reader.read(s, target):
                bad[j].add(s)
            elif not direct and valid:
                out[start : start + valid] = tmp[:valid]
            if progress is not None and j == 0:
                with done_lock:
                    done_bytes[0] = min(layout.payload_bytes, (s + 1) * layout.stripe_input_bytes)
                progress(done_bytes[0])

    threads = [threading.Thread(target=read_data_fragment, args=(j,), daemon=True) for j in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    damaged = sorted(set().union(*bad)) if bad else []
    chunks = [np.empty(layout.chunk_bytes, dtype=np.uint8) for _ in range(n)]
    unrecoverable: list[str] = []
    for s in damaged:
        length = layout.chunk_len(s)
        available: dict[int, U8Array] = {}
        for j in range(k):
            if s in bad[j]:
                continue
            start, valid = layout.data_span(s, j)
            chunk = chunks[j][:length]
            chunk[:valid] = out[start : start + valid]
            chunk[valid:] = 0  # the encoder padded with zeros
            available[j] = chunk
        for p in range(k, n):
            if len(available) >= k:
                break
            if readers[p].read(s, chunks[p][:length]):
                available[p] = chunks[p][:length]
        if len(available) < k:
            unrecoverable.append(f"stripe {s}: {len(available)} of {n} fragments authentic, {k} needed")
            continue
        missing = {j: chunks[j][:length] for j in range(k) if s in bad[j]}
        code.decode(available, missing)
        for j, chunk in missing.items():
            start, valid = layout.data_span(s, j)
            out[start : start + valid] = chunk[:valid]
    stats = {"decoded_stripes": len(damaged), "bytes_read": sum(r.bytes_read for r in readers.values())}
    failures = [f for r in readers.values() for f in r.failures]
    for r in readers.values():
        r.close()
    if unrecoverable:
        shown = "; ".join(unrecoverable[:5]) + (" …" if len(unrecoverable) > 5 else "")
        problems = "; ".join(failures[:6]) + (" …" if len(failures) > 6 else "")
        raise InsufficientFragmentsError(
            f"cannot rebuild {len(unrecoverable)} stripe(s): {shown}. Problems found: {problems}. "
            f"No data was returned. Restore an older checkpoint, or bring the missing targets back and retry."
        )
    return out, stats


@dataclass(frozen=True, slots=True)
class FragmentCheck:
    """Result of re-reading one stored fragment copy: ``ok``, ``missing`` or ``damaged`` (with stripes)."""

    index: int
    target: str
    tier: str
    status: str
    bad_stripes: tuple[int, ...]
    detail: str = ""


def check_fragment(location: Location, layout: StripeLayout, cipher: ChunkCipher) -> FragmentCheck:
    """Read and authenticate every chunk of one fragment copy."""
    reader = _ChunkReader([location], layout, cipher)
    plain = np.empty(layout.chunk_bytes, dtype=np.uint8)
    try:
        if reader._handle(0) is None:
            return FragmentCheck(
                location.index, location.target, location.tier, "missing", (), "; ".join(reader.failures)
            )
        bad = tuple(s for s in range(layout.n_stripes) if not reader.read(s, plain[: layout.chunk_len(s)]))
        fh = reader.handles.get(0)
        extra = b""
        if fh is not None:
            fh.seek(layout.fragment_bytes)
            extra = fh.read(1)
    finally:
        reader.close()
    if bad or extra:
        detail = "; ".join(reader.failures[:3]) or "trailing bytes after the last chunk"
        return FragmentCheck(location.index, location.target, location.tier, "damaged", bad, detail)
    return FragmentCheck(location.index, location.target, location.tier, "ok", ())
