"""Per-job checkpoint keys and the mesh's commit ledger, served to agents (the control plane as a KMS).

A job restored at another site needs the KEKs that wrapped its checkpoints' data keys and the mesh's commit
record (rollback detection, fencing, save leases). Neither is ever copied between sites: the control plane keeps
one keyring document per job — the same document :class:`~superfactory.mesh.keyring.LocalKeyring` keeps in a
file, KEK material and ledger alike — and agents call :func:`call` (``POST /v1/kms/jobs/{id}``) for every
``KeyProvider`` / ``CommitLedger`` operation. KEK material never leaves the server: wrap and unwrap run here.

Access: the caller is the agent of the factory the job is assigned to (held: assigned, running or stopping) and
presents the job's *current* fencing token; any other caller gets ``409 stale_fencing_token`` (an incarnation
the control plane gave up on cannot read keys or touch the ledger), tenant tokens ``403``.

At rest the document is encrypted with AES-GCM under the server's master key (:func:`master_key`), with the job
id and tenant as associated data, so a row copied onto another job does not decrypt. Every change is a
compare-and-swap on the row's ``version`` (retried on a lost race), which works on SQLite and PostgreSQL and with
several API workers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from superfactory.live.context import Live
from superfactory.live.errors import ApiError, not_found
from superfactory.live.services.auth import Principal, require_role
from superfactory.live.services.jobs_common import HOLDING
from superfactory.live.store import tables as t
from superfactory.mesh.errors import (
    KeyDestroyedError,
    KeyringError,
    LeaseLostError,
    StaleFencingTokenError,
    WrongKeyError,
)
from superfactory.mesh.keyring import KeyInfo, KeyProvider
from superfactory.mesh.ledger import FileLedger, Lease

MASTER_KEY_ENV = "SUPERFACTORY_MASTER_KEY"  # base64 of 32 bytes
MASTER_KEY_FILE_ENV = "SUPERFACTORY_MASTER_KEY_FILE"
OPS = ("current_key_id", "wrap", "unwrap", "rotate", "destroy", "keys", "commit_record", "fencing_token",
       "fence", "begin_save", "renew_lease", "check_lease", "commit_save", "end_save", "leases",
       "revoke_lease", "retire")


class _Conflict(Exception):
    """Another caller changed the document between our read and our write."""


def _master_key_path(live: Live) -> Path | None:
    if os.environ.get(MASTER_KEY_FILE_ENV):
        return Path(os.environ[MASTER_KEY_FILE_ENV])
    url = live.engine.url
    if url.get_backend_name() == "sqlite":
        db = url.database
        return None if db in (None, "", ":memory:") else Path(db).with_name("master.key")
    return Path(".superfactory") / "master.key"


def master_key(live: Live) -> bytes:
    """The server's 256-bit master key: ``$SUPERFACTORY_MASTER_KEY`` (base64), else the 0600 file
    ``$SUPERFACTORY_MASTER_KEY_FILE``, else ``master.key`` beside the SQLite store (created on first use). An
    in-memory store gets an ephemeral key (its keyrings die with it). A looser file mode is refused."""
    cached = live.extras.get("master_key")
    if isinstance(cached, bytes):
        return cached
    if os.environ.get(MASTER_KEY_ENV):
        try:
            key = base64.b64decode(os.environ[MASTER_KEY_ENV], validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ApiError(500, "bad_master_key", f"${MASTER_KEY_ENV} must be the base64 of 32 bytes")
    elif (path := _master_key_path(live)) is None:
        key = secrets.token_bytes(32)
    else:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, base64.b64encode(secrets.token_bytes(32)) + b"\n")
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise ApiError(500, "bad_master_key", f"master key {path} must be private: chmod 600 {path}")
        key = base64.b64decode(path.read_text(encoding="ascii").strip())
        if len(key) != 32:
            raise ApiError(500, "bad_master_key", f"master key {path} is not the base64 of 32 bytes")
    live.extras["master_key"] = key
    return key


class StoreKeyring(FileLedger, KeyProvider):
    """The keyring document of one job, kept encrypted in the store (see the module docstring)."""

    def __init__(self, live: Live, job_id: int, tenant_id: str) -> None:
        self.live, self.job_id, self.tenant_id = live, job_id, tenant_id
        self._aead = AESGCM(master_key(live))
        self._aad = f"superfactory-job-keyring:{tenant_id}:{job_id}".encode()

    # -- the document --------------------------------------------------------------------------------------
    def _read(self) -> tuple[int | None, dict[str, Any]]:
        with self.live.engine.connect() as conn:
            row = conn.execute(sa.select(t.job_keyrings).where(t.job_keyrings.c.job_id == self.job_id)).first()
        if row is None:
            return None, {"format": 1, "current": None, "keys": []}
        if row.tenant_id != self.tenant_id:
            raise KeyringError(f"the keyring of job {self.job_id} belongs to another tenant")
        try:
            plain = self._aead.decrypt(bytes(row.nonce), bytes(row.ciphertext), self._aad)
        except Exception:  # InvalidTag: wrong master key, tampered row, or a row of another job
            raise KeyringError(f"the keyring of job {self.job_id} does not decrypt under this server's master "
                               "key (wrong key, or the row was altered)") from None
        return int(row.version), json.loads(plain)

    def _write(self, version: int | None, doc: dict[str, Any]) -> None:
        nonce = secrets.token_bytes(12)
        ct = self._aead.encrypt(nonce, json.dumps(doc, sort_keys=True).encode(), self._aad)
        now = time.time()
        with self.live.engine.begin() as conn:
            if version is None:
                try:
                    conn.execute(t.job_keyrings.insert().values(job_id=self.job_id, tenant_id=self.tenant_id,
                                                                version=1, nonce=nonce, ciphertext=ct,
                                                                updated_at_unix_s=now))
                except sa.exc.IntegrityError:
                    raise _Conflict() from None
                return
            res = conn.execute(t.job_keyrings.update().where(t.job_keyrings.c.job_id == self.job_id,
                                                             t.job_keyrings.c.version == version)
                               .values(version=version + 1, nonce=nonce, ciphertext=ct, updated_at_unix_s=now))
            if res.rowcount != 1:
                raise _Conflict()

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[dict[str, Any]]:
        version, doc = self._read()
        yield doc
        if write:
            self._write(version, doc)

    def _mutate(self, fn: Callable[[dict[str, Any]], Any]) -> Any:
        for _ in range(50):
            try:
                with self._transaction(True) as doc:
                    return fn(doc)
            except _Conflict:
                time.sleep(0.005 + secrets.randbelow(20) / 1000)
        raise ApiError(503, "kms_busy", f"the keyring of job {self.job_id} is contended; retry")

    # -- KeyProvider ---------------------------------------------------------------------------------------
    @staticmethod
    def _new_key(doc: dict[str, Any]) -> str:
        key_id = f"kek-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"
        doc["keys"].append({"id": key_id, "created_at_unix_s": time.time(), "destroyed": False,
                            "material_b64": base64.b64encode(secrets.token_bytes(32)).decode()})
        doc["current"] = key_id
        return key_id

    def _material(self, key_id: str) -> bytes:
        _, doc = self._read()
        for e in doc["keys"]:
            if e["id"] == key_id:
                if e.get("destroyed"):
                    raise KeyDestroyedError(f"key {key_id} was destroyed (crypto-shredded); checkpoints wrapped "
                                            "by it cannot be restored by anyone")
                return base64.b64decode(e["material_b64"])
        raise KeyringError(f"key {key_id} is not in the control plane's keyring of job {self.job_id}")

    def current_key_id(self, max_age_s: float | None = None) -> tuple[str, bool]:
        def fn(doc: dict[str, Any]) -> tuple[str, bool]:
            entry = next((e for e in doc["keys"] if e["id"] == doc.get("current")), None)
            old = entry is not None and max_age_s is not None and \
                time.time() - float(entry["created_at_unix_s"]) > max_age_s
            if entry is None or entry.get("destroyed") or old:
                return self._new_key(doc), entry is not None
            return str(entry["id"]), False

        result: tuple[str, bool] = self._mutate(fn)
        return result

    def wrap(self, key_id: str, data_key: bytes) -> bytes:
        return aes_key_wrap(self._material(key_id), data_key)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._material(key_id), wrapped)
        except InvalidUnwrap:
            raise WrongKeyError(f"key {key_id} does not unwrap this data key (tampered)") from None

    def rotate(self) -> str:
        return str(self._mutate(self._new_key))

    def destroy(self, key_id: str) -> None:
        def fn(doc: dict[str, Any]) -> bool:
            for e in doc["keys"]:
                if e["id"] == key_id:
                    e.update(material_b64=None, destroyed=True, destroyed_at_unix_s=time.time())
                    if doc.get("current") == key_id:
                        doc["current"] = None
                    return True
            return False

        if not self._mutate(fn):
            raise KeyringError(f"no key {key_id} in the keyring of job {self.job_id}")

    def keys(self) -> list[KeyInfo]:
        _, doc = self._read()
        return [KeyInfo(str(e["id"]), float(e["created_at_unix_s"]), bool(e.get("destroyed")),
                        e["id"] == doc.get("current")) for e in doc["keys"]]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _dispatch(kr: StoreKeyring, op: str, a: dict[str, Any]) -> Any:
    """Run one KeyProvider/CommitLedger operation with JSON arguments; returns a JSON-able result."""
    if op == "current_key_id":
        key_id, rotated = kr.current_key_id(a.get("max_age_s"))
        return {"key_id": key_id, "rotated": rotated}
    if op == "wrap":
        return _b64(kr.wrap(str(a["key_id"]), base64.b64decode(a["data_key_b64"])))
    if op == "unwrap":
        return _b64(kr.unwrap(str(a["key_id"]), base64.b64decode(a["wrapped_b64"])))
    if op == "rotate":
        return kr.rotate()
    if op == "destroy":
        return kr.destroy(str(a["key_id"]))
    if op == "keys":
        infos = kr.keys()
        return [asdict(k) for k in infos]
    mesh = str(a["mesh"])
    if op == "commit_record":
        rec = kr.commit_record(mesh)
        return None if rec is None else asdict(rec)
    if op == "fencing_token":
        return kr.fencing_token(mesh)
    if op == "fence":
        return kr.fence(mesh, int(a["token"]))
    if op == "begin_save":
        return kr.begin_save(Lease.from_dict(a["lease"]))
    if op == "renew_lease":
        return kr.renew_lease(mesh, str(a["checkpoint_id"]), float(a["expires_at_unix_s"]))
    if op == "check_lease":
        return kr.check_lease(mesh, str(a["checkpoint_id"]), a.get("token"))
    if op == "commit_save":
        return asdict(kr.commit_save(mesh, str(a["checkpoint_id"]), int(a["step"]), a.get("token")))
    if op == "end_save":
        return kr.end_save(mesh, str(a["checkpoint_id"]))
    if op == "leases":
        return [lease.to_dict() for lease in kr.leases(mesh)]
    if op == "revoke_lease":
        return asdict(kr.revoke_lease(mesh, str(a["checkpoint_id"]), float(a["now_unix_s"])))
    if op == "retire":
        succ = a.get("successor")
        return kr.retire(mesh, [str(c) for c in a["checkpoint_ids"]],
                         None if succ is None else (int(succ[0]), str(succ[1])))
    raise ApiError(422, "invalid_request", f"op: unknown operation {op!r}; one of {', '.join(OPS)}")


def call(live: Live, p: Principal, job_id: int, fencing_token: int, op: str, args: dict[str, Any]) -> Any:
    """Authorise the caller for job ``job_id`` under ``fencing_token``, then run ``op`` on its keyring.

    Mesh refusals come back as API errors the agent's provider turns into the mesh's exceptions again:
    ``409 stale_fencing_token`` / ``409 lease_lost`` / ``410 key_destroyed`` / ``422 wrong_key`` /
    ``404 key_not_found``.
    """
    require_role(p, "agent")
    with live.engine.connect() as conn:
        job = conn.execute(sa.select(t.jobs.c.tenant_id, t.jobs.c.factory_id, t.jobs.c.state,
                                     t.jobs.c.fencing_token).where(t.jobs.c.id == job_id)).first()
    if job is None:
        raise not_found("job", job_id)
    if job.factory_id != p.factory_id or job.state not in HOLDING or fencing_token != job.fencing_token:
        raise ApiError(409, "stale_fencing_token",
                       f"job {job_id}: fencing token {fencing_token} at factory {p.factory_id} is not the job's "
                       f"current placement; this incarnation may not use the job's keys")
    kr = StoreKeyring(live, job_id, str(job.tenant_id))
    try:
        return _dispatch(kr, op, args)
    except StaleFencingTokenError as exc:
        raise ApiError(409, "stale_fencing_token", str(exc)) from None
    except LeaseLostError as exc:
        raise ApiError(409, "lease_lost", str(exc)) from None
    except KeyDestroyedError as exc:
        raise ApiError(410, "key_destroyed", str(exc)) from None
    except WrongKeyError as exc:
        raise ApiError(422, "wrong_key", str(exc)) from None
    except KeyringError as exc:
        raise ApiError(404, "key_not_found", str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(422, "invalid_request", f"args: bad or missing argument for {op} ({exc})") from None
