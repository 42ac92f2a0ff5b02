"""The mesh's keys and commit ledger over HTTP: a :class:`~superfactory.mesh.keyring.KeyProvider` that calls the
control plane's ``POST /v1/kms/jobs/{id}`` (live/services/keys.py) instead of reading a keyring file.

A job restored at another site therefore finds its KEKs and its mesh's commit record without any key file being
copied between sites: every wrap/unwrap and every ledger operation runs on the control plane, authorised by the
agent's factory token and the job's *current* fencing token. A superseded incarnation gets
:class:`~superfactory.mesh.errors.StaleFencingTokenError` on every call (the job exits "fenced").

The agent hands the job ``SUPERFACTORY_KMS_URL`` and ``SUPERFACTORY_KMS_TOKEN`` (:func:`kms_env`); the job
builds the provider with :func:`provider_from_env`. Calls that get no answer (the control plane restarting) are
retried for ``retry_s`` (``on_wait`` is told, so the job can show it is alive);
a ``commit_save`` whose answer was lost is recognised on retry from the commit record.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from superfactory.agent.runtime import Assignment
from superfactory.mesh.errors import (
    KeyDestroyedError,
    KeyringError,
    LeaseLostError,
    StaleFencingTokenError,
    WrongKeyError,
)
from superfactory.mesh.keyring import KeyInfo, KeyProvider
from superfactory.mesh.ledger import CommitRecord, Lease, LeaseState

__all__ = ["HttpKeyProvider", "kms_env", "provider_from_env"]

URL_ENV, TOKEN_ENV = "SUPERFACTORY_KMS_URL", "SUPERFACTORY_KMS_TOKEN"


def kms_env(server: str, token: str) -> dict[str, str]:
    """The variables that make a job use the control plane's keys (see :func:`provider_from_env`)."""
    return {URL_ENV: server, TOKEN_ENV: token}


def provider_from_env(assignment: Assignment, env: dict[str, str] | None = None,
                      on_wait: Callable[[str], None] | None = None) -> HttpKeyProvider | None:
    """The provider for ``assignment`` when its agent set the KMS variables; None means the local keyring.
    ``on_wait(why)`` is called while a call is retried (the job reports ``waiting`` so it is not taken as hung)."""
    env = dict(os.environ) if env is None else env
    url, token = env.get(URL_ENV), env.get(TOKEN_ENV)
    if not url or not token:
        return None
    return HttpKeyProvider(url, token, int(assignment.job_id), assignment.fencing_token, on_wait=on_wait)


