"""Startup gives up at once on failures no retry can fix, and still retries the others.

Against the resolved server (the embedded one in CI) and loopback ports: a wrong password
is reported as an authentication failure after one attempt, a host name that does not
exist ends the wait before server selection times out, and neither message shows the
password — with and without models, whose initialisation runs beside the reachability
check. A closed port stays "not reachable" after its retries; a server that starts
answering only after a retry is used, its models initialised.
"""

from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import urlparse

import pytest

import insightdb
from insightdb import AdminDocument, ConfigurationError, DatabaseUnavailable, Settings, get_settings
from insightdb.testing.plugin import ResolvedServer, unique_database_names
from tests.faultproxy import FaultProxy

PASSWORD = "Wr0ng/p@ss w:rd%"


class StartupProbe(AdminDocument):
    """A model, so that Beanie's initialisation runs beside the reachability check."""

    name: str

    class Settings:
        name = "startup_probe"


# Without models only the check runs; with one, init_beanie waits for the same server.
WITH_AND_WITHOUT_MODELS = pytest.mark.parametrize(
    "models", [[], [StartupProbe]], ids=["no models", "a model"]
)
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


@WITH_AND_WITHOUT_MODELS
async def test_authentication_failure_is_reported_as_such_at_once(
    insightdb_server: ResolvedServer, models: list[type[AdminDocument]]
) -> None:
    uri = _with_credentials(insightdb_server.uri, "nobody", PASSWORD)
    settings = _settings(uri)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        await insightdb.init(settings, models=models)
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


@WITH_AND_WITHOUT_MODELS
async def test_unknown_host_fails_before_server_selection_times_out(
    models: list[type[AdminDocument]],
) -> None:
    host = "no-such-host.insightdb.invalid"  # .invalid never resolves (RFC 6761)
    if not _resolver_says_unknown(host):
        pytest.skip("this machine's resolver does not answer 'name not known' for .invalid")
    uri = f"mongodb://app:{'s3cr3t-' + 'x' * 8}@{host}:27017/?directConnection=true"
    settings = _settings(uri)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        await insightdb.init(settings, models=models)
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


async def test_a_server_that_answers_after_a_retry_is_used(
    insightdb_server: ResolvedServer,
) -> None:
    """Beanie's first attempt gives up while the server is down; it runs again once it answers."""
    target = urlparse(insightdb_server.uri)
    assert target.hostname is not None
    assert target.port is not None
    with FaultProxy(target.hostname, target.port, max_lifetime_s=60) as proxy:
        proxy.set_mode("refuse")
        settings = _settings(proxy.uri(), max_attempts=20, initial_delay_s=0.05, max_delay_s=0.2)
        settings = settings.model_copy(
            # Under timeoutMS the driver waits for a server up to the operation's
            # deadline: 0.5 s here, so Beanie's first attempt gives up before the heal.
            update={
                "timeouts": settings.timeouts.model_copy(
                    update={"server_selection_ms": 300, "operation_ms": 500}
                )
            }
        )

        async def heal() -> None:
            await asyncio.sleep(1.0)  # past Beanie's first attempt and the first pings
            proxy.set_mode("pass")

        healing = asyncio.create_task(heal())
        try:
            db = await insightdb.init(settings, models=[StartupProbe])
        finally:
            await healing
        try:
            await StartupProbe(name="after a retry").insert()
            assert await StartupProbe.find(StartupProbe.name == "after a retry").count() == 1
            assert "startup_probe" in await db.database("admin").list_collection_names()
        finally:
            await insightdb.close()
