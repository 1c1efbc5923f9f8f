"""The open transaction of the current task, held in a context variable.

:func:`insightdb.transaction` / :meth:`InsightDB.transaction` set it for the duration of
a block; the guarded collection (:mod:`insightdb.tenancy.collection`) reads it once per
operation and, when no ``session=`` was given, hands the driver the transaction's
session. This module is the low layer both share: it holds the state and decides, for
one operation, which session it runs in.

The rules (``docs/transactions.md`` gives them from the user's side):

* an explicit ``session=`` always wins;
* an operation on a collection of another cluster than the transaction's can't join it
  and is refused with :class:`~insightdb.exceptions.TransactionError` — never run
  outside the transaction silently;
* only the task that opened the block joins it. A task started inside the block
  inherits the context variable (asyncio copies the context), but a driver session is
  not safe for concurrent use and the task may outlive the block, so its operations
  are refused with ``TransactionError`` instead of silently joining or leaving.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from insightdb.exceptions import TransactionError

__all__ = ["ActiveTransaction", "active_transaction", "current_task"]


class ActiveTransaction:
    """One attempt of an open transaction block, as operations inside it see it.

    Attributes:
        session: The driver's session in which the transaction runs.
        handle: The guarded session the block yielded (nested blocks yield it too).
        client: The driver's client of that session (its cluster).
        owner: The task that opened the block; only it joins the transaction.
        label: The groups of the block (``"admin+customer"``), for error messages.
        failed: Set when a nested block ended with an exception: the transaction
            can't commit any more, only abort.
        after_commit: Callbacks run after a successful commit (audit records of a
            cluster the transaction can't reach); dropped on abort.
    """

    __slots__ = ("after_commit", "client", "failed", "handle", "label", "owner", "session")

    def __init__(
        self,
        session: Any,
        client: Any,
        owner: asyncio.Task[Any] | None,
        label: str,
        *,
        handle: Any = None,
    ) -> None:
        self.session = session
        self.handle = handle
        self.client = client
        self.owner = owner
        self.label = label
        self.failed = False
        self.after_commit: list[Callable[[], Awaitable[None]]] = []

    def covers(self, client: Any) -> bool:
        """Tell whether an operation of ``client`` in the current task joins this."""
        return client is self.client and current_task() is self.owner

    def session_for(self, client: Any, what: str) -> Any:
        """The session an operation on ``what`` (served by ``client``) must run in.

        Raises:
            TransactionError: The operation runs in another task than the one that
                opened the block, or on another cluster.
        """
        if current_task() is not self.owner:
            raise TransactionError(
                f"{what}: this task was started inside a transaction block ({self.label}) "
                "but is not the task that opened it; it can't join the transaction (a "
                "session is not safe for concurrent use) and won't silently run outside "
                "it. Await the operation in the block's own task, open a transaction in "
                "this task, or start the task before the block"
            )
        if client is not self.client:
            raise TransactionError(
                f"{what} is on another cluster than the open transaction ({self.label}); "
                "it can't join it. Run it before or after the block"
            )
        return self.session


def current_task() -> asyncio.Task[Any] | None:
    """The running task (a block's owner), or ``None`` for a synchronous caller."""
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous caller
        return None


_active: contextvars.ContextVar[ActiveTransaction | None] = contextvars.ContextVar(
    "insightdb_transaction", default=None
)
#: The open transaction of this context, or ``None`` (one ContextVar read).
active_transaction = _active.get


def set_active(active: ActiveTransaction | None) -> contextvars.Token[ActiveTransaction | None]:
    """Make ``active`` the open transaction of this context; reset with the token."""
    return _active.set(active)


def reset_active(token: contextvars.Token[ActiveTransaction | None]) -> None:
    """Undo :func:`set_active`."""
    _active.reset(token)
