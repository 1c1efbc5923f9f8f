"""What a driver error means to a transaction block: run it again, commit again, or fail.

Retries follow the driver's ``with_transaction``: the whole block again on an error
labelled ``TransientTransactionError`` (with jittered exponential backoff), the commit
alone on ``UnknownTransactionCommitResult``, within 120 seconds — and insightdb adds a
bound on the number of attempts. An error that ends the block becomes an insightdb
error: a deployment without transactions, a lost connection, or a failed transaction
(:func:`translate`). The functions here are pure (the jitter is passed in);
:mod:`.attempt` and :mod:`.block` apply them.
"""

from __future__ import annotations

from typing import Any, Final

from pymongo.errors import OperationFailure, PyMongoError

from insightdb.exceptions import InsightDBError, TransactionError
from insightdb.resilience._driver_errors import (
    is_connectivity_error,
    masked_first_line,
    unavailable,
)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "TIME_LIMIT_S",
    "TRANSIENT",
    "UNKNOWN_COMMIT",
    "backoff_delay",
    "describe_hosts",
    "has_label",
    "max_time_expired",
    "not_supported",
    "translate",
]

#: The driver's bound on retrying one ``with_transaction`` (seconds).
TIME_LIMIT_S: Final = 120.0
#: insightdb's bound on the number of times the block runs.
DEFAULT_MAX_ATTEMPTS: Final = 5
#: The label of an error after which the whole block runs again.
TRANSIENT: Final = "TransientTransactionError"
#: The label of a commit whose outcome is unknown: commit again.
UNKNOWN_COMMIT: Final = "UnknownTransactionCommitResult"
_BACKOFF_INITIAL_S = 0.005  # the driver's: 5 ms, growing by 1.5 per retry, up to 0.5 s
_BACKOFF_MAX_S = 0.5
_NOT_SUPPORTED_CODES = frozenset({20})  # IllegalOperation: a standalone server


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


def max_time_expired(exc: PyMongoError) -> bool:
    """Tell whether a commit ran out of its ``max_commit_time_ms`` (not to be retried)."""
    return isinstance(exc, OperationFailure) and exc.code == 50  # MaxTimeMSExpired


def not_supported(exc: OperationFailure) -> bool:
    """Tell whether the server refused because it runs no transactions (a standalone)."""
    text = str(exc)
    return (
        exc.code in _NOT_SUPPORTED_CODES
        or "replica set" in text
        or "Transaction numbers are only allowed" in text
    )


def translate(label: str, exc: PyMongoError) -> InsightDBError:
    """The insightdb error a driver error that ends the block ``label`` becomes."""
    if isinstance(exc, OperationFailure) and not_supported(exc):
        return TransactionError(
            f"{label}: this deployment does not support transactions (they need a "
            "replica set or a sharded cluster; a standalone server has none)",
            driver_error=exc,
        )
    if is_connectivity_error(exc):
        return unavailable(f"{label}: transaction", exc)
    return TransactionError(f"{label}: transaction failed: {_first_line(exc)}", driver_error=exc)


def describe_hosts(client: Any) -> str:
    """The servers a client knows, as ``host:port`` (its topology: no credentials)."""
    try:
        addresses = client.topology_description.server_descriptions()
    except Exception:  # a closed client: say so rather than guess
        return "unknown hosts"
    return ",".join(sorted(f"{host}:{port}" for host, port in addresses)) or "unknown hosts"


def _first_line(exc: BaseException) -> str:
    return masked_first_line(exc)[:300] or type(exc).__name__
