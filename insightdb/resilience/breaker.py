"""A circuit breaker as a pure state machine: Closed, Open, HalfOpen, with an injected clock.

The breaker decides, for one cluster, whether an operation may be tried. It counts
consecutive failures that its caller reports (insightdb reports connectivity failures and
timeouts only), opens after ``failure_threshold`` of them, rejects everything while open,
and after ``reset_timeout_s`` becomes half-open: it then admits **exactly one** probe —
every other caller is rejected until the probe reports — and closes when the probe
succeeds or reopens when it fails.

Why it is hand-written: no maintained Python breaker fits an asyncio client. pybreaker
has no asyncio support; aiobreaker, purgatory and circuitbreaker let every caller that
arrives while half-open through at once, which sends a burst of traffic at a cluster
that is only just coming back instead of a single probe. A breaker is also small enough
to be written as a pure state machine that tests can drive with a fake clock instead of
sleeping.

The breaker does no I/O, no logging and reads no real time: time comes from ``clock``
(``time.monotonic`` by default) and state changes are reported to ``on_transition``.
It is not thread-safe by itself; insightdb uses one per client, from one event loop.

Who is "the probe": :meth:`CircuitBreaker.allow` takes an ``owner`` (insightdb passes
the current asyncio task). While half-open the first owner admitted holds the probe
slot; the same owner is admitted again (one Beanie call may issue several driver calls,
``find`` then ``to_list``) and only its outcome closes or reopens the breaker. Outcomes
reported by other owners while half-open or open belong to calls admitted before the
breaker opened and are ignored.

The probe slot is freed on **every** outcome of the probe, not only on the two that
move the breaker: a probe whose outcome says nothing about the server (a client-side
error such as a document that can't be encoded, a cancellation) calls
:meth:`CircuitBreaker.release`, which frees the slot without counting anything, so the
next caller probes at once. A probe whose owner has ended (``is_alive`` says so) frees
its slot when the next caller asks, and one that never reports at all frees it after
``probe_timeout_s``: the breaker can't stay half-open for longer than that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum

from insightdb.exceptions import ConfigurationError

__all__ = ["BreakerState", "BreakerStats", "CircuitBreaker", "Transition"]


class BreakerState(StrEnum):
    """The three states of a circuit breaker (values are the names used in reports)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def level(self) -> int:
        """A number for gauges: 0 closed, 1 half-open, 2 open."""
        return _LEVELS[self]


