"""Keeping a mesh healthy: verify (and repair), garbage collection, key rotation and crypto-shredding.

Repair re-encodes: it restores the payload from any ``k`` authentic chunks per stripe, then rewrites each
damaged or missing fragment copy (atomically, same nonces and same plaintext, hence identical ciphertext) and
each damaged or missing manifest copy.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from superfactory.mesh.catalog import INTENT, MANIFEST, fragment_name
from superfactory.mesh.crypto import ChunkCipher
from superfactory.mesh.errors import InsufficientFragmentsError, StorageError
from superfactory.mesh.layout import Payload
from superfactory.mesh.manifest import parse, seal
from superfactory.mesh.reader import check_fragment, restore_payload
from superfactory.mesh.receipt import VerifyReport
from superfactory.mesh.writer import FragmentJob, write_fragments

if TYPE_CHECKING:
    from superfactory.mesh.mesh import CheckpointMesh

__all__ = ["gc", "rotate_keys", "shred_checkpoint", "shred_key", "verify"]


def _manifest_status(mesh: CheckpointMesh, checkpoint_id: str, targets: set[str]) -> dict[str, str]:
    status: dict[str, str] = {}
    for name in sorted(targets):
        try:
            raw = mesh.catalog.backends[name].get(mesh.catalog.path(checkpoint_id, MANIFEST))
        except StorageError:
            status[name] = "missing"
            continue
        try:
            parse(raw, f"{checkpoint_id} on {name}")
            status[name] = "ok"
        except Exception:
            status[name] = "damaged"
    return status


def verify(
    mesh: CheckpointMesh,
    step: int | None,
    checkpoint_id: str | None,
    repair: bool,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """See :meth:`CheckpointMesh.verify`."""
    cid = mesh.catalog.resolve(checkpoint_id, step)[0]
    manifest, data_key, _ = mesh.catalog.load(cid, mesh.keys)
    layout = manifest.layout
    cipher = ChunkCipher(data_key, cid)
    locations = mesh.locations(manifest)
    flat = [loc for locs in locations.values() for loc in locs]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(flat)))) as pool:
        checks = tuple(pool.map(lambda loc: check_fragment(loc, layout, cipher), flat))
    manifests = _manifest_status(mesh, cid, manifest.targets())
    good: list[set[int]] = [set() for _ in range(layout.n_stripes)]
    for c in checks:
        if c.status == "missing":
            continue
        bad = set(c.bad_stripes)
        for s in range(layout.n_stripes):
            if s not in bad:
                good[s].add(c.index)
    restorable = all(len(g) >= manifest.k for g in good)
    report = VerifyReport(cid, manifest.step, checks, manifests, restorable)
    if not repair or report.healthy:
        return report
    if not restorable:
        raise InsufficientFragmentsError(
            f"checkpoint {cid} cannot be repaired: some stripes have fewer than {manifest.k} authentic "
            f"fragments. Restore an older checkpoint."
        )
    code = mesh.code(manifest.scheme, manifest.k, manifest.m)
    data, _ = restore_payload(layout, code, cipher, locations, progress)
    jobs = [
        FragmentJob(
            c.index,
            c.tier,
            c.target,
            mesh.catalog.backends[c.target],
            mesh.catalog.path(cid, fragment_name(c.index)),
        )
        for c in checks
        if c.status != "ok"
    ]
    repaired: list[str] = []
    if jobs:
        outcomes = write_fragments(
            Payload([data]),
            layout,
            code,
            cipher,
            jobs=jobs,
            quorum=0,
            timeout_s=60.0,
            on_quorum=lambda: None,
        )
        repaired += [f"fragment {o.job.index} on {o.job.target}" for o in outcomes if o.durable]
    sealed = seal(manifest, data_key)
    for name, status in manifests.items():
        if status != "ok":
            mesh.catalog.backends[name].put_atomic(mesh.catalog.path(cid, MANIFEST), sealed)
            repaired.append(f"manifest on {name}")
    mesh.audit.emit("repair", checkpoint_id=cid, repaired=repaired)
    return replace(report, repaired=tuple(repaired))


def _delete_everywhere(mesh: CheckpointMesh, checkpoint_id: str) -> None:
    # manifests first: once no MANIFEST exists the checkpoint is uncommitted, whatever happens next
    for backend in mesh.catalog.backends.values():
        try:
            backend.delete(mesh.catalog.path(checkpoint_id, MANIFEST))
        except StorageError:
            continue
    for backend in mesh.catalog.backends.values():
        try:
            backend.delete_tree(mesh.catalog.ckpt_dir(checkpoint_id))
        except StorageError:
            continue


def gc(mesh: CheckpointMesh, keep: int, incomplete_grace_s: float) -> list[str]:
    """See :meth:`CheckpointMesh.gc`."""
    if keep < 1:
        raise ValueError("gc keeps at least one checkpoint (keep ≥ 1)")
    infos = mesh.catalog.list(include_incomplete=True)
    committed = [i for i in infos if i.state == "committed"]
    doomed = [i.checkpoint_id for i in committed[: max(0, len(committed) - keep)]]
    now = time.time()
    doomed += [
        i.checkpoint_id for i in infos if i.state != "committed" and now - i.created_at_unix_s > incomplete_grace_s
    ]
    for cid in doomed:
        _delete_everywhere(mesh, cid)
        mesh.audit.emit("gc_deleted", checkpoint_id=cid)
    return doomed


def rotate_keys(mesh: CheckpointMesh, rewrap: bool) -> tuple[str, list[str]]:
    """See :meth:`CheckpointMesh.rotate_keys`."""
    new_id = mesh.keys.rotate()
    mesh.audit.emit("key_rotated", key_id=new_id, reason="requested", rewrap=rewrap)
    rewrapped: list[str] = []
    if not rewrap:
        return new_id, rewrapped
    for info in mesh.catalog.list():
        if info.kek_id == new_id:
            continue
        manifest, data_key, _ = mesh.catalog.load(info.checkpoint_id, mesh.keys)
        fresh = replace(
            manifest,
            kek_id=new_id,
            wrapped_key_b64=base64.b64encode(mesh.keys.wrap(new_id, data_key)).decode(),
        )
        sealed = seal(fresh, data_key)
        for name in manifest.targets():
            try:
                mesh.catalog.backends[name].put_atomic(mesh.catalog.path(info.checkpoint_id, MANIFEST), sealed)
            except StorageError:
                continue
        rewrapped.append(info.checkpoint_id)
    return new_id, rewrapped


def shred_key(mesh: CheckpointMesh, key_id: str) -> list[str]:
    """See :meth:`CheckpointMesh.shred_key`."""
    affected = [i.checkpoint_id for i in mesh.catalog.list() if i.kek_id == key_id]
    mesh.keys.destroy(key_id)
    mesh.audit.emit("key_destroyed", key_id=key_id, unrecoverable_checkpoints=affected)
    return affected


def shred_checkpoint(mesh: CheckpointMesh, checkpoint_id: str) -> list[str]:
    """See :meth:`CheckpointMesh.shred_checkpoint`."""
    infos = mesh.catalog.list(include_incomplete=True)
    if not any(i.checkpoint_id == checkpoint_id for i in infos):
        mesh.catalog.resolve(checkpoint_id, None)  # raises the right "not found" error
    _delete_everywhere(mesh, checkpoint_id)
    for backend in mesh.catalog.backends.values():
        try:
            backend.delete(mesh.catalog.path(checkpoint_id, INTENT))
        except StorageError:
            continue
    mesh.audit.emit("checkpoint_shredded", checkpoint_id=checkpoint_id)
    return [checkpoint_id]
