"""The current tenant, held in a context variable, and the scopes that set it.

``tenant_context("acme")`` sets the tenant for the code inside it (sync or async; nested
blocks restore the outer tenant on exit); :func:`current_tenant` reads it. Because the
value lives in a :class:`contextvars.ContextVar`, concurrent asyncio tasks each see
their own tenant. :func:`unscoped` is the only way to run a tenant-scoped operation with
no tenant, and every use is logged with its reason.

Each entry of a scope pushes a new frame onto a chain held in the context, and its exit
looks for that very frame: exits are matched to their entries, never popped blindly. A
scope left while a scope entered after it is still open (one kept open by an abandoned
generator, typically), or left in a context it was not entered in, is a mismatched exit:
it raises :class:`~insightdb.exceptions.TenantContextError` and fails closed — the
context then has no tenant and is not unscoped until the enclosing scope that is still
open exits, which restores what it replaced. ``docs/tenancy.md`` ("Scopes, generators
and yield dependencies") gives the rule from the user's side.

Enforcement happens where every Beanie operation reaches the driver (see
:mod:`insightdb.tenancy.collection`); this module only holds the state. Tenant ids are
validated by :mod:`insightdb.tenancy.tenant_ids`.
"""

from __future__ import annotations

import contextlib
import contextvars
from types import TracebackType

from loguru import logger

from insightdb.exceptions import TenantContextError
from insightdb.tenancy.tenant_ids import validate_tenant_id

__all__ = [
    "current_tenant",
    "tenant_context",
    "unscoped",
    "unscoped_reason",
]

# -- the scope chain -------------------------------------------------------------------


class _Frame:
    """One entry of a scope: the state it sets and the frame it replaced.

    Frames are not changed once pushed, except ``discarded``: set when a mismatched exit
    drops an entry that was still open, so that entry's own late exit (from a generator
    closed afterwards) changes nothing. ``owner`` is ``None`` for the root and for a
    *seal*, the neutral frame a mismatched exit leaves behind.
    """

    __slots__ = ("discarded", "owner", "parent", "reason", "tenant")

    def __init__(
        self,
        tenant: str | None,
        reason: str | None,
        parent: _Frame | None,
        owner: _Scope | None,
    ) -> None:
        self.tenant = tenant
        self.reason = reason
        self.parent = parent
        self.owner = owner
        self.discarded = False


_ROOT = _Frame(None, None, None, None)
_top: contextvars.ContextVar[_Frame] = contextvars.ContextVar("insightdb_scope", default=_ROOT)
_get_top = _top.get


def current_tenant() -> str | None:
    """Return the tenant of the current context, or ``None`` outside any tenant."""
    return _get_top().tenant


def unscoped_reason() -> str | None:
    """Return the reason given to the enclosing :func:`unscoped` block, if any."""
    return _get_top().reason


def _seal(parent: _Frame) -> None:
    # No tenant and not unscoped: every scoped operation is refused until a scope that
    # is still open below ``parent`` exits and restores what it replaced.
    _top.set(_Frame(None, None, parent, None))


def _refuse(exc: BaseException | None, message: str) -> None:
    if exc is not None and not isinstance(exc, Exception | GeneratorExit):
        # Never replace a cancellation, KeyboardInterrupt or SystemExit: the state is
        # already safe, so say what happened and let it propagate.
        logger.error("insightdb: {}", message)
        exc.add_note(f"insightdb: {message}")
        return
    raise TenantContextError(message)


_OUT_OF_ORDER = (
    "tenant scope exited while a scope entered after it is still open (a generator holding"
    " a scope was abandoned, or closed, out of order); this context has no tenant until"
    " the enclosing scope exits. Close such generators with contextlib.closing/aclosing"
)
_OTHER_CONTEXT = (
    "tenant scope exited in a context it was not entered in (a sync yield dependency, or a"
    " generator closed elsewhere?); this context has no tenant until its enclosing scope exits"
)
_EXTRA_EXIT = "tenant scope exited more often than it was entered"


class _Scope:
    """Sets the tenant and the unscoped reason for a block; sync and async, re-entrant.

    The state lives in the context, not on the instance, so one instance can be entered
    by several concurrent tasks (each task has its own context) and nested in itself.
    The instance only remembers its entries that have not exited yet, to tell a stale
    exit from one in the wrong context.
    """

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: list[_Frame] = []

    def _values(self) -> tuple[str | None, str | None]:
        raise NotImplementedError

    def _enter(self) -> None:
        tenant, reason = self._values()
        frame = _Frame(tenant, reason, _top.get(), self)
        self._open.append(frame)
        _top.set(frame)

    def _forget(self, frame: _Frame) -> None:
        # Already gone when a copy of the context (a child task) exited it first.
        with contextlib.suppress(ValueError):
            self._open.remove(frame)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        top = _top.get()
        frame: _Frame | None = top
        while frame is not None and frame.owner is not self:
            frame = frame.parent
        if frame is top and top.parent is not None:  # an owned frame always has a parent
            _top.set(top.parent)
            self._forget(top)
            return
        if frame is not None and frame is not top:
            self._exit_below(top, frame, exc)
            return
        self._exit_elsewhere(top, exc)

    def _exit_below(self, top: _Frame, frame: _Frame, exc: BaseException | None) -> None:
        # Scopes entered after this one are still open in this context: abandoned in a
        # suspended generator, or (if this exit comes from such a generator being closed)
        # the caller's own. Drop them all; which of the two it is can't be told here, so
        # unless only seals are dropped, fail closed rather than guess a tenant.
        self._forget(frame)
        live = False
        above: _Frame | None = top
        while above is not None and above is not frame:
            if above.owner is not None:
                above.discarded = True
                live = True
            above = above.parent
        parent = frame.parent if frame.parent is not None else _ROOT
        if not live:
            _top.set(parent)
            return
        _seal(parent)
        _refuse(exc, _OUT_OF_ORDER)

    def _exit_elsewhere(self, top: _Frame, exc: BaseException | None) -> None:
        if not self._open:
            _seal(top)
            _refuse(exc, _EXTRA_EXIT)
            return
        live = [frame for frame in self._open if not frame.discarded]
        if not live:
            # This entry was dropped by a mismatched exit, which already raised; its
            # late exit (a generator closed after the consumer's scope ended) must not
            # change the state of whatever context closes it.
            self._open.pop()
            return
        self._forget(live[-1])
        _seal(top)
        _refuse(exc, _OTHER_CONTEXT)

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
        super().__init__()
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
        super().__init__()
        self._reason = reason.strip()

    def _values(self) -> tuple[str | None, str | None]:
        return None, self._reason

    def __enter__(self) -> None:
        logger.warning("insightdb: tenant scoping bypassed: {}", self._reason)
        self._enter()

    async def __aenter__(self) -> None:
        self.__enter__()
