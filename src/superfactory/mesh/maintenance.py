"""Keeping a mesh healthy: verify (and repair), garbage collection, key rotation and crypto-shredding.

Every operation here decides from authenticated manifests only (see :mod:`catalog`), so a forged or stale copy
on one target can neither make ``gc`` delete a good checkpoint nor ``verify`` call a bad copy "ok".

Repair re-encodes: it restores the payload from any ``k`` authentic chunks per stripe, then rewrites each
damaged or missing fragment copy (atomically, same nonces and same plaintext, hence identical ciphertext) and
each manifest copy that is not ok, from the authentic copy wrapped by the newest key.

gc never deletes: a save in flight (its lease is live), a ``damaged`` checkpoint (no authentic manifest: it is
reported; ``shred --id`` removes it on purpose), the commit record's checkpoint, or anything while a rollback
is detected. Rewrap and shred report every copy they could not process; shred refuses when a target cannot be
checked, and rewrites stale copies of re-wrapped checkpoints before destroying the key, so no live checkpoint
is left depending on a destroyed key.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from superfactory.mesh.catalog import INTENT, MANIFEST, Entry, fragment_name
from superfactory.mesh.copies import CopyCheck
from superfactory.mesh.crypto import ChunkCipher
from superfactory.mesh.errors import (
    CheckpointNotFoundError,
    InsufficientFragmentsError,
    InvalidRequestError,
    RollbackError,
    StorageError,
    StrandingError,
)
from superfactory.mesh.layout import Payload
from superfactory.mesh.manifest import Manifest, seal
from superfactory.mesh.naming import validate_checkpoint_id
from superfactory.mesh.reader import check_fragment, restore_payload
from superfactory.mesh.receipt import GcReport, RotateReport, ShredReport, VerifyReport
from superfactory.mesh.writer import FragmentJob, write_fragments

if TYPE_CHECKING:
    from superfactory.mesh.mesh import CheckpointMesh

__all__ = ["gc", "rotate_keys", "shred_checkpoint", "shred_key", "verify"]


def all_copies(mesh: CheckpointMesh, entry: Entry) -> dict[str, CopyCheck]:
    """Every MANIFEST copy of a committed checkpoint (on its holders and wherever one was found), judged."""
    targets = set(entry.manifest.targets()) | set(entry.manifest_holders)
    targets &= set(mesh.catalog.backends)
    return {t: mesh.catalog.check(entry.checkpoint_id, t) for t in mesh.catalog.ranked(targets)}


def canonical(mesh: CheckpointMesh, copies: dict[str, CopyCheck]) -> Manifest:
    """The authentic copy wrapped by the newest live key (the one repairs and shreds propagate)."""
    order = {k.key_id: i for i, k in enumerate(mesh.keys.keys()) if not k.destroyed}
    good = [c.manifest for c in copies.values() if c.ok and c.manifest is not None]
    return max(good, key=lambda m: order.get(m.kek_id, -1))


def verify(
    mesh: CheckpointMesh,
    step: int | None,
    checkpoint_id: str | None,
    repair: bool,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """See :meth:`CheckpointMesh.verify`."""
    entry = mesh.catalog.resolve(checkpoint_id, step)[0]
    notes = list(mesh.catalog.notes)
    cid = entry.checkpoint_id
    data_key = entry.data_key
    copies = all_copies(mesh, entry)
    manifest = canonical(mesh, copies)
    statuses: dict[str, str] = {}
    problems: list[str] = []
    for target, c in copies.items():
        status = c.status
        if c.ok and c.manifest is not None and c.manifest.body() != manifest.body():
            status = "stale"
            problems.append(f"{target}: authentic but wrapped by older key {c.manifest.kek_id}")
        elif not c.ok:
            problems.append(f"{target}: {status}" + (f" ({c.detail})" if c.detail else ""))
        statuses[target] = status
    layout = manifest.layout
    cipher = ChunkCipher(data_key, cid)
    locations = mesh.locations(manifest)
    flat = [loc for locs in locations.values() for loc in locs]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(flat)))) as pool:
        checks = tuple(pool.map(lambda loc: check_fragment(loc, layout, cipher), flat))
    good: list[set[int]] = [set() for _ in range(layout.n_stripes)]
    for c in checks:
        if c.status == "missing":
            continue
        bad = set(c.bad_stripes)
        for s in range(layout.n_stripes):
            if s not in bad:
                good[s].add(c.index)
    restorable = all(len(g) >= manifest.k for g in good)
    report = VerifyReport(cid, manifest.step, checks, statuses, restorable, (), tuple(problems), tuple(notes))
    if not repair or report.healthy:
        return report
    if not restorable:
        raise InsufficientFragmentsError(
            f"checkpoint {cid} cannot be repaired: some stripes have fewer than {manifest.k} authentic "
            f"fragments. Restore an older checkpoint."
        )
    repaired: list[str] = []
    jobs = [
        FragmentJob(
            c.index, c.tier, c.target, mesh.catalog.backends[c.target], mesh.catalog.path(cid, fragment_name(c.index))
        )
        for c in checks
        if c.status != "ok"
    ]
    if jobs:
        code = mesh.code(manifest.scheme, manifest.k, manifest.m)
        data, _ = restore_payload(layout, code, cipher, locations, progress)
        outcomes = write_fragments(
            Payload([data]), layout, code, cipher, jobs=jobs, quorum=0, timeout_s=60.0, on_quorum=lambda: None
        )
        repaired += [f"fragment {o.job.index} on {o.job.target}" for o in outcomes if o.durable]
    sealed = seal(manifest, data_key)
    for name, status in statuses.items():
        if status != "ok" and name in manifest.targets():
            try:
                mesh.catalog.backends[name].put_atomic(mesh.catalog.path(cid, MANIFEST), sealed)
                repaired.append(f"manifest on {name}")
            except StorageError:
                continue
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


def gc(mesh: CheckpointMesh, keep: int, incomplete_grace_s: float) -> GcReport:
    """See :meth:`CheckpointMesh.gc`."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise InvalidRequestError(f"gc keeps at least one checkpoint: keep must be an integer ≥ 1, got {keep!r}.")
    if not (
        isinstance(incomplete_grace_s, int | float) and math.isfinite(incomplete_grace_s) and incomplete_grace_s >= 0
    ):
        raise InvalidRequestError(f"incomplete_grace_s must be a finite number ≥ 0, got {incomplete_grace_s!r}.")
    name = mesh.config.name
    entries = mesh.catalog.entries()
    notes = list(mesh.catalog.notes)
    committed = [e for e in entries if e.state == "committed"]
    problem = mesh.catalog.rollback_problem(committed)
    if problem is not None:
        raise RollbackError(f"{problem} gc deletes nothing until this is resolved.")
    record = mesh.keys.commit_record(name)
    kept = committed[max(0, len(committed) - keep) :]
    protected: set[str] = set()
    if record is not None and not any(e.manifest.step > record.step for e in kept):
        protected.add(record.checkpoint_id)  # deleting it would make the next "newest" look like a rollback
    doomed = [e.checkpoint_id for e in committed[: max(0, len(committed) - keep)] if e.checkpoint_id not in protected]
    in_flight: list[str] = []
    now = time.time()
    for e in entries:
        if e.state == "shredded":
            doomed.append(e.checkpoint_id)
        elif e.state == "damaged":
            notes.append(f"{e.checkpoint_id}: no authentic manifest, left alone ({'; '.join(e.problems[:3])})")
        elif e.state == "incomplete":
            lease = mesh.keys.revoke_lease(name, e.checkpoint_id, now)
            if lease.state == "held":
                in_flight.append(e.checkpoint_id)
            elif lease.state == "revoked":
                notes.append(f"{e.checkpoint_id}: lease revoked because {lease.detail}")
                doomed.append(e.checkpoint_id)
            elif now - e.intent_at_unix_s > incomplete_grace_s:
                again = mesh.catalog.entry(e.checkpoint_id)  # a commit may have landed since the scan
                if again is not None and again.state == "incomplete":
                    doomed.append(e.checkpoint_id)
    for cid in doomed:
        _delete_everywhere(mesh, cid)
        mesh.audit.emit("gc_deleted", checkpoint_id=cid)
    return GcReport(tuple(doomed), tuple(in_flight), tuple(notes))


