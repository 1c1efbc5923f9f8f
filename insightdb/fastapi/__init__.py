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
"""

from __future__ import annotations

import inspect
import math
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

from beanie.exceptions import DocumentNotFound
from loguru import logger
from pymongo.errors import BulkWriteError, DuplicateKeyError

from insightdb.exceptions import (
    CircuitOpenError,
    ConfigurationError,
    DatabaseUnavailable,
    InsightDBError,
    MigrationError,
    TenantContextError,
    TenantIsolationError,
)
from insightdb.runtime import lifecycle
from insightdb.runtime.discovery import ModelSpec
from insightdb.runtime.instance import InsightDB
from insightdb.settings import Settings
from insightdb.tenancy.context import tenant_context, validate_tenant_id

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

TenantResolver = Callable[[Request], "str | Awaitable[str | None] | None"]
"""Returns the request's tenant (from a JWT claim, a subdomain...) or ``None``."""

MigrationsMode = Literal["check", "apply", "ignore"]
"""What :func:`lifespan` does about pending migrations at startup."""

_NOT_STARTED = "insightdb is not started"


def lifespan(
    settings: Settings | None = None,
    *,
    migrations: MigrationsMode = "check",
    models: Iterable[ModelSpec] | None = None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Build a lifespan for ``FastAPI(lifespan=...)`` that runs insightdb.

    On startup it enables the ``insightdb`` loguru logger (adding no sink), awaits
    :func:`insightdb.init` and stores the runtime on ``app.state.insightdb``; on
    shutdown it closes that runtime. A failed startup (for example
    :class:`~insightdb.DatabaseUnavailable`) is logged as one error line
    (``insightdb: startup failed: DatabaseUnavailable: ...``) and propagates, so the
    server refuses to start; its traceback comes after that line.

    Args:
        settings: Settings to start with; by default :func:`insightdb.get_settings`
            runs at startup (not when this function is called).
        migrations: ``"check"`` (the default) refuses to start while a revision of
            ``migrations/`` is not applied, and makes the readiness probe answer 503
            while one is pending; ``"apply"`` applies pending revisions under each
            database's lock (replicas starting together wait for one another);
            ``"ignore"`` skips both.
        models: Explicit models to route, as :func:`insightdb.init` takes them (classes,
            dotted class paths, modules, package names); by default ``settings.models``
            is discovered.

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
        try:
            db = await lifecycle.init(settings, models=chosen)
            try:
                await _settle_migrations(db, migrations)
            except BaseException:
                await _close(db)
                raise
        except InsightDBError as exc:
            # The one useful line comes first; the server prints its traceback after it.
            logger.error("insightdb: startup failed: {}: {}", type(exc).__name__, _line(exc))
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
        db = _running_db(request)
        body = generate_metrics(db if db is not None else (lambda: None))
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    router = APIRouter()
    router.add_route(route_path, metrics, methods=["GET"], name="insightdb_metrics")
    return router


def tenant_dependency(
    header: str = "X-Tenant-ID", *, resolver: TenantResolver | None = None
) -> Callable[[Request], AsyncIterator[str]]:
    """Build a dependency that scopes each request to its tenant.

    The tenant comes from ``resolver(request)`` when given (a JWT claim, a subdomain;
    sync or async), else from the ``header``. The request then runs inside
    :func:`~insightdb.tenancy.context.tenant_context`, so every tenant-scoped query of the
    handler is filtered. A request never runs unscoped. The answers, each a JSON
    ``{"detail": {"error": ..., "message": ...}}``:

    - no header: 400 ``tenant_required``;
    - the resolver returns ``None`` or raises :class:`~insightdb.TenantContextError`
      (its way to say "not authenticated for any tenant"): 401 ``tenant_required``;
    - a tenant id that is not valid (see :func:`~insightdb.tenancy.context.validate_tenant_id`),
      from either source: 400 ``invalid_tenant``.

    Declare it app-wide to scope every route; the probes of :func:`health_router` and
    :func:`metrics_router` stay reachable without a tenant.

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
            try:
                found = resolver(request)
                if inspect.isawaitable(found):
                    found = await found
            except TenantContextError as exc:
                raise _tenant_http_error(401, "tenant_required", exc.message) from None
            if found is None:
                raise _tenant_http_error(401, "tenant_required", "no tenant for this request")
        else:
            found = request.headers.get(header)
            if found is None:
                raise _tenant_http_error(400, "tenant_required", f"missing {header} header")
        try:
            tenant = validate_tenant_id(found)
        except TenantContextError as exc:
            raise _tenant_http_error(400, "invalid_tenant", exc.message) from None
        # An async generator dependency runs in the handler's task, so the tenant set
        # here is the one the handler's queries see.
        with tenant_context(tenant):
            yield tenant

    return resolve_tenant


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
    logger.info("insightdb: {} {}: 400: {}", request.method, request.url.path, _line(exc))
    body = _error_body("tenant_required", "this request needs a valid tenant")
    return JSONResponse(body, status_code=400)


async def _on_tenant_isolation_error(request: Request, exc: Exception) -> Response:
    logger.warning("insightdb: {} {}: 403: {}", request.method, request.url.path, _line(exc))
    body = _error_body("tenant_isolation", "the request would reach another tenant's data")
    return JSONResponse(body, status_code=403)


async def _on_document_not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse(_error_body("not_found", "document not found"), status_code=404)


async def _on_database_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("insightdb: {} {}: 503: {}", request.method, request.url.path, _line(exc))
    if isinstance(exc, CircuitOpenError):
        body = _error_body("circuit_open", "the database is failing; retry later")
    else:
        body = _error_body("database_unavailable", "the database is unavailable; retry later")
    return JSONResponse(
        body, status_code=503, headers={"Retry-After": str(_retry_after_s(request))}
    )


def _retry_after_s(request: Request) -> int:
    db = getattr(request.app.state, "insightdb", None)
    if not isinstance(db, InsightDB):
        try:
            db = lifecycle.current()
        except InsightDBError:
            return 1
    return max(1, math.ceil(db.settings.resilience.reset_timeout_s))


def _tenant_http_error(status_code: int, error: str, message: str) -> HTTPException:
    return HTTPException(status_code=status_code, detail={"error": error, "message": message})


def _line(exc: BaseException) -> str:
    """The first line of an error's message (insightdb's messages are one line)."""
    text = exc.message if isinstance(exc, InsightDBError) else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


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
