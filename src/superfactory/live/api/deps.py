"""Request dependencies: the shared :class:`~superfactory.live.context.Live` and the caller's principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from superfactory.live.api.schemas import ErrorBody
from superfactory.live.context import Live
from superfactory.live.services.auth import Principal, authenticate, require_role

bearer = HTTPBearer(auto_error=False, description="`sft_<id>.<secret>`: an admin, tenant or agent token")


# The dependencies are ``async``: they never block for long (a token is checked against the store only on a
# cache miss), and a sync dependency would cost a thread-pool hop per request.
async def get_live(request: Request) -> Live:
    live: Live = request.app.state.live
    return live


async def get_principal(request: Request,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    header = f"{creds.scheme} {creds.credentials}" if creds is not None else request.headers.get("authorization")
    return authenticate(request.app.state.live.engine, header)


async def get_admin(p: Annotated[Principal, Depends(get_principal)]) -> Principal:
    require_role(p, "admin")
    return p


async def get_agent(p: Annotated[Principal, Depends(get_principal)]) -> Principal:
    require_role(p, "agent")
    return p


LiveDep = Annotated[Live, Depends(get_live)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]
AgentDep = Annotated[Principal, Depends(get_agent)]

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": why} for code, why in (
        (400, "bad request"), (401, "missing or invalid token"), (403, "wrong role or tenant"),
        (404, "not found (or not yours)"), (409, "conflict with the current state"), (422, "invalid input"))
}

__all__ = ["ERRORS", "AdminDep", "AgentDep", "LiveDep", "PrincipalDep"]
