"""The circuit breaker as a pure state machine, driven by a fake clock (nothing sleeps)."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from pymongo.errors import AutoReconnect, DuplicateKeyError, NetworkTimeout, OperationFailure

from insightdb import CircuitOpenError, ConfigurationError
from insightdb.breaker import BreakerState, CircuitBreaker, Transition
from insightdb.guard import ClientGuard, counts_as_failure

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
