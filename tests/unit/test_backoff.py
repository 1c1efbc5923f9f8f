"""The startup backoff's pure parts: delay caps, full jitter and the bounds of an attempt.

Nothing here sleeps or reads a clock: the delays are pure functions of the settings and
of an injected source of randomness.
"""

from __future__ import annotations

from itertools import islice

import pytest

from insightdb.runtime.startup import (
    MIN_ATTEMPT_S,
    attempt_timeout,
    delay_caps,
    full_jitter,
    worst_case_s,
)
from insightdb.settings import StartupSettings


def caps(startup: StartupSettings, n: int) -> list[float]:
    return list(islice(delay_caps(startup), n))


def test_caps_double_from_the_initial_delay_up_to_the_maximum() -> None:
    startup = StartupSettings(initial_delay_s=0.2, max_delay_s=2.0)
    assert caps(startup, 7) == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])


def test_caps_never_exceed_the_maximum_even_when_it_is_below_the_initial_delay() -> None:
    startup = StartupSettings(initial_delay_s=5.0, max_delay_s=1.0)
    assert caps(startup, 3) == [1.0, 1.0, 1.0]


def test_caps_stay_finite_over_many_attempts() -> None:
    startup = StartupSettings(max_attempts=100, initial_delay_s=0.2, max_delay_s=2.0)
    assert max(caps(startup, 1000)) == 2.0


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999999])
def test_full_jitter_draws_below_the_cap(draw: float) -> None:
    assert full_jitter(1.6, lambda: draw) == pytest.approx(1.6 * draw)
    assert 0.0 <= full_jitter(1.6, lambda: draw) < 1.6


def test_full_jitter_spreads_over_the_whole_range() -> None:
    draws = iter(i / 10 for i in range(10))
    values = [full_jitter(2.0, lambda: next(draws)) for _ in range(10)]
    assert min(values) == 0.0
    assert max(values) == pytest.approx(1.8)


def test_an_attempt_is_cut_to_the_budget_left() -> None:
    assert attempt_timeout(remaining_s=10.0, attempt_timeout_s=3.0) == 3.0
    assert attempt_timeout(remaining_s=1.2, attempt_timeout_s=3.0) == 1.2
    # Past the budget, the last attempt still gets a minimal chance, never a negative one.
    assert attempt_timeout(remaining_s=-4.0, attempt_timeout_s=3.0) == MIN_ATTEMPT_S


def test_worst_case_is_the_time_budget_with_the_defaults() -> None:
    startup = StartupSettings()  # 5 attempts, 15 s, waits 0.2 .. 2 s
    # 5 attempts of 3 s + waits capped at 0.2+0.4+0.8+1.6 = 18 s > 15 s budget.
    assert worst_case_s(startup, attempt_timeout_s=3.0) == pytest.approx(15.0 + MIN_ATTEMPT_S)


def test_worst_case_is_the_attempts_when_they_end_before_the_budget() -> None:
    startup = StartupSettings(max_attempts=3, max_time_s=60, initial_delay_s=0.5)
    # 3 attempts of 1 s + waits of at most 0.5 and 1.0 s.
    assert worst_case_s(startup, attempt_timeout_s=1.0) == pytest.approx(4.5)


def test_a_single_attempt_never_waits() -> None:
    startup = StartupSettings(max_attempts=1, max_time_s=60)
    assert worst_case_s(startup, attempt_timeout_s=2.0) == pytest.approx(2.0)
