"""The insightdb pytest plugin (registered through the ``pytest11`` entry point).

It resolves one server per test session, in this order:

1. ``INSIGHTDB_TEST_MONGODB_URI`` — a real MongoDB you point it at;
2. testcontainers' MongoDB, when a Docker engine answers;
3. the embedded MongoDB-compatible server (:class:`~insightdb.testing.EmbeddedServer`).

Every test that asks for ``insightdb_settings`` (or ``insightdb_db``) gets its own
uniquely named admin and customer databases, dropped after the test.

Fixtures:
    insightdb_server: the session's :class:`ResolvedServer` (``.uri``, ``.kind``).
    insightdb_settings: testing :class:`~insightdb.Settings` with unique databases.
    insightdb_db: a started :class:`~insightdb.InsightDB`, closed after the test. Mark a
        test ``@pytest.mark.insightdb(models=[...])`` to choose its models; by default the
        packages in ``settings.models`` are discovered.
    insightdb_tenant_guard: the :class:`~insightdb.testing.guard.TenantGuard` that fails
        any test whose commands reach a tenant-scoped collection without the tenant
        filter (ini option ``insightdb_tenant_guard = false`` turns it off; the marker
        ``insightdb_allow_unscoped`` lets one test record without failing).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient, monitoring

import insightdb
from insightdb.settings import Settings, get_settings
from insightdb.testing.guard import TenantGuard

__all__ = ["ResolvedServer", "resolve_server", "unique_database_names"]

_ENV_URI = "INSIGHTDB_TEST_MONGODB_URI"  # read here only: the test-server switch


@dataclass(frozen=True, slots=True)
class ResolvedServer:
    """The server a test session runs against.

    Attributes:
        uri: Its connection string.
        kind: ``"env"``, ``"testcontainers"`` or ``"embedded"``.
    """

    uri: str
    kind: str


def _docker_answers() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure means "no usable engine"; fall through to embedded
        return False


@pytest.fixture(scope="session")
def insightdb_server() -> Iterator[ResolvedServer]:
    """Resolve the session's server: env URI, then testcontainers, then embedded."""
    yield from resolve_server()


def resolve_server() -> Iterator[ResolvedServer]:
    """Yield the server for a session and stop it afterwards (see module docstring)."""
    uri = os.environ.get(_ENV_URI, "").strip()
    if uri:
        yield ResolvedServer(uri=uri, kind="env")
        return
    if _docker_answers():
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:7") as container:
            yield ResolvedServer(uri=container.get_connection_url(), kind="testcontainers")
        return
    from insightdb.testing.server import EmbeddedServer

    with EmbeddedServer() as server:
        yield ResolvedServer(uri=server.uri, kind="embedded")


def unique_database_names(prefix: str = "t") -> dict[str, str]:
    """Return fresh admin and customer database names (valid, at most 63 bytes)."""
    token = uuid.uuid4().hex[:12]
    return {"admin": f"{prefix}_{token}_admin", "customer": f"{prefix}_{token}_customer"}


@pytest.fixture
def insightdb_settings(insightdb_server: ResolvedServer) -> Iterator[Settings]:
    """Testing settings pointing both groups at the session server, unique databases."""
    names = unique_database_names()
    settings = get_settings(
        "testing",
        settings_files=[],
        overrides={
            "databases": {
                group: {"uri": insightdb_server.uri, "name": name} for group, name in names.items()
            },
            "startup": {"max_attempts": 3, "max_time_s": 10},
        },
    )
    yield settings
    client: MongoClient[dict[str, Any]]
    with MongoClient(insightdb_server.uri, serverSelectionTimeoutMS=5000) as client:
        for name in names.values():
            client.drop_database(name)


async def _started_db(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Any]:
    marker = request.node.get_closest_marker("insightdb")
    models = marker.kwargs.get("models") if marker is not None else None
    runtime = await insightdb.init(settings, models=models)
    try:
        yield runtime
    finally:
        await insightdb.close()


try:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def insightdb_db(
        request: pytest.FixtureRequest, insightdb_settings: Settings
    ) -> AsyncIterator[Any]:
        """A started :class:`~insightdb.InsightDB` on unique databases, closed after."""
        async for runtime in _started_db(request, insightdb_settings):
            yield runtime

except ImportError:  # pragma: no cover - pytest-asyncio is part of the test extra
    pass


_GUARD = TenantGuard()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ``insightdb_tenant_guard`` ini option (on by default)."""
    parser.addini(
        "insightdb_tenant_guard",
        "fail tests that send a command to a tenant-scoped collection without the tenant "
        "filter (insightdb's test-mode tenant guard)",
        type="bool",
        default=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the plugin's markers and register the tenant guard with PyMongo."""
    config.addinivalue_line(
        "markers", "insightdb(models=None): models the insightdb_db fixture initialises"
    )
    config.addinivalue_line(
        "markers",
        "insightdb_allow_unscoped: the tenant guard records but does not fail this test",
    )
    if config.getini("insightdb_tenant_guard"):
        # Registered globally so that every client created afterwards reports to it.
        monitoring.register(_GUARD)


@pytest.fixture
def insightdb_tenant_guard() -> TenantGuard:
    """The session's tenant guard, for tests that inspect what it recorded."""
    return _GUARD


@pytest.fixture(autouse=True)
def _insightdb_fail_on_tenant_leak(request: pytest.FixtureRequest) -> Iterator[None]:
    _GUARD.reset()
    yield
    violations = _GUARD.violations()
    _GUARD.reset()
    if violations and request.node.get_closest_marker("insightdb_allow_unscoped") is None:
        listed = "; ".join(str(v) for v in violations[:5])
        pytest.fail(
            f"insightdb tenant guard: {len(violations)} command(s) reached a tenant-scoped "
            f"collection without the tenant filter: {listed}",
            pytrace=False,
        )
