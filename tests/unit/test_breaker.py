"""The circuit breaker as a pure state machine, driven by a fake clock (nothing sleeps)."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    InvalidOperation,
    NetworkTimeout,
    OperationFailure,
)

from insightdb import CircuitOpenError, ConfigurationError, DatabaseUnavailable
from insightdb.resilience._driver_errors import is_client_closed_error, is_connectivity_error
from insightdb.resilience.breaker import BreakerState, CircuitBreaker, Transition
from insightdb.resilience.guard import ClientGuard, counts_as_failure, server_answered

A, B, C = object(), object(), object()  # three callers (tasks, in real use)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(
    clock: FakeClock, threshold: int = 3, reset: float = 5.0, probe: float = 10.0
) -> tuple[CircuitBreaker, list[Transition]]:
    changes: list[Transition] = []
    breaker = CircuitBreaker(
        failure_threshold=threshold,
        reset_timeout_s=reset,
        probe_timeout_s=probe,
        clock=clock,
        on_transition=changes.append,
    )
    return breaker, changes


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        assert breaker.allow(A)
        breaker.record_failure(A)


# closed ---------------------------------------------------------------------------------


def test_starts_closed_and_admits_everyone(clock: FakeClock) -> None:
    breaker, changes = make(clock)
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow(owner) for owner in (A, B, C))
    assert changes == []


def test_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker, changes = make(clock, threshold=3)
    for _ in range(2):
        breaker.record_failure(A)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure(B)
    assert breaker.state is BreakerState.OPEN
    assert [(c.old, c.new, c.reason) for c in changes] == [
        (BreakerState.CLOSED, BreakerState.OPEN, "3 consecutive failures")
    ]
    assert changes[0].at == clock.now


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    breaker, _ = make(clock, threshold=3)
    for _ in range(10):
        breaker.record_failure(A)
        breaker.record_failure(B)
        breaker.record_success(C)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.stats().consecutive_failures == 0
    assert breaker.stats().failures == 20


# open -----------------------------------------------------------------------------------


def test_open_rejects_everyone_until_the_reset_timeout(clock: FakeClock) -> None:
    breaker, _ = make(clock, reset=5.0)
    trip(breaker)
    clock.advance(4.999)
    assert not any(breaker.allow(owner) for owner in (A, B, C))
    assert breaker.stats().rejected == 3
    assert breaker.retry_after() == pytest.approx(0.001)


def test_outcomes_of_calls_admitted_before_opening_are_ignored(clock: FakeClock) -> None:
    breaker, changes = make(clock)
    trip(breaker)
    breaker.record_success(B)  # a slow call that started while closed
    breaker.record_failure(C)
    assert breaker.state is BreakerState.OPEN
    assert len(changes) == 1


# half-open ------------------------------------------------------------------------------


def test_half_open_admits_exactly_one_probe(clock: FakeClock) -> None:
    breaker, changes = make(clock, reset=5.0)
    trip(breaker)
    clock.advance(5.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow(A)  # the probe
    assert not breaker.allow(B)
    assert not breaker.allow(C)
    assert breaker.allow(A)  # the probe's own follow-up call (find, then to_list)
    stats = breaker.stats()
    assert (stats.probes, stats.half_opened, stats.rejected) == (1, 1, 2)
    assert changes[-1].new is BreakerState.HALF_OPEN


def test_a_successful_probe_closes(clock: FakeClock) -> None:
    breaker, changes = make(clock)
    trip(breaker)
    clock.advance(5.0)
    assert breaker.allow(A)
    breaker.record_success(B)  # not the probe: ignored
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(A)
    assert breaker.state is BreakerState.CLOSED
    assert [c.new for c in changes] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]
    assert changes[-1].reason == "probe succeeded"
    assert all(breaker.allow(owner) for owner in (A, B, C))


def test_a_failed_probe_reopens_for_a_new_reset_timeout(clock: FakeClock) -> None:
    breaker, changes = make(clock, reset=5.0)
    trip(breaker)
    clock.advance(5.0)
    assert breaker.allow(A)
    breaker.record_failure(B)  # not the probe: ignored
    assert breaker.state is BreakerState.HALF_OPEN
    clock.advance(2.0)
    breaker.record_failure(A)
    assert breaker.state is BreakerState.OPEN
    assert changes[-1].reason == "probe failed"
    clock.advance(4.9)
    assert breaker.state is BreakerState.OPEN  # counted from the failed probe
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow(C)
    assert breaker.stats().probes == 2


def test_an_abandoned_probe_frees_the_slot_after_probe_timeout(clock: FakeClock) -> None:
    breaker, _ = make(clock, reset=1.0, probe=3.0)
    trip(breaker)
    clock.advance(1.0)
    assert breaker.allow(A)  # then A's task is cancelled and never reports
    clock.advance(2.999)
    assert not breaker.allow(B)
    clock.advance(0.001)
    assert breaker.allow(B)
    assert not breaker.allow(A)  # A lost the slot
    breaker.record_success(A)  # too late: ignored
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(B)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.stats().abandoned_probes == 1


def test_a_released_probe_frees_the_slot_without_counting(clock: FakeClock) -> None:
    breaker, changes = make(clock, reset=1.0, probe=60.0)
    trip(breaker)
    clock.advance(1.0)
    assert breaker.allow(A)
    assert not breaker.allow(B)
    before = breaker.stats()
    breaker.release(A)  # e.g. A's document could not be encoded: the server saw nothing
    stats = breaker.stats()
    assert stats.state is BreakerState.HALF_OPEN
    assert stats.released_probes == 1
    assert (stats.failures, stats.opened, stats.closed) == (
        before.failures,
        before.opened,
        before.closed,
    )
    assert breaker.allow(B)  # at once: no wait for probe_timeout_s
    breaker.record_success(B)
    assert breaker.state is BreakerState.CLOSED
    assert [c.new for c in changes][-2:] == [BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_release_by_anyone_but_the_probe_is_ignored(clock: FakeClock) -> None:
    breaker, _ = make(clock, reset=1.0)
    breaker.release(A)  # closed: nothing to free
    assert breaker.state is BreakerState.CLOSED
    trip(breaker)
    breaker.release(A)  # open: nothing to free
    clock.advance(1.0)
    assert breaker.allow(A)
    breaker.release(B)
    assert not breaker.allow(C)
    assert breaker.stats().released_probes == 0


def test_a_dead_probe_owner_frees_the_slot_at_the_next_request(clock: FakeClock) -> None:
    dead: set[object] = set()
    breaker = CircuitBreaker(
        failure_threshold=1,
        reset_timeout_s=1.0,
        probe_timeout_s=60.0,
        clock=clock,
        is_alive=lambda owner: owner not in dead,
    )
    breaker.record_failure(A)
    clock.advance(1.0)
    assert breaker.allow(A)
    assert not breaker.allow(B)
    dead.add(A)  # A's task ended without reporting (cancelled, or an error nobody saw)
    assert breaker.allow(B)
    assert breaker.stats().abandoned_probes == 1
    breaker.record_failure(B)
    assert breaker.state is BreakerState.OPEN


def test_a_full_cycle_counts_every_transition(clock: FakeClock) -> None:
    breaker, changes = make(clock, threshold=2, reset=1.0)
    for _ in range(3):
        trip(breaker)
        clock.advance(1.0)
        assert breaker.allow(A)
        breaker.record_success(A)
    stats = breaker.stats()
    assert (stats.opened, stats.half_opened, stats.closed, stats.probes) == (3, 3, 3, 3)
    assert len(changes) == 9
    assert [c.at for c in changes] == sorted(c.at for c in changes)


def test_levels_for_gauges() -> None:
    assert [s.level for s in BreakerState] == [0, 2, 1]
    assert BreakerState.HALF_OPEN.value == "half_open"


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"reset_timeout_s": 0}, {"probe_timeout_s": -1}],
)
def test_bounds_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


# the guard: what counts, who is the owner, how fast it rejects ----------------------------


def test_only_connectivity_failures_and_timeouts_count() -> None:
    assert counts_as_failure(AutoReconnect("gone"))
    assert counts_as_failure(NetworkTimeout("slow"))
    assert counts_as_failure(TimeoutError())
    assert not counts_as_failure(DuplicateKeyError("E11000"))
    assert not counts_as_failure(OperationFailure("bad query"))
    assert not counts_as_failure(ValueError())


def test_what_the_server_answered_is_told_apart_from_client_side_errors() -> None:
    closed = InvalidOperation("Cannot use AsyncMongoClient after close")
    assert is_client_closed_error(closed)
    assert is_connectivity_error(closed)  # translated to DatabaseUnavailable...
    assert not counts_as_failure(closed)  # ...but our own shutdown is not the server's fault
    assert not is_client_closed_error(InvalidOperation("cursor already used"))
    assert not is_connectivity_error(InvalidOperation("cursor already used"))
    assert server_answered(DuplicateKeyError("E11000"))
    assert server_answered(OperationFailure("bad query"))
    for client_side in (InvalidDocument("cannot encode object"), ValueError(), closed):
        assert not server_answered(client_side)
        assert not counts_as_failure(client_side)
    assert not server_answered(AutoReconnect("gone"))


@pytest.mark.parametrize(
    "error",
    [
        InvalidDocument("cannot encode object: <object>, of type: <class 'object'>"),
        InvalidOperation("Cannot use AsyncMongoClient after close"),
        asyncio.CancelledError(),
    ],
    ids=["invalid-document", "closed-client", "cancelled"],
)
def test_guard_frees_the_probe_slot_on_a_client_side_outcome(
    clock: FakeClock, error: BaseException
) -> None:
    guard = ClientGuard("admin", failure_threshold=1, reset_timeout_s=1, clock=clock)
    guard.failed(AutoReconnect("down"))
    clock.advance(1)
    guard.before()  # this thread is the probe...
    guard.failed(error)  # ...and its operation never reached the server
    stats = guard.stats()
    assert stats.state is BreakerState.HALF_OPEN
    assert (stats.failures, stats.released_probes) == (1, 1)
    guard.before()  # the next caller probes at once
    guard.succeeded()
    assert guard.state is BreakerState.CLOSED


def test_guard_counts_a_server_error_of_the_probe_as_a_sign_of_life(clock: FakeClock) -> None:
    guard = ClientGuard("admin", failure_threshold=1, reset_timeout_s=1, clock=clock)
    guard.failed(AutoReconnect("down"))
    clock.advance(1)
    guard.before()
    clock.advance(0.25)
    guard.failed(DuplicateKeyError("E11000 duplicate key"))
    assert guard.state is BreakerState.CLOSED
    assert guard.last_answer_at == clock.now


def test_guard_notes_when_the_application_last_got_an_answer(clock: FakeClock) -> None:
    guard = ClientGuard("admin", clock=clock)
    assert guard.last_answer_at == float("-inf")
    guard.succeeded()
    assert guard.last_answer_at == clock.now
    clock.advance(5)
    guard.succeeded(application=False)  # a health ping is no evidence for itself
    guard.failed(AutoReconnect("x"))
    guard.failed(InvalidDocument("x"))
    assert guard.last_answer_at == clock.now - 5


def test_a_closing_guard_refuses_new_work_with_database_unavailable(clock: FakeClock) -> None:
    guard = ClientGuard("admin+customer", clock=clock)
    guard.before()
    guard.close()
    assert guard.closing
    with pytest.raises(DatabaseUnavailable, match="shutting down") as caught:
        guard.before()
    assert not isinstance(caught.value, CircuitOpenError)
    guard.succeeded()  # operations admitted before still report, harmlessly
    assert guard.state is BreakerState.CLOSED


def test_guard_never_opens_on_application_errors(clock: FakeClock) -> None:
    guard = ClientGuard("admin", failure_threshold=2, clock=clock)
    for _ in range(10):
        guard.before()
        guard.failed(DuplicateKeyError("E11000 duplicate key"))
    assert guard.state is BreakerState.CLOSED
    guard.failed(AutoReconnect("x"))
    guard.failed(DuplicateKeyError("E11000"))  # the server answered: resets the count
    guard.failed(AutoReconnect("x"))
    assert guard.state is BreakerState.CLOSED
    guard.failed(AutoReconnect("x"))
    assert guard.state is BreakerState.OPEN


def test_guard_rejects_with_circuit_open_error_in_under_a_millisecond(clock: FakeClock) -> None:
    guard = ClientGuard("admin+customer", failure_threshold=1, reset_timeout_s=30, clock=clock)
    guard.failed(NetworkTimeout("timed out"))
    durations = []
    for _ in range(1000):
        started = time.perf_counter()
        try:
            guard.before()
        except CircuitOpenError as exc:
            durations.append(time.perf_counter() - started)
            error = exc
    assert len(durations) == 1000
    assert "admin+customer: circuit breaker open" in str(error)
    # The median, not the maximum: one rejection can meet a GC pause or a busy machine.
    assert statistics.median(durations) < 0.001
    assert guard.stats().rejected == 1000


async def test_guard_uses_the_current_task_as_the_probe(clock: FakeClock) -> None:
    guard = ClientGuard("customer", failure_threshold=1, reset_timeout_s=1, clock=clock)
    guard.failed(AutoReconnect("down"))
    clock.advance(1)
    admitted: list[str] = []
    rejected: list[str] = []
    probe_may_finish = asyncio.Event()

    async def call(name: str) -> None:
        try:
            guard.before()
        except CircuitOpenError:
            rejected.append(name)
            return
        admitted.append(name)
        guard.before()  # the same task again: still the probe
        await probe_may_finish.wait()
        guard.succeeded()

    probe = asyncio.create_task(call("probe"))
    await asyncio.sleep(0)  # the probe takes the slot
    await asyncio.gather(*(call(f"other-{i}") for i in range(5)))
    probe_may_finish.set()
    await probe
    assert admitted == ["probe"]
    assert sorted(rejected) == [f"other-{i}" for i in range(5)]
    assert guard.state is BreakerState.CLOSED


async def test_a_probe_task_that_ended_without_reporting_frees_the_slot(clock: FakeClock) -> None:
    guard = ClientGuard("customer", failure_threshold=1, reset_timeout_s=1, clock=clock)
    guard.failed(AutoReconnect("down"))
    clock.advance(1)

    async def probe_that_dies() -> None:
        guard.before()
        raise RuntimeError("an error between the guard and the driver; nobody reports it")

    with pytest.raises(RuntimeError):
        await asyncio.create_task(probe_that_dies())

    async def next_caller() -> None:
        guard.before()
        guard.succeeded()

    await asyncio.create_task(next_caller())  # admitted without waiting probe_timeout_s
    assert guard.state is BreakerState.CLOSED
    assert guard.stats().abandoned_probes == 1
