"""The commit ledger: the authoritative record of what a mesh committed, kept with the key material.

Targets are untrusted storage: any one of them can lose, corrupt, roll back or forge files. The ledger lives
behind the key provider instead (the local keyring file, or a KMS / control plane that serves every site) and
holds, per mesh:

* the **commit record** — the highest committed step and its checkpoint id, a sequence number bumped by every
  commit, and the highest fencing token presented. It only moves up (except when a checkpoint is deliberately
  shredded, see :meth:`CommitLedger.retire`). "Restore newest" refuses to return anything older than the
  record's checkpoint (rollback detection); a save carrying a lower fencing token than the record's is refused.
* **save leases** — a save registers a lease before it writes anything, renews it while it writes, and turns
  it into a commit atomically. ``gc`` deletes an unfinished save's files only after revoking its lease (expired,
  or its owner process is gone), and a save whose lease was revoked fails instead of committing.

Protocol of one save (all ledger calls are atomic)::

    begin_save(lease)  ─▶ INTENT + fragments (renew_lease)  ─▶ check_lease ─▶ MANIFESTs ─▶ commit_save
      │ StaleFencingTokenError: nothing written                           │ LeaseLostError / StaleFencingTokenError:
      ▼                                                         ▼ nothing published      commit_save fails:
                                                                                         manifests retracted

The record carries an HMAC under a ledger key kept with the KEKs, so a record that was edited, corrupted or
copied from another keyring is detected (:class:`~superfactory.mesh.errors.KeyringError`).
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import hmac
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from superfactory.mesh.errors import KeyringError, LeaseLostError, StaleFencingTokenError

__all__ = ["CommitLedger", "CommitRecord", "FileLedger", "Lease", "LeaseOwner", "LeaseState"]


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """What a mesh has committed: the highest step and its id; ``sequence`` counts commits."""

    mesh: str
    step: int
    checkpoint_id: str
    sequence: int
    fencing_token: int | None
    updated_at_unix_s: float


def _proc_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks (Linux), or "" where unknown: tells reused pids apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


@dataclass(frozen=True, slots=True)
class LeaseOwner:
    """The process holding a lease: host name, pid and the pid's start time."""

    host: str
    pid: int
    started: str

    @classmethod
    def current(cls) -> LeaseOwner:
        """This process."""
        return cls(socket.gethostname(), os.getpid(), _proc_start(os.getpid()))

    def alive(self) -> bool | None:
        """True/False for a process on this host; None (unknown) for one on another host."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, owned by someone else
        return not (self.started and _proc_start(self.pid) not in ("", self.started))


@dataclass(frozen=True, slots=True)
class Lease:
    """A save in flight: checkpoint ``checkpoint_id`` of ``mesh`` at ``step``, held by ``owner`` until
    ``expires_at_unix_s`` (renewed while the save makes progress)."""

    mesh: str
    checkpoint_id: str
    step: int
    owner: LeaseOwner
    expires_at_unix_s: float
    fencing_token: int | None = None

    def revocable(self, now_unix_s: float) -> str | None:
        """Why gc may revoke this lease now (owner gone, or expired), or None while it is live."""
        if self.owner.alive() is False:
            return f"its owner process {self.owner.pid} on {self.owner.host} is gone"
        if now_unix_s > self.expires_at_unix_s:
            return f"it expired {now_unix_s - self.expires_at_unix_s:.1f} s ago (the save is paused or hung)"
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lease:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**d, "owner": LeaseOwner(**d["owner"])})


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What gc found when it asked to revoke a lease: ``held`` (live: keep the files), ``revoked`` or
    ``absent``; ``detail`` says why."""

    state: str
    detail: str = ""


