"""A transaction block and its three forms: one attempt, the retrying loop, ``run(fn)``.

:class:`Transaction` checks that the requested groups share one client (one cluster;
otherwise a :class:`~insightdb.exceptions.TransactionError` naming the hosts, never a
silent two-phase imitation) and runs the block as one :class:`~.attempt.Attempt` per
run. A plain ``async with`` block is one attempt (its commit is still retried). Python
can't run an ``async with`` body twice, so the retrying forms are
``async for attempt in db.transaction(): async with attempt: ...`` and
``await db.transaction().run(fn)``: they run the block again after a transient error,
with the driver's backoff, within :data:`~.policy.TIME_LIMIT_S` and ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from insightdb.exceptions import TransactionError
from insightdb.runtime.transactions.attempt import Attempt
from insightdb.runtime.transactions.policy import (
    DEFAULT_MAX_ATTEMPTS,
    TIME_LIMIT_S,
    backoff_delay,
    describe_hosts,
)
from insightdb.settings import GROUPS

__all__ = ["Transaction"]

P = ParamSpec("P")
R = TypeVar("R")


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
            described = " and ".join(f"{g} on {describe_hosts(c)}" for g, c in distinct.values())
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
        self._single = Attempt(self._client, self._label, self._options, retrying=False)
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
            attempt = Attempt(
                self._client, self._label, self._options, retrying=True, started=started
            )
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
            self._last_error = attempt.error
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
