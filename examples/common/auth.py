"""Bearer-token dependencies shared by the admin server and the customer services.

:func:`claims_of` verifies the request's ``Authorization: Bearer`` access token once per
request (the result is kept on ``request.state``) and answers 401 — with
``WWW-Authenticate: Bearer`` — when it is missing, malformed, expired or signed by a key
that is no longer configured. :func:`require_roles` adds the role check (403).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from examples.common.config import ExampleConfig
from examples.common.errors import forbidden, unauthorized
from examples.common.tokens import Claims, TokenError, verify
from insightdb import actor_context

__all__ = ["act_as_signed_in_user", "bearer_scheme", "claims_of", "current_claims", "require_roles"]

bearer_scheme = HTTPBearer(auto_error=False, description="An access token from /auth/token")


def claims_of(request: Request) -> Claims:
    """Verify the request's access token (once) and return its claims.

    Raises:
        HTTPException: 401 when there is no valid access token.
    """
    cached = getattr(request.state, "claims", None)
    if isinstance(cached, Claims):
        return cached
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("a bearer access token is required")
    config: ExampleConfig = request.app.state.example_config
    try:
        claims = verify(config, token.strip())
    except TokenError as exc:
        raise unauthorized(str(exc)) from None
    request.state.claims = claims
    return claims


async def current_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Claims:
    """The dependency form of :func:`claims_of` (it also puts the scheme in OpenAPI)."""
    return claims_of(request)


async def act_as_signed_in_user(
    claims: Annotated[Claims, Depends(current_claims)],
) -> AsyncIterator[None]:
    """A dependency under which audited writes name the signed-in user as their actor."""
    async with actor_context(f"user:{claims.sub}"):
        yield


def require_roles(*roles: str, staff: bool = False) -> Callable[..., Coroutine[Any, Any, Claims]]:
    """A dependency that admits only ``roles`` (403 otherwise).

    Args:
        roles: The roles admitted.
        staff: Admit platform staff only (tokens without a tenant).
    """

    async def check(claims: Annotated[Claims, Depends(current_claims)]) -> Claims:
        if staff and claims.tenant is not None:
            raise forbidden("platform staff only")
        if claims.role not in roles:
            raise forbidden(f"needs one of the roles: {', '.join(roles)}")
        return claims

    return check