class CommitLedger(abc.ABC):
    """The commit record and save leases of every mesh (see the module docstring). All calls are atomic."""

    @abc.abstractmethod
    def commit_record(self, mesh: str) -> CommitRecord | None:
        """The mesh's commit record, None before its first commit; KeyringError if it fails authentication."""

    @abc.abstractmethod
    def fencing_token(self, mesh: str) -> int | None:
        """The highest fencing token claimed for the mesh (its fence), None if none was."""

    @abc.abstractmethod
    def fence(self, mesh: str, token: int) -> None:
        """Claim fencing token ``token`` for the mesh: StaleFencingTokenError if a higher one was claimed already."""

    @abc.abstractmethod
    def begin_save(self, lease: Lease) -> None:
        """Register a save's lease (and claim its fencing token); StaleFencingTokenError if the token is stale."""

    @abc.abstractmethod
    def renew_lease(self, mesh: str, checkpoint_id: str, expires_at_unix_s: float) -> bool:
        """Extend a held lease; False when it is no longer held (revoked)."""

    @abc.abstractmethod
    def check_lease(self, mesh: str, checkpoint_id: str, fencing_token: int | None) -> None:
        """Before publishing manifests (read only): LeaseLostError if the lease was revoked,
        StaleFencingTokenError if the token is stale. :meth:`commit_save` checks both again, atomically."""

    @abc.abstractmethod
    def commit_save(self, mesh: str, checkpoint_id: str, step: int, fencing_token: int | None) -> CommitRecord:
        """Turn a held lease into a commit: raise the record to ``step`` if higher, bump the sequence, drop the
        lease. LeaseLostError / StaleFencingTokenError (and nothing changes) if the lease is gone or the token stale."""

    @abc.abstractmethod
    def end_save(self, mesh: str, checkpoint_id: str) -> None:
        """Drop a lease without committing (the save failed); no error if absent."""

    @abc.abstractmethod
    def leases(self, mesh: str) -> list[Lease]:
        """The mesh's leases."""

    @abc.abstractmethod
    def revoke_lease(self, mesh: str, checkpoint_id: str, now_unix_s: float) -> LeaseState:
        """For gc: revoke the lease if :meth:`Lease.revocable`; say whether it is held, revoked or absent."""

    @abc.abstractmethod
    def retire(self, mesh: str, checkpoint_ids: list[str], successor: tuple[int, str] | None) -> None:
        """Deliberately retire checkpoints (shred): if the record names one of them, lower it to ``successor``
        (step, id) — the highest checkpoint that survives — or clear it when none does."""


