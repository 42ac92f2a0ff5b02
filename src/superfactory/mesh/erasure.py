"""Erasure codes over GF(256): Reed–Solomon (k data + m parity), single XOR parity, or none.

One :class:`ErasureCode` turns ``k`` equal-length data chunks of a stripe into ``m`` parity chunks and
rebuilds
missing data chunks from any ``k`` survivors. The coding matrix is systematic (data fragments are stored
as-is),
so a restore that finds every data fragment intact decodes nothing.

Two interchangeable engines run the byte crunching:

* **ISA-L** (Intel's storage acceleration library, BSD-3), called through ``ctypes`` on the copy that the
  ``pyeclib`` wheel bundles. The call takes raw pointers into the caller's buffers (zero copy) and releases
  the GIL, so fragment threads overlap. Several GB/s per core with AVX2/AVX-512/GFNI.
* **numpy** (``gf256.matmul_chunks``): a 256×256 multiplication table applied with ``np.take`` into a reused
  scratch buffer. Always available; slower; the reference the tests compare ISA-L against.

Both use the same matrices, so fragments written by one decode with the other. ``SUPERFACTORY_MESH_EC=numpy``
forces the fallback.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from superfactory.mesh.gf256 import U8Array, cauchy_matrix, invert_matrix, matmul_chunks, xor_matrix

__all__ = ["SCHEMES", "ErasureCode", "isal_available"]

#: coding schemes by name: ``rs`` (Reed–Solomon, Cauchy), ``xor`` (m must be 1), ``none`` (m must be 0)
SCHEMES = ("rs", "xor", "none")


@lru_cache(maxsize=1)
def _load_isal() -> ctypes.CDLL | None:
    """The ISA-L shared library bundled in the pyeclib wheel, or None when absent or disabled."""
    if os.environ.get("SUPERFACTORY_MESH_EC", "").lower() == "numpy":
        return None
    spec = importlib.util.find_spec("pyeclib")
    if spec is None or not spec.submodule_search_locations:
        return None
    site = Path(next(iter(spec.submodule_search_locations))).parent
    for candidate in sorted((site / "pyeclib.libs").glob("libisal*.so*")):
        try:
            lib = ctypes.CDLL(str(candidate))
        except OSError:
            continue
        lib.ec_init_tables.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.ec_init_tables.restype = None
        lib.ec_encode_data.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.ec_encode_data.restype = None
        return lib
    return None


def isal_available() -> bool:
    """Whether the ISA-L engine is loaded (False means the numpy engine is used)."""
    return _load_isal() is not None


def _addr(buf: U8Array) -> int:
    return int(buf.ctypes.data)


class _Product:
    """outputs = rows · inputs for one fixed coefficient matrix, prepared once for the chosen engine."""

    __slots__ = ("_lib", "_rows", "_scratch", "_tables")

    def __init__(self, rows: U8Array) -> None:
        self._rows = np.ascontiguousarray(rows, dtype=np.uint8)
        self._lib = _load_isal()
        self._tables: U8Array | None = None
        if self._lib is not None and self._rows.shape[0] > 0:
            n_out, n_in = self._rows.shape
            self._tables = np.zeros(32 * n_in * n_out, dtype=np.uint8)
            self._lib.ec_init_tables(n_in, n_out, _addr(self._rows), _addr(self._tables))
        # per-thread scratch for the numpy engine: products run concurrently from fragment threads
        self._scratch = threading.local()

    def apply(self, inputs: Sequence[U8Array], outputs: Sequence[U8Array]) -> None:
        n_out, n_in = self._rows.shape
        if n_out == 0:
            return
        length = len(outputs[0])
        if length == 0:
            return
        if self._lib is not None and self._tables is not None:
            in_ptrs = (ctypes.c_void_p * n_in)(*[_addr(a) for a in inputs])
            out_ptrs = (ctypes.c_void_p * n_out)(*[_addr(a) for a in outputs])
            self._lib.ec_encode_data(length, n_in, n_out, _addr(self._tables), in_ptrs, out_ptrs)
            return
        scratch: U8Array | None = getattr(self._scratch, "buf", None)
        if scratch is None or len(scratch) < length:
            scratch = np.empty(length, dtype=np.uint8)
            self._scratch.buf = scratch
        matmul_chunks(self._rows, list(inputs), list(outputs), scratch)


class ErasureCode:
    """A systematic MDS code: ``k`` data chunks + ``m`` parity chunks per stripe; any ``k`` rebuild the
    stripe.

    Args:
        k: data fragments per stripe (≥ 1).
        m: parity fragments per stripe (``rs``: 0–255-k; ``xor``: 1; ``none``: 0).
        scheme: ``rs``, ``xor`` or ``none``.

    Thread-safe: encode/decode may run concurrently; decode matrices are cached per survivor set.
    """

    def __init__(self, k: int, m: int, scheme: str = "rs") -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown erasure scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
        if scheme == "xor" and m != 1:
            raise ValueError(f"the xor scheme has exactly one parity fragment, got m={m}")
        if scheme == "none" and m != 0:
            raise ValueError(f"the none scheme has no parity fragments, got m={m}")
        self.k = k
        self.m = m
        self.scheme = scheme
        self.matrix: U8Array = xor_matrix(k) if scheme == "xor" else cauchy_matrix(k, m)
        self._encoder = _Product(self.matrix[k:])
        self._decoders: dict[tuple[tuple[int, ...], tuple[int, ...]], _Product] = {}
        self._lock = threading.Lock()

    @property
    def n(self) -> int:
        """Fragments per stripe (k + m)."""
        return self.k + self.m

    @property
    def engine(self) -> str:
        """``isal`` or ``numpy``."""
        return "isal" if isal_available() else "numpy"

    def encode(self, data: Sequence[U8Array], parity: Sequence[U8Array]) -> None:
        """Fill ``parity`` (m arrays) from ``data`` (k arrays); all arrays uint8, contiguous, equal length."""
        if len(data) != self.k or len(parity) != self.m:
            raise ValueError(f"encode needs {self.k} data and {self.m} parity buffers")
        self._encoder.apply(data, parity)

    def decode(self, available: Mapping[int, U8Array], missing: Mapping[int, U8Array]) -> None:
        """Rebuild the data chunks named in ``missing`` (index → output buffer) from ``available`` chunks.

        ``available`` maps fragment index (0..n-1) to an authentic chunk; at least ``k`` are needed and the
        ``k`` lowest indices are used. Raises ValueError if fewer than ``k`` are given or an index in
        ``missing`` is not a data index.
        """
        if not missing:
            return
        if any(not 0 <= j < self.k for j in missing):
            raise ValueError(f"decode rebuilds data fragments 0..{self.k - 1}, asked for {sorted(missing)}")
        chosen = tuple(sorted(available))[: self.k]
        if len(chosen) < self.k:
            raise ValueError(f"decode needs {self.k} chunks, got {len(chosen)}")
        wanted = tuple(sorted(missing))
        key = (chosen, wanted)
        with self._lock:
            product = self._decoders.get(key)
            if product is None:
                inverse = invert_matrix(self.matrix[list(chosen)])
                product = _Product(inverse[list(wanted)])
                if len(self._decoders) > 256:
                    self._decoders.clear()
                self._decoders[key] = product
        product.apply([available[i] for i in chosen], [missing[j] for j in wanted])

    def parity_of(self, data: Sequence[U8Array], index: int, out: U8Array) -> None:
        """Recompute one parity chunk ``index`` (k ≤ index < n) from the k data chunks (used by repair)."""
        _Product(self.matrix[index : index + 1]).apply(data, [out])
