"""insightdb.fastapi against the session server: lifespan, health probes and the example app.

Every application runs through ``asgi_lifespan.LifespanManager`` (so startup and
shutdown really happen) and is called through ``httpx.ASGITransport``; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI, HTTPException, Request
from loguru import logger

import insightdb
from insightdb import (
    ConfigurationError,
    DatabaseUnavailable,
    InsightDB,
    InsightDBError,
    MigrationError,
    Settings,
    current_tenant,
)
from insightdb.fastapi import get_db, health_router, lifespan, metrics_router, tenant_dependency
from models.admin.user import User
from models.customer.client import Client

pytestmark = pytest.mark.integration

MODELS = [User, Client]
ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30  # the first init creates indexes; generous, only a hang guard


@pytest.fixture(autouse=True)
def _quiet_logger() -> Iterator[None]:
    # lifespan() enables insightdb's logger process-wide; leave it as the import did.
    yield
    logger.disable("insightdb")


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and yield a client that calls it in-process."""
    async with (
        LifespanManager(app, startup_timeout=STARTUP_TIMEOUT_S) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://test"
        ) as client,
    ):
        yield client


def probe_app(settings: Settings | None) -> FastAPI:
    """An app with the health router and a route that returns what ``get_db`` gives."""
    app = FastAPI(
        lifespan=lifespan(settings, models=MODELS, migrations="ignore") if settings else None
    )
    app.include_router(health_router())

    @app.get("/db")
    async def which_db(db: Annotated[InsightDB, Depends(get_db)]) -> dict[str, Any]:
        return {"id": id(db), "env": db.settings.env}

    return app


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# lifespan ---------------------------------------------------------------------------


async def test_lifespan_starts_insightdb_and_closes_it_on_shutdown(
    insightdb_settings: Settings,
) -> None:
    app = probe_app(insightdb_settings)
    async with serve(app) as client:
        db = app.state.insightdb
        assert isinstance(db, InsightDB)
        assert db.started
        assert insightdb.current() is db
        assert db.settings is insightdb_settings
        assert {m.__name__ for m in db.models("admin")} == {"User"}
        response = await client.get("/db")
        assert response.status_code == 200
        assert response.json() == {"id": id(db), "env": "testing"}
    assert not db.started
    with pytest.raises(InsightDBError):
        insightdb.current()


async def test_lifespan_can_start_the_same_app_twice(insightdb_settings: Settings) -> None:
    app = probe_app(insightdb_settings)
    for _ in range(2):
        async with serve(app) as client:
            assert (await client.get("/health/ready")).status_code == 200
        assert not app.state.insightdb.started


async def test_check_refuses_to_start_with_pending_migrations(insightdb_settings: Settings) -> None:
    from examples.fastapi_app import create_app

    app = create_app(insightdb_settings, models=MODELS)  # migrations="check" by default
    with pytest.raises(MigrationError, match=r"^pending migrations \(admin: .*customer: "):
        async with serve(app):
            pass
    with pytest.raises(insightdb.InsightDBError, match="not started"):
        insightdb.current()  # the failed startup closed what it opened


async def test_apply_then_check_starts_and_readiness_reports_no_pending(
    insightdb_settings: Settings,
) -> None:
    from examples.fastapi_app import create_app

    async with serve(create_app(insightdb_settings, models=MODELS, migrations="apply")):
        pass
    app = create_app(insightdb_settings, models=MODELS)
    async with serve(app) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["migrations"] == {"pending": {"admin": [], "customer": []}}


def test_lifespan_refuses_an_unknown_migration_mode() -> None:
    with pytest.raises(ConfigurationError, match="check, apply, ignore"):
        lifespan(migrations="sometimes")  # type: ignore[arg-type]


# PyMongo 4.20 leaks a monitor's socket when client.close() cancels it mid-connect
# (fixed upstream by PYTHON-5867); the gc.collect() below frees it inside this filter.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
async def test_startup_fails_with_database_unavailable_when_nothing_listens() -> None:
    uri = f"mongodb://127.0.0.1:{closed_port()}/?directConnection=true"
    settings = insightdb.get_settings(
        "testing",
        settings_files=[],
        overrides={
            "databases": {"admin": {"uri": uri}, "customer": {"uri": uri}},
            "startup": {"max_attempts": 1, "max_time_s": 1},
            "timeouts": {"server_selection_ms": 300},
        },
    )
    app = probe_app(settings)
    # asyncio.timeout is a hang guard (a bounded startup must fail well inside it),
    # not a timing assertion.
    async with asyncio.timeout(10):
        with pytest.raises(DatabaseUnavailable):
            async with LifespanManager(app, startup_timeout=10):
                pytest.fail("the application started without a database")
    with pytest.raises(InsightDBError):
        insightdb.current()
    gc.collect()


# health router ----------------------------------------------------------------------


async def test_live_and_ready_answer_200_when_started(insightdb_settings: Settings) -> None:
    async with serve(probe_app(insightdb_settings)) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
    assert live.status_code == 200
    assert live.json() == {"status": "alive"}
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ok"
    assert body["ready"] is True
    assert set(body["groups"]) == {"admin", "customer"}
    assert ready.headers["cache-control"] == "no-store"


