"""FastAPI integration: a ``lifespan`` that starts and stops insightdb, and health probes.

:func:`lifespan` is the one place a FastAPI application starts insightdb (Starlette
deprecates ``on_startup``/``on_shutdown``): it enables insightdb's loguru logging,
awaits :func:`insightdb.init`, keeps the runtime on ``app.state.insightdb`` and closes
it on shutdown. :func:`get_db` hands that runtime to request handlers as a dependency,
and :func:`health_router` adds the liveness and readiness probes an orchestrator polls;
:func:`metrics_router` serves the Prometheus metrics (with the ``metrics`` extra).
Importing this module needs FastAPI (``pip install "insightdb[fastapi]"``).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, get_args

try:
    from fastapi import APIRouter, HTTPException, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.applications import Starlette
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
    if exc.name not in {"fastapi", "starlette"}:
        raise
    raise ImportError(
        'insightdb.fastapi needs FastAPI, which is not installed: pip install "insightdb[fastapi]"'
    ) from exc

from beanie import Document
from loguru import logger

from insightdb import lifecycle
from insightdb.core import InsightDB
from insightdb.exceptions import (
    ConfigurationError,
    InsightDBError,
    MigrationError,
    TenantContextError,
)
from insightdb.settings import Settings
from insightdb.tenancy import tenant_context, validate_tenant_id

__all__ = [
    "MigrationsMode",
    "TenantResolver",
    "get_db",
    "health_router",
    "lifespan",
    "metrics_router",
    "tenant_dependency",
]

TenantResolver = Callable[[Request], "str | Awaitable[str | None] | None"]
"""Returns the request's tenant (from a JWT claim, a subdomain...) or ``None``."""

MigrationsMode = Literal["check", "apply", "ignore"]
"""What :func:`lifespan` does about pending migrations at startup."""

_NOT_STARTED = "insightdb is not started"


