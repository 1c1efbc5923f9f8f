"""What the guarded objects of one database share, and the guard they report to.

:class:`Policy` carries a database's group label, which of its collections are
tenant-scoped, the breaker (an :class:`OperationGuard`), the operation deadline, the
runtime's :class:`InFlight` counter and the command monitor. :class:`SessionProxy` is
the base of the guarded session: :func:`unwrap_session` hands the driver its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "NO_GUARD",
    "InFlight",
    "OperationGuard",
    "Policy",
    "SessionProxy",
    "unwrap_session",
]


class OperationGuard(Protocol):
    """What the collection asks before and tells after every operation (the breaker)."""

    def before(self) -> None:
        """Raise (``CircuitOpenError``) to reject the operation without trying it."""

    def succeeded(self) -> None:
        """The operation reached the server and got an answer."""

    def failed(self, exc: BaseException) -> None:
        """The operation failed with ``exc`` (connectivity or not: the guard decides)."""


class InFlight:
    """How many guarded operations are running now (graceful shutdown waits for zero).

    A plain counter: operations run on one event loop, so no lock is needed.
    """

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class _NoGuard:
    __slots__ = ()

    def before(self) -> None:
        return None

    def succeeded(self) -> None:
        return None

    def failed(self, exc: BaseException) -> None:
        return None


NO_GUARD: OperationGuard = _NoGuard()


class SessionProxy:
    """Base of the guarded session (:mod:`insightdb.tenancy.guarded`): the driver gets ``.raw``."""

    __slots__ = ("_raw_session",)

    def __init__(self, raw: Any) -> None:
        self._raw_session = raw


class Policy:
    """What the guarded objects of one database share.

    Args:
        group: The group (or ``"db"`` name) used in error labels.
        is_scoped: Tells whether a collection name of this database is tenant-scoped.
        guard: The breaker of the database's cluster.
        deadline_s: The per-operation deadline (``timeouts.operation_ms``); each
            operation is cut off at the deadline plus 5%, because PyMongo re-checks
            its own deadline only every 0.5 s while waiting for a server.
        in_flight: The runtime's counter of running operations.
        recorder: Told of every operation (the command monitor,
            :class:`~insightdb.monitoring.commands.OperationMonitor`); ``None``: no
            monitoring, and no clock is read.
    """

    __slots__ = ("cluster", "deadline_s", "group", "guard", "in_flight", "is_scoped", "recorder")

    def __init__(
        self,
        group: str,
        is_scoped: Callable[[str], bool],
        *,
        guard: OperationGuard = NO_GUARD,
        deadline_s: float | None = None,
        in_flight: InFlight | None = None,
        recorder: Any = None,
    ) -> None:
        self.group = group
        self.is_scoped = is_scoped
        self.guard = guard
        self.deadline_s = deadline_s
        self.in_flight = in_flight if in_flight is not None else InFlight()
        self.recorder = recorder
        self.cluster = str(getattr(guard, "name", group))


def unwrap_session(kwargs: dict[str, Any]) -> None:
    """Hand the driver its own session when a guarded one was passed."""
    session = kwargs.get("session")
    if isinstance(session, SessionProxy):
        kwargs["session"] = session._raw_session