async def test_ready_is_503_after_insightdb_closes(insightdb_settings: Settings) -> None:
    async with serve(probe_app(insightdb_settings)) as client:
        await insightdb.close()
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")
    assert ready.status_code == 503
    assert ready.json() == {"status": "down", "error": "insightdb is not started"}
    assert live.status_code == 200  # the process is still alive


async def test_ready_is_503_without_lifespan() -> None:
    app = probe_app(None)
    async with serve(app) as client:
        ready = await client.get("/health/ready")
        live = await client.get("/health/live")
    assert ready.status_code == 503
    assert ready.json() == {"status": "down", "error": "insightdb is not started"}
    assert live.status_code == 200


async def test_ready_is_503_with_the_report_when_a_database_is_down(
    insightdb_settings: Settings,
) -> None:
    app = probe_app(insightdb_settings)
    async with serve(app) as client:
        # A real outage on this process's side: the clients are closed under it.
        for group in ("admin", "customer"):
            await app.state.insightdb.client(group).close()
        ready = await client.get("/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "down"
    assert body["ready"] is False
    assert all(g["status"] == "down" and g["error"] for g in body["groups"].values())


def test_health_router_prefix_and_timeout() -> None:
    paths = {route.path for route in health_router("/probes").routes}  # type: ignore[attr-defined]
    assert paths == {"/probes/live", "/probes/ready"}
    with pytest.raises(ConfigurationError, match="timeout_s"):
        health_router(timeout_s=0)


# the example application ------------------------------------------------------------


@pytest.fixture
async def example(insightdb_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from examples.fastapi_app import create_app

    async with serve(create_app(insightdb_settings, models=MODELS, migrations="apply")) as client:
        yield client


async def test_example_creates_and_reads_a_user_without_its_hash(
    example: httpx.AsyncClient,
) -> None:
    created = await example.post(
        "/users",
        json={"email": "ada@example.com", "password": "correct horse", "name": "Ada"},
    )
    assert created.status_code == 201, created.text
    read = await example.get("/users/ada@example.com")
    assert read.status_code == 200
    for response in (created, read):
        body = response.json()
        assert body["email"] == "ada@example.com"
        assert body["name"] == "Ada"
        assert not {key for key in body if "password" in key or "hash" in key}
        assert "correct horse" not in response.text
        assert "argon2" not in response.text
    assert read.json()["id"] == created.json()["id"]


async def test_example_stores_a_verifiable_password_hash(example: httpx.AsyncClient) -> None:
    created = await example.post(
        "/users", json={"email": "grace@example.com", "password": "a long password"}
    )
    assert created.status_code == 201, created.text
    stored = await User.find_one({"email": "grace@example.com"})
    assert stored is not None
    assert stored.verify_password("a long password")
    assert not stored.verify_password("another password")


async def test_example_refuses_a_duplicate_email_and_unknown_users(
    example: httpx.AsyncClient,
) -> None:
    body = {"email": "alan@example.com", "password": "enigma-1912"}
    assert (await example.post("/users", json=body)).status_code == 201
    assert (await example.post("/users", json=body)).status_code == 409
    assert (await example.get("/users/nobody@example.com")).status_code == 404
    short = await example.post("/users", json={"email": "b@example.com", "password": "short"})
    assert short.status_code == 422


async def test_example_keeps_each_tenants_clients_apart(example: httpx.AsyncClient) -> None:
    for tenant, name in [("tenant-a", "Acme"), ("tenant-a", "Apex"), ("tenant-b", "Bolt")]:
        response = await example.post(f"/tenants/{tenant}/clients", json={"name": name})
        assert response.status_code == 201, response.text
        assert response.json()["tenant_id"] == tenant
    a = (await example.get("/tenants/tenant-a/clients")).json()
    b = (await example.get("/tenants/tenant-b/clients")).json()
    assert sorted(c["name"] for c in a) == ["Acme", "Apex"]
    assert {c["tenant_id"] for c in a} == {"tenant-a"}
    assert [c["name"] for c in b] == ["Bolt"]
    assert (await example.get("/tenants/tenant-c/clients")).json() == []


async def test_example_health_and_about(example: httpx.AsyncClient) -> None:
    assert (await example.get("/health/ready")).status_code == 200
    about = (await example.get("/")).json()
    assert about == {"env": "testing", "models": {"admin": ["User"], "customer": ["Client"]}}


# probes whatever app-wide dependencies declare -------------------------------------


def _deny(request: Request) -> None:
    """An app-wide dependency that refuses every request (authentication, say)."""
    raise HTTPException(status_code=401, detail="no credentials")


async def test_probes_answer_whatever_app_wide_dependencies_are_declared(
    insightdb_settings: Settings,
) -> None:
    app = FastAPI(
        lifespan=lifespan(insightdb_settings, models=MODELS, migrations="ignore"),
        dependencies=[Depends(tenant_dependency()), Depends(_deny)],
    )
    app.include_router(health_router())
    app.include_router(metrics_router())
    # Dependencies given to include_router don't reach the probes either.
    app.include_router(health_router("/internal"), dependencies=[Depends(_deny)])

    @app.get("/scoped")
    async def scoped() -> dict[str, str]:
        return {"tenant": current_tenant() or ""}

    async with serve(app) as client:
        for path in ("/health/live", "/health/ready", "/internal/live", "/internal/ready"):
            response = await client.get(path)  # no tenant header, no credentials
            assert response.status_code == 200, (path, response.text)
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "insightdb_" in metrics.text
        assert metrics.headers["content-type"].startswith("text/plain")
        # Every other route still runs the app-wide dependencies.
        refused = await client.get("/scoped")
        assert refused.status_code == 400
        assert refused.json()["detail"]["error"] == "tenant_required"
        assert (await client.get("/scoped", headers={"X-Tenant-ID": "acme"})).status_code == 401
    paths = set(app.openapi()["paths"])
    assert paths == {"/scoped"}  # the probes are not API operations


async def test_probes_with_an_app_wide_tenant_dependency_alone(
    insightdb_settings: Settings,
) -> None:
    app = FastAPI(
        lifespan=lifespan(insightdb_settings, models=MODELS, migrations="ignore"),
        dependencies=[Depends(tenant_dependency())],
    )
    app.include_router(health_router())
    app.include_router(metrics_router())
    async with serve(app) as client:
        assert (await client.get("/health/live")).json() == {"status": "alive"}
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.head("/health/live")).status_code == 200  # HEAD, as GET


def test_probe_paths_must_start_with_a_slash() -> None:
    with pytest.raises(ConfigurationError, match=r"^health_router: prefix must start with '/'"):
        health_router("health")
    with pytest.raises(ConfigurationError, match=r"^metrics_router: path must start with '/'"):
        metrics_router("metrics")
    with pytest.raises(ConfigurationError, match=r"^metrics_router: path must not be empty"):
        metrics_router("")
    paths = {route.path for route in health_router("").routes}  # type: ignore[attr-defined]
    assert paths == {"/live", "/ready"}
    paths = {route.path for route in health_router("/h/").routes}  # type: ignore[attr-defined]
    assert paths == {"/h/live", "/h/ready"}


# one log line for a failed startup --------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message).rstrip("\n")), format="{message}")
    yield lines
    logger.remove(sink)


def _broken_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"broken_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / name / "admin").mkdir(parents=True)
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "admin" / "__init__.py").write_text("")
    (tmp_path / name / "admin" / "user.py").write_text(
        "from insightdb import AdminDocument\n\n\nclass U(AdminDocument):\n    x: Undefined\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return name


async def test_a_failed_startup_logs_one_line_before_raising(
    insightdb_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: list[str],
) -> None:
    package = _broken_models(tmp_path, monkeypatch)
    app = FastAPI(lifespan=lifespan(insightdb_settings, models=[package]))
    with pytest.raises(insightdb.RoutingError) as caught:
        async with serve(app):
            pytest.fail("the application started with a broken model module")
    failed = [line for line in log_lines if "startup failed" in line]
    assert failed == [
        f"insightdb: startup failed: RoutingError: model module '{package}.admin.user' can't be "
        f"imported: {package}/admin/user.py:5: NameError: name 'Undefined' is not defined"
    ]
    assert str(caught.value) in failed[0]


async def test_pending_migrations_log_one_line_too(
    insightdb_settings: Settings, log_lines: list[str]
) -> None:
    from examples.fastapi_app import create_app

    with pytest.raises(MigrationError):
        async with serve(create_app(insightdb_settings, models=MODELS)):
            pass
    failed = [line for line in log_lines if "startup failed" in line]
    assert len(failed) == 1
    assert failed[0].startswith("insightdb: startup failed: MigrationError: pending migrations")


def test_under_uvicorn_the_line_comes_before_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _broken_models(tmp_path, monkeypatch)
    (tmp_path / "app.py").write_text(
        "from fastapi import FastAPI\n"
        "from insightdb.fastapi import lifespan\n"
        "app = FastAPI(lifespan=lifespan())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTDB_") or "TEST" in k}
    env.update(
        INSIGHTDB_ENV="testing",
        INSIGHTDB_MODELS=f'["{package}"]',
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
    )
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app:app", "--port", "0", "--lifespan", "on"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard: the startup fails before any connection
        check=False,
    )
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    failed = [i for i, line in enumerate(lines) if "insightdb: startup failed:" in line]
    assert len(failed) == 1, done.stderr
    assert (
        f"RoutingError: model module '{package}.admin.user' can't be imported:"
        in (lines[failed[0]])
    )
    assert f"{package}/admin/user.py:5: NameError" in lines[failed[0]]
    tracebacks = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    assert tracebacks, done.stderr  # the server still shows the whole story, after the line
    assert failed[0] < tracebacks[0], done.stderr
