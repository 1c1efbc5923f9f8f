"""Cross-database references: storage, single and batched resolution, tenancy, dangling
targets, serialisation through FastAPI, and the routing error that points to CrossRef."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from beanie import Link, PydanticObjectId
from bson import ObjectId
from fastapi import FastAPI
from pymongo import monitoring

import insightdb
from insightdb import (
    AdminDocument,
    CrossRef,
    CustomerDocument,
    RoutingError,
    SoftDeletable,
    TenantScoped,
    tenant_context,
    unscoped,
)
from insightdb.runtime.references import DanglingReferenceError, resolve
from insightdb.runtime.registry import build_registry


class FindCounter(monitoring.CommandListener):
    """Counts ``find`` commands per collection (registered for clients created later)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.finds: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            with self._lock:
                self.finds.append(str(event.command.get("find")))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


FINDS = FindCounter()
monitoring.register(FINDS)


class RfUser(SoftDeletable, AdminDocument):
    name: str


class RfTeam(TenantScoped, CustomerDocument):
    name: str


class RfProject(TenantScoped, CustomerDocument):
    title: str
    manager: CrossRef[RfUser]
    reviewer: CrossRef[RfUser] | None = None
    team: CrossRef[RfTeam] | None = None


MODELS = [RfUser, RfTeam, RfProject]


@pytest.mark.insightdb(models=MODELS)
async def test_a_reference_is_stored_as_the_id_and_resolves(
    insightdb_db: insightdb.InsightDB,
) -> None:
    ada = await RfUser(name="Ada").insert()
    async with tenant_context("acme"):
        project = await RfProject(title="p", manager=ada).insert()
        assert project.manager.id == ada.id
        assert project.manager.model is RfUser
        assert project.manager.group == "admin"
        with unscoped("test: read the stored shape"):
            raw = await RfProject.get_pymongo_collection().raw.find_one({"_id": project.id})
        assert raw["manager"] == ada.id
        assert isinstance(raw["manager"], ObjectId)
        assert raw["reviewer"] is None

        stored = await RfProject.find_one(RfProject.manager == ada.id)  # queryable as an id
        assert stored is not None
        target = await stored.manager.resolve()
        assert target is not None
        assert target.name == "Ada"
        assert stored.manager.document is target
        # From a string id too (validated with the target's id type).
        assert RfProject(title="q", manager=str(ada.id)).manager.id == ada.id


@pytest.mark.insightdb(models=MODELS)
async def test_batched_resolution_sends_one_query_per_target_model(
    insightdb_db: insightdb.InsightDB,
) -> None:
    users = [await RfUser(name=f"u{i}").insert() for i in range(4)]
    async with tenant_context("acme"):
        teams = [await RfTeam(name=f"t{i}").insert() for i in range(3)]
        for i in range(12):
            await RfProject(
                title=f"p{i}",
                manager=users[i % 4],
                reviewer=users[(i + 1) % 4] if i % 2 else None,
                team=teams[i % 3],
            ).insert()
        projects = await RfProject.find_all().to_list()

        FINDS.finds.clear()
        await resolve(projects, "manager", "reviewer", "team")
        assert sorted(FINDS.finds) == ["RfTeam", "RfUser"]  # not 12 + 6 + 12

        for i, project in enumerate(sorted(projects, key=lambda p: int(p.title[1:]))):
            assert project.manager.document is not None
            assert project.manager.document.name == f"u{i % 4}"
            assert project.team is not None
            assert project.team.document is not None
            assert project.team.document.name == f"t{i % 3}"
            if project.reviewer is not None:
                assert project.reviewer.document is not None

        FINDS.finds.clear()
        await resolve(projects)  # every reference field
        assert sorted(FINDS.finds) == ["RfTeam", "RfUser"]


