"""The current tenant, held in context variables, and the ``TenantScoped`` mixin.

``tenant_context("acme")`` sets the tenant for the code inside it (sync or async; nested
blocks restore the outer tenant on exit); :func:`current_tenant` reads it. Because the
value lives in a :class:`contextvars.ContextVar`, concurrent asyncio tasks each see
their own tenant. :func:`unscoped` is the only way to run a tenant-scoped operation with
no tenant, and every use is logged with its reason.

Enforcement happens where every Beanie operation reaches the driver (see
:mod:`insightdb.collection`); this module only holds the state and validates ids.
"""

from __future__ import annotations

import contextvars
from types import TracebackType
from typing import Any, ClassVar

from beanie import Indexed
from loguru import logger
from pydantic import BaseModel, Field

from insightdb.exceptions import TenantContextError

__all__ = [
    "MAX_TENANT_ID_LENGTH",
    "TENANT_FIELD",
    "TenantScoped",
    "current_tenant",
    "tenant_context",
    "unscoped",
    "unscoped_reason",
    "validate_tenant_id",
]

TENANT_FIELD = "tenant_id"
MAX_TENANT_ID_LENGTH = 128

_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "insightdb_tenant", default=None
)
_unscoped: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "insightdb_unscoped", default=None
)
# (tenant, unscoped reason, outer frame) to restore when the innermost scope exits.
_Frame = tuple[str | None, str | None, "_Frame | None"]
_saved: contextvars.ContextVar[_Frame | None] = contextvars.ContextVar(
    "insightdb_scope_frames", default=None
)


def validate_tenant_id(tenant_id: object) -> str:
    """Return ``tenant_id`` if it is a usable tenant id, else raise.

    A tenant id is a non-empty string of at most 128 characters without ``$``, ``.``
    or NUL (they would turn into query operators or field paths).

    Raises:
        TenantContextError: The id is not acceptable; the message says why.
    """
    if not isinstance(tenant_id, str):
        raise TenantContextError(f"tenant id must be a string, got {type(tenant_id).__name__}")
    if not tenant_id or not tenant_id.strip():
        raise TenantContextError("tenant id must not be empty")
    if len(tenant_id) > MAX_TENANT_ID_LENGTH:
        raise TenantContextError(
            f"tenant id is {len(tenant_id)} characters long; at most {MAX_TENANT_ID_LENGTH}"
        )
    for bad, name in (("$", "'$'"), (".", "'.'"), ("\x00", "NUL")):
        if bad in tenant_id:
            raise TenantContextError(f"tenant id must not contain {name}")
    return tenant_id


def current_tenant() -> str | None:
    """Return the tenant of the current context, or ``None`` outside any tenant."""
    return _tenant.get()


def unscoped_reason() -> str | None:
    """Return the reason given to the enclosing :func:`unscoped` block, if any."""
    return _unscoped.get()


class _Scope:
    """Sets the tenant and the unscoped reason for a block; sync and async, re-entrant.

    The values to restore on exit are kept in a context variable, not on the instance,
    so one instance can be entered by several concurrent tasks (each task has its own
    context) and nested in itself.
    """

    __slots__ = ()

    def _values(self) -> tuple[str | None, str | None]:
        raise NotImplementedError

    def _enter(self) -> None:
        tenant, reason = self._values()
        _saved.set((_tenant.get(), _unscoped.get(), _saved.get()))
        _tenant.set(tenant)
        _unscoped.set(reason)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        saved = _saved.get()
        if saved is None:
            raise TenantContextError("tenant scope exited more often than it was entered")
        tenant, reason, outer = saved
        _tenant.set(tenant)
        _unscoped.set(reason)
        _saved.set(outer)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class tenant_context(_Scope):
    """Run the enclosed code as ``tenant_id``; a sync and an async context manager.

    Entering a tenant leaves any enclosing :class:`unscoped` block: the inner code is
    scoped again.

    Example:
        ```py
        with tenant_context("acme"):
            projects = await Project.find_all().to_list()
        ```

    Args:
        tenant_id: The tenant; validated immediately, before any I/O.

    Raises:
        TenantContextError: The id is invalid.
    """

    __slots__ = ("_tenant_id",)

    def __init__(self, tenant_id: str) -> None:
        self._tenant_id = validate_tenant_id(tenant_id)

    @property
    def tenant_id(self) -> str:
        """The tenant this block runs as."""
        return self._tenant_id

    def _values(self) -> tuple[str | None, str | None]:
        return self._tenant_id, None

    def __enter__(self) -> str:
        self._enter()
        return self._tenant_id

    async def __aenter__(self) -> str:
        return self.__enter__()


class unscoped(_Scope):
    """Run tenant-scoped operations across all tenants, on purpose; logged with ``reason``.

    Inside the block no tenant filter is added and nothing is refused; it is the one
    escape hatch (reports, migrations, support tooling). Nested ``tenant_context``
    blocks are scoped again.

    Args:
        reason: Why tenancy is bypassed; required, logged at WARNING on entry.

    Raises:
        TenantContextError: ``reason`` is empty.
    """

    __slots__ = ("_reason",)

    def __init__(self, reason: str) -> None:
        if not isinstance(reason, str) or not reason.strip():
            raise TenantContextError("unscoped() needs a reason, e.g. unscoped('nightly report')")
        self._reason = reason.strip()

    def _values(self) -> tuple[str | None, str | None]:
        return None, self._reason

    def __enter__(self) -> None:
        logger.warning("insightdb: tenant scoping bypassed: {}", self._reason)
        self._enter()

    async def __aenter__(self) -> None:
        self.__enter__()


def _tenant_default() -> str:
    # A document built inside tenant_context belongs to that tenant; one built outside
    # gets "" and is stamped (or refused) when it is written.
    return _tenant.get() or ""


class TenantScoped(BaseModel):
    """Mixin for customer models whose documents belong to one tenant each.

    ``class Project(TenantScoped, CustomerDocument)`` adds an indexed ``tenant_id`` and
    makes every read and write of ``Project`` carry the current tenant: reads are
    filtered, new documents are stamped, and anything touching another tenant's data
    is refused. With no tenant set, every operation raises
    :class:`~insightdb.exceptions.TenantContextError` before reaching the server.

    Unique indexes of a scoped model must include ``tenant_id``; list deliberate
    exceptions (by index name) in ``__tenant_global_unique__``.
    """

    tenant_id: Indexed(str) = Field(default_factory=_tenant_default)  # type: ignore[valid-type]

    __tenant_global_unique__: ClassVar[tuple[str, ...]] = ()
    __insightdb_tenant_scoped__: ClassVar[bool] = True


def is_tenant_scoped(model: type[Any]) -> bool:
    """Tell whether ``model`` mixes in :class:`TenantScoped`."""
    return isinstance(model, type) and issubclass(model, TenantScoped)