class FileLedger(CommitLedger):
    """The ledger kept inside a JSON document that a subclass loads and stores under a lock (the local
    keyring). Subclasses provide :meth:`_transaction`, yielding the document to read and change in place."""

    @abc.abstractmethod
    def _transaction(self, write: bool) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """The whole document, locked; stored back on exit when ``write``."""

    # -- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def _ledger_key(doc: dict[str, Any]) -> bytes:
        key = doc.get("ledger_key_hex")
        if not isinstance(key, str):
            key = os.urandom(32).hex()
            doc["ledger_key_hex"] = key
        return bytes.fromhex(key)

    @staticmethod
    def _book(doc: dict[str, Any], mesh: str) -> dict[str, Any]:
        meshes = doc.setdefault("ledger", {})
        return meshes.setdefault(mesh, {"record": None, "leases": {}, "fencing_token": None})

    def _record(self, doc: dict[str, Any], mesh: str) -> CommitRecord | None:
        raw = self._book(doc, mesh).get("record")
        if raw is None:
            return None
        body = {k: v for k, v in raw.items() if k != "mac"}
        mac = hmac.new(self._ledger_key(doc), json.dumps(body, sort_keys=True).encode(), hashlib.sha256)
        if not hmac.compare_digest(mac.hexdigest(), str(raw.get("mac"))) or body.get("mesh") != mesh:
            raise KeyringError(
                f"the commit record of mesh {mesh!r} in the keyring fails authentication (edited, corrupted or "
                f"copied from another keyring); rollback detection cannot be trusted. Restore the keyring from "
                f"its backup."
            )
        return CommitRecord(**body)

    def _store_record(self, doc: dict[str, Any], record: CommitRecord | None) -> None:
        if record is None:
            return
        body = asdict(record)
        mac = hmac.new(self._ledger_key(doc), json.dumps(body, sort_keys=True).encode(), hashlib.sha256)
        self._book(doc, record.mesh)["record"] = {**body, "mac": mac.hexdigest()}

    def _check_token(self, doc: dict[str, Any], mesh: str, token: int | None, claim: bool) -> None:
        book = self._book(doc, mesh)
        held = book.get("fencing_token")
        if token is None or held is None:
            if claim and token is not None:
                book["fencing_token"] = token
            return
        if token < held:
            raise StaleFencingTokenError(
                f"fencing token {token} is older than the mesh's fence {held} in the commit ledger (a newer "
                f"holder of this job exists)"
            )
        if claim:
            book["fencing_token"] = token

    def _held(self, doc: dict[str, Any], mesh: str, checkpoint_id: str) -> dict[str, Any]:
        lease = self._book(doc, mesh)["leases"].get(checkpoint_id)
        if lease is None:
            raise LeaseLostError(
                f"the save of {checkpoint_id} lost its lease (it was paused or hung past the lease and gc revoked "
                f"it, so its fragments may be gone). Nothing was committed; the previous checkpoint is untouched."
            )
        return dict(lease)

    def _mutate(self, fn: Callable[[dict[str, Any]], Any]) -> Any:
        with self._transaction(True) as doc:
            return fn(doc)

    # -- CommitLedger -------------------------------------------------------------------------------------
    def commit_record(self, mesh: str) -> CommitRecord | None:
        with self._transaction(False) as doc:
            return self._record(doc, mesh)

    def fencing_token(self, mesh: str) -> int | None:
        with self._transaction(False) as doc:
            token = self._book(doc, mesh).get("fencing_token")
            return None if token is None else int(token)

    def fence(self, mesh: str, token: int) -> None:
        self._mutate(lambda doc: self._check_token(doc, mesh, token, claim=True))

    def begin_save(self, lease: Lease) -> None:
        def fn(doc: dict[str, Any]) -> None:
            self._check_token(doc, lease.mesh, lease.fencing_token, claim=True)
            self._book(doc, lease.mesh)["leases"][lease.checkpoint_id] = lease.to_dict()

        self._mutate(fn)

    def renew_lease(self, mesh: str, checkpoint_id: str, expires_at_unix_s: float) -> bool:
        def fn(doc: dict[str, Any]) -> bool:
            leases = self._book(doc, mesh)["leases"]
            if checkpoint_id not in leases:
                return False
            leases[checkpoint_id]["expires_at_unix_s"] = expires_at_unix_s
            return True

        return bool(self._mutate(fn))

    def check_lease(self, mesh: str, checkpoint_id: str, fencing_token: int | None) -> None:
        with self._transaction(False) as doc:
            self._held(doc, mesh, checkpoint_id)
            self._check_token(doc, mesh, fencing_token, claim=False)

    def commit_save(self, mesh: str, checkpoint_id: str, step: int, fencing_token: int | None) -> CommitRecord:
        def fn(doc: dict[str, Any]) -> CommitRecord:
            self._held(doc, mesh, checkpoint_id)
            self._check_token(doc, mesh, fencing_token, claim=True)
            book = self._book(doc, mesh)
            old = self._record(doc, mesh)
            higher = old is None or step >= old.step
            record = CommitRecord(
                mesh,
                step if higher else old.step,  # type: ignore[union-attr]
                checkpoint_id if higher else old.checkpoint_id,  # type: ignore[union-attr]
                (old.sequence if old else 0) + 1,
                book.get("fencing_token"),
                time.time(),
            )
            self._store_record(doc, record)
            del book["leases"][checkpoint_id]
            return record

        result: CommitRecord = self._mutate(fn)
        return result

    def end_save(self, mesh: str, checkpoint_id: str) -> None:
        self._mutate(lambda doc: self._book(doc, mesh)["leases"].pop(checkpoint_id, None))

    def leases(self, mesh: str) -> list[Lease]:
        with self._transaction(False) as doc:
            return [Lease.from_dict(d) for d in self._book(doc, mesh)["leases"].values()]

    def revoke_lease(self, mesh: str, checkpoint_id: str, now_unix_s: float) -> LeaseState:
        def fn(doc: dict[str, Any]) -> LeaseState:
            leases = self._book(doc, mesh)["leases"]
            if checkpoint_id not in leases:
                return LeaseState("absent")
            lease = Lease.from_dict(leases[checkpoint_id])
            reason = lease.revocable(now_unix_s)
            if reason is None:
                return LeaseState("held", f"save in flight by process {lease.owner.pid} on {lease.owner.host}")
            del leases[checkpoint_id]
            return LeaseState("revoked", reason)

        result: LeaseState = self._mutate(fn)
        return result

    def retire(self, mesh: str, checkpoint_ids: list[str], successor: tuple[int, str] | None) -> None:
        def fn(doc: dict[str, Any]) -> None:
            old = self._record(doc, mesh)
            if old is None or old.checkpoint_id not in checkpoint_ids:
                return
            if successor is None:
                self._book(doc, mesh)["record"] = None
                return
            step, cid = successor
            self._store_record(doc, CommitRecord(mesh, step, cid, old.sequence + 1, old.fencing_token, time.time()))

        self._mutate(fn)
