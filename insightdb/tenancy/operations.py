"""What every data method of the guarded collection goes through, before and around the call.

:class:`GuardedOperations` is the base of
:class:`~insightdb.tenancy.collection.GuardedCollection`, which holds one wrapper per
driver method. Before a command is sent, :meth:`~GuardedOperations._prepare` checks the
options against the method's allowlist (:mod:`insightdb.tenancy.allowlist`), decides the
tenant to scope to (refusing a tenant-scoped operation without one), pins the simple
collation and joins the open transaction. Around the call,
:meth:`~GuardedOperations._run` lets the :class:`~insightdb.tenancy.policy.OperationGuard`
(the circuit breaker) admit it and see its outcome, bounds it by the operation's deadline,
times it for the command monitor and turns connectivity failures and timeouts into
:class:`~insightdb.exceptions.DatabaseUnavailable`, keeping the driver's error. The
scoped shapes several methods share — a pipeline, a write with a filter and a body, a
delete — are here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter
from typing import Any

# _csot.remaining() is PyMongo's reading of an enclosing pymongo.timeout() deadline; the
# driver has no public accessor for it, and the cut-off must honour a caller's override.
from pymongo import _csot
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from insightdb.exceptions import TenantContextError
from insightdb.resilience._driver_errors import is_connectivity_error, unavailable
from insightdb.session_context import active_transaction
from insightdb.tenancy.allowlist import bind_positional, check_collation, check_options
from insightdb.tenancy.context import current_tenant, unscoped_reason
from insightdb.tenancy.pipelines import reads_scoped, scope_pipeline
from insightdb.tenancy.policy import Policy, unwrap_session
from insightdb.tenancy.scoping import scope_filter, scope_replacement, scope_update

__all__ = ["GuardedOperations"]

# The hard bound of an operation: its deadline plus 5% (and a scheduling allowance).
# PyMongo's own timeoutMS normally fires first; this catches its 0.5 s polling overshoot.
_CUTOFF_FACTOR = 1.05
_CUTOFF_SLACK_S = 0.01


class GuardedOperations:
    """The options check, tenant decision and guarded run of a guarded collection.

    Not used on its own: its arguments are those of
    :class:`~insightdb.tenancy.collection.GuardedCollection`.
    """

    __slots__ = ("_database", "_guard", "_label", "_names", "_policy", "_raw", "_scoped")

    def __init__(
        self,
        raw: AsyncCollection[Any],
        *,
        policy: Policy,
        database: Any = None,
        tenant_scoped: bool | None = None,
    ) -> None:
        self._raw = raw
        self._policy = policy
        self._guard = policy.guard
        self._database = database
        self._label = f"{policy.group}.{raw.name}"
        # The monitoring labels, read once: the driver's names are properties.
        self._names = (raw.database.name, raw.name)
        self._scoped = policy.is_scoped(raw.name) if tenant_scoped is None else tenant_scoped

    # -- the scoping decision -------------------------------------------------------

    def _prepare(
        self, operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        """Check the options and return (the tenant to scope to or None, the options)."""
        if unscoped_reason() is not None:
            if args:
                kwargs = bind_positional(operation, self._label, args, kwargs)
            self._join(operation, kwargs)
            return None, kwargs
        kwargs = check_options(operation, self._label, args, kwargs)
        self._join(operation, kwargs)
        if not self._scoped:
            return None, kwargs
        tenant = current_tenant()
        if tenant is None:
            raise TenantContextError(
                f"{operation} on tenant-scoped {self._label} needs a tenant: "
                "use tenant_context(tenant_id) or unscoped(reason)"
            )
        if operation not in ("insert_one", "insert_many", "bulk_write"):
            kwargs["collation"] = check_collation(
                kwargs.get("collation"), f"{self._label}.{operation}"
            )
        return tenant, kwargs

    def _join(self, operation: str, kwargs: dict[str, Any]) -> None:
        """Use the open transaction's session unless ``session=`` was given."""
        if kwargs.get("session") is not None:
            unwrap_session(kwargs)
            return
        active = active_transaction()
        # count (estimated_document_count) can't run in a transaction.
        if active is not None and operation != "estimated_document_count":
            kwargs["session"] = active.session_for(self._raw.database.client, self._label)

    # -- the guarded run ------------------------------------------------------------

    def _cutoff(self) -> float | None:
        """Seconds after which an operation is abandoned, or ``None`` for no bound."""
        # A pymongo.timeout() block around the call sets its own deadline; honour it.
        remaining = _csot.remaining()
        if remaining is not None:
            return max(remaining, 0.0) * _CUTOFF_FACTOR + _CUTOFF_SLACK_S
        deadline = self._policy.deadline_s
        if deadline is None:
            return None
        return deadline * _CUTOFF_FACTOR + _CUTOFF_SLACK_S

    async def _run(self, operation: str, call: Callable[[], Any], selected: Any = None) -> Any:
        self._guard.before()
        policy = self._policy
        in_flight = policy.in_flight
        in_flight.count += 1
        # Commands are timed here rather than by a PyMongo CommandListener, whose mere
        # presence makes the driver build event objects for every command.
        began = perf_counter() if policy.recorder is not None else 0.0
        try:
            async with asyncio.timeout(self._cutoff()):
                result = await call()
        except PyMongoError as exc:
            if policy.recorder is not None:
                self._observe(operation, perf_counter() - began, True, selected)
            self._guard.failed(exc)
            if is_connectivity_error(exc):
                raise unavailable(f"{self._label}: {operation}", exc) from exc
            raise
        except TimeoutError as exc:
            if policy.recorder is not None:
                self._observe(operation, perf_counter() - began, True, selected)
            self._guard.failed(exc)
            raise unavailable(
                f"{self._label}: {operation}: no answer within the deadline", exc
            ) from exc
        except BaseException as exc:
            # Client-side failures (an unencodable document, cancellation): the guard
            # frees a half-open probe slot without counting them against the server.
            self._guard.failed(exc)
            raise
        finally:
            in_flight.count -= 1
        if policy.recorder is not None:
            self._observe(operation, perf_counter() - began, False, selected)
        self._guard.succeeded()
        return result

    def _observe(self, operation: str, seconds: float, failed: bool, selected: Any) -> None:
        database, collection = self._names
        policy = self._policy
        policy.recorder.observe(
            database, collection, operation, policy.cluster, seconds, failed, selected
        )

    # -- scoped shapes several data methods share -----------------------------------

    def _scoped_pipeline(
        self,
        operation: str,
        pipeline: Sequence[Mapping[str, Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, dict[str, Any]]:
        tenant, kwargs = self._prepare(operation, args, kwargs)
        if unscoped_reason() is not None:
            return pipeline, kwargs
        if tenant is None:
            # Not a scoped collection: scoping still applies to what the stages read.
            tenant = current_tenant()
            if reads_scoped(pipeline, self._policy.is_scoped):
                kwargs["collation"] = check_collation(
                    kwargs.get("collation"), f"{self._label}.{operation}"
                )
        scoped = scope_pipeline(pipeline, tenant, self._policy.is_scoped, root_scoped=self._scoped)
        return scoped, kwargs

    async def _update(
        self,
        operation: str,
        filter: Any,
        update: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        def scope(update: Any, tenant: str, kwargs: dict[str, Any]) -> Any:
            return scope_update(update, tenant, upsert=bool(kwargs.get("upsert")))

        return await self._write_matching(operation, filter, update, scope, args, kwargs)

    async def _replace(
        self,
        operation: str,
        filter: Any,
        replacement: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        def scope(replacement: Any, tenant: str, kwargs: dict[str, Any]) -> Any:
            return scope_replacement(replacement, tenant)

        return await self._write_matching(operation, filter, replacement, scope, args, kwargs)

    async def _write_matching(
        self,
        operation: str,
        filter: Any,
        body: Any,
        scope_body: Callable[[Any, str, dict[str, Any]], Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run a write with a filter and a body (an update or a replacement), scoped."""
        tenant, kwargs = self._prepare(operation, args, kwargs)
        if tenant is not None:
            filter = scope_filter(filter, tenant)
            body = scope_body(body, tenant, kwargs)
        method = getattr(self._raw, operation)
        return await self._run(operation, lambda: method(filter, body, **kwargs), filter)

    async def _delete(
        self, operation: str, filter: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        tenant, kwargs = self._prepare(operation, args, kwargs)
        if tenant is not None:
            filter = scope_filter(filter, tenant)
        method = getattr(self._raw, operation)
        return await self._run(operation, lambda: method(filter, **kwargs), filter)