@pytest.mark.insightdb(models=MODELS)
async def test_a_document_resolves_its_own_references(
    insightdb_db: insightdb.InsightDB,
) -> None:
    ada, bob = await RfUser(name="Ada").insert(), await RfUser(name="Bob").insert()
    async with tenant_context("acme"):
        team = await RfTeam(name="core").insert()
        await RfProject(title="p", manager=ada, reviewer=bob, team=team).insert()
        project = await RfProject.find_one(RfProject.title == "p")
        assert project is not None
        FINDS.finds.clear()
        assert await project.resolve() is project  # every reference field
        assert sorted(FINDS.finds) == ["RfTeam", "RfUser"]  # one query per target model
        assert project.manager.document is not None
        assert project.manager.document.name == "Ada"
        assert project.reviewer is not None
        assert project.reviewer.document is not None
        assert project.reviewer.document.name == "Bob"
        other = await RfProject.find_one(RfProject.title == "p")
        assert other is not None
        await other.resolve("team")
        assert other.team is not None
        assert other.team.document is not None
        assert not other.manager.resolved


@pytest.mark.insightdb(models=MODELS)
async def test_the_targets_tenancy_is_respected(insightdb_db: insightdb.InsightDB) -> None:
    ada = await RfUser(name="Ada").insert()
    async with tenant_context("globex"):
        theirs = await RfTeam(name="globex team").insert()
    async with tenant_context("acme"):
        project = await RfProject(title="p", manager=ada, team=theirs.id).insert()
        assert project.team is not None
        assert await project.team.resolve() is None  # another tenant's team: not visible
        with pytest.raises(DanglingReferenceError, match="not visible to the current tenant"):
            await resolve([project], "team", missing="error")
    async with tenant_context("globex"):
        assert project.team is not None
        found = await project.team.resolve(refresh=True)
        assert found is not None
        assert found.name == "globex team"


@pytest.mark.insightdb(models=MODELS)
async def test_dangling_references_are_none_or_an_error(
    insightdb_db: insightdb.InsightDB,
) -> None:
    ada = await RfUser(name="Ada").insert()
    gone = await RfUser(name="Gone").insert()
    async with tenant_context("acme"):
        project = await RfProject(title="p", manager=ada, reviewer=gone).insert()
        missing = RfProject(title="q", manager=PydanticObjectId())
        await gone.delete()  # soft-deleted: hidden like any read
        await resolve([project, missing], "manager", "reviewer")
        assert project.reviewer is not None
        assert project.reviewer.document is None
        assert missing.manager.document is None
        assert project.manager.document is not None
        with pytest.raises(DanglingReferenceError):
            await missing.manager.resolve(missing="error")
        with pytest.raises(DanglingReferenceError):
            await resolve(project, "reviewer", missing="error")


@pytest.mark.insightdb(models=MODELS)
async def test_schema_and_fastapi_responses_show_the_id(
    insightdb_db: insightdb.InsightDB,
) -> None:
    ada = await RfUser(name="Ada").insert()
    app = FastAPI()

    @app.get("/projects/{title}", response_model=RfProject)
    async def get_project(title: str) -> Any:
        async with tenant_context("acme"):
            return await RfProject.find_one(RfProject.title == title)

    async with tenant_context("acme"):
        await RfProject(title="p", manager=ada).insert()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        body = (await client.get("/projects/p")).json()
        schema = (await client.get("/openapi.json")).json()
    assert body["manager"] == str(ada.id)
    assert body["reviewer"] is None
    components = schema["components"]["schemas"]
    assert _resolved(components, components["RfProject"]["properties"]["manager"]) == "string"
    own = RfProject.model_json_schema()
    assert _resolved(own["$defs"], own["properties"]["manager"]) == "string"


def _resolved(definitions: dict[str, Any], schema: dict[str, Any]) -> str:
    """The JSON type a property ends up with, following $refs."""
    while "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[1]]
    return str(schema["type"])


def test_a_link_across_groups_is_a_routing_error_that_points_to_crossref() -> None:
    class RfAccount(AdminDocument):
        name: str

    class RfSeat(CustomerDocument):
        account: Link[RfAccount]

    with pytest.raises(RoutingError, match=r"use CrossRef\[RfAccount\]"):
        build_registry(models=[RfAccount, RfSeat])
