"""One run of a transaction block: start or join the transaction, then commit or abort.

An :class:`Attempt` starts a session and a transaction on the block's client and makes
it the open transaction of the current task (:mod:`insightdb.session_context`), or, in a
nested block, joins the enclosing one. What happens at the end, step by step:

* the block raised: the transaction is aborted (abort errors are ignored, as the driver
  ignores them: the server aborts it in the end); a transient error asks the retrying
  forms to run the block again, anything else propagates;
* a nested block raised, even if the exception was caught: the transaction can only
  abort, and the enclosing block raises :class:`~insightdb.exceptions.TransactionError`;
* the block ended normally: the commit, retried alone while its outcome is unknown
  (``UnknownTransactionCommitResult``; the server makes it idempotent), within the time
  limit. Callbacks registered for after the commit run only once it succeeded.

The rules for each driver error are in :mod:`.policy`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from pymongo.errors import OperationFailure, PyMongoError

from insightdb.exceptions import TransactionError
from insightdb.runtime.transactions.policy import (
    TIME_LIMIT_S,
    TRANSIENT,
    UNKNOWN_COMMIT,
    has_label,
    max_time_expired,
    not_supported,
    translate,
)
from insightdb.session_context import (
    ActiveTransaction,
    active_transaction,
    current_task,
    reset_active,
    set_active,
)

__all__ = ["Attempt"]


class Attempt:
    """One run of a transaction block: starts, joins or ends the transaction.

    ``async with attempt as session`` yields the guarded session (passing it as
    ``session=`` is allowed, never needed).
    """

    def __init__(
        self,
        client: Callable[[], Any],
        label: str,
        options: dict[str, Any],
        *,
        retrying: bool,
        started: float | None = None,
    ) -> None:
        self._client = client
        self._label = label
        self._options = options
        self._retrying = retrying
        self._started = time.monotonic() if started is None else started
        self.entered = False
        self.retry = False
        self.nested = False
        #: The transient error after which the block should run again (``retry``).
        self.error: BaseException | None = None
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
        client = self._client()
        session = client.start_session()
        try:
            await session.__aenter__()
            await session.start_transaction(**self._options)
        except PyMongoError as exc:
            await session.__aexit__(None, None, None)
            raise translate(self._label, exc) from exc
        self._session = session
        raw_client = getattr(client, "_raw", client)
        self._active = ActiveTransaction(
            session._raw_session, raw_client, current_task(), self._label, handle=session
        )
        self._token = set_active(self._active)
        return session

    def _join(self, outer: ActiveTransaction) -> Any:
        """A nested block: join the enclosing transaction (same cluster, no options)."""
        if self._options:
            raise TransactionError(
                "a nested transaction block joins the enclosing transaction and can't "
                "set its own options"
            )
        client = getattr(self._client(), "_raw", None)
        if client is not None and client is not outer.client:
            raise TransactionError(
                f"a nested transaction block over {self._label} is on another "
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
                self.retry = self._retrying and has_label(exc, TRANSIENT)
            return False
        try:
            if exc is not None:
                await self._abort()
                return self._after_failure(exc)
            if active.failed:
                await self._abort()
                raise TransactionError(
                    f"{self._label}: a nested transaction block failed, so the "
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
        if self._retrying and has_label(exc, TRANSIENT) and self._within_limit():
            self.retry = True
            self.error = exc
            return True
        if isinstance(exc, OperationFailure) and not_supported(exc):
            raise translate(self._label, exc) from exc
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
                    exc.has_error_label(UNKNOWN_COMMIT)
                    and not max_time_expired(exc)
                    and self._within_limit()
                ):
                    continue  # the driver's rule: commit again (idempotent on the server)
                if self._retrying and exc.has_error_label(TRANSIENT) and self._within_limit():
                    self.retry = True
                    self.error = exc
                    return
                raise translate(self._label, exc) from exc
