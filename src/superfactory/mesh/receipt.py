"""What the mesh hands back: save receipts, checkpoint listings, verify reports and restored payloads."""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from superfactory.mesh.audit import AuditEvent
from superfactory.mesh.gf256 import U8Array
from superfactory.mesh.manifest import Manifest
from superfactory.mesh.reader import FragmentCheck

__all__ = [
    "CheckpointInfo",
    "FragmentReceipt",
    "GcReport",
    "Restored",
    "RotateReport",
    "SaveReceipt",
    "ShredReport",
    "VerifyReport",
]


@dataclass(frozen=True, slots=True)
class FragmentReceipt:
    """Where one fragment copy went and whether it is durable."""

    index: int
    tier: str
    target: str
    path: str
    size_bytes: int
    durable: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SaveReceipt:
    """The outcome of one save.

    ``committed`` is True only when the commit barrier passed: at least ``quorum`` fragments of every stripe
    were durable and the MANIFEST (commit marker) was written. Timings are wall-clock seconds: ``snapshot_s``
    (the caller's stall for an async save; 0 for a sync save), ``quorum_s`` (start → manifest written),
    ``total_s`` (start → every fragment finished or was abandoned).
    """

    checkpoint_id: str
    step: int
    data_class: str
    tiers: tuple[str, ...]
    payload_bytes: int
    stored_bytes: int
    fragments: tuple[FragmentReceipt, ...]
    committed: bool
    quorum: int
    durable_fragments: int
    kek_id: str
    snapshot_s: float
    quorum_s: float
    total_s: float
    estimated_recovery_s: float
    audit_events: tuple[AuditEvent, ...] = ()
    error: str | None = None

    @property
    def input_rate_gbps(self) -> float:
        """Payload bytes per second of ``total_s``, in GB/s."""
        return self.payload_bytes / self.total_s / 1e9 if self.total_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        d["audit_events"] = [{"kind": e.kind, "at_unix_s": e.at_unix_s, **e.details} for e in self.audit_events]
        return d


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """One checkpoint as seen by listing the targets; every field of a committed one comes from an
    authenticated manifest.

    ``state``: ``committed`` (a MANIFEST copy authenticates), ``incomplete`` (fragments or an INTENT but no
    MANIFEST: the save never committed), ``shredded`` (its key was destroyed) or ``damaged`` (MANIFEST copies
    exist but none authenticates). For the last three, ``step`` is the one in the id (unauthenticated).
    """

    checkpoint_id: str
    step: int
    state: str
    created_at_unix_s: float
    data_class: str = ""
    payload_bytes: int = 0
    tiers: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    kek_id: str = ""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Every fragment copy and manifest copy of one checkpoint, re-read and authenticated.

    ``manifests`` maps each target to its copy's verdict: ``ok``, ``missing``, ``unreadable``, ``damaged``,
    ``forged``, ``inconsistent``, ``key_unknown``, ``key_destroyed`` (see :mod:`superfactory.mesh.copies`) or
    ``stale`` (authentic, but wrapped by an older key than the newest copy: a rewrap did not reach it).
    ``manifest_problems`` says why each copy that is not ok failed; ``notes`` lists unknown entries on the
    targets and a detected rollback.
    """

    checkpoint_id: str
    step: int
    fragments: tuple[FragmentCheck, ...]
    manifests: dict[str, str]
    restorable: bool
    repaired: tuple[str, ...] = ()
    manifest_problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "id": self.checkpoint_id,
            "step": self.step,
            "restorable": self.restorable,
            "healthy": self.healthy,
            "repaired": list(self.repaired),
            "manifests": self.manifests,
            "manifest_problems": list(self.manifest_problems),
            "notes": list(self.notes),
            "fragments": [
                {
                    "index": c.index,
                    "target": c.target,
                    "tier": c.tier,
                    "status": c.status,
                    "bad_stripes": list(c.bad_stripes),
                    "detail": c.detail,
                }
                for c in self.fragments
            ],
        }

    @property
    def healthy(self) -> bool:
        """Every fragment copy and manifest copy is intact."""
        return all(f.status == "ok" for f in self.fragments) and all(s == "ok" for s in self.manifests.values())


@dataclass(frozen=True, slots=True)
class Restored:
    """A restored checkpoint: its manifest, its bytes, and how the restore went."""

    manifest: Manifest
    data: U8Array
    duration_s: float
    decoded_stripes: int
    bytes_read: int
    skipped: tuple[str, ...] = field(default_factory=tuple)
    #: seconds spent finding, authenticating and cross-checking manifests and the commit record
    authenticate_s: float = 0.0

    def tobytes(self) -> bytes:
        """The payload as ``bytes`` (a copy)."""
        return self.data.tobytes()

    def write_file(self, path: str | Path, mode: int = 0o600) -> None:
        """Write the payload to ``path`` atomically with permission bits ``mode`` (default 0600, whatever the
        umask): a private temp file beside it, fsync, rename over ``path``."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.partial-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.fchmod(fd, mode)
            view = memoryview(self.data).cast("B")
            while view.nbytes:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        try:
            os.replace(tmp, path)
        except OSError:
            os.unlink(tmp)
            raise

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable facts about the restore (not the bytes)."""
        return {
            "id": self.manifest.checkpoint_id,
            "step": self.manifest.step,
            "bytes": self.manifest.payload_bytes,
            "duration_s": self.duration_s,
            "authenticate_s": self.authenticate_s,
            "decoded_stripes": self.decoded_stripes,
            "bytes_read": self.bytes_read,
            "skipped": list(self.skipped),
        }


@dataclass(frozen=True, slots=True)
class GcReport:
    """What gc did: ``deleted`` ids, ``kept_in_flight`` (saves holding a live lease) and ``notes`` (damaged
    checkpoints left alone, unknown entries)."""

    deleted: tuple[str, ...]
    kept_in_flight: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"deleted": list(self.deleted), "kept_in_flight": list(self.kept_in_flight), "notes": list(self.notes)}


@dataclass(frozen=True, slots=True)
class RotateReport:
    """A key rotation: the new key, the checkpoints re-wrapped under it (every copy rewritten) and each copy
    that could not be rewritten. ``complete`` is False when any copy still depends on an older key."""

    key_id: str
    rewrapped: tuple[str, ...] = ()
    failed_copies: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every copy of every checkpoint was re-wrapped (or no rewrap was asked)."""
        return not self.failed_copies

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "key_id": self.key_id,
            "rewrapped": list(self.rewrapped),
            "failed_copies": list(self.failed_copies),
            "complete": self.complete,
        }


@dataclass(frozen=True, slots=True)
class ShredReport:
    """A crypto-shred: what became unrecoverable, which stale copies were rewritten first so that live
    checkpoints keep working, and each copy that could not be processed."""

    key_id: str | None
    unrecoverable: tuple[str, ...]
    rewritten_copies: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "key_id": self.key_id,
            "unrecoverable": list(self.unrecoverable),
            "rewritten_copies": list(self.rewritten_copies),
            "problems": list(self.problems),
        }
