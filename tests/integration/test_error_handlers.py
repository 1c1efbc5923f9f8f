"""install_error_handlers: each error a request can cause becomes its status and JSON body.

Every app runs its lifespan (``asgi_lifespan.LifespanManager``) against a real server and is
called through ``httpx.ASGITransport``; the errors come from real operations, not from
handlers that raise them by hand. No body carries a document value or a tenant id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from asgi_lifespan import LifespanManager
from beanie import Indexed, PydanticObjectId
from fastapi import Depends, FastAPI
from loguru import logger
from pymongo import IndexModel

import insightdb
from insightdb import AdminDocument, CustomerDocument, Settings, TenantScoped, tenant_context
from insightdb.fastapi import install_error_handlers, lifespan, tenant_dependency
from insightdb.testing import EmbeddedServer
from insightdb.testing.plugin import unique_database_names
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

SECRET_EMAIL = "private-person@example.com"
STARTUP_TIMEOUT_S = 30  # a hang guard only


class ErrAccount(AdminDocument):
    email: Indexed(str, unique=True)  # type: ignore[valid-type]


class ErrNote(TenantScoped, CustomerDocument):
    slug: str

    class Settings:
        indexes = (IndexModel([("tenant_id", 1), ("slug", 1)], unique=True),)


MODELS = [ErrAccount, ErrNote]


def error_app(settings: Settings) -> FastAPI:
    app = FastAPI(lifespan=lifespan(settings, models=MODELS, migrations="ignore"))
    install_error_handlers(app)
    scoped = [Depends(tenant_dependency())]

    @app.post("/accounts")
    async def create_account(email: str) -> dict[str, str]:
        account = await ErrAccount(email=email).insert()
        return {"id": str(account.id)}

    @app.post("/accounts/many")
    async def create_accounts(emails: str) -> dict[str, int]:
        await ErrAccount.insert_many([ErrAccount(email=e) for e in emails.split(",")])
        return {"count": len(emails.split(","))}

    @app.post("/notes", dependencies=scoped)
    async def create_note(slug: str, tenant_id: str | None = None) -> dict[str, str]:
        fields: dict[str, Any] = {"slug": slug}
        if tenant_id is not None:
            fields["tenant_id"] = tenant_id
        note = await ErrNote(**fields).insert()
        return {"id": str(note.id)}

    @app.get("/notes/count")  # forgot the tenant dependency
    async def count_notes() -> dict[str, int]:
        return {"count": await ErrNote.count()}

    @app.put("/accounts/{account_id}")
    async def replace_account(account_id: str, email: str) -> dict[str, str]:
        account = ErrAccount(id=PydanticObjectId(account_id), email=email)
        await account.replace()
        return {"id": account_id}

    return app


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        LifespanManager(app, startup_timeout=STARTUP_TIMEOUT_S) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://test"
        ) as client,
    ):
        yield client


@pytest.fixture(autouse=True)
def _quiet_logger() -> Iterator[None]:
    yield
    logger.disable("insightdb")  # lifespan() enables it process-wide


@pytest.fixture
async def client(insightdb_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(error_app(insightdb_settings)) as http:
        yield http


def detail(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"detail"}, body
    found: dict[str, Any] = body["detail"]
    assert isinstance(found["message"], str)
    assert "\n" not in found["message"]
    return found


async def test_duplicate_key_is_409_without_the_value(client: httpx.AsyncClient) -> None:
    assert (await client.post("/accounts", params={"email": SECRET_EMAIL})).status_code == 200
    response = await client.post("/accounts", params={"email": SECRET_EMAIL})
    assert response.status_code == 409
    assert detail(response)["error"] == "duplicate_key"
    assert detail(response).get("fields", ["email"]) == ["email"]  # when the server names it
    assert SECRET_EMAIL not in response.text


async def test_duplicates_in_insert_many_are_409(client: httpx.AsyncClient) -> None:
    assert (await client.post("/accounts", params={"email": SECRET_EMAIL})).status_code == 200
    response = await client.post("/accounts/many", params={"emails": f"a@x.io,{SECRET_EMAIL}"})
    assert response.status_code == 409
    assert detail(response)["error"] == "duplicate_key"
    assert SECRET_EMAIL not in response.text


async def test_a_per_tenant_unique_key_is_409_for_its_tenant_only(
    client: httpx.AsyncClient,
) -> None:
    acme, globex = {"X-Tenant-ID": "acme"}, {"X-Tenant-ID": "globex"}
    assert (await client.post("/notes", params={"slug": "a"}, headers=acme)).status_code == 200
    assert (await client.post("/notes", params={"slug": "a"}, headers=globex)).status_code == 200
    again = await client.post("/notes", params={"slug": "a"}, headers=acme)
    assert again.status_code == 409
    assert detail(again)["error"] == "duplicate_key"
    assert "acme" not in again.text


async def test_a_scoped_operation_without_a_tenant_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/notes/count")
    assert response.status_code == 400
    assert detail(response)["error"] == "tenant_required"


async def test_another_tenants_document_is_403_without_the_tenant_id(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/notes",
        params={"slug": "x", "tenant_id": "globex-secret"},
        headers={"X-Tenant-ID": "acme"},
    )
    assert response.status_code == 403
    assert detail(response)["error"] == "tenant_isolation"
    assert "globex-secret" not in response.text
    assert "acme" not in response.text
    with tenant_context("globex-secret"):
        assert await ErrNote.count() == 0  # nothing was written


async def test_document_not_found_is_404(client: httpx.AsyncClient) -> None:
    missing = str(PydanticObjectId())
    response = await client.put(f"/accounts/{missing}", params={"email": SECRET_EMAIL})
    assert response.status_code == 404
    assert detail(response) == {"error": "not_found", "message": "document not found"}
    assert missing not in response.text


async def test_a_closed_database_is_503_with_retry_after(client: httpx.AsyncClient) -> None:
    await insightdb.close()  # every operation is now refused: "shutting down"
    response = await client.post("/accounts", params={"email": SECRET_EMAIL})
    assert response.status_code == 503
    assert detail(response)["error"] == "database_unavailable"
    assert response.headers["retry-after"] == "1"  # reset_timeout_s 0.5, rounded up


async def test_an_outage_then_an_open_breaker_are_503_with_retry_after() -> None:
    with EmbeddedServer() as server:
        target = urlparse(server.uri)
        assert target.hostname is not None
        assert target.port is not None
        with FaultProxy(target.hostname, target.port, max_lifetime_s=60) as proxy:
            names = unique_database_names("errors")
            settings = insightdb.get_settings(
                "testing",
                settings_files=[],
                overrides={
                    "databases": {
                        g: {"uri": proxy.uri(), "name": names[g]} for g in ("admin", "customer")
                    },
                    "timeouts": {"operation_ms": 800, "server_selection_ms": 800},
                    "resilience": {"failure_threshold": 1, "reset_timeout_s": 29.2},
                },
            )
            async with serve(error_app(settings)) as client:
                proxy.set_mode("refuse")
                first = await client.post("/accounts", params={"email": SECRET_EMAIL})
                second = await client.post("/accounts", params={"email": SECRET_EMAIL})
                proxy.set_mode("pass")
    assert first.status_code == 503
    assert detail(first)["error"] == "database_unavailable"
    assert second.status_code == 503
    assert detail(second)["error"] == "circuit_open"
    for response in (first, second):
        assert response.headers["retry-after"] == "30"  # reset_timeout_s, rounded up
        assert proxy.uri() not in response.text
        assert str(target.port) not in response.text


def test_install_error_handlers_registers_on_any_starlette_app() -> None:
    from starlette.applications import Starlette

    app = Starlette()
    install_error_handlers(app)
    from insightdb import DatabaseUnavailable, TenantContextError, TenantIsolationError

    for error in (DatabaseUnavailable, TenantContextError, TenantIsolationError):
        assert error in app.exception_handlers
