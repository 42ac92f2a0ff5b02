"""The erasure code: both engines agree, and any k of k+m chunks rebuild the data (MDS)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.mesh import erasure
from superfactory.mesh.erasure import ErasureCode
from superfactory.mesh.gf256 import MUL_TABLE, cauchy_matrix, gf_inv, invert_matrix


def _stripe(k: int, length: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, length, dtype=np.uint8) for _ in range(k)]


def test_field_inverse_and_matrix_inverse_are_exact() -> None:
    for a in range(1, 256):
        assert MUL_TABLE[a, gf_inv(a)] == 1
    mat = cauchy_matrix(4, 2)[[1, 3, 4, 5]]
    inv = invert_matrix(mat)
    prod = np.zeros((4, 4), dtype=np.uint8)
    for i, j in itertools.product(range(4), range(4)):
        acc = 0
        for t in range(4):
            acc ^= int(MUL_TABLE[mat[i, t], inv[t, j]])
        prod[i, j] = acc
    assert (prod == np.eye(4, dtype=np.uint8)).all()


def test_isal_and_numpy_engines_write_identical_parity(monkeypatch: pytest.MonkeyPatch) -> None:
    if not erasure.isal_available():
        pytest.skip("ISA-L (from the pyeclib wheel) is not installed here")
    data = _stripe(4, 4099, seed=1)
    fast = [np.empty(4099, np.uint8) for _ in range(2)]
    ErasureCode(4, 2).encode(data, fast)
    monkeypatch.setenv("SUPERFACTORY_MESH_EC", "numpy")
    erasure._load_isal.cache_clear()
    try:
        slow_code = ErasureCode(4, 2)
        assert slow_code.engine == "numpy"
        slow = [np.empty(4099, np.uint8) for _ in range(2)]
        slow_code.encode(data, slow)
    finally:
        monkeypatch.delenv("SUPERFACTORY_MESH_EC")
        erasure._load_isal.cache_clear()
    assert all((a == b).all() for a, b in zip(fast, slow, strict=True))


@pytest.mark.parametrize(("k", "m", "scheme"), [(4, 2, "rs"), (3, 3, "rs"), (4, 1, "xor"), (1, 0, "none")])
def test_every_k_subset_rebuilds_every_data_chunk(k: int, m: int, scheme: str) -> None:
    code = ErasureCode(k, m, scheme)
    data = _stripe(k, 777, seed=k * 10 + m)
    parity = [np.empty(777, np.uint8) for _ in range(m)]
    code.encode(data, parity)
    chunks = data + parity
    for survivors in itertools.combinations(range(k + m), k):
        lost = [j for j in range(k) if j not in survivors]
        out = {j: np.empty(777, np.uint8) for j in lost}
        code.decode({i: chunks[i] for i in survivors}, out)
        for j in lost:
            assert (out[j] == data[j]).all(), (survivors, j)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 8), m=st.integers(0, 4), length=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_random_codes_are_mds(k: int, m: int, length: int, seed: int) -> None:
    code = ErasureCode(k, m)
    data = _stripe(k, length, seed)
    parity = [np.empty(length, np.uint8) for _ in range(m)]
    code.encode(data, parity)
    rng = np.random.default_rng(seed)
    survivors = sorted(rng.choice(k + m, size=k, replace=False).tolist())
    lost = [j for j in range(k) if j not in survivors]
    out = {j: np.empty(length, np.uint8) for j in lost}
    code.decode({i: (data + parity)[i] for i in survivors}, out)
    assert all((out[j] == data[j]).all() for j in lost)


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="xor"):
        ErasureCode(4, 2, "xor")
    with pytest.raises(ValueError, match="unknown"):
        ErasureCode(4, 2, "lrc")
