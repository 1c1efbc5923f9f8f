"""Classification of PyMongo errors: connectivity (retry later) versus everything else.

The circuit breaker, the startup backoff and error translation all need the same
answer to "did the database fail, or did the operation?"; this module gives it once.
"""

from __future__ import annotations

from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    InvalidOperation,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from insightdb._redact import mask_text
from insightdb.exceptions import DatabaseUnavailable

__all__ = [
    "is_client_closed_error",
    "is_connectivity_error",
    "masked_first_line",
    "unavailable",
]

_CONNECTIVITY = (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)


# What PyMongo raises for an operation on a client closed under it: InvalidOperation
# "Cannot use AsyncMongoClient after close" (checked by message: InvalidOperation also
# means client-side misuse), or its private _PoolClosedError (checked by name).
_CLOSED_MESSAGE = "after close"
_POOL_CLOSED = "_PoolClosedError"


def is_client_closed_error(exc: BaseException) -> bool:
    """Tell whether ``exc`` is the driver refusing an operation because its client closed.

    That happens to operations still running when :meth:`insightdb.InsightDB.close`
    closes the clients; they become :class:`DatabaseUnavailable` like any other way
    of not reaching the database.
    """
    if isinstance(exc, InvalidOperation):
        return _CLOSED_MESSAGE in str(exc)
    return isinstance(exc, PyMongoError) and type(exc).__name__ == _POOL_CLOSED


def is_connectivity_error(exc: BaseException) -> bool:
    """Tell whether ``exc`` means the database could not be reached or answer in time.

    Application errors (duplicate keys, validation, bad queries) are not; timeouts of
    the driver's ``timeoutMS`` deadline are, and so is an operation refused because its
    client was closed (during shutdown).
    """
    if isinstance(exc, _CONNECTIVITY):
        return True
    if not isinstance(exc, PyMongoError):
        return False
    return bool(getattr(exc, "timeout", False)) or is_client_closed_error(exc)


def masked_first_line(exc: BaseException) -> str:
    """Return the first line of ``exc``'s text with credentials masked ("" if it has none).

    Driver errors can span lines (a topology description) and carry URIs; messages built
    from them take this line only.
    """
    text = mask_text(str(exc)).strip()
    return text.splitlines()[0] if text else ""


def unavailable(what: str, exc: BaseException) -> DatabaseUnavailable:
    """Build a one-line :class:`DatabaseUnavailable` that keeps the driver error.

    Args:
        what: What was being attempted, e.g. ``"admin: ping"``.
        exc: The driver exception; its text is masked and cut to its first line.
    """
    detail = masked_first_line(exc)
    if len(detail) > 300:
        detail = detail[:297] + "..."
    message = f"{what}: {type(exc).__name__}" + (f": {detail}" if detail else "")
    error = DatabaseUnavailable(message, driver_error=exc)
    error.__cause__ = exc
    return error
