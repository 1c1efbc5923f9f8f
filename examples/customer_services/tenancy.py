"""Where a request's tenant comes from: the verified ``tenant`` claim of its token.

:func:`tenant_of` is the resolver given to :func:`insightdb.fastapi.tenant_dependency`.
A tenant's user is scoped to the tenant of its token, and an ``X-Tenant-ID`` header that
names another tenant is refused with 403 — it is never a way to widen access. Platform
staff (tokens without a tenant) may name the tenant to act on with ``X-Tenant-ID`` in
``development`` only; elsewhere they get 401, as a request without a token does.
"""

from __future__ import annotations

from fastapi import Request

from examples.common.auth import claims_of
from examples.common.config import ExampleConfig
from examples.common.errors import forbidden

__all__ = ["HEADER", "tenant_of"]

HEADER = "x-tenant-id"


def tenant_of(request: Request) -> str | None:
    """Return the request's tenant (``None``: authenticated for no tenant, a 401).

    Raises:
        HTTPException: 401 without a valid access token, 403 for a header that names
            another tenant than the token, or for staff outside development.
    """
    claims = claims_of(request)
    header = request.headers.get(HEADER)
    if claims.tenant is not None:
        if header is not None and header != claims.tenant:
            raise forbidden("X-Tenant-ID names another tenant than the token's")
        return claims.tenant
    config: ExampleConfig = request.app.state.example_config
    if header is None:
        return None
    if not config.development:
        raise forbidden("X-Tenant-ID is honoured for platform staff in development only")
    return header
