"""Bounded retries of the first connection, with exponential backoff and full jitter.

Only start-up is retried here: once running, the driver's own retries are the only
ones (stacking retry layers causes retry storms). The ``backoff`` package does the
waiting; this module chooses its bounds from :class:`~insightdb.settings.StartupSettings`
and turns the final failure into one clear :class:`~insightdb.exceptions.DatabaseUnavailable`.
The delays and bounds are pure functions (:func:`delay_caps`, :func:`full_jitter`,
:func:`attempt_timeout`, :func:`worst_case_s`), tested without a clock.

Failures no retry can fix end the wait at once with a
:class:`~insightdb.exceptions.ConfigurationError` naming the URI's key: a host name the
resolver says does not exist (seen in the driver's server descriptions as soon as its
first check fails, without waiting for server selection to time out), failed
authentication, and anything the driver itself calls a configuration error (an SRV name
that does not exist). A resolver that is only temporarily failing is still retried.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable, Generator, Iterator
from itertools import islice
from typing import Any

import backoff
import pymongo
from loguru import logger
from pymongo import AsyncMongoClient
from pymongo.errors import ConfigurationError as DriverConfigurationError
from pymongo.errors import OperationFailure, PyMongoError

from insightdb._redact import shorten
from insightdb.exceptions import ConfigurationError
from insightdb.resilience._driver_errors import (
    is_connectivity_error,
    masked_first_line,
    unavailable,
)
from insightdb.settings import StartupSettings

__all__ = [
    "MIN_ATTEMPT_S",
    "attempt_timeout",
    "delay_caps",
    "full_jitter",
    "is_authentication_failure",
    "is_unknown_host",
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


_AUTH_FAILED = 18  # the server's AuthenticationFailed code
_UNKNOWN_HOST_TEXTS = tuple(
    {
        "name or service not known",  # glibc's EAI_NONAME
        "nodename nor servname provided",  # BSD and macOS
        "no address associated with hostname",  # EAI_NODATA
        f"[errno {socket.EAI_NONAME}]",
        *([f"[errno {socket.EAI_NODATA}]"] if hasattr(socket, "EAI_NODATA") else []),
    }
)
_WATCH_INTERVAL_S = 0.05


def is_unknown_host(error: BaseException | None) -> bool:
    """Tell whether a driver error says a host name does not exist (no retry fixes it).

    The driver reports resolver failures as text (``AutoReconnect('h:27017: [Errno -2]
    Name or service not known')``); a temporary failure ("Temporary failure in name
    resolution") is not this, and stays retryable.
    """
    if error is None:
        return False
    text = str(error).lower()
    return any(marker in text for marker in _UNKNOWN_HOST_TEXTS)


def is_authentication_failure(error: BaseException) -> bool:
    """Tell whether a driver error is a failed authentication (wrong user or password)."""
    if not isinstance(error, OperationFailure):
        return False
    return error.code == _AUTH_FAILED or "authentication failed" in str(error).lower()


def _uri_keys(label: str) -> str:
    return " and ".join(f"databases.{group}.uri" for group in label.split("+"))


def _unfixable(label: str, exc: BaseException) -> ConfigurationError | None:
    """Return the error to raise at once for ``exc``, or None if retrying may help."""
    detail = shorten(masked_first_line(exc), 200)
    if is_authentication_failure(exc):
        message = (
            f"{_uri_keys(label)}: authentication failed ({detail}); check the user name, "
            "password and authSource in the URI"
        )
    elif isinstance(exc, _UnknownHost):
        message = f"{_uri_keys(label)}: {exc.args[0]}; check the host names in the URI"
    elif isinstance(exc, DriverConfigurationError):
        message = f"{_uri_keys(label)}: refused by the driver: {detail}"
    else:
        return None
    driver_error = exc.driver_error if isinstance(exc, _UnknownHost) else exc
    error = ConfigurationError(message, driver_error=driver_error)
    error.__cause__ = driver_error
    return error


class _UnknownHost(Exception):
    """Every server of the client names a host that does not exist."""

    def __init__(self, message: str, driver_error: BaseException | None) -> None:
        super().__init__(message)
        self.driver_error = driver_error


async def _watch_hosts(client: AsyncMongoClient[Any]) -> None:
    """Return never; raise :class:`_UnknownHost` once every server's host is unknown.

    Server selection would keep retrying an unknown name until its timeout; the
    driver's server descriptions show the resolver's answer after its first check.
    """
    while True:
        await asyncio.sleep(_WATCH_INTERVAL_S)
        servers = list(client.topology_description.server_descriptions().values())
        if servers and all(is_unknown_host(server.error) for server in servers):
            first = servers[0]
            raise _UnknownHost(
                f"host {shorten(first.address[0], 80)!r} not found "
                f"({shorten(masked_first_line(first.error), 160) if first.error else 'unknown'})",
                first.error,
            )


async def _ping_or_unknown_host(client: AsyncMongoClient[Any]) -> None:
    ping = asyncio.ensure_future(client.admin.command("ping"))
    watch = asyncio.ensure_future(_watch_hosts(client))
    try:
        done, _ = await asyncio.wait({ping, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (ping, watch):
            if not task.done():
                task.cancel()
        await asyncio.gather(ping, watch, return_exceptions=True)
    if ping in done:
        ping.result()  # raises what the ping raised
        return
    watch.result()  # raises _UnknownHost


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
        ConfigurationError: A failure no retry can fix (unknown host, failed
            authentication, a URI the driver refuses), raised after one attempt.
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
            await _ping_or_unknown_host(client)
        return time.perf_counter() - started

    try:
        return await _ping()
    except (PyMongoError, _UnknownHost) as exc:
        unfixable = _unfixable(label, exc)
        if unfixable is not None:
            raise unfixable from unfixable.driver_error
        if not is_connectivity_error(exc):
            raise unavailable(f"{label}: startup ping failed", exc) from exc
        raise unavailable(
            f"{label}: not reachable after {attempts} attempt(s) within {startup.max_time_s:g}s",
            exc,
        ) from exc
