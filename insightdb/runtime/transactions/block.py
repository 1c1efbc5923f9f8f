"""Transactions across the admin and the customer database, without ``session=``.

A MongoDB transaction lives in one client session, so it can span both databases only
when they are on the same cluster (the same client). :class:`Transaction` starts a
session and a transaction on the client the requested groups share and makes it the
open transaction of the current task (:mod:`insightdb.session_context`): every insightdb
Document operation inside the block joins it without ``session=``. It commits when the
block ends normally and aborts when it raises.

Retries follow the driver's ``with_transaction``: the whole block again on an error
labelled ``TransientTransactionError`` (with jittered exponential backoff), the commit
alone on ``UnknownTransactionCommitResult``, within 120 seconds — and insightdb adds a
bound on the number of attempts. Python can't run an ``async with`` body twice, so the
retrying forms are ``async for attempt in db.transaction(): async with attempt: ...``
and ``await db.transaction().run(fn)``; a plain ``async with`` block is one attempt
(its commit is still retried). Groups on different clusters can't share a
transaction: that is a :class:`~insightdb.exceptions.TransactionError` naming the
hosts, never a silent two-phase imitation.

Nested blocks join the enclosing transaction; see ``docs/transactions.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar

from pymongo.errors import OperationFailure, PyMongoError

from insightdb.exceptions import InsightDBError, TransactionError
from insightdb.resilience._driver_errors import (
    is_connectivity_error,
    masked_first_line,
    unavailable,
)
from insightdb.session_context import (
    ActiveTransaction,
    active_transaction,
    reset_active,
    set_active,
)
from insightdb.settings import GROUPS

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "TIME_LIMIT_S",
    "Attempt",
    "Transaction",
    "backoff_delay",
    "has_label",
]

P = ParamSpec("P")
R = TypeVar("R")

#: The driver's bound on retrying one ``with_transaction`` (seconds).
TIME_LIMIT_S: Final = 120.0
#: insightdb's bound on the number of times the block runs.
DEFAULT_MAX_ATTEMPTS: Final = 5
_BACKOFF_INITIAL_S = 0.005  # the driver's: 5 ms, growing by 1.5 per retry, up to 0.5 s
_BACKOFF_MAX_S = 0.5
_NOT_SUPPORTED_CODES = frozenset({20})  # IllegalOperation: a standalone server
_TRANSIENT = "TransientTransactionError"
_UNKNOWN_COMMIT = "UnknownTransactionCommitResult"


def backoff_delay(retry: int, jitter: float) -> float:
    """The pause before the ``retry``-th re-run of a block (the driver's formula).

    Args:
        retry: 1 for the first re-run.
        jitter: A number in [0, 1) (``random.random()``); full jitter.
    """
    return jitter * min(_BACKOFF_INITIAL_S * (1.5**retry), _BACKOFF_MAX_S)


def has_label(exc: BaseException, label: str) -> bool:
    """Tell whether ``exc`` (or the driver error it wraps) carries an error label."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(current, PyMongoError) and current.has_error_label(label):
            return True
        driver = getattr(current, "driver_error", None)
        current = driver if isinstance(driver, BaseException) else current.__cause__
        seen += 1
    return False


def _hosts(client: Any) -> str:
    """The servers a client knows, as ``host:port`` (its topology: no credentials)."""
    try:
        addresses = client.topology_description.server_descriptions()
    except Exception:  # a closed client: say so rather than guess
        return "unknown hosts"
    return ",".join(sorted(f"{host}:{port}" for host, port in addresses)) or "unknown hosts"


class Transaction:
    """One transaction block over ``groups``; see the module docstring for the forms.

    Built by :meth:`insightdb.InsightDB.transaction` and :func:`insightdb.transaction`.

    Args:
        client_of: Returns the (guarded) client of a group.
        groups: The groups the block writes to (both by default).
        max_attempts: How many times the retrying forms run the block at most.
        options: Passed to ``start_transaction`` (``read_concern``,
            ``write_concern``, ``read_preference``, ``max_commit_time_ms``).
    """

    def __init__(
        self,
        client_of: Callable[[str], Any],
        groups: Sequence[str] = GROUPS,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        options: dict[str, Any] | None = None,
    ) -> None:
        if not groups:
            raise TransactionError("transaction() needs at least one group")
        if max_attempts < 1:
            raise TransactionError("transaction(max_attempts=...) must be at least 1")
        self._client_of = client_of
        self._groups = tuple(groups)
        self._label = "+".join(self._groups)
        self._max_attempts = max_attempts
        self._options = dict(options or {})
        self._single: Attempt | None = None
        self._last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Transaction {self._label}>"

    def _client(self) -> Any:
        clients = {group: self._client_of(group) for group in self._groups}
        distinct = {id(c): (g, c) for g, c in clients.items()}
        if len(distinct) > 1:
            described = " and ".join(f"{g} on {_hosts(c)}" for g, c in distinct.values())
            raise TransactionError(
                f"{self._label}: {described} are on different clusters: one transaction "
                "lives in one client session on one cluster, so it can't span them; use "
                "one transaction per group (or put both databases on one cluster)"
            )
        return next(iter(clients.values()))

    # -- one attempt: async with --------------------------------------------------

    async def __aenter__(self) -> Any:
        if self._single is not None:
            raise TransactionError("this transaction block is already open")
        self._single = Attempt(self, retrying=False)
        return await self._single.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        attempt, self._single = self._single, None
        if attempt is None:  # pragma: no cover - __aenter__ always sets it
            return False
        return await attempt.__aexit__(exc_type, exc, tb)

    # -- retrying forms -----------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Attempt]:
        return self._attempts()

    async def _attempts(self) -> AsyncIterator[Attempt]:
        started = time.monotonic()
        for number in range(1, self._max_attempts + 1):
            if number > 1:
                delay = backoff_delay(number - 1, random.random())
                if time.monotonic() + delay - started >= TIME_LIMIT_S:
                    break
                await asyncio.sleep(delay)
            attempt = Attempt(self, retrying=True, started=started)
            yield attempt
            if not attempt.entered:
                raise TransactionError(
                    "each attempt of a retrying transaction must be entered: "
                    "`async for attempt in db.transaction(): async with attempt: ...`"
                )
            if not attempt.retry:
                return
            if attempt.nested:
                return  # the enclosing block retries, not this one
        raise TransactionError(
            f"{self._label}: the transaction still failed with a transient error after "
            f"{self._max_attempts} attempt(s) (or {TIME_LIMIT_S:g} s); nothing of it was "
            "committed",
            driver_error=self._last_error,
        )

    async def run(self, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``await fn(*args, **kwargs)`` in the transaction, retried like the driver.

        ``fn`` may run more than once (after a transient error): keep side effects
        other than database writes out of it.

        Returns:
            What ``fn`` returned on the attempt that committed.
        """
        result: Any = None
        async for attempt in self:
            async with attempt:
                result = await fn(*args, **kwargs)
        return result  # type: ignore[no-any-return]


class Attempt:
    """One run of a transaction block: starts, joins or ends the transaction.

    ``async with attempt as session`` yields the guarded session (passing it as
    ``session=`` is allowed, never needed).
    """

    def __init__(self, owner: Transaction, *, retrying: bool, started: float | None = None):
        self._owner = owner
        self._retrying = retrying
        self._started = time.monotonic() if started is None else started
        self.entered = False
        self.retry = False
        self.nested = False
        self._session: Any = None
        self._active: ActiveTransaction | None = None
        self._token: Any = None

    async def __aenter__(self) -> Any:
        if self.entered:
            raise TransactionError("a transaction attempt can be entered only once")
        self.entered = True
        outer = active_transaction()
        if outer is not None and outer.covers(outer.client):
            return self._join(outer)
        client = self._owner._client()
        session = client.start_session()
        try:
            await session.__aenter__()
            await session.start_transaction(**self._owner._options)
        except PyMongoError as exc:
            await session.__aexit__(None, None, None)
            raise _translate(self._owner._label, exc) from exc
        self._session = session
        raw_client = getattr(client, "_raw", client)
        self._active = ActiveTransaction(
            session._raw_session, raw_client, _task(), self._owner._label, handle=session
        )
        self._token = set_active(self._active)
        return session

    def _join(self, outer: ActiveTransaction) -> Any:
        """A nested block: join the enclosing transaction (same cluster, no options)."""
        if self._owner._options:
            raise TransactionError(
                "a nested transaction block joins the enclosing transaction and can't "
                "set its own options"
            )
        client = getattr(self._owner._client(), "_raw", None)
        if client is not None and client is not outer.client:
            raise TransactionError(
                f"a nested transaction block over {self._owner._label} is on another "
                f"cluster than the enclosing one ({outer.label})"
            )
        self.nested = True
        self._active = outer
        return outer.handle

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        active = self._active
        if active is None:  # pragma: no cover - entering failed before setting it
            return False
        if self.nested:
            if exc is not None:
                active.failed = True  # the enclosing block can only abort now
                self.retry = self._retrying and has_label(exc, _TRANSIENT)
            return False
        try:
            if exc is not None:
                await self._abort()
                return self._after_failure(exc)
            if active.failed:
                await self._abort()
                raise TransactionError(
                    f"{self._owner._label}: a nested transaction block failed, so the "
                    "transaction was rolled back (an exception raised inside a nested "
                    "block dooms the whole transaction, even if it was caught)"
                )
            await self._commit()
        finally:
            reset_active(self._token)
            await self._session.__aexit__(None, None, None)
        for callback in active.after_commit:
            await callback()
        return False

    def _after_failure(self, exc: BaseException) -> bool:
        """Decide what an exception of the block becomes; True means "run again"."""
        if self._retrying and has_label(exc, _TRANSIENT) and self._within_limit():
            self.retry = True
            self._owner._last_error = exc
            return True
        if isinstance(exc, OperationFailure) and _not_supported(exc):
            raise _translate(self._owner._label, exc) from exc
        return False

    def _within_limit(self) -> bool:
        return time.monotonic() - self._started < TIME_LIMIT_S

    async def _abort(self) -> None:
        session = self._session
        if not session.in_transaction:
            return
        # The driver ignores abort errors too: the server aborts it in the end.
        with contextlib.suppress(PyMongoError):
            await session.abort_transaction()

    async def _commit(self) -> None:
        session = self._session
        if not session.in_transaction:
            return  # the block ended the transaction itself
        while True:
            try:
                await session.commit_transaction()
                return
            except PyMongoError as exc:
                if (
                    exc.has_error_label(_UNKNOWN_COMMIT)
                    and not _max_time_expired(exc)
                    and self._within_limit()
                ):
                    continue  # the driver's rule: commit again (idempotent on the server)
                if self._retrying and exc.has_error_label(_TRANSIENT) and self._within_limit():
                    self.retry = True
                    self._owner._last_error = exc
                    return
                raise _translate(self._owner._label, exc) from exc


def _task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _max_time_expired(exc: PyMongoError) -> bool:
    return isinstance(exc, OperationFailure) and exc.code == 50  # MaxTimeMSExpired


def _not_supported(exc: OperationFailure) -> bool:
    text = str(exc)
    return (
        exc.code in _NOT_SUPPORTED_CODES
        or "replica set" in text
        or "Transaction numbers are only allowed" in text
    )


def _translate(label: str, exc: PyMongoError) -> InsightDBError:
    if isinstance(exc, OperationFailure) and _not_supported(exc):
        return TransactionError(
            f"{label}: this deployment does not support transactions (they need a "
            "replica set or a sharded cluster; a standalone server has none)",
            driver_error=exc,
        )
    if is_connectivity_error(exc):
        return unavailable(f"{label}: transaction", exc)
    return TransactionError(f"{label}: transaction failed: {_first_line(exc)}", driver_error=exc)


def _first_line(exc: BaseException) -> str:
    return masked_first_line(exc)[:300] or type(exc).__name__
