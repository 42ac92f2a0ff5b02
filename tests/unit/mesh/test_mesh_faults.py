"""Must-show fault tolerance of a critical checkpoint (RS 4+2) on six targets.

Every combination of up to two lost or corrupted fragments per stripe restores bit-exact; three lost gives a
clear error and never wrong data; a flipped bit anywhere in a fragment or the manifest is detected.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import frag_path
from superfactory.mesh import (
    CheckpointMesh,
    InsufficientFragmentsError,
    IntegrityError,
)
from superfactory.mesh.catalog import MANIFEST
from superfactory.mesh.crypto import TAG_BYTES
from superfactory.mesh.manifest import authenticate, parse

CHUNK = 1024
STRIPES = 3
# three full stripes plus a ragged tail: the last stripe's chunks are shorter and padded
PAYLOAD = np.random.default_rng(7).integers(0, 256, 4 * CHUNK * STRIPES + 1234, dtype=np.uint8).tobytes()


def _save(mesh: CheckpointMesh, payload: bytes = PAYLOAD, step: int = 10) -> str:
    receipt = mesh.save(payload, step=step)
    assert receipt.committed and receipt.durable_fragments == 6
    return receipt.checkpoint_id


def _damage(path: Path, how: str, stripe: int | None = None) -> None:
    """``lost``: delete the fragment; ``corrupt``: flip one bit in ``stripe``'s chunk (or mid-file)."""
    if how == "lost":
        path.unlink()
        return
    raw = bytearray(path.read_bytes())
    pos = len(raw) // 2 if stripe is None else stripe * (CHUNK + TAG_BYTES) + 17
    raw[pos] ^= 0x10
    path.write_bytes(bytes(raw))


def _snapshot(mesh: CheckpointMesh, cid: str) -> dict[int, bytes]:
    return {i: frag_path(mesh, cid, i).read_bytes() for i in range(6)}


def _restore_files(mesh: CheckpointMesh, cid: str, saved: dict[int, bytes]) -> None:
    for i, raw in saved.items():
        frag_path(mesh, cid, i).write_bytes(raw)


def test_every_combination_of_two_lost_or_corrupted_fragments_restores_bit_exact(
    mesh: CheckpointMesh,
) -> None:
    cid = _save(mesh)
    pristine = _snapshot(mesh, cid)
    cases = 0
    for count in (0, 1, 2):
        for frags in itertools.combinations(range(6), count):
            for hows in itertools.product(("lost", "corrupt"), repeat=count):
                for frag, how in zip(frags, hows, strict=True):
                    _damage(frag_path(mesh, cid, frag), how)
                restored = mesh.restore(step=10)
                assert restored.tobytes() == PAYLOAD, (frags, hows)
                _restore_files(mesh, cid, pristine)
                cases += 1
    assert cases == 1 + 6 * 2 + 15 * 4


def test_two_different_fragments_damaged_in_each_stripe_restores_bit_exact(mesh: CheckpointMesh) -> None:
    cid = _save(mesh)
    pristine = _snapshot(mesh, cid)
    # stripe s loses a different pair each time: every fragment is damaged somewhere, ≤ 2 per stripe
    pairs = list(itertools.combinations(range(6), 2))
    for offset in range(0, len(pairs), 2):
        for stripe in range(STRIPES + 1):
            for frag in pairs[(offset + stripe) % len(pairs)]:
                _damage(frag_path(mesh, cid, frag), "corrupt", stripe)
        assert mesh.restore(step=10).tobytes() == PAYLOAD
        _restore_files(mesh, cid, pristine)


@pytest.mark.parametrize("lost", list(itertools.combinations(range(6), 3))[::4])
def test_three_lost_fragments_is_a_clear_error_never_wrong_data(
    mesh: CheckpointMesh, lost: tuple[int, ...]
) -> None:
    cid = _save(mesh)
    for frag in lost:
        _damage(frag_path(mesh, cid, frag), "lost" if frag % 2 else "corrupt", 1)
    with pytest.raises(InsufficientFragmentsError, match="cannot rebuild") as info:
        mesh.restore(step=10)
    assert "No data was returned" in str(info.value)


def test_three_corrupted_in_one_stripe_only_fails_that_stripe_loudly(mesh: CheckpointMesh) -> None:
    cid = _save(mesh)
    for frag in (0, 2, 5):
        _damage(frag_path(mesh, cid, frag), "corrupt", 2)
    with pytest.raises(InsufficientFragmentsError, match="stripe 2"):
        mesh.restore(step=10)
    report = mesh.verify(step=10)
    assert not report.restorable
    assert {c.index for c in report.fragments if c.status == "damaged"} == {0, 2, 5}