def lifespan(
    settings: Settings | None = None,
    *,
    migrations: MigrationsMode = "check",
    models: Iterable[type[Document]] | None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Build a lifespan for ``FastAPI(lifespan=...)`` that runs insightdb.

    On startup it enables the ``insightdb`` loguru logger (adding no sink), awaits
    :func:`insightdb.init` and stores the runtime on ``app.state.insightdb``; on
    shutdown it closes that runtime. A failed startup (for example
    :class:`~insightdb.DatabaseUnavailable`) propagates, so the server refuses to start.

    Args:
        settings: Settings to start with; by default :func:`insightdb.get_settings`
            runs at startup (not when this function is called).
        migrations: ``"check"`` (the default) refuses to start while a revision of
            ``migrations/`` is not applied, and makes the readiness probe answer 503
            while one is pending; ``"apply"`` applies pending revisions under each
            database's lock (replicas starting together wait for one another);
            ``"ignore"`` skips both.
        models: Explicit models to route; by default ``settings.models`` is discovered.

    Returns:
        A function taking the application and returning an async context manager.

    Raises:
        ConfigurationError: ``migrations`` is not one of the modes.
        MigrationError: At startup, under ``"check"``, a revision is pending.

    Example:
        ```py
        app = FastAPI(lifespan=insightdb.fastapi.lifespan())
        ```
    """
    _check_migrations_mode(migrations)
    chosen = tuple(models) if models is not None else None  # an iterator is read once

    @asynccontextmanager
    async def _lifespan(app: Starlette) -> AsyncIterator[None]:
        logger.enable("insightdb")
        db = await lifecycle.init(settings, models=chosen)
        try:
            await _settle_migrations(db, migrations)
        except BaseException:
            await _close(db)
            raise
        app.state.insightdb = db
        app.state.insightdb_migrations = migrations
        try:
            yield
        finally:
            await _close(db)

    return _lifespan


def get_db(request: Request) -> InsightDB:
    """Return the runtime :func:`lifespan` started, for ``Depends(get_db)``.

    Args:
        request: The current request (injected by FastAPI).

    Raises:
        InsightDBError: The application was not started with :func:`lifespan`.
    """
    db = getattr(request.app.state, "insightdb", None)
    if not isinstance(db, InsightDB):
        raise InsightDBError(
            f"{_NOT_STARTED}: create the app with FastAPI(lifespan=insightdb.fastapi.lifespan())"
        )
    return db


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

    Args:
        prefix: The path prefix of both probes.
        timeout_s: The bound of each database ping of the readiness probe, in seconds.

    Returns:
        A router to pass to ``app.include_router``.

    Raises:
        ConfigurationError: ``timeout_s`` is not positive.
    """
    if not timeout_s > 0:
        raise ConfigurationError(f"health_router: timeout_s must be positive (got {timeout_s!r})")
    router = APIRouter(prefix=prefix, tags=["health"])

    @router.get("/live", summary="Liveness: the process is up (no database I/O)")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @router.get(
        "/ready",
        summary="Readiness: every database answers",
        responses={503: {"description": "A database is down or insightdb is not started"}},
    )
    async def ready(request: Request) -> JSONResponse:
        db = _running_db(request)
        if db is None:
            return _no_store(503, {"status": "down", "error": _NOT_STARTED})
        check = getattr(request.app.state, "insightdb_migrations", None) == "check"
        try:
            report = await db.health(timeout_s=timeout_s, migrations=check)
        except InsightDBError:  # closed between the check above and the ping
            return _no_store(503, {"status": "down", "error": _NOT_STARTED})
        body = report.to_dict()
        ready = report.ready
        if check and ready:
            # An operator's `migrate down` can make revisions pending again.
            ready = _migrations_ready(report.migrations)
            body["ready"] = ready
        return _no_store(200 if ready else 503, body)

    return router


def metrics_router(path: str = "/metrics") -> APIRouter:
    """Build a route that serves insightdb's metrics in the Prometheus text format.

    ``GET {path}`` renders :meth:`InsightDB.metrics` through prometheus-client (see
    :mod:`insightdb.monitoring.prometheus`): command, pool, server, breaker, process and
    alert series. Before startup and after shutdown it answers the metric families
    without samples. To export through your own prometheus-client registry instead,
    register :class:`~insightdb.monitoring.prometheus.InsightDBCollector` in it.

    Args:
        path: The route's path.

    Returns:
        A router to pass to ``app.include_router``.

    Raises:
        ImportError: prometheus-client is not installed (``insightdb[metrics]``).
    """
    from insightdb.monitoring.prometheus import CONTENT_TYPE_LATEST, generate_metrics

    router = APIRouter(tags=["metrics"])

    @router.get(path, summary="Prometheus metrics of insightdb", response_class=Response)
    async def metrics(request: Request) -> Response:
        db = _running_db(request)
        body = generate_metrics(db if db is not None else (lambda: None))
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    return router


def tenant_dependency(
    header: str = "X-Tenant-ID", *, resolver: TenantResolver | None = None
) -> Callable[[Request], AsyncIterator[str]]:
    """Build a dependency that scopes each request to its tenant.

    The tenant comes from ``resolver(request)`` when given (a JWT claim, a subdomain;
    sync or async), else from the ``header``. The request then runs inside
    :func:`~insightdb.tenancy.tenant_context`, so every tenant-scoped query of the
    handler is filtered. A request never runs unscoped: no tenant is a 400 (header) or
    401 (resolver), an invalid one a 400, each with a JSON ``detail``.

    Example:
        ```py
        app = FastAPI(lifespan=lifespan(), dependencies=[Depends(tenant_dependency())])
        ```

    Args:
        header: The request header that names the tenant.
        resolver: A callable taking the request and returning the tenant or ``None``.
    """

    async def resolve_tenant(request: Request) -> AsyncIterator[str]:
        if resolver is not None:
            found = resolver(request)
            if inspect.isawaitable(found):
                found = await found
            if found is None:
                raise HTTPException(
                    status_code=401,
                    detail={"error": "tenant_required", "message": "no tenant for this request"},
                )
        else:
            found = request.headers.get(header)
            if found is None:
                raise HTTPException(
                    status_code=400,
                    detail={"error": "tenant_required", "message": f"missing {header} header"},
                )
        try:
            tenant = validate_tenant_id(found)
        except TenantContextError as exc:
            raise HTTPException(
                status_code=400, detail={"error": "invalid_tenant", "message": exc.message}
            ) from None
        # An async generator dependency runs in the handler's task, so the tenant set
        # here is the one the handler's queries see.
        with tenant_context(tenant):
            yield tenant

    return resolve_tenant


def _migrations_ready(found: Mapping[str, Any] | None) -> bool:
    """No revision pending, and every group's log read (or unread only for overload)."""
    if found is None or "pending" not in found:
        return False
    unread: Mapping[str, str] = found.get("unread") or {}
    if any(fault != "overloaded" for fault in unread.values()):
        return False
    return not any(found["pending"].values())


def _check_migrations_mode(migrations: str) -> None:
    if migrations not in get_args(MigrationsMode):
        raise ConfigurationError(
            f"lifespan: migrations={migrations!r} is not one of check, apply, ignore"
        )


async def _settle_migrations(db: InsightDB, mode: str) -> None:
    from insightdb.migrations import pending_migrations, upgrade

    if mode == "apply":
        applied = await upgrade(db)
        for group, revisions in applied.items():
            if revisions:
                logger.info("insightdb: applied {} migration(s) to {}", len(revisions), group)
    elif mode == "check":
        pending = await pending_migrations(db)
        if any(pending.values()):
            raise MigrationError(
                f"pending migrations ({_describe(pending)}): run `insightdb migrate up` "
                'first, or start with lifespan(migrations="apply")'
            )


def _describe(pending: dict[str, list[str]]) -> str:
    return "; ".join(f"{g}: {', '.join(revs)}" for g, revs in pending.items() if revs)


async def _close(db: InsightDB) -> None:
    # Close the process-wide runtime only if it is still ours: another init() may have
    # replaced it (and closed ours) while the application ran.
    try:
        running: InsightDB | None = lifecycle.current()
    except InsightDBError:
        running = None
    if running is db:
        await lifecycle.close()
    else:
        await db.close()


def _running_db(request: Request) -> InsightDB | None:
    db = getattr(request.app.state, "insightdb", None)
    if not isinstance(db, InsightDB):
        # An application that called insightdb.init() itself, without lifespan().
        try:
            db = lifecycle.current()
        except InsightDBError:
            return None
    return db if db.started else None


def _no_store(status_code: int, content: dict[str, Any]) -> JSONResponse:
    # Probes must see the state now, never a cached answer.
    return JSONResponse(content, status_code=status_code, headers={"Cache-Control": "no-store"})
