"""FastAPI requests are scoped to their tenant, and never run unscoped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI, Request

from insightdb import CustomerDocument, Settings, TenantScoped, current_tenant
from insightdb.fastapi import lifespan, tenant_dependency


class DepNote(TenantScoped, CustomerDocument):
    text: str


def _app(settings: Settings, dependency: object) -> FastAPI:
    app = FastAPI(lifespan=lifespan(settings, models=[DepNote], migrations="ignore"))

    @app.post("/notes", dependencies=[Depends(dependency)])
    async def create(text: str) -> dict[str, str]:
        note = await DepNote(text=text).insert()
        return {"tenant": note.tenant_id, "seen": current_tenant() or ""}

    @app.get("/notes", dependencies=[Depends(dependency)])
    async def listing() -> list[str]:
        return [n.text for n in await DepNote.find_all().to_list()]

    @app.get("/unscoped-probe")
    async def probe() -> dict[str, int]:
        return {"count": await DepNote.count()}

    return app


@pytest.fixture
async def client(insightdb_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = _app(insightdb_settings, tenant_dependency())
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://test"
        ) as http,
    ):
        yield http


async def test_requests_see_only_their_tenant(client: httpx.AsyncClient) -> None:
    for tenant, text in (("acme", "a1"), ("acme", "a2"), ("globex", "g1")):
        response = await client.post(
            "/notes", params={"text": text}, headers={"X-Tenant-ID": tenant}
        )
        assert response.status_code == 200
        assert response.json() == {"tenant": tenant, "seen": tenant}
    acme = await client.get("/notes", headers={"X-Tenant-ID": "acme"})
    assert sorted(acme.json()) == ["a1", "a2"]
    globex = await client.get("/notes", headers={"X-Tenant-ID": "globex"})
    assert globex.json() == ["g1"]


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 400, "tenant_required"),
        ({"X-Tenant-ID": ""}, 400, "invalid_tenant"),
        ({"X-Tenant-ID": "a.b"}, 400, "invalid_tenant"),
        ({"X-Tenant-ID": "$where"}, 400, "invalid_tenant"),
        ({"X-Tenant-ID": "x" * 200}, 400, "invalid_tenant"),
    ],
)
async def test_missing_or_invalid_tenant_is_refused(
    client: httpx.AsyncClient, headers: dict[str, str], status: int, error: str
) -> None:
    response = await client.get("/notes", headers=headers)
    assert response.status_code == status
    assert response.json()["detail"]["error"] == error


async def test_route_without_the_dependency_fails_closed(client: httpx.AsyncClient) -> None:
    from insightdb import TenantContextError

    with pytest.raises(TenantContextError):
        await client.get("/unscoped-probe")


async def test_resolver_hook_for_claims_or_subdomains(insightdb_settings: Settings) -> None:
    async def from_subdomain(request: Request) -> str | None:
        host = request.headers.get("host", "")
        return host.split(".", 1)[0] if host.endswith(".example.com") else None

    app = _app(insightdb_settings, tenant_dependency(resolver=from_subdomain))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://acme.example.com") as a:
            assert (await a.post("/notes", params={"text": "x"})).json()["tenant"] == "acme"
        async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as b:
            response = await b.get("/notes")
            assert response.status_code == 401
            assert response.json()["detail"]["error"] == "tenant_required"


async def test_a_resolver_that_raises_tenant_context_error_is_401(
    insightdb_settings: Settings,
) -> None:
    from insightdb import TenantContextError

    def from_token(request: Request) -> str:
        token = request.headers.get("authorization")
        if token != "Bearer acme-token":
            raise TenantContextError("no valid token")
        return "acme"

    app = _app(insightdb_settings, tenant_dependency(resolver=from_token))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            ok = await http.post(
                "/notes", params={"text": "t"}, headers={"authorization": "Bearer acme-token"}
            )
            assert ok.json() == {"tenant": "acme", "seen": "acme"}
            refused = await http.get("/notes", headers={"authorization": "Bearer forged"})
            assert refused.status_code == 401
            assert refused.json()["detail"] == {
                "error": "tenant_required",
                "message": "no valid token",
            }


async def test_a_resolver_returning_an_invalid_tenant_is_400(insightdb_settings: Settings) -> None:
    app = _app(insightdb_settings, tenant_dependency(resolver=lambda request: "a.b"))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/notes")
            assert response.status_code == 400
            assert response.json()["detail"]["error"] == "invalid_tenant"
