"""FastAPI dependencies: the services of this app and the authenticated device."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tidings.core import limitkeys
from tidings.errors import Unauthorized
from tidings.services.context import Principal
from tidings.services.registry import Services

# The dependencies are coroutines although they never wait: FastAPI runs a plain
# function dependency in its thread pool, a thread hop on every request for nothing.


async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <access token>'")
    return token.strip()


bearer_scheme = HTTPBearer(auto_error=False, description="an access token (1 hour)")
"""Declares the bearer scheme in the OpenAPI; ``bearer_token`` still reads the header,
so a missing or malformed one is answered with our ``401`` body, not FastAPI's 403."""


async def principal(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    return await svc.auth.authenticate(token)


async def client_address(request: Request) -> str:
    """The client's address as the per-address limits count it (``core.limitkeys``)."""
    peer = request.client.host if request.client is not None else None
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    return limitkeys.client_address(peer, forwarded, request.app.state.trusted_proxies)


Svc = Annotated[Services, Depends(services)]
ClientAddress = Annotated[str, Depends(client_address)]
Me = Annotated[Principal, Depends(principal)]
