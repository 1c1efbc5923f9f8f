"""JSON answers for the errors a request can cause: :func:`install_error_handlers`.

Each handler answers ``{"detail": {"error": <name>, "message": <one fixed line>}}`` and
logs the error's own first line where an operator needs it (:func:`first_line`, which
:func:`~insightdb.fastapi.lifespan` uses too for a failed startup).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from beanie.exceptions import DocumentNotFound
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from loguru import logger
from pymongo.errors import BulkWriteError, DuplicateKeyError
from starlette.applications import Starlette

from insightdb.exceptions import (
    CircuitOpenError,
    DatabaseUnavailable,
    InsightDBError,
    TenantContextError,
    TenantIsolationError,
)
from insightdb.fastapi._state import app_runtime


def install_error_handlers(app: Starlette) -> None:
    """Answer the errors a request can cause with JSON instead of a bare 500.

    Every answer is ``{"detail": {"error": <name>, "message": <one fixed line>}}`` (the
    shape of FastAPI's own ``HTTPException`` and of :func:`tenant_dependency`). Messages
    are fixed per error: they never carry a document value, a tenant id or a server
    address; the full one-line message is logged instead where an operator needs it.

    - pymongo ``DuplicateKeyError``, or a ``BulkWriteError`` of duplicates only: 409
      ``duplicate_key``, with ``fields`` (the unique index's field names) when the
      server names them;
    - :class:`~insightdb.TenantContextError`: 400 ``tenant_required``;
    - :class:`~insightdb.TenantIsolationError`: 403 ``tenant_isolation`` (logged as a
      warning);
    - beanie ``DocumentNotFound``: 404 ``not_found``;
    - :class:`~insightdb.DatabaseUnavailable`: 503 ``database_unavailable`` and
      :class:`~insightdb.CircuitOpenError`: 503 ``circuit_open``, both with
      ``Retry-After`` (logged as a warning).

    A :class:`~insightdb.TenantContextError` that reaches a handler means a scoped
    operation ran without a valid tenant: 400. The 401 for an unauthenticated request
    comes from :func:`tenant_dependency`, where the resolver says so.
    A :class:`~insightdb.TenantIsolationError` means the request asked for another
    tenant's data (a body naming another ``tenant_id``, an update moving a document):
    403, as for any request the caller is not allowed to make. ``Retry-After`` is the
    circuit breaker's ``resilience.reset_timeout_s`` rounded up to whole seconds (at
    least 1): the time after which the database is tried again.

    Args:
        app: The application (FastAPI or Starlette).
    """
    app.add_exception_handler(DuplicateKeyError, _on_duplicate_key)
    app.add_exception_handler(BulkWriteError, _on_bulk_write_error)
    app.add_exception_handler(TenantContextError, _on_tenant_context_error)
    app.add_exception_handler(TenantIsolationError, _on_tenant_isolation_error)
    app.add_exception_handler(DocumentNotFound, _on_document_not_found)
    app.add_exception_handler(DatabaseUnavailable, _on_database_unavailable)


_DUPLICATE_KEY_CODES = frozenset({11000, 11001})


def _error_body(error: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"detail": {"error": error, "message": message, **extra}}


async def _on_duplicate_key(request: Request, exc: Exception) -> Response:
    details = getattr(exc, "details", None) or {}
    return _duplicate_answer([details])


async def _on_bulk_write_error(request: Request, exc: Exception) -> Response:
    errors = (getattr(exc, "details", None) or {}).get("writeErrors") or []
    if not errors or any(e.get("code") not in _DUPLICATE_KEY_CODES for e in errors):
        raise exc  # not only duplicates: left to the server's 500
    return _duplicate_answer(errors)


def _duplicate_answer(details: Iterable[Mapping[str, Any]]) -> Response:
    fields: list[str] = []
    for detail in details:
        pattern = detail.get("keyPattern")
        if isinstance(pattern, Mapping):
            fields.extend(str(k) for k in pattern if str(k) not in fields)
    extra = {"fields": fields} if fields else {}
    body = _error_body(
        "duplicate_key", "a document with the same unique key already exists", **extra
    )
    return JSONResponse(body, status_code=409)


async def _on_tenant_context_error(request: Request, exc: Exception) -> Response:
    logger.info("insightdb: {} {}: 400: {}", request.method, request.url.path, first_line(exc))
    body = _error_body("tenant_required", "this request needs a valid tenant")
    return JSONResponse(body, status_code=400)


async def _on_tenant_isolation_error(request: Request, exc: Exception) -> Response:
    logger.warning("insightdb: {} {}: 403: {}", request.method, request.url.path, first_line(exc))
    body = _error_body("tenant_isolation", "the request would reach another tenant's data")
    return JSONResponse(body, status_code=403)


async def _on_document_not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse(_error_body("not_found", "document not found"), status_code=404)


async def _on_database_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("insightdb: {} {}: 503: {}", request.method, request.url.path, first_line(exc))
    if isinstance(exc, CircuitOpenError):
        body = _error_body("circuit_open", "the database is failing; retry later")
    else:
        body = _error_body("database_unavailable", "the database is unavailable; retry later")
    return JSONResponse(
        body, status_code=503, headers={"Retry-After": str(_retry_after_s(request))}
    )


def _retry_after_s(request: Request) -> int:
    db = app_runtime(request)
    if db is None:
        return 1
    return max(1, math.ceil(db.settings.resilience.reset_timeout_s))


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (insightdb's messages are one line)."""
    text = exc.message if isinstance(exc, InsightDBError) else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]
