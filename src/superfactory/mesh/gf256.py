"""Arithmetic in GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11d), the field ISA-L and most RS codes use.

This module is the reference implementation: pure numpy, always available, used for the small matrix work
(building coding matrices, inverting decode matrices) and as the fallback data path when ISA-L cannot be
loaded. Matrices are ``numpy.uint8`` arrays; row ``i`` of a coding matrix says how fragment ``i`` is made from
the ``k`` data fragments. The Cauchy construction is byte-for-byte the one in ISA-L's
``gf_gen_cauchy1_matrix``
so that fragments written by either backend decode with the other.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "EXP",
    "LOG",
    "MUL_TABLE",
    "cauchy_matrix",
    "gf_inv",
    "gf_mul",
    "invert_matrix",
    "matmul_chunks",
    "xor_matrix",
]

_POLY = 0x11D

U8Array = npt.NDArray[np.uint8]


def _build_tables() -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], U8Array]:
    exp = np.zeros(512, dtype=np.int32)
    log = np.zeros(256, dtype=np.int32)
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= _POLY
    exp[255:510] = exp[0:255]  # doubled so exp[log a + log b] never needs a modulo
    a = np.arange(256)
    mul = exp[(log[a][:, None] + log[a][None, :])].astype(np.uint8)
    mul[0, :] = 0
    mul[:, 0] = 0
    return exp, log, mul


EXP, LOG, MUL_TABLE = _build_tables()


def gf_mul(a: int, b: int) -> int:
    """Product of two field elements."""
    return int(MUL_TABLE[a, b])


def gf_inv(a: int) -> int:
    """Multiplicative inverse of a non-zero field element."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(256)")
    return int(EXP[255 - LOG[a]])


def cauchy_matrix(k: int, m: int) -> U8Array:
    """Systematic (k+m)×k coding matrix: identity on top, Cauchy rows ``1/(i xor j)`` below (as ISA-L).

    Every k×k sub-matrix is invertible for k+m ≤ 256, so any k of the k+m fragments rebuild the data (MDS).
    """
    if k < 1 or m < 0 or k + m > 256:
        raise ValueError(f"need 1 ≤ k and 0 ≤ m with k+m ≤ 256, got k={k}, m={m}")
    mat = np.zeros((k + m, k), dtype=np.uint8)
    mat[:k] = np.eye(k, dtype=np.uint8)
    for i in range(k, k + m):
        for j in range(k):
            mat[i, j] = gf_inv(i ^ j)
    return mat


def xor_matrix(k: int) -> U8Array:
    """(k+1)×k matrix: identity plus one all-ones row, i.e. a single XOR parity (RAID-5 style)."""
    mat = np.zeros((k + 1, k), dtype=np.uint8)
    mat[:k] = np.eye(k, dtype=np.uint8)
    mat[k] = 1
    return mat


def invert_matrix(mat: U8Array) -> U8Array:
    """Inverse of a square matrix over GF(256) by Gauss–Jordan elimination; raises ValueError if singular."""
    n = mat.shape[0]
    work = np.concatenate([mat.astype(np.uint8), np.eye(n, dtype=np.uint8)], axis=1)
    for col in range(n):
        pivot = next((r for r in range(col, n) if work[r, col] != 0), None)
        if pivot is None:
            raise ValueError("matrix is singular over GF(256)")
        if pivot != col:
            work[[col, pivot]] = work[[pivot, col]]
        inv = gf_inv(int(work[col, col]))
        work[col] = MUL_TABLE[inv][work[col]]
        for r in range(n):
            if r != col and work[r, col] != 0:
                work[r] ^= MUL_TABLE[int(work[r, col])][work[col]]
    return np.ascontiguousarray(work[:, n:])


def matmul_chunks(mat: U8Array, inputs: list[U8Array], outputs: list[U8Array], scratch: U8Array) -> None:
    """outputs[r] = Σ_j mat[r, j] · inputs[j] over GF(256), byte-wise, vectorised over whole chunks.

    ``scratch`` is a caller-owned buffer at least as long as a chunk, so the loop allocates nothing.
    """
    length = len(outputs[0]) if outputs else 0
    tmp = scratch[:length]
    for r, out in enumerate(outputs):
        out[:] = 0
        for j, src in enumerate(inputs):
            c = int(mat[r, j])
            if c == 0:
                continue
            if c == 1:
                np.bitwise_xor(out, src, out=out)
            else:
                np.take(MUL_TABLE[c], src, out=tmp)
                np.bitwise_xor(out, tmp, out=out)
