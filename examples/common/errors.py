"""HTTP errors in the one shape every answer of the services uses:
``{"detail": {"error": <name>, "message": <one line>}}`` (insightdb's error handlers and
``tenant_dependency`` answer the same way)."""

from __future__ import annotations

from fastapi import HTTPException, status

__all__ = ["forbidden", "not_found", "unauthorized"]


def unauthorized(message: str) -> HTTPException:
    """401, asking for a bearer token."""
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail={"error": "unauthorized", "message": message},
        headers={"WWW-Authenticate": "Bearer"},
    )


def forbidden(message: str) -> HTTPException:
    """403: authenticated, but not allowed."""
    return HTTPException(status.HTTP_403_FORBIDDEN, {"error": "forbidden", "message": message})


def not_found(message: str) -> HTTPException:
    """404 — also what another tenant's document looks like."""
    return HTTPException(status.HTTP_404_NOT_FOUND, {"error": "not_found", "message": message})