class HttpKeyProvider(KeyProvider):
    """KEKs and the commit ledger of job ``job_id``, held by the control plane at ``base_url``."""

    def __init__(self, base_url: str, token: str, job_id: int, fencing_token: int, *, timeout_s: float = 10.0,
                 retry_s: float = 60.0, http: httpx.Client | None = None,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.job_id, self.job_token, self.retry_s, self.on_wait = job_id, fencing_token, retry_s, on_wait
        self._http = http if http is not None else httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._headers = {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, op: str, **args: Any) -> Any:
        body = {"fencing_token": self.job_token, "op": op, "args": args}
        deadline = time.monotonic() + self.retry_s
        delay = 0.1
        while True:
            try:
                resp = self._http.post(f"/v1/kms/jobs/{self.job_id}", json=body, headers=self._headers)
            except httpx.HTTPError as exc:
                problem = f"{exc.__class__.__name__}: {exc}"
            else:
                if resp.status_code < 400:
                    return resp.json()["result"]
                try:
                    err = resp.json().get("error", {})
                    code, msg = str(err.get("code", "error")), str(err.get("message", resp.text))
                except ValueError:
                    code, msg = "error", resp.text[:300]
                if resp.status_code < 500 and resp.status_code != 429:
                    raise _error(resp.status_code, code, f"control plane KMS, job {self.job_id}, {op}: {msg}")
                problem = f"{resp.status_code} {code}: {msg}"
            if time.monotonic() + delay > deadline:
                raise KeyringError(f"control plane KMS unreachable for {self.retry_s:.0f} s ({op} of job "
                                   f"{self.job_id}): {problem}")
            if self.on_wait is not None:
                self.on_wait(f"control plane KMS: {problem}")
            time.sleep(delay)
            delay = min(2.0, delay * 2)

    # -- KeyProvider ---------------------------------------------------------------------------------------
    def current_key_id(self, max_age_s: float | None = None) -> tuple[str, bool]:
        r = self._call("current_key_id", max_age_s=max_age_s)
        return str(r["key_id"]), bool(r["rotated"])

    def wrap(self, key_id: str, data_key: bytes) -> bytes:
        return base64.b64decode(self._call("wrap", key_id=key_id, data_key_b64=base64.b64encode(data_key).decode()))

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        return base64.b64decode(self._call("unwrap", key_id=key_id, wrapped_b64=base64.b64encode(wrapped).decode()))

    def rotate(self) -> str:
        return str(self._call("rotate"))

    def destroy(self, key_id: str) -> None:
        self._call("destroy", key_id=key_id)

    def keys(self) -> list[KeyInfo]:
        return [KeyInfo(**k) for k in self._call("keys")]

    # -- CommitLedger --------------------------------------------------------------------------------------
    def commit_record(self, mesh: str) -> CommitRecord | None:
        r = self._call("commit_record", mesh=mesh)
        return None if r is None else CommitRecord(**r)

    def fencing_token(self, mesh: str) -> int | None:
        r = self._call("fencing_token", mesh=mesh)
        return None if r is None else int(r)

    def fence(self, mesh: str, token: int) -> None:
        self._call("fence", mesh=mesh, token=token)

    def begin_save(self, lease: Lease) -> None:
        self._call("begin_save", mesh=lease.mesh, lease=lease.to_dict())

    def renew_lease(self, mesh: str, checkpoint_id: str, expires_at_unix_s: float) -> bool:
        return bool(self._call("renew_lease", mesh=mesh, checkpoint_id=checkpoint_id,
                               expires_at_unix_s=expires_at_unix_s))

    def check_lease(self, mesh: str, checkpoint_id: str, fencing_token: int | None) -> None:
        self._call("check_lease", mesh=mesh, checkpoint_id=checkpoint_id, token=fencing_token)

    def commit_save(self, mesh: str, checkpoint_id: str, step: int, fencing_token: int | None) -> CommitRecord:
        try:
            return CommitRecord(**self._call("commit_save", mesh=mesh, checkpoint_id=checkpoint_id, step=step,
                                             token=fencing_token))
        except LeaseLostError:
            record = self.commit_record(mesh)  # an earlier attempt committed and its answer was lost?
            if record is not None and record.checkpoint_id == checkpoint_id:
                return record
            raise

    def end_save(self, mesh: str, checkpoint_id: str) -> None:
        self._call("end_save", mesh=mesh, checkpoint_id=checkpoint_id)

    def leases(self, mesh: str) -> list[Lease]:
        return [Lease.from_dict(d) for d in self._call("leases", mesh=mesh)]

    def revoke_lease(self, mesh: str, checkpoint_id: str, now_unix_s: float) -> LeaseState:
        return LeaseState(**self._call("revoke_lease", mesh=mesh, checkpoint_id=checkpoint_id,
                                       now_unix_s=now_unix_s))

    def retire(self, mesh: str, checkpoint_ids: list[str], successor: tuple[int, str] | None) -> None:
        self._call("retire", mesh=mesh, checkpoint_ids=checkpoint_ids,
                   successor=None if successor is None else list(successor))


def _error(status: int, code: str, message: str) -> Exception:
    """The mesh exception for a KMS refusal."""
    if code == "stale_fencing_token":
        return StaleFencingTokenError(message)
    if code == "lease_lost":
        return LeaseLostError(message)
    if code == "key_destroyed":
        return KeyDestroyedError(message)
    if code == "wrong_key":
        return WrongKeyError(message)
    return KeyringError(f"{message} ({status} {code})")
