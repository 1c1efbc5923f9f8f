"""The tenancy matrix: every data API by {own tenant, another tenant, no tenant}.

Tenant "acme" and tenant "globex" each own projects and tasks. Each test runs one API
as acme against acme's data (sees and changes exactly that), against globex's data
(sees nothing, changes nothing, or is refused), and with no tenant (refused before any
command reaches the server). The tenant guard of the pytest plugin watches every
command as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from beanie import BackLink, BulkWriter, Link, WriteRules
from beanie.exceptions import DocumentNotFound
from beanie.odm.operators.update.general import Inc, Set
from pydantic import BaseModel, Field
from pymongo.errors import DuplicateKeyError

import insightdb
from insightdb import CustomerDocument, Settings, TenantContextError, TenantIsolationError
from insightdb.tenancy import TenantScoped, tenant_context, unscoped
from tests.commandcounter import COUNTER

ACME, GLOBEX = "acme", "globex"


class MxProject(TenantScoped, CustomerDocument):
    title: str
    budget: int = 0
    tasks: list[BackLink[MxTask]] = Field(  # type: ignore[valid-type]
        default_factory=list, json_schema_extra={"original_field": "project"}
    )

    class Settings:
        name = "mx_projects"


class MxTask(TenantScoped, CustomerDocument):
    name: str
    project: Link[MxProject] | None = None

    class Settings:
        name = "mx_tasks"


class TitleOnly(BaseModel):
    title: str


@dataclass
class World:
    acme: list[MxProject]
    globex: list[MxProject]
    acme_task: MxTask
    globex_task: MxTask


async def _snapshot() -> list[dict[str, Any]]:
    with unscoped("test: compare stored state"):
        projects = await MxProject.find_all().sort("_id").to_list()
        tasks = await MxTask.find_all().sort("_id").to_list()
    return [p.model_dump(exclude={"tasks"}) for p in projects] + [
        t.model_dump(exclude={"project"}) | {"project": t.project.ref.id if t.project else None}
        for t in tasks
    ]


@pytest.fixture
async def world(insightdb_settings: Settings) -> AsyncIterator[World]:
    async with insightdb.connect(insightdb_settings, models=[MxProject, MxTask]):
        made: dict[str, list[MxProject]] = {}
        tasks: dict[str, MxTask] = {}
        for tenant in (ACME, GLOBEX):
            async with tenant_context(tenant):
                made[tenant] = [
                    await MxProject(title=f"{tenant}-{i}", budget=10 * i).insert()
                    for i in range(1, 3)
                ]
                tasks[tenant] = await MxTask(
                    name=f"{tenant}-task", project=made[tenant][0]
                ).insert()
        yield World(made[ACME], made[GLOBEX], tasks[ACME], tasks[GLOBEX])


async def _refused_without_tenant(call: Callable[[], Awaitable[Any]]) -> None:
    """No tenant: TenantContextError, and no command reached the server."""
    before = COUNTER.count
    with pytest.raises(TenantContextError):
        await call()
    assert COUNTER.count == before, "a command reached the server without a tenant"


async def _unchanged(before: list[dict[str, Any]]) -> None:
    assert await _snapshot() == before


# --- reads -------------------------------------------------------------------------


async def test_find(world: World) -> None:
    async with tenant_context(ACME):
        found = await MxProject.find(MxProject.budget >= 0).to_list()
        assert {p.title for p in found} == {"acme-1", "acme-2"}
        # Naming the other tenant in the filter matches nothing; it never widens scope.
        assert await MxProject.find(MxProject.tenant_id == GLOBEX).to_list() == []
        assert await MxProject.find({"tenant_id": {"$in": [ACME, GLOBEX]}}).count() == 2
        assert await MxProject.find({"$or": [{"tenant_id": GLOBEX}, {"budget": 10}]}).count() == 1
    await _refused_without_tenant(lambda: MxProject.find().to_list())


async def test_find_one_and_get(world: World) -> None:
    globex_id = world.globex[0].id
    async with tenant_context(ACME):
        own = await MxProject.find_one(MxProject.title == "acme-1")
        assert own is not None
        assert own.tenant_id == ACME
        assert await MxProject.find_one(MxProject.id == globex_id) is None
        assert await MxProject.get(world.acme[1].id) is not None
        assert await MxProject.get(globex_id) is None
    await _refused_without_tenant(lambda: MxProject.get(globex_id))
    await _refused_without_tenant(lambda: MxProject.find_one(MxProject.title == "acme-1"))


async def test_find_all_count_exists(world: World) -> None:
    async with tenant_context(GLOBEX):
        assert {p.title for p in await MxProject.find_all().to_list()} == {"globex-1", "globex-2"}
        assert await MxProject.count() == 2
        assert await MxProject.find(MxProject.title == "globex-2").exists()
        assert not await MxProject.find(MxProject.title == "acme-2").exists()
    await _refused_without_tenant(lambda: MxProject.find_all().to_list())
    await _refused_without_tenant(lambda: MxProject.count())
    await _refused_without_tenant(lambda: MxProject.find(MxProject.title == "x").exists())


async def test_distinct(world: World) -> None:
    async with tenant_context(ACME):
        assert sorted(await MxProject.distinct("title")) == ["acme-1", "acme-2"]
        assert sorted(await MxProject.find(MxProject.budget > 0).distinct("tenant_id")) == [ACME]
    await _refused_without_tenant(lambda: MxProject.distinct("title"))


async def test_projection(world: World) -> None:
    async with tenant_context(ACME):
        titles = await MxProject.find_all().project(TitleOnly).to_list()
        assert sorted(t.title for t in titles) == ["acme-1", "acme-2"]
    await _refused_without_tenant(lambda: MxProject.find_all().project(TitleOnly).to_list())


async def test_cursor_iteration(world: World) -> None:
    async with tenant_context(GLOBEX):
        seen = [p.title async for p in MxProject.find_all()]
        assert sorted(seen) == ["globex-1", "globex-2"]

    async def iterate() -> None:
        async for _ in MxProject.find_all():
            pass

    await _refused_without_tenant(iterate)


async def test_aggregate_with_lookup(world: World) -> None:
    pipeline = [
        {
            "$lookup": {
                "from": "mx_tasks",
                "localField": "_id",
                "foreignField": "project.$id",
                "as": "t",
            }
        },
        {"$project": {"title": 1, "n": {"$size": "$t"}}},
    ]
    async with tenant_context(ACME):
        rows = await MxProject.aggregate(pipeline).to_list()
        assert sorted(r["title"] for r in rows) == ["acme-1", "acme-2"]
        # Even a lookup that would match every tenant's tasks only sees acme's.
        everything = [{"$lookup": {"from": "mx_tasks", "pipeline": [], "as": "all"}}]
        rows = await MxProject.aggregate(everything).to_list()
        assert {t["tenant_id"] for r in rows for t in r["all"]} == {ACME}
        unions = [{"$unionWith": "mx_tasks"}]
        assert {r["tenant_id"] for r in await MxProject.aggregate(unions).to_list()} == {ACME}
        facet = [{"$facet": {"x": [{"$lookup": {"from": "mx_tasks", "pipeline": [], "as": "y"}}]}}]
        [row] = await MxProject.aggregate(facet).to_list()
        assert {t["tenant_id"] for doc in row["x"] for t in doc["y"]} == {ACME}
        for stage in ({"$out": "elsewhere"}, {"$merge": {"into": "mx_tasks"}}):
            with pytest.raises(TenantIsolationError, match="refused in tenant scope"):
                await MxProject.aggregate([stage]).to_list()
    await _refused_without_tenant(lambda: MxProject.aggregate(pipeline).to_list())


async def test_links_and_backlinks(world: World) -> None:
    async with tenant_context(ACME):
        tasks = await MxTask.find_all(fetch_links=True).to_list()
        assert len(tasks) == 1
        assert isinstance(tasks[0].project, MxProject)
        assert tasks[0].project.tenant_id == ACME

        plain = await MxTask.get(world.acme_task.id)
        assert plain is not None
        await plain.fetch_link("project")
        assert isinstance(plain.project, MxProject)

        again = await MxTask.get(world.acme_task.id)
        assert again is not None
        assert isinstance(again.project, Link)
        fetched = await again.project.fetch()
        assert isinstance(fetched, MxProject)
        assert fetched.tenant_id == ACME

        project = await MxProject.get(world.acme[0].id, fetch_links=True)
        assert project is not None
        assert [t.name for t in project.tasks] == ["acme-task"]  # type: ignore[attr-defined]

    # A link that points into another tenant resolves to nothing.
    async with tenant_context(ACME):
        foreign = MxTask(name="smuggler", project=world.globex[0])
        await foreign.insert()
        loaded = await MxTask.get(foreign.id, fetch_links=True)
        assert loaded is not None
        assert not isinstance(loaded.project, MxProject)
        again = await MxTask.get(foreign.id)
        assert again is not None
        assert isinstance(again.project, Link)
        assert not isinstance(await again.project.fetch(), MxProject)

    async with tenant_context(ACME):
        unfetched = await MxTask.get(world.acme_task.id)
    assert unfetched is not None
    assert isinstance(unfetched.project, Link)
    link = unfetched.project
    await _refused_without_tenant(lambda: MxTask.find_all(fetch_links=True).to_list())
    await _refused_without_tenant(lambda: unfetched.fetch_link("project"))
    await _refused_without_tenant(lambda: link.fetch())


# --- writes ------------------------------------------------------------------------


async def test_insert_stamps_and_refuses(world: World) -> None:
    async with tenant_context(ACME):
        built_inside = await MxProject(title="new").insert()
        assert built_inside.tenant_id == ACME
        before = await _snapshot()
        with pytest.raises(TenantIsolationError, match="belongs to tenant 'globex'"):
            await MxProject(title="planted", tenant_id=GLOBEX).insert()
    await _unchanged(before)
    with unscoped("test: build a document outside any tenant"):
        orphan = MxProject(title="orphan")
    assert orphan.tenant_id == ""
    await _refused_without_tenant(lambda: orphan.insert())
    async with tenant_context(GLOBEX):
        await orphan.insert()  # stamped with the tenant of the write
    with unscoped("test: check stamp"):
        stored = await MxProject.get(orphan.id)
    assert stored is not None
    assert stored.tenant_id == GLOBEX


async def test_insert_many(world: World) -> None:
    async with tenant_context(GLOBEX):
        await MxProject.insert_many([MxProject(title="g3"), MxProject(title="g4")])
        assert await MxProject.count() == 4
        before = await _snapshot()
        with pytest.raises(TenantIsolationError):
            await MxProject.insert_many(
                [MxProject(title="ok"), MxProject(title="x", tenant_id=ACME)]
            )
    await _unchanged(before)
    async with tenant_context(ACME):
        assert await MxProject.count() == 2
    await _refused_without_tenant(lambda: MxProject.insert_many([MxProject(title="z")]))


async def test_save_and_replace(world: World) -> None:
    own = world.acme[0]
    async with tenant_context(ACME):
        own.title = "renamed"
        await own.save()
        own.budget = 99
        await own.replace()
        stored = await MxProject.get(own.id)
        assert stored is not None
        assert (stored.title, stored.budget) == ("renamed", 99)

    with unscoped("test: fetch a globex document"):
        theirs = await MxProject.get(world.globex[0].id)
    assert theirs is not None
    before = await _snapshot()
    async with tenant_context(ACME):
        theirs.title = "hijacked"
        with pytest.raises(TenantIsolationError):
            await theirs.save()
        with pytest.raises(TenantIsolationError):
            await theirs.replace()
        # Claiming it for acme: the _id exists under globex, so nothing is overwritten,
        # and the error is the one an own duplicate gets: it tells nothing about globex.
        theirs.tenant_id = ACME
        with pytest.raises(DuplicateKeyError) as foreign:
            await theirs.save()
        with pytest.raises(DuplicateKeyError) as own_duplicate:
            await MxProject(id=own.id, title="twin", budget=1).insert()
        assert type(foreign.value) is type(own_duplicate.value)
        assert "tenant" not in str(foreign.value)
        # replace() matches by _id within the tenant: for acme the document doesn't exist.
        with pytest.raises(DocumentNotFound):
            await theirs.replace()
    await _unchanged(before)
    await _refused_without_tenant(lambda: own.save())
    await _refused_without_tenant(lambda: own.replace())


async def test_updates(world: World) -> None:
    globex_id = world.globex[0].id
    async with tenant_context(ACME):
        await MxProject.find(MxProject.budget >= 0).update(Inc({MxProject.budget: 1}))
        await MxProject.find_one(MxProject.title == "acme-1").update(Set({MxProject.budget: 500}))
        await MxProject.find_all().update_many(Inc({MxProject.budget: 1}))
        doc = await MxProject.get(world.acme[1].id)
        assert doc is not None
        await doc.set({MxProject.title: "set-title"})
        await doc.inc({MxProject.budget: 5})
        await doc.update(Set({MxProject.title: "updated"}))
        assert {p.title: p.budget for p in await MxProject.find_all().to_list()} == {
            "acme-1": 501,
            "updated": 27,
        }
        before = await _snapshot()
        # Reaching globex's document by id or by tenant matches nothing.
        await MxProject.find_one(MxProject.id == globex_id).update(Set({MxProject.title: "x"}))
        await MxProject.find(MxProject.tenant_id == GLOBEX).update(Inc({MxProject.budget: 1}))
        await _unchanged(before)
        # Moving documents to another tenant is refused, whatever the operator.
        for update in (
            Set({MxProject.tenant_id: GLOBEX}),
            {"$unset": {"tenant_id": ""}},
            {"$rename": {"tenant_id": "was_tenant"}},
            {"$rename": {"title": "tenant_id"}},
        ):
            with pytest.raises(TenantIsolationError):
                await MxProject.find_all().update(update)
        await _unchanged(before)
    await _refused_without_tenant(lambda: MxProject.find_all().update(Inc({MxProject.budget: 1})))
    await _refused_without_tenant(lambda: world.acme[0].set({MxProject.title: "x"}))


async def test_upsert(world: World) -> None:
    async with tenant_context(GLOBEX):
        await MxProject.find_one(MxProject.title == "fresh").upsert(
            Set({MxProject.budget: 7}), on_insert=MxProject(title="fresh", budget=7)
        )
        # An upsert whose filter names acme's document creates in globex, never in acme.
        await MxProject.find_one(MxProject.title == "acme-1").upsert(
            Set({MxProject.budget: 1}), on_insert=MxProject(title="acme-1", budget=1)
        )
        titles = sorted(p.title for p in await MxProject.find_all().to_list())
        assert titles == ["acme-1", "fresh", "globex-1", "globex-2"]
    async with tenant_context(ACME):
        acme_one = await MxProject.find_one(MxProject.title == "acme-1")
        assert acme_one is not None
        assert acme_one.budget == 10
    await _refused_without_tenant(
        lambda: MxProject.find_one(MxProject.title == "y").upsert(
            Set({MxProject.budget: 1}), on_insert=MxProject(title="y")
        )
    )


async def test_deletes(world: World) -> None:
    async with tenant_context(ACME):
        before_globex = [s for s in await _snapshot() if s["tenant_id"] == GLOBEX]
        await MxProject.find(MxProject.tenant_id == GLOBEX).delete()
        await MxProject.find_one(MxProject.id == world.globex[0].id).delete()
        await world.acme[0].delete()
        assert [p.title for p in await MxProject.find_all().to_list()] == ["acme-2"]
        await MxProject.find_all().delete_many()
        assert await MxProject.count() == 0
    assert [s for s in await _snapshot() if s["tenant_id"] == GLOBEX] == before_globex
    await _refused_without_tenant(lambda: MxProject.find_all().delete())
    await _refused_without_tenant(lambda: world.globex[1].delete())


async def test_bulk_writer(world: World) -> None:
    async with tenant_context(ACME):
        async with BulkWriter() as writer:
            await MxProject.insert_one(MxProject(title="bulk-1"), bulk_writer=writer)
            await MxProject.find(MxProject.title == "acme-1").update(
                Set({MxProject.budget: 1}), bulk_writer=writer
            )
            await MxProject.find(MxProject.tenant_id == GLOBEX).update(
                Set({MxProject.budget: -1}), bulk_writer=writer
            )
            await MxProject.find(MxProject.title == "acme-2").delete(bulk_writer=writer)
        titles = sorted(p.title for p in await MxProject.find_all().to_list())
        assert titles == ["acme-1", "bulk-1"]
        before = await _snapshot()

        async def plant() -> None:
            async with BulkWriter() as writer:
                await MxProject.insert_one(MxProject(title="ok"), bulk_writer=writer)
                planted = MxProject(title="planted", tenant_id=GLOBEX)
                await MxProject.insert_one(planted, bulk_writer=writer)

        async def move() -> None:
            async with BulkWriter() as writer:
                await MxProject.find_all().update(
                    Set({MxProject.tenant_id: GLOBEX}), bulk_writer=writer
                )

        with pytest.raises(TenantIsolationError):
            await plant()
        with pytest.raises(TenantIsolationError):
            await move()
        await _unchanged(before)
    async with tenant_context(GLOBEX):
        assert sorted(p.budget for p in await MxProject.find_all().to_list()) == [10, 20]

    async def commit_without_tenant() -> None:
        async with BulkWriter() as writer:
            await MxProject.insert_one(MxProject(title="nobody"), bulk_writer=writer)

    await _refused_without_tenant(commit_without_tenant)


async def test_write_rules_cascade_stays_in_tenant(world: World) -> None:
    async with tenant_context(ACME):
        task = MxTask(name="cascade", project=MxProject(title="cascaded"))
        await task.insert(link_rule=WriteRules.WRITE)
        assert task.project is not None
    with unscoped("test: check cascade"):
        stored = await MxProject.find_one(MxProject.title == "cascaded")
    assert stored is not None
    assert stored.tenant_id == ACME


async def test_raw_collection_access_is_refused(world: World) -> None:
    collection = MxProject.get_pymongo_collection()
    async with tenant_context(ACME):
        for attribute in ("drop", "create_index", "watch", "rename", "find_raw_batches"):
            with pytest.raises(TenantIsolationError, match="use it inside unscoped"):
                getattr(collection, attribute)
        # Derived objects come back guarded, and scoped where the data is.
        for derived in (
            collection.with_options(),
            collection.database["mx_projects"],
            collection.database.client[collection.database.name]["mx_projects"],
            MxProject.get_settings().pymongo_collection,
            MxProject.get_settings().pymongo_db["mx_projects"],
        ):
            assert await derived.count_documents({}) == 2
            with pytest.raises(TenantIsolationError):
                _ = derived.drop
        with pytest.raises(TenantIsolationError, match="raw access"):
            _ = collection.raw
        with pytest.raises(TenantIsolationError, match="counts every tenant"):
            await collection.estimated_document_count()
    assert collection.name == "mx_projects"
    with unscoped("test: raw access"):
        assert await collection.raw.count_documents({}) == 4
        assert await collection.estimated_document_count() == 4
