"""Request dependencies: the runtime (:func:`get_db`) and the tenant of each request.

:func:`get_db` hands the runtime :func:`~insightdb.fastapi.lifespan` started to a
handler; :func:`tenant_dependency` runs each request inside the tenant context of the
tenant it names, or answers 400/401 without running the handler.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import HTTPException, Request

from insightdb.exceptions import InsightDBError, TenantContextError
from insightdb.fastapi._state import NOT_STARTED
from insightdb.runtime.instance import InsightDB
from insightdb.tenancy import tenant_context, validate_tenant_id

TenantResolver = Callable[[Request], "str | Awaitable[str | None] | None"]
"""Returns the request's tenant (from a JWT claim, a subdomain...) or ``None``."""


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
            f"{NOT_STARTED}: create the app with FastAPI(lifespan=insightdb.fastapi.lifespan())"
        )
    return db


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
    - a tenant id that is not valid (see :func:`~insightdb.tenancy.tenant_ids.validate_tenant_id`),
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


def _tenant_http_error(status_code: int, error: str, message: str) -> HTTPException:
    return HTTPException(status_code=status_code, detail={"error": error, "message": message})