def rotate_keys(mesh: CheckpointMesh, rewrap: bool) -> RotateReport:
    """See :meth:`CheckpointMesh.rotate_keys`."""
    new_id = mesh.keys.rotate()
    mesh.audit.emit("key_rotated", key_id=new_id, reason="requested", rewrap=rewrap)
    if not rewrap:
        return RotateReport(new_id)
    rewrapped: list[str] = []
    failed: list[str] = []
    entries = mesh.catalog.entries()
    failed += [f"target {t}: cannot be listed; its copies were not re-wrapped" for t in mesh.catalog.unreachable]
    for entry in entries:
        cid = entry.checkpoint_id
        if entry.state != "committed":
            if entry.state == "damaged":
                failed.append(f"{cid}: no authentic manifest to re-wrap ({'; '.join(entry.problems[:3])})")
            continue
        manifest = entry.manifest
        fresh = replace(
            manifest, kek_id=new_id, wrapped_key_b64=base64.b64encode(mesh.keys.wrap(new_id, entry.data_key)).decode()
        )
        sealed = seal(fresh, entry.data_key)
        written = 0
        for name in sorted(manifest.targets()):
            try:
                mesh.catalog.backends[name].put_atomic(mesh.catalog.path(cid, MANIFEST), sealed)
                written += 1
            except StorageError as exc:
                failed.append(f"{cid} on {name}: {exc}")
        if written:
            rewrapped.append(cid)
    mesh.audit.emit("key_rewrapped", key_id=new_id, rewrapped=rewrapped, failed_copies=failed)
    return RotateReport(new_id, tuple(rewrapped), tuple(failed))