def test_a_flipped_bit_anywhere_in_a_fragment_is_detected(mesh: CheckpointMesh) -> None:
    cid = _save(mesh)
    path = frag_path(mesh, cid, 3)
    pristine = path.read_bytes()
    rng = np.random.default_rng(3)
    positions = sorted({0, len(pristine) - 1, *rng.integers(0, len(pristine), 40).tolist()})
    for pos in positions:
        raw = bytearray(pristine)
        raw[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(raw))
        report = mesh.verify(step=10)
        bad = [c for c in report.fragments if c.status != "ok"]
        assert [(c.index, c.status) for c in bad] == [(3, "damaged")], pos
        assert mesh.restore(step=10).tobytes() == PAYLOAD
    # truncation and trailing garbage are damage too
    path.write_bytes(pristine[:-1])
    assert [c.status for c in mesh.verify(step=10).fragments if c.index == 3] == ["damaged"]
    path.write_bytes(pristine + b"x")
    assert [c.status for c in mesh.verify(step=10).fragments if c.index == 3] == ["damaged"]


def test_a_chunk_moved_to_another_position_fails_authentication(mesh: CheckpointMesh) -> None:
    cid = _save(mesh)
    a, b = frag_path(mesh, cid, 0), frag_path(mesh, cid, 1)
    raw_a = a.read_bytes()
    b.write_bytes(raw_a)  # a valid ciphertext, but for fragment 0's positions
    report = mesh.verify(step=10)
    assert [c.index for c in report.fragments if c.status == "damaged"] == [1]
    assert mesh.restore(step=10).tobytes() == PAYLOAD


def test_every_bit_flip_in_the_manifest_is_detected(mesh: CheckpointMesh) -> None:
    cid = _save(mesh)
    manifest, _, _ = mesh.catalog.load(cid, mesh.keys)
    target = manifest.fragments[0].locations[0]
    path = Path(mesh.config.target(target).url) / mesh.catalog.path(cid, MANIFEST)
    pristine = path.read_bytes()
    parse(pristine, "pristine")
    for pos in range(len(pristine)):
        for bit in range(8):
            raw = bytearray(pristine)
            raw[pos] ^= 1 << bit
            with pytest.raises(IntegrityError):
                # the checksum catches every flip but those in the HMAC itself, which the key check catches
                copy, mac = parse(bytes(raw), f"byte {pos} bit {bit}")
                authenticate(copy, mac, mesh.keys, f"byte {pos} bit {bit}")


def test_flipped_manifest_copy_is_skipped_and_all_flipped_is_an_error(mesh: CheckpointMesh) -> None:
    cid = _save(mesh)
    paths = [Path(t.url) / mesh.catalog.path(cid, MANIFEST) for t in mesh.config.targets]
    raw = bytearray(paths[0].read_bytes())
    raw[40] ^= 4
    paths[0].write_bytes(bytes(raw))
    assert mesh.restore(step=10).tobytes() == PAYLOAD
    report = mesh.verify(step=10)
    assert report.manifests["t0"] == "damaged"
    repaired = mesh.verify(step=10, repair=True)
    assert "manifest on t0" in repaired.repaired
    assert mesh.verify(step=10).healthy
    for p in paths:
        p.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        mesh.restore(checkpoint_id=cid)


def test_forged_manifest_with_recomputed_checksum_fails_hmac(mesh: CheckpointMesh) -> None:
    import hashlib
    import json

    cid = _save(mesh)
    for t in mesh.config.targets:
        path = Path(t.url) / mesh.catalog.path(cid, MANIFEST)
        body, _, trailer = path.read_bytes().rpartition(b"\n")
        forged = body.replace(b'"payload_bytes":', b'"payload_bytes":1')
        mac = json.loads(trailer)["hmac"]
        new_trailer = json.dumps(
            {"hmac": mac, "sha256": hashlib.sha256(forged).hexdigest()}, sort_keys=True, separators=(",", ":")
        ).encode()
        path.write_bytes(forged + b"\n" + new_trailer)
    with pytest.raises(IntegrityError, match="HMAC"):
        mesh.restore(checkpoint_id=cid)


def test_repair_rebuilds_lost_and_damaged_fragments(mesh: CheckpointMesh) -> None:
    cid = _save(mesh)
    pristine = _snapshot(mesh, cid)
    _damage(frag_path(mesh, cid, 1), "lost")
    _damage(frag_path(mesh, cid, 4), "corrupt", 0)
    report = mesh.verify(step=10, repair=True)
    assert report.restorable and not report.healthy
    assert set(report.repaired) == {"fragment 1 on t1", "fragment 4 on t4"}
    assert mesh.verify(step=10).healthy
    # same key, same nonces, same plaintext: the rebuilt fragments are byte-identical to the originals
    assert _snapshot(mesh, cid) == pristine


def test_whole_target_directory_gone_is_a_lost_fragment(mesh: CheckpointMesh) -> None:
    _save(mesh)
    shutil.rmtree(mesh.config.target("t2").url)
    os.makedirs(mesh.config.target("t2").url)
    assert mesh.restore().tobytes() == PAYLOAD
