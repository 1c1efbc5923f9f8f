"""Bounded retries of the first connection, with exponential backoff and full jitter.

Only start-up is retried here: once running, the driver's own retries are the only
ones (stacking retry layers causes retry storms). The ``backoff`` package does the
waiting; this module chooses its bounds from :class:`~insightdb.settings.StartupSettings`
and turns the final failure into one clear :class:`~insightdb.exceptions.DatabaseUnavailable`.
"""

from __future__ import annotations

import time
from typing import Any

import backoff
import pymongo
from loguru import logger
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from insightdb._driver_errors import is_connectivity_error, unavailable
from insightdb.settings import StartupSettings

__all__ = ["wait_until_reachable"]


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
        backoff.expo,
        PyMongoError,
        max_tries=startup.max_attempts,
        max_time=startup.max_time_s,
        jitter=backoff.full_jitter,
        giveup=lambda exc: not is_connectivity_error(exc),
        on_backoff=_log_retry,
        raise_on_giveup=True,
        base=2,
        factor=startup.initial_delay_s,
        max_value=startup.max_delay_s,
    )
    async def _ping() -> float:
        nonlocal attempts
        attempts += 1
        remaining = max(deadline - time.monotonic(), 0.05)
        started = time.perf_counter()
        # One attempt lasts at most the server-selection timeout, and never past the
        # total budget.
        with pymongo.timeout(min(remaining, attempt_timeout_s)):
            await client.admin.command("ping")
        return time.perf_counter() - started

    try:
        return await _ping()
    except PyMongoError as exc:
        raise unavailable(
            f"{label}: not reachable after {attempts} attempt(s) within {startup.max_time_s:g}s",
            exc,
        ) from exc
