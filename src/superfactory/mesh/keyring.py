"""Key-encryption keys (KEKs): a small provider interface, and the default local keyring file.

A checkpoint's data key is stored only wrapped by a KEK (AES key wrap, RFC 3394, which carries its own
integrity
check — unwrapping with the wrong key fails instead of returning garbage). The provider interface is the
shape a
cloud KMS has: ``wrap``/``unwrap`` by key id, so KEK material never has to leave a KMS.

:class:`LocalKeyring` keeps KEKs in one JSON file that must be private (mode 0600; it refuses anything
looser).
Rotation adds a new current KEK and keeps the old ones, so old checkpoints stay restorable. Destroying a KEK
erases its material from the file — every checkpoint wrapped by it becomes unrecoverable (crypto-shredding) —
and keeps a tombstone so the error says "destroyed" rather than "unknown". The file is rewritten atomically
(temp file, fsync, rename); note that on copy-on-write or journaling file systems old blocks may linger on the
device, so shredding against a forensic adversary needs a KMS or HSM provider.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import fcntl
import json
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from superfactory.mesh.errors import KeyDestroyedError, KeyringError, WrongKeyError
from superfactory.mesh.ledger import CommitLedger, FileLedger

__all__ = ["KeyInfo", "KeyProvider", "LocalKeyring"]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Public facts about a KEK (never its material)."""

    key_id: str
    created_at_unix_s: float
    destroyed: bool
    current: bool


class KeyProvider(CommitLedger):
    """Where KEKs live, and the mesh's commit ledger beside them (see :mod:`superfactory.mesh.ledger`).

    Implement this for a KMS or a control plane: wrap/unwrap by id, rotate, destroy, list, plus the ledger's
    atomic commit-record and lease operations (so every site sees the same record).
    """

    @abc.abstractmethod
    def current_key_id(self, max_age_s: float | None = None) -> tuple[str, bool]:
        """The KEK new checkpoints use; rotates first if it is older than ``max_age_s``.

        Returns ``(key_id, rotated)``; creates the first key when there is none.
        """

    @abc.abstractmethod
    def wrap(self, key_id: str, data_key: bytes) -> bytes:
        """The data key wrapped by KEK ``key_id``."""

    @abc.abstractmethod
    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The data key; KeyDestroyedError, KeyringError (unknown id) or WrongKeyError on failure."""

    @abc.abstractmethod
    def rotate(self) -> str:
        """Create a new current KEK and return its id; older KEKs stay usable for unwrapping."""

    @abc.abstractmethod
    def destroy(self, key_id: str) -> None:
        """Irrevocably erase KEK ``key_id`` (crypto-shredding)."""

    @abc.abstractmethod
    def keys(self) -> list[KeyInfo]:
        """All KEKs, oldest first."""


class LocalKeyring(FileLedger, KeyProvider):
    """KEKs and the commit ledger in a private JSON file (created with mode 0600; looser permissions are
    refused). Every change is a locked read-modify-write with an atomic, fsync-ed rename."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- file handling -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load(self) -> dict[str, object]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {"format": 1, "current": None, "keys": []}
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise KeyringError(
                f"keyring {self.path} has permissions {stat.S_IMODE(st.st_mode):04o}; it holds "
                f"secret keys and "
                f"must be private. Run: chmod 600 {self.path}"
            )
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyringError(f"keyring {self.path} is unreadable or not valid JSON ({exc}).") from None
        if not isinstance(data, dict) or data.get("format") != 1 or not isinstance(data.get("keys"), list):
            raise KeyringError(f"keyring {self.path} is not a superfactory keyring (format 1).")
        return data

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[dict[str, Any]]:
        if not write:
            yield self._load()  # writers rename atomically: an unlocked read sees one whole version
            return
        with self._locked():
            data = self._load()
            yield data
            self._store(data)

    def _store(self, data: dict[str, object]) -> None:
        tmp = self.path.with_name(f"{self.path.name}.tmp-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @staticmethod
    def _entries(data: dict[str, object]) -> list[dict[str, object]]:
        keys = data["keys"]
        assert isinstance(keys, list)
        return keys

    def _new_key(self, data: dict[str, object]) -> str:
        key_id = f"kek-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
        self._entries(data).append(
            {
                "id": key_id,
                "created_at_unix_s": time.time(),
                "material_b64": base64.b64encode(secrets.token_bytes(32)).decode(),
                "destroyed": False,
            }
        )
        data["current"] = key_id
        return key_id

    def _material(self, key_id: str) -> bytes:
        data = self._load()
        for entry in self._entries(data):
            if entry["id"] == key_id:
                if entry.get("destroyed"):
                    raise KeyDestroyedError(
                        f"key {key_id} was destroyed (crypto-shredded); checkpoints wrapped by it cannot be "
                        f"restored by anyone. Restore an older or newer checkpoint instead."
                    )
                return base64.b64decode(str(entry["material_b64"]))
        raise KeyringError(
            f"key {key_id} is not in keyring {self.path}. Point the mesh config's keyring.path at "
            f"the keyring "
            f"that wrote this checkpoint."
        )

    # -- KeyProvider ---------------------------------------------------------------------------------------
    def current_key_id(self, max_age_s: float | None = None) -> tuple[str, bool]:
        with self._locked():
            data = self._load()
            current = data.get("current")
            entry = next((e for e in self._entries(data) if e["id"] == current), None)
            age = None if entry is None else time.time() - float(str(entry["created_at_unix_s"]))
            if (
                entry is None
                or entry.get("destroyed")
                or (max_age_s is not None and age is not None and age > max_age_s)
            ):
                key_id = self._new_key(data)
                self._store(data)
                return key_id, entry is not None
            return str(current), False

    def wrap(self, key_id: str, data_key: bytes) -> bytes:
        return aes_key_wrap(self._material(key_id), data_key)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._material(key_id), wrapped)
        except InvalidUnwrap:
            raise WrongKeyError(
                f"key {key_id} in {self.path} does not unwrap this checkpoint's data key: the "
                f"keyring holds a "
                f"different key under that id, or the wrapped key was tampered with."
            ) from None

    def rotate(self) -> str:
        with self._locked():
            data = self._load()
            key_id = self._new_key(data)
            self._store(data)
            return key_id

    def destroy(self, key_id: str) -> None:
        with self._locked():
            data = self._load()
            for entry in self._entries(data):
                if entry["id"] == key_id:
                    entry["material_b64"] = None
                    entry["destroyed"] = True
                    entry["destroyed_at_unix_s"] = time.time()
                    if data.get("current") == key_id:
                        data["current"] = None
                    self._store(data)
                    return
        raise KeyringError(f"no key {key_id} in keyring {self.path}; `superfactory ckpt ls --keys` lists them.")

    def keys(self) -> list[KeyInfo]:
        data = self._load()
        return [
            KeyInfo(
                str(e["id"]),
                float(str(e["created_at_unix_s"])),
                bool(e.get("destroyed")),
                e["id"] == data.get("current"),
            )
            for e in self._entries(data)
        ]
