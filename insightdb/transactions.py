"""Transactions across the admin and the customer database.

A MongoDB transaction lives in one client session, so it can span both databases only
when they are on the same cluster (the same client). :func:`transaction` starts a
session and a transaction on the client the requested groups share, commits when the
block ends normally and aborts when it raises; pass ``session=`` to every Beanie
operation inside. Groups on different clusters can't share a transaction: that is a
:class:`~insightdb.exceptions.TransactionError`, never a silent two-phase imitation.

Commit retries follow the driver (it retries a commit once on a retryable error);
insightdb adds none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import OperationFailure, PyMongoError

from insightdb._driver_errors import is_connectivity_error, masked_first_line, unavailable
from insightdb.exceptions import InsightDBError, TransactionError
from insightdb.settings import GROUPS

__all__ = ["transaction"]

_NOT_SUPPORTED_CODES = frozenset({20})  # IllegalOperation: standalone server


@asynccontextmanager
async def transaction(
    client_of: Callable[[str], AsyncMongoClient[Any]],
    groups: Sequence[str] = GROUPS,
    **options: Any,
) -> AsyncIterator[AsyncClientSession]:
    """Run the block in one transaction over ``groups``; yield its session.

    Args:
        client_of: Returns the client of a group (``InsightDB.client``).
        groups: The groups the transaction writes to (both by default).
        **options: Passed to ``start_transaction`` (``read_concern``,
            ``write_concern``, ``read_preference``, ``max_commit_time_ms``).

    Raises:
        TransactionError: The groups are on different clusters, the deployment does not
            support transactions, or the commit failed.
        DatabaseUnavailable: The cluster could not be reached.
    """
    if not groups:
        raise TransactionError("transaction() needs at least one group")
    clients = {group: client_of(group) for group in groups}
    if len({id(c) for c in clients.values()}) > 1:
        raise TransactionError(
            f"{' and '.join(groups)} are on different clusters: one transaction can't span "
            "them; use one transaction per group (or put both databases on one cluster)"
        )
    client = next(iter(clients.values()))
    label = "+".join(groups)
    body_failed = False
    try:
        async with (
            client.start_session() as session,
            await session.start_transaction(**options),
        ):
            try:
                yield session
            except BaseException:
                body_failed = True  # the transaction is aborted; the error is the block's
                raise
    except InsightDBError:
        raise
    except PyMongoError as exc:
        if body_failed:
            raise
        raise _translate(label, exc) from exc


def _translate(label: str, exc: PyMongoError) -> InsightDBError:
    if isinstance(exc, OperationFailure) and (
        exc.code in _NOT_SUPPORTED_CODES or "replica set" in str(exc)
    ):
        return TransactionError(
            f"{label}: this deployment does not support transactions (they need a "
            "replica set or a sharded cluster)",
            driver_error=exc,
        )
    if is_connectivity_error(exc):
        return unavailable(f"{label}: transaction", exc)
    return TransactionError(f"{label}: transaction failed: {_first_line(exc)}", driver_error=exc)


def _first_line(exc: BaseException) -> str:
    return masked_first_line(exc)[:300] or type(exc).__name__
