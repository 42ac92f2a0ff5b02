"""The commit path of one save: lease, fencing, manifests, commit record — in that order.

::

    begin()      register the save's lease in the ledger (claims the fencing token; StaleFencingTokenError → nothing
                 is written)
    renew()      while fragments stream (called per stripe; writes the ledger at most every lease_s / 4)
    publish()    after the quorum is durable:
                   1. ledger.check_lease   – lease still held, token not stale   (else: nothing published)
                   2. write MANIFEST to every holder                              (the checkpoint is visible)
                   3. ledger.commit_save   – atomically: lease held, token not stale, record raised
                      (else: the manifests are deleted again and the save fails)
    abandon()    the save failed: drop the lease

Step 3 is what makes a commit final. Between 2 and 3 a reader may see the checkpoint; if 3 fails (gc revoked a
paused save's lease and deleted its fragments, or a newer fencing token appeared) the manifests are retracted,
so no commit is ever reported for data gc removed, and a zombie's late commit is refused.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from superfactory.mesh.backend import Backend
from superfactory.mesh.errors import MeshError, StaleFencingTokenError, StorageError
from superfactory.mesh.keyring import KeyProvider
from superfactory.mesh.ledger import CommitRecord, Lease, LeaseOwner

__all__ = ["SaveCommit"]


@dataclass(slots=True)
class SaveCommit:
    """Ledger and manifest bookkeeping of one save (see the module docstring).

    ``published`` lists the targets holding the MANIFEST once committed; ``record`` is the commit record after
    the commit; ``error`` is why publishing failed (lease lost, stale token), if it did.
    """

    keys: KeyProvider
    mesh: str
    checkpoint_id: str
    step: int
    fencing_token: int | None
    lease_s: float
    published: list[str] = field(default_factory=list)
    record: CommitRecord | None = None
    error: Exception | None = None
    committed_at_monotonic: float | None = None
    #: an extra fence check run before publishing (the targets' FENCE objects); raises StaleFencingTokenError
    target_fence: Callable[[], None] | None = None
    _renewed_at: float = 0.0

    def _stale(self, exc: StaleFencingTokenError, stage: str) -> StaleFencingTokenError:
        if "refused" in str(exc):
            return exc
        return StaleFencingTokenError(
            f"checkpoint {self.checkpoint_id} of mesh {self.mesh!r} refused {stage}: its {exc}. The job was placed "
            f"again elsewhere (a newer process owns it); this process is a zombie and must stop. Nothing was "
            f"committed."
        )

    def _expiry(self) -> float:
        return time.time() + self.lease_s

    def begin(self) -> None:
        """Take the lease before anything is written; StaleFencingTokenError if the token is stale."""
        lease = Lease(
            self.mesh, self.checkpoint_id, self.step, LeaseOwner.current(), self._expiry(), self.fencing_token
        )
        try:
            self.keys.begin_save(lease)
        except StaleFencingTokenError as exc:
            raise self._stale(exc, "before writing") from None
        self._renewed_at = time.monotonic()

    def renew(self) -> None:
        """Extend the lease if a quarter of it has passed since the last renewal."""
        if time.monotonic() - self._renewed_at >= self.lease_s / 4:
            self._renewed_at = time.monotonic()
            self.keys.renew_lease(self.mesh, self.checkpoint_id, self._expiry())

    def publish(self, holders: list[str], backends: dict[str, Backend], path: str, sealed: bytes) -> None:
        """Check the lease, write the MANIFEST to every holder, commit in the ledger; never raises.

        On success ``committed_at_monotonic`` is set; on failure ``error`` says why and no MANIFEST is left.
        """
        try:
            if self.target_fence is not None:
                self.target_fence()
            self.keys.check_lease(self.mesh, self.checkpoint_id, self.fencing_token)
        except StaleFencingTokenError as exc:
            self.error = self._stale(exc, "at commit")
            return
        except MeshError as exc:  # LeaseLostError, or a ledger that cannot be read
            self.error = exc
            return
        for name in holders:
            try:
                backends[name].put_atomic(path, sealed)
                self.published.append(name)
            except StorageError:
                continue
        if not self.published:
            return
        try:
            self.record = self.keys.commit_save(self.mesh, self.checkpoint_id, self.step, self.fencing_token)
        except MeshError as exc:  # lease revoked, token stale, ledger unreadable: the commit did not happen
            self.error = self._stale(exc, "at commit") if isinstance(exc, StaleFencingTokenError) else exc
            self.retract(backends, path)
            return
        self.committed_at_monotonic = time.monotonic()

    def retract(self, backends: dict[str, Backend], path: str) -> None:
        """Delete every MANIFEST this save published."""
        for name in self.published:
            with contextlib.suppress(StorageError):
                backends[name].delete(path)
        self.published = []

    def abandon(self) -> None:
        """Drop the lease of a failed save (its files are deleted by the caller or later by gc)."""
        with contextlib.suppress(Exception):
            self.keys.end_save(self.mesh, self.checkpoint_id)

    @property
    def committed(self) -> bool:
        """True once the ledger accepted the commit."""
        return self.committed_at_monotonic is not None