def _successor(committed: list[Entry], removed: set[str]) -> tuple[int, str] | None:
    survivors = [e for e in committed if e.checkpoint_id not in removed]
    return (survivors[-1].manifest.step, survivors[-1].checkpoint_id) if survivors else None


def shred_key(mesh: CheckpointMesh, key_id: str, force: bool) -> ShredReport:
    """See :meth:`CheckpointMesh.shred_key`."""
    if key_id not in {k.key_id for k in mesh.keys.keys()}:  # noqa: SIM118
        mesh.keys.destroy(key_id)  # raises the provider's "no such key" error
    entries = mesh.catalog.entries()
    unreachable = list(mesh.catalog.unreachable)
    problems = [
        f"target {t}: cannot be listed ({n})" for t in unreachable for n in mesh.catalog.notes if n.startswith(f"{t}:")
    ]
    committed = [e for e in entries if e.state == "committed"]
    doomed: list[str] = []
    stale: list[tuple[Entry, Manifest, list[str]]] = []
    for entry in committed:
        copies = all_copies(mesh, entry)
        authentic = [c for c in copies.values() if c.ok and c.manifest is not None]
        under_key = [c.target for c in authentic if c.manifest is not None and c.manifest.kek_id == key_id]
        others = [c for c in authentic if c.manifest is not None and c.manifest.kek_id != key_id]
        problems += [
            f"{entry.checkpoint_id} on {c.target}: {c.status}" for c in copies.values() if c.status == "unreadable"
        ]
        if not others:
            if under_key:
                doomed.append(entry.checkpoint_id)
            continue
        if under_key:
            stale.append((entry, canonical(mesh, {c.target: c for c in others}), under_key))
    if (unreachable or any("unreadable" in p for p in problems)) and not force:
        raise StrandingError(
            f"refusing to destroy key {key_id}: {'; '.join(problems)}. A checkpoint re-wrapped on that target "
            f"could be stranded, or one wrapped by this key missed from the report. Bring the target back and "
            f"retry, or pass force to destroy anyway. Nothing was destroyed."
        )
    rewritten: list[str] = []
    for entry, manifest, targets in stale:  # live checkpoints keep no copy that depends on the doomed key
        sealed = seal(manifest, entry.data_key)
        for name in targets:
            try:
                mesh.catalog.backends[name].put_atomic(mesh.catalog.path(entry.checkpoint_id, MANIFEST), sealed)
                rewritten.append(f"{entry.checkpoint_id} on {name}")
            except StorageError as exc:
                problems.append(f"{entry.checkpoint_id} on {name}: stale copy not rewritten ({exc})")
    mesh.keys.retire(mesh.config.name, doomed, _successor(committed, set(doomed)))
    mesh.keys.destroy(key_id)
    mesh.audit.emit(
        "key_destroyed", key_id=key_id, unrecoverable_checkpoints=doomed, rewritten_copies=rewritten, problems=problems
    )
    return ShredReport(key_id, tuple(doomed), tuple(rewritten), tuple(problems))


def shred_checkpoint(mesh: CheckpointMesh, checkpoint_id: str) -> ShredReport:
    """See :meth:`CheckpointMesh.shred_checkpoint`."""
    validate_checkpoint_id(checkpoint_id)
    entry = mesh.catalog.entry(checkpoint_id)
    if entry is None:
        raise CheckpointNotFoundError(
            f"no checkpoint {checkpoint_id} in mesh {mesh.config.name!r}; `superfactory ckpt ls --all` lists them."
        )
    committed = [e for e in mesh.catalog.entries() if e.state == "committed"]
    mesh.keys.retire(mesh.config.name, [checkpoint_id], _successor(committed, {checkpoint_id}))
    _delete_everywhere(mesh, checkpoint_id)
    problems: list[str] = []
    for name, backend in mesh.catalog.backends.items():
        try:
            backend.delete(mesh.catalog.path(checkpoint_id, INTENT))
        except StorageError as exc:
            problems.append(f"{name}: {exc}")
    mesh.audit.emit("checkpoint_shredded", checkpoint_id=checkpoint_id)
    return ShredReport(None, (checkpoint_id,), (), tuple(problems))
