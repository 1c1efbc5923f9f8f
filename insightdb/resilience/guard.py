"""The operation guard of one client: its circuit breaker, wired to every operation.

:class:`~insightdb.tenancy.collection.GuardedCollection` asks the guard of its model's client
before every operation (:meth:`ClientGuard.before`) and tells it the outcome
(:meth:`~ClientGuard.succeeded`, :meth:`~ClientGuard.failed`); health checks do the same.
The guard turns that into :class:`~insightdb.resilience.breaker.CircuitBreaker` calls:

* only connectivity failures and timeouts count
  (:func:`insightdb.resilience._driver_errors.is_connectivity_error`); an error the server sent
  back (``OperationFailure``: a duplicate key, a validation failure) means the server
  answered, so it counts as a success; any other outcome — a client-side error such as
  a document bson can't encode, an operation on a closed client, a cancellation — says
  nothing about the server: it is not counted, and if it was the half-open probe it
  frees the probe slot (:meth:`~insightdb.resilience.breaker.CircuitBreaker.release`);
* while the breaker is open, :meth:`~ClientGuard.before` raises
  :class:`~insightdb.exceptions.CircuitOpenError` at once, without touching the network;
* while half-open, the current asyncio task is the breaker's owner, so exactly one task
  probes the cluster (and may run several driver calls for one Beanie call); a probe
  task that ended without reporting frees the slot for the next caller;
* once the runtime starts closing (:meth:`~ClientGuard.close`), :meth:`~ClientGuard.before`
  refuses every new operation with :class:`~insightdb.exceptions.DatabaseUnavailable`
  ("shutting down"), so a graceful shutdown waits only for the operations already running.

It also notes when the server last answered one of the application's operations
(:attr:`ClientGuard.last_answer_at`): a health check whose ping timed out reads it to
tell an overloaded server (still answering others) from a silent one.

It retries nothing: the driver has already retried what it could. State changes are
logged (loguru, ``insightdb`` logger) and counted in the breaker's statistics.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Hashable

from loguru import logger
from pymongo.errors import OperationFailure

from insightdb.exceptions import CircuitOpenError, DatabaseUnavailable
from insightdb.monitoring.metrics import BreakerMetrics
from insightdb.resilience._driver_errors import is_client_closed_error, is_connectivity_error
from insightdb.resilience.breaker import BreakerState, BreakerStats, CircuitBreaker, Transition
from insightdb.settings import Settings

__all__ = ["ClientGuard", "counts_as_failure", "server_answered"]


def counts_as_failure(exc: BaseException) -> bool:
    """Tell whether ``exc`` is a failure the breaker counts (connectivity or timeout).

    Args:
        exc: What an operation (or a health ping) raised.
    """
    if is_client_closed_error(exc):  # our own shutdown, not the server's fault
        return False
    return is_connectivity_error(exc) or isinstance(exc, TimeoutError)


def server_answered(exc: BaseException) -> bool:
    """Tell whether ``exc`` is an answer of the server (an error it sent back).

    Args:
        exc: What an operation raised.
    """
    return isinstance(exc, OperationFailure) and not counts_as_failure(exc)


def _alive(owner: Hashable) -> bool:
    # A task that is done can never report; a thread (a synchronous caller) is trusted.
    return not (isinstance(owner, asyncio.Task) and owner.done())


def _owner() -> Hashable:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous caller
        task = None
    return task if task is not None else threading.current_thread()


class ClientGuard:
    """The :class:`~insightdb.tenancy.policy.OperationGuard` of one client.

    Args:
        name: The groups the client serves, e.g. ``"admin+customer"`` (used in messages,
            logs and metric labels).
        failure_threshold: Consecutive connectivity failures that open the breaker.
        reset_timeout_s: How long the breaker stays open before one probe.
        probe_timeout_s: How long an unreported probe holds the half-open slot.
        clock: The breaker's clock (monotonic seconds).
    """

    __slots__ = ("_breaker", "_clock", "_closing", "last_answer_at", "name", "server_version")

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        reset_timeout_s: float = 0.5,
        probe_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._clock = clock
        self.last_answer_at = -math.inf
        """When (``clock`` seconds) an application operation last got an answer from the
        server, a result or an error the server sent back (health checks don't count)."""
        self.server_version: str | None = None
        """The server version a health check last read (cached: it rarely changes)."""
        self._closing = False
        self._breaker = CircuitBreaker(
            failure_threshold=failure_threshold,
            reset_timeout_s=reset_timeout_s,
            probe_timeout_s=probe_timeout_s,
            clock=clock,
            on_transition=self._log_transition,
            is_alive=_alive,
        )

    @classmethod
    def from_settings(cls, name: str, settings: Settings) -> ClientGuard:
        """Build a guard whose breaker follows ``settings.resilience``.

        A half-open probe that never reports frees its slot after
        ``resilience.probe_timeout_s``, by default the operation deadline plus one second.

        Args:
            name: The groups the client serves.
            settings: The runtime's settings.
        """
        resilience = settings.resilience
        probe_timeout = resilience.probe_timeout_s
        if probe_timeout is None:
            deadline_ms = settings.timeouts.operation_ms or settings.timeouts.server_selection_ms
            probe_timeout = deadline_ms / 1000 + 1.0
        return cls(
            name,
            failure_threshold=resilience.failure_threshold,
            reset_timeout_s=resilience.reset_timeout_s,
            probe_timeout_s=probe_timeout,
        )

    def __repr__(self) -> str:
        return f"<ClientGuard {self.name} {self._breaker.state.value}>"

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker (read its ``state`` and ``stats()``)."""
        return self._breaker

    @property
    def state(self) -> BreakerState:
        """The breaker's current state."""
        return self._breaker.state

    def stats(self) -> BreakerStats:
        """The breaker's state and counters."""
        return self._breaker.stats()

    def metrics(self) -> BreakerMetrics:
        """The breaker's figures for a metrics snapshot, labelled with this guard's name."""
        stats = self._breaker.stats()
        return BreakerMetrics(
            cluster=self.name,
            state=stats.state.value,
            consecutive_failures=stats.consecutive_failures,
            failures=stats.failures,
            rejected=stats.rejected,
            opened=stats.opened,
            half_opened=stats.half_opened,
            closed=stats.closed,
            probes=stats.probes,
            abandoned_probes=stats.abandoned_probes,
        )

    def clock(self) -> float:
        """The guard's clock now (the time base of :attr:`last_answer_at`)."""
        return self._clock()

    @property
    def closing(self) -> bool:
        """Whether the runtime is shutting down (new operations are refused)."""
        return self._closing

    def close(self) -> None:
        """Refuse every operation from now on: the runtime is shutting down."""
        self._closing = True

    # -- the OperationGuard protocol ------------------------------------------------------

    def before(self) -> None:
        """Admit the operation, or refuse it without trying it.

        Raises:
            DatabaseUnavailable: The runtime is shutting down.
            CircuitOpenError: The breaker is open, or half-open with a probe in flight.
        """
        if self._closing:
            raise DatabaseUnavailable(
                f"{self.name}: insightdb is shutting down (operation refused without trying)"
            )
        breaker = self._breaker
        # Closed admits everyone and never moves on its own: skip the task lookup and
        # the clock on the hot path.
        if breaker.closed or breaker.allow(_owner()):
            return
        wait = self._breaker.retry_after()
        if wait > 0:
            detail = f"open; next probe in {wait:.2f}s"
        else:
            detail = "half-open; a probe is in flight"
        raise CircuitOpenError(f"{self.name}: circuit breaker {detail} (rejected without trying)")

    def succeeded(self, *, application: bool = True) -> None:
        """The operation got an answer from the server.

        Args:
            application: ``False`` for a health check's own ping, which must not count
                as evidence that the server answers the application.
        """
        if application:
            self.last_answer_at = self._clock()
        breaker = self._breaker
        breaker.record_success(None if breaker.closed else _owner())

    def failed(self, exc: BaseException) -> None:
        """The operation failed with ``exc`` (any exception: the guard sorts them).

        A connectivity failure or timeout counts against the breaker; an error the server
        sent back is a sign of life (a success); anything else (client-side) is not
        counted and frees the half-open probe slot if this operation held it.
        """
        if counts_as_failure(exc):
            self._breaker.record_failure(_owner())
        elif server_answered(exc):
            self.last_answer_at = self._clock()
            self._breaker.record_success(_owner())
        else:
            self._breaker.release(_owner())

    def abandon(self) -> None:
        """The operation ended with an outcome that says nothing about the server's
        health (a health ping that timed out under overload): count nothing, and free
        the half-open probe slot if this caller held it."""
        self._breaker.release(_owner())

    # -- logging ----------------------------------------------------------------------------

    def _log_transition(self, change: Transition) -> None:
        if change.new is BreakerState.OPEN:
            logger.warning(
                "insightdb: circuit breaker of {} opened ({}); rejecting operations for {:g}s",
                self.name,
                change.reason,
                self._breaker.reset_timeout_s,
            )
        elif change.new is BreakerState.HALF_OPEN:
            logger.info(
                "insightdb: circuit breaker of {} half-open ({}); admitting one probe",
                self.name,
                change.reason,
            )
        else:
            logger.info("insightdb: circuit breaker of {} closed ({})", self.name, change.reason)
