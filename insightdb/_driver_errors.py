"""Classification of PyMongo errors: connectivity (retry later) versus everything else.

The circuit breaker, the startup backoff and error translation all need the same
answer to "did the database fail, or did the operation?"; this module gives it once.
"""

from __future__ import annotations

from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from insightdb._redact import mask_text
from insightdb.exceptions import DatabaseUnavailable

__all__ = ["is_connectivity_error", "masked_first_line", "unavailable"]

_CONNECTIVITY = (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)


def is_connectivity_error(exc: BaseException) -> bool:
    """Tell whether ``exc`` means the database could not be reached or answer in time.

    Application errors (duplicate keys, validation, bad queries) are not; timeouts of
    the driver's ``timeoutMS`` deadline are.
    """
    if isinstance(exc, _CONNECTIVITY):
        return True
    return isinstance(exc, PyMongoError) and bool(getattr(exc, "timeout", False))


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
