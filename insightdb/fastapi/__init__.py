"""FastAPI integration: lifespan, dependencies, probes and JSON error responses.

:func:`lifespan` is the one place a FastAPI application starts insightdb (Starlette
deprecates ``on_startup``/``on_shutdown``): it enables insightdb's loguru logging,
awaits :func:`insightdb.init`, keeps the runtime on ``app.state.insightdb`` and closes
it on shutdown. :func:`get_db` hands that runtime to request handlers as a dependency,
:func:`tenant_dependency` scopes each request to its tenant, :func:`health_router` adds
the liveness and readiness probes an orchestrator polls and :func:`metrics_router`
serves the Prometheus metrics (with the ``metrics`` extra) — both as plain routes that
no app-wide dependency reaches. :func:`install_error_handlers` turns the errors a
request can cause into JSON answers (409, 400/401, 403, 404, 503). Importing this
module needs FastAPI (``pip install "insightdb[fastapi]"``).

This module only re-exports: the lifespan lives in ``startup``, the dependencies in
``dependencies``, the routers in ``probes`` and the error handlers in ``errors``.
"""

from __future__ import annotations

try:
    from insightdb.fastapi.dependencies import TenantResolver, get_db, tenant_dependency
    from insightdb.fastapi.errors import install_error_handlers
    from insightdb.fastapi.probes import health_router, metrics_router
    from insightdb.fastapi.startup import MigrationsMode, lifespan
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
    if exc.name not in {"fastapi", "starlette"}:
        raise
    raise ImportError(
        'insightdb.fastapi needs FastAPI, which is not installed: pip install "insightdb[fastapi]"'
    ) from exc

__all__ = [
    "MigrationsMode",
    "TenantResolver",
    "get_db",
    "health_router",
    "install_error_handlers",
    "lifespan",
    "metrics_router",
    "tenant_dependency",
]