_LEVELS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change.

    Attributes:
        old: The state before.
        new: The state after.
        at: The clock's reading when it happened.
        reason: Why, in a few words (``"3 consecutive failures"``).
    """

    old: BreakerState
    new: BreakerState
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerStats:
    """Counters of one breaker since it was created.

    Attributes:
        state: The current state.
        consecutive_failures: Counted failures since the last success (closed state).
        failures: Failures counted in total.
        rejected: Calls rejected without being tried.
        opened: Times it opened (from closed or half-open).
        half_opened: Times it became half-open.
        closed: Times it closed again after a successful probe.
        probes: Probes admitted (one per half-open period, plus any that replaced an
            abandoned probe).
        abandoned_probes: Probes that never reported: their owner ended, or
            ``probe_timeout_s`` passed.
        released_probes: Probes that ended with an outcome that says nothing about the
            server (a client-side error) and freed the slot without counting.
    """

    state: BreakerState
    consecutive_failures: int
    failures: int
    rejected: int
    opened: int
    half_opened: int
    closed: int
    probes: int
    abandoned_probes: int
    released_probes: int = 0


class CircuitBreaker:
    """A Closed/Open/HalfOpen breaker with a single half-open probe.

    Args:
        failure_threshold: Consecutive counted failures that open the breaker.
        reset_timeout_s: How long it stays open before admitting a probe.
        probe_timeout_s: How long a probe may stay unreported before another caller
            may take its place.
        clock: Returns the current time in seconds (monotonic).
        on_transition: Called with every state change (keep it cheap).
        is_alive: Tells whether a probe's owner can still report (insightdb: its task is
            not done); a dead owner's slot is freed when the next caller asks.

    Raises:
        ConfigurationError: A bound is not positive.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        reset_timeout_s: float = 0.5,
        probe_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Callable[[Transition], None] | None = None,
        is_alive: Callable[[Hashable], bool] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ConfigurationError(f"failure_threshold must be >= 1 (got {failure_threshold})")
        if not reset_timeout_s > 0 or not probe_timeout_s > 0:
            raise ConfigurationError("reset_timeout_s and probe_timeout_s must be positive")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.probe_timeout_s = probe_timeout_s
        self._clock = clock
        self._on_transition = on_transition
        self._is_alive = is_alive
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_owner: Hashable | None = None
        self._probe_since = 0.0
        self._failures = 0
        self._rejected = 0
        self._opened = 0
        self._half_opened = 0
        self._closed = 0
        self._probes = 0
        self._abandoned = 0
        self._released = 0

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state.value} failures={self._consecutive}>"

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose reset timeout passed is half-open)."""
        self._advance(self._clock())
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open breaker admits a probe (0 when not open)."""
        now = self._clock()
        self._advance(now)
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(self._opened_at + self.reset_timeout_s - now, 0.0)

    def stats(self) -> BreakerStats:
        """Return the current state and counters."""
        return BreakerStats(
            state=self.state,
            consecutive_failures=self._consecutive,
            failures=self._failures,
            rejected=self._rejected,
            opened=self._opened,
            half_opened=self._half_opened,
            closed=self._closed,
            probes=self._probes,
            abandoned_probes=self._abandoned,
            released_probes=self._released,
        )

    # -- decisions ------------------------------------------------------------------------

    def allow(self, owner: Hashable) -> bool:
        """Tell whether ``owner`` may try an operation now.

        Closed: always. Open: never. Half-open: the first owner takes the probe slot
        and is admitted (again and again until it reports); everyone else is rejected.

        Args:
            owner: Who is asking (the current task); compared by identity.
        """
        now = self._clock()
        self._advance(now)
        state = self._state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN:
            if self._probe_owner is owner:
                return True
            if self._probe_owner is not None and self._abandoned_at(now):
                self._abandoned += 1
                self._probe_owner = None
            if self._probe_owner is None:
                self._probe_owner = owner
                self._probe_since = now
                self._probes += 1
                return True
        self._rejected += 1
        return False

    @property
    def closed(self) -> bool:
        """Whether the breaker is closed (a cheap read: no clock, no transition)."""
        return self._state is BreakerState.CLOSED

    def record_success(self, owner: Hashable) -> None:
        """Report that an operation of ``owner`` reached the server and got an answer."""
        if self._state is BreakerState.CLOSED:  # the hot path: nothing can change but this
            self._consecutive = 0
            return
        now = self._clock()
        self._advance(now)  # open may turn half-open; it never turns closed by itself
        if self._state is BreakerState.HALF_OPEN and self._probe_owner is owner:
            self._consecutive = 0
            self._probe_owner = None
            self._closed += 1
            self._move(BreakerState.CLOSED, now, "probe succeeded")

    def record_failure(self, owner: Hashable) -> None:
        """Report a failure that counts (connectivity or timeout) by ``owner``."""
        now = self._clock()
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            self._failures += 1
            self._consecutive += 1
            if self._consecutive >= self.failure_threshold:
                self._open(now, f"{self._consecutive} consecutive failures")
        elif self._state is BreakerState.HALF_OPEN and self._probe_owner is owner:
            self._failures += 1
            self._probe_owner = None
            self._open(now, "probe failed")

    def release(self, owner: Hashable) -> None:
        """Report that ``owner``'s operation ended with an outcome that says nothing about
        the server (a client-side error, a cancellation).

        Nothing is counted. If ``owner`` holds the half-open probe slot, the slot is freed
        and the breaker stays half-open: the next caller probes.
        """
        if self._state is BreakerState.CLOSED:
            return
        self._advance(self._clock())
        if self._state is BreakerState.HALF_OPEN and self._probe_owner is owner:
            self._probe_owner = None
            self._released += 1

    # -- transitions ----------------------------------------------------------------------

    def _abandoned_at(self, now: float) -> bool:
        if now - self._probe_since >= self.probe_timeout_s:
            return True
        return self._is_alive is not None and not self._is_alive(self._probe_owner)

    def _advance(self, now: float) -> None:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.reset_timeout_s:
            self._half_opened += 1
            self._probe_owner = None
            self._move(BreakerState.HALF_OPEN, now, f"{self.reset_timeout_s:g}s passed")

    def _open(self, now: float, reason: str) -> None:
        self._opened_at = now
        self._opened += 1
        self._move(BreakerState.OPEN, now, reason)

    def _move(self, new: BreakerState, now: float, reason: str) -> None:
        old, self._state = self._state, new
        if self._on_transition is not None:
            self._on_transition(Transition(old=old, new=new, at=now, reason=reason))
