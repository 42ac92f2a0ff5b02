"""API tokens and the principals they stand for.

A token is ``sft_<id>.<secret>``: ``id`` finds the row, and only ``sha256(secret)`` is stored, compared with
:func:`hmac.compare_digest` (constant time). Roles: ``admin`` (everything), ``tenant`` (its own jobs),
``agent`` (the agent routes of one factory). Verified tokens are cached for ``CACHE_S`` seconds, so a revoked
token stops working within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from superfactory.live.errors import ApiError
from superfactory.live.store import tables as t

ROLES = ("admin", "tenant", "agent")
CACHE_S = 5.0
_cache: dict[str, tuple[float, str, Principal]] = {}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``role`` plus the tenant or factory the token is bound to."""

    token_id: str
    role: str
    tenant_id: str | None = None
    factory_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mint_token(conn: sa.Connection, role: str, now_unix_s: float, tenant_id: str | None = None,
               factory_id: str | None = None) -> str:
    """Create a token and return it in full (the only time it is ever visible)."""
    if role not in ROLES:
        raise ApiError(422, "invalid_request", f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    conn.execute(t.tokens.insert().values(id=token_id, secret_sha256=_digest(secret), role=role, tenant_id=tenant_id,
                                          factory_id=factory_id, created_at_unix_s=now_unix_s))
    return f"sft_{token_id}.{secret}"


def authenticate(engine: sa.Engine, authorization: str | None) -> Principal:
    """The principal of an ``Authorization: Bearer <token>`` header.

    Raises:
        ApiError: 401 ``unauthenticated`` for a missing, malformed, unknown or revoked token (one message for
            all, so a caller learns nothing about which tokens exist).
    """
    if not authorization:
        raise ApiError(401, "unauthenticated", "missing 'Authorization: Bearer <token>' header; "
                       "`superfactory serve` wrote the admin token to its config file")
    scheme, _, token = authorization.partition(" ")
    bad = ApiError(401, "unauthenticated", "invalid or revoked token")
    if scheme.lower() != "bearer" or not token.startswith("sft_") or "." not in token:
        raise bad
    token_id, _, secret = token[4:].partition(".")
    digest = _digest(secret)
    hit = _cache.get(token_id)
    if hit is not None and hit[0] > time.monotonic():
        if hmac.compare_digest(hit[1], digest):
            return hit[2]
        raise bad
    with engine.connect() as conn:
        row = conn.execute(sa.select(t.tokens).where(t.tokens.c.id == token_id)).first()
    if row is None or row.revoked:
        hmac.compare_digest(digest, digest)  # same work whether or not the id exists
        raise bad
    if not hmac.compare_digest(row.secret_sha256, digest):
        raise bad
    principal = Principal(token_id, row.role, row.tenant_id, row.factory_id)
    _cache[token_id] = (time.monotonic() + CACHE_S, row.secret_sha256, principal)
    return principal


def forget_cached(token_id: str | None = None) -> None:
    """Drop cached verifications (all, or one token's), e.g. after a revocation."""
    if token_id is None:
        _cache.clear()
    else:
        _cache.pop(token_id, None)


def require_role(p: Principal, *roles: str) -> None:
    if p.role not in roles:
        raise ApiError(403, "wrong_role", f"this route needs a {' or '.join(roles)} token; yours is a {p.role} token")


def bootstrap_admin(engine: sa.Engine, now_unix_s: float) -> str | None:
    """Mint the first admin token if the store has none; returns it (None when an admin token exists)."""
    with engine.begin() as conn:
        exists = conn.execute(sa.select(t.tokens.c.id).where(t.tokens.c.role == "admin",
                                                             t.tokens.c.revoked.is_(False))).first()
        if exists is not None:
            return None
        return mint_token(conn, "admin", now_unix_s)
