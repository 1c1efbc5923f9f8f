"""The probes an orchestrator and a scraper poll: :func:`health_router`, :func:`metrics_router`.

Both build plain Starlette routes, which no FastAPI dependency reaches (an app-wide
:func:`~insightdb.fastapi.tenant_dependency` included), so the probes answer without a
tenant or credentials, and never from a cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from insightdb.exceptions import ConfigurationError, InsightDBError
from insightdb.fastapi._state import NOT_STARTED, running_runtime


def health_router(prefix: str = "/health", *, timeout_s: float = 2.0) -> APIRouter:
    """Build the liveness and readiness probes.

    ``GET {prefix}/live`` answers 200 ``{"status": "alive"}`` while the process
    serves requests; it does no database I/O, so a slow database never gets a healthy
    process restarted. ``GET {prefix}/ready`` runs :meth:`InsightDB.health` and answers
    its report (:meth:`~insightdb.HealthReport.to_dict`) with 200 when it is ready and
    503 when not — a group down, or its circuit breaker open — or 503
    ``{"status": "down", "error": "insightdb is not started"}`` (also while shutting down).
    It never answers 500 for a database fault, whatever the server does.

    Readiness follows :meth:`InsightDB.health`'s rule: a server that answers nobody, or
    an open breaker, is not ready; an overloaded one (the check timed out while other
    operations got answers) is ``degraded`` and still ready, so that an overload does not
    take every replica out of the load balancer at once. Under
    ``lifespan(migrations="check")`` pending revisions make it 503 as well; a migration
    log that could not be read because of overload leaves readiness as it is (this
    replica started with none pending, and only an operator's downgrade adds some).

    Both probes are plain Starlette routes, not FastAPI path operations: FastAPI runs
    no dependency for them — neither the application's (``FastAPI(dependencies=...)``,
    an app-wide :func:`tenant_dependency` or authentication) nor ``include_router``'s —
    so an orchestrator reaches them without a tenant or credentials. They are not in
    the OpenAPI schema. Middleware still runs for them.

    Args:
        prefix: The path prefix of both probes (``""`` or starting with ``/``).
        timeout_s: The bound of each database ping of the readiness probe, in seconds.

    Returns:
        A router to pass to ``app.include_router``.

    Raises:
        ConfigurationError: ``timeout_s`` is not positive, or ``prefix`` does not start
            with ``/``.
    """
    if not timeout_s > 0:
        raise ConfigurationError(f"health_router: timeout_s must be positive (got {timeout_s!r})")
    base = _path("health_router", "prefix", prefix).rstrip("/")

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(request: Request) -> Response:
        db = running_runtime(request)
        if db is None:
            return _no_store(503, {"status": "down", "error": NOT_STARTED})
        check = getattr(request.app.state, "insightdb_migrations", None) == "check"
        try:
            report = await db.health(timeout_s=timeout_s, migrations=check)
        except InsightDBError:  # closed between the check above and the ping
            return _no_store(503, {"status": "down", "error": NOT_STARTED})
        body = report.to_dict()
        ready = report.ready
        if check and ready:
            # An operator's `migrate down` can make revisions pending again.
            ready = _migrations_ready(report.migrations)
            body["ready"] = ready
        return _no_store(200 if ready else 503, body)

    router = APIRouter()
    # add_route, not get(): a plain route runs no FastAPI dependency (see above).
    router.add_route(f"{base}/live", live, methods=["GET"], name="insightdb_live")
    router.add_route(f"{base}/ready", ready, methods=["GET"], name="insightdb_ready")
    return router


def metrics_router(path: str = "/metrics") -> APIRouter:
    """Build a route that serves insightdb's metrics in the Prometheus text format.

    ``GET {path}`` renders :meth:`InsightDB.metrics` through prometheus-client (see
    :mod:`insightdb.monitoring.prometheus`): command, pool, server, breaker, process and
    alert series. Before startup and after shutdown it answers the metric families
    without samples. To export through your own prometheus-client registry instead,
    register :class:`~insightdb.monitoring.prometheus.InsightDBCollector` in it.

    Like the health probes, it is a plain Starlette route that no app-wide dependency
    reaches (a scraper sends no tenant), and it is not in the OpenAPI schema.

    Args:
        path: The route's path (starting with ``/``).

    Returns:
        A router to pass to ``app.include_router``.

    Raises:
        ImportError: prometheus-client is not installed (``insightdb[metrics]``).
        ConfigurationError: ``path`` does not start with ``/``.
    """
    from insightdb.monitoring.prometheus import CONTENT_TYPE_LATEST, generate_metrics

    route_path = _path("metrics_router", "path", path)
    if route_path == "":
        raise ConfigurationError("metrics_router: path must not be empty (e.g. '/metrics')")

    async def metrics(request: Request) -> Response:
        db = running_runtime(request)
        body = generate_metrics(db if db is not None else (lambda: None))
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    router = APIRouter()
    router.add_route(route_path, metrics, methods=["GET"], name="insightdb_metrics")
    return router


def _path(function: str, argument: str, value: str) -> str:
    if value and not value.startswith("/"):
        raise ConfigurationError(f"{function}: {argument} must start with '/' (got {value!r})")
    return value


def _migrations_ready(found: Mapping[str, Any] | None) -> bool:
    """No revision pending, and every group's log read (or unread only for overload)."""
    if found is None or "pending" not in found:
        return False
    unread: Mapping[str, str] = found.get("unread") or {}
    if any(fault != "overloaded" for fault in unread.values()):
        return False
    return not any(found["pending"].values())


def _no_store(status_code: int, content: dict[str, Any]) -> JSONResponse:
    # Probes must see the state now, never a cached answer.
    return JSONResponse(content, status_code=status_code, headers={"Cache-Control": "no-store"})
