"""Startup gives up at once on failures no retry can fix, and still retries the others.

Against the resolved server (the embedded one in CI) and loopback ports: a wrong password
is reported as an authentication failure after one attempt, a host name that does not
exist ends the wait before server selection times out, and neither message shows the
password. A closed port stays "not reachable" after its retries.
"""

from __future__ import annotations

import socket
import time

import pytest

import insightdb
from insightdb import ConfigurationError, DatabaseUnavailable, Settings, get_settings
from insightdb.testing.plugin import ResolvedServer, unique_database_names

PASSWORD = "Wr0ng/p@ss w:rd%"
# Generous bounds: one attempt is 3 s of server selection; the budget is 15 s.
FAIL_FAST_S = 2.5


def _settings(uri: str, **startup: float) -> Settings:
    names = unique_database_names()
    return get_settings(
        "testing",
        settings_files=[],
        overrides={
            "databases": {
                "admin": {"uri": uri, "name": names["admin"]},
                "customer": {"uri": uri, "name": names["customer"]},
            },
            "startup": {"max_attempts": 5, "max_time_s": 15.0, **startup},
            "timeouts": {"server_selection_ms": 3000, "connect_ms": 1000},
        },
    )


def _with_credentials(uri: str, user: str, password: str) -> str:
    from urllib.parse import quote_plus

    scheme, _, rest = uri.partition("://")
    authority, slash, tail = rest.partition("/")
    hosts = authority.rpartition("@")[2]
    return f"{scheme}://{quote_plus(user)}:{quote_plus(password)}@{hosts}{slash}{tail}"


def _resolver_says_unknown(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 27017)
    except socket.gaierror as exc:
        return exc.errno in {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
    return False


async def test_authentication_failure_is_reported_as_such_at_once(
    insightdb_server: ResolvedServer,
) -> None:
    uri = _with_credentials(insightdb_server.uri, "nobody", PASSWORD)
    settings = _settings(uri)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        await insightdb.init(settings, models=[])
    elapsed = time.monotonic() - started

    message = str(info.value)
    assert message.startswith("databases.admin.uri and databases.customer.uri: ")
    assert "authentication failed" in message
    assert "not reachable" not in message
    assert "\n" not in message
    assert PASSWORD not in message
    assert "p@ss" not in message
    assert elapsed < FAIL_FAST_S, f"retried for {elapsed:.1f}s"
    assert info.value.driver_error is not None


async def test_unknown_host_fails_before_server_selection_times_out() -> None:
    host = "no-such-host.insightdb.invalid"  # .invalid never resolves (RFC 6761)
    if not _resolver_says_unknown(host):
        pytest.skip("this machine's resolver does not answer 'name not known' for .invalid")
    uri = f"mongodb://app:{'s3cr3t-' + 'x' * 8}@{host}:27017/?directConnection=true"
    settings = _settings(uri)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        await insightdb.init(settings, models=[])
    elapsed = time.monotonic() - started

    message = str(info.value)
    assert "not found" in message
    assert host in message
    assert "s3cr3t" not in message
    assert elapsed < FAIL_FAST_S, f"waited {elapsed:.1f}s for an unknown host"


async def test_closed_port_is_still_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = _settings(
        f"mongodb://127.0.0.1:{port}/?directConnection=true",
        max_attempts=2,
        max_time_s=3.0,
        initial_delay_s=0.05,
    )
    settings = settings.model_copy(
        update={"timeouts": settings.timeouts.model_copy(update={"server_selection_ms": 300})}
    )
    with pytest.raises(DatabaseUnavailable, match=r"not reachable after 2 attempt\(s\)"):
        await insightdb.init(settings, models=[])
