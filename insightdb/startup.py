"""Bounded retries of the first connection, with exponential backoff and full jitter.

Only start-up is retried here: once running, the driver's own retries are the only
ones (stacking retry layers causes retry storms). The ``backoff`` package does the
waiting; this module chooses its bounds from :class:`~insightdb.settings.StartupSettings`
and turns the final failure into one clear :class:`~insightdb.exceptions.DatabaseUnavailable`.
The delays and bounds are pure functions (:func:`delay_caps`, :func:`full_jitter`,
:func:`attempt_timeout`, :func:`worst_case_s`), tested without a clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterator
from itertools import islice
from typing import Any

import backoff
import pymongo
from loguru import logger
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from insightdb._driver_errors import is_connectivity_error, unavailable
from insightdb.settings import StartupSettings

__all__ = [
    "MIN_ATTEMPT_S",
    "attempt_timeout",
    "delay_caps",
    "full_jitter",
    "wait_until_reachable",
    "worst_case_s",
]

MIN_ATTEMPT_S = 0.05
"""The shortest attempt: the last one gets at least this much, even past the budget."""


def delay_caps(startup: StartupSettings) -> Iterator[float]:
    """Yield the cap of each wait between attempts, forever.

    The n-th wait (from 0) is capped at ``initial_delay_s * 2**n``, never more than
    ``max_delay_s``; :func:`full_jitter` then draws the actual wait below the cap.
    """
    cap = startup.initial_delay_s
    while True:
        yield min(cap, startup.max_delay_s)
        cap *= 2


def full_jitter(cap: float, rand: Callable[[], float] = random.random) -> float:
    """Return a wait drawn uniformly from ``[0, cap]`` ("full jitter").

    Args:
        cap: The upper bound.
        rand: A source of uniform numbers in ``[0, 1)``.
    """
    return cap * rand()


def attempt_timeout(remaining_s: float, attempt_timeout_s: float) -> float:
    """Return the bound of one attempt: the attempt timeout, cut to the budget left."""
    return min(max(remaining_s, MIN_ATTEMPT_S), attempt_timeout_s)


def worst_case_s(startup: StartupSettings, attempt_timeout_s: float) -> float:
    """Return the longest :func:`wait_until_reachable` can take before it gives up.

    Every attempt is cut to the budget left and no wait outlasts it, so the bound is
    the time budget (plus the shortest attempt), or less when ``max_attempts`` full
    attempts and their capped waits end sooner. It counts attempts as the driver bounds
    them; PyMongo's server selection may overrun an attempt by up to its 0.5 s polling
    step (see docs/resilience.md).
    """
    attempts = startup.max_attempts
    waits = sum(islice(delay_caps(startup), attempts - 1))
    return min(startup.max_time_s + MIN_ATTEMPT_S, attempts * attempt_timeout_s + waits)


def _wait_gen(startup: StartupSettings) -> Generator[float, None, None]:
    yield 0.0  # discarded: backoff primes its generator with send(None)
    yield from delay_caps(startup)


async def wait_until_reachable(
    client: AsyncMongoClient[Any],
    *,
    label: str,
    startup: StartupSettings,
    attempt_timeout_s: float,
) -> float:
    """Ping ``client`` until it answers, within the attempt and time bounds.

    Args:
        client: The client to ping.
        label: The group(s) it serves, for messages (``"admin+customer"``).
        startup: Attempts, total time and delay bounds.
        attempt_timeout_s: The bound of one attempt (the server-selection timeout):
            under a ``pymongo.timeout`` deadline the driver ignores
            ``serverSelectionTimeoutMS``, so each attempt is bounded explicitly.

    Returns:
        The duration of the successful ping, in seconds.

    Raises:
        DatabaseUnavailable: Every attempt failed or the time bound passed.
    """
    deadline = time.monotonic() + startup.max_time_s
    attempts = 0

    def _log_retry(details: Any) -> None:
        logger.warning(
            "insightdb: {} not reachable (attempt {}/{}), retrying in {:.2f}s",
            label,
            details["tries"],
            startup.max_attempts,
            details["wait"],
        )

    @backoff.on_exception(
        _wait_gen,
        PyMongoError,
        max_tries=startup.max_attempts,
        max_time=startup.max_time_s,
        jitter=full_jitter,
        giveup=lambda exc: not is_connectivity_error(exc),
        on_backoff=_log_retry,
        raise_on_giveup=True,
        startup=startup,
    )
    async def _ping() -> float:
        nonlocal attempts
        attempts += 1
        started = time.perf_counter()
        # One attempt lasts at most the server-selection timeout, and never past the
        # total budget.
        with pymongo.timeout(attempt_timeout(deadline - time.monotonic(), attempt_timeout_s)):
            await client.admin.command("ping")
        return time.perf_counter() - started

    try:
        return await _ping()
    except PyMongoError as exc:
        raise unavailable(
            f"{label}: not reachable after {attempts} attempt(s) within {startup.max_time_s:g}s",
            exc,
        ) from exc
