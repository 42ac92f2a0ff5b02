"""What the mesh hands back: save receipts, checkpoint listings, verify reports and restored payloads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from superfactory.mesh.audit import AuditEvent
from superfactory.mesh.gf256 import U8Array
from superfactory.mesh.manifest import Manifest
from superfactory.mesh.reader import FragmentCheck

__all__ = ["CheckpointInfo", "FragmentReceipt", "Restored", "SaveReceipt", "VerifyReport"]


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
    """One checkpoint as seen by listing the targets (no key needed).

    ``state``: ``committed`` (a MANIFEST verifies its checksum), ``incomplete`` (fragments or an INTENT but no
    MANIFEST: the save never committed) or ``damaged`` (MANIFEST copies exist but none is intact).
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
    """Every fragment copy and manifest copy of one checkpoint, re-read and authenticated."""

    checkpoint_id: str
    step: int
    fragments: tuple[FragmentCheck, ...]
    manifests: dict[str, str]
    restorable: bool
    repaired: tuple[str, ...] = ()

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

    def tobytes(self) -> bytes:
        """The payload as ``bytes`` (a copy)."""
        return self.data.tobytes()
