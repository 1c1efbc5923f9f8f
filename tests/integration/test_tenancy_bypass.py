"""Regression tests for the bypass classes of issue 9, each checked against stored state.

Acting as tenant acme, ordinary application code tries to read, change or move globex's
documents through keyword arguments, collations, inherited and union collections, and
the raw objects insightdb hands out. Every attempt must be refused before any command
is sent (the command counter does not move) or confined to acme; what globex stored is
compared with a raw client's view before and after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from beanie import UnionDoc
from beanie.odm.operators.update.general import Inc, Set
from pydantic import Field
from pymongo import AsyncMongoClient
from pymongo.collation import Collation

import insightdb
from insightdb import (
    CustomerDocument,
    RoutingError,
    Settings,
    TenantContextError,
    TenantIsolationError,
    TenantScoped,
    tenant_context,
    unscoped,
)
from tests.commandcounter import COUNTER

ACME, GLOBEX = "acme", "globex"


class ByProject(TenantScoped, CustomerDocument):
    title: str
    budget: int = 0

    class Settings:
        name = "by_projects"


class ByTicket(TenantScoped, CustomerDocument):
    subject: str

    class Settings:
        name = "by_tickets"


async def _stored(settings: Settings, collection: str) -> list[dict[str, Any]]:
    """Every document of a customer collection, read by a client insightdb never saw."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(settings.database("customer").uri)
    try:
        db = client[settings.database("customer").name]
        # The guard checks commands by namespace, whatever client sends them.
        with unscoped("test: compare stored state"):
            return await db[collection].find({}, sort=[("_id", 1)]).to_list()
    finally:
        await client.close()


@pytest.fixture
async def world(insightdb_settings: Settings) -> AsyncIterator[insightdb.InsightDB]:
    async with insightdb.connect(insightdb_settings, models=[ByProject, ByTicket]) as db:
        for tenant in (ACME, GLOBEX, "ACME", "Acme"):
            async with tenant_context(tenant):
                await ByProject(title=f"{tenant}-p", budget=1).insert()
                await ByTicket(subject=f"{tenant}-t").insert()
        yield db


async def _refused(call: Callable[[], Awaitable[Any]], error: type[Exception]) -> None:
    before = COUNTER.count
    async with tenant_context(ACME):
        with pytest.raises(error):
            await call()
    assert COUNTER.count == before, "refused, yet a command reached the server"


# -- 1. keyword arguments that would replace the scoped command ----------------------------


async def _own() -> ByProject:
    async with tenant_context(ACME):
        doc = await ByProject.find_one()
    assert doc is not None
    return doc


@pytest.mark.parametrize(
    "attack",
    [
        "count pipeline",
        "find_one_and_update query",
        "set query",
        "inc query",
        "update response query",
        "delete query",
        "find filter kw",
        "aggregate pipeline kw",
        "distinct query",
        "update_many update",
    ],
)
async def test_keyword_arguments_cannot_replace_the_scoped_command(
    attack: str, world: insightdb.InsightDB, insightdb_settings: Settings
) -> None:
    before = await _stored(insightdb_settings, "by_projects")
    own = await _own()
    everything: dict[str, Any] = {}
    raw = ByProject.get_pymongo_collection()
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "count pipeline": lambda: ByProject.find(
            pipeline=[{"$group": {"_id": 1, "n": {"$sum": 1}}}]
        ).count(),
        "find_one_and_update query": lambda: raw.find_one_and_update(
            {}, {"$set": {"title": "x"}}, query=everything
        ),
        "set query": lambda: own.set({ByProject.title: "hijacked"}, query=everything),
        "inc query": lambda: own.inc({ByProject.budget: 100}, query=everything),
        "update response query": lambda: ByProject.find_one(ByProject.title == "acme-p").update(
            Set({ByProject.budget: 7}), response_type=insightdb_update_response(), query={}
        ),
        "delete query": lambda: raw.find_one_and_delete({}, query=everything),
        "find filter kw": lambda: raw.find({}, filter=everything).to_list(),
        "aggregate pipeline kw": lambda: raw.count_documents({}, pipeline=[]),
        "distinct query": lambda: raw.distinct("title", {}, query=everything),
        "update_many update": lambda: raw.update_many({}, {"$set": {"b": 1}}, update={}),
    }
    await _refused(calls[attack], (TenantIsolationError, TypeError))
    assert await _stored(insightdb_settings, "by_projects") == before


def insightdb_update_response() -> Any:
    from beanie import UpdateResponse

    return UpdateResponse.NEW_DOCUMENT


# -- 2. collations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "collation",
    [
        {"locale": "en", "strength": 2},
        {"locale": "en", "strength": 1},
        {"locale": "en", "alternate": "shifted"},
        Collation("en", strength=2),
    ],
)
async def test_collations_cannot_widen_the_tenant_predicate(
    collation: Any, world: insightdb.InsightDB, insightdb_settings: Settings
) -> None:
    before = await _stored(insightdb_settings, "by_projects")
    await _refused(lambda: ByProject.find_all(collation=collation).to_list(), TenantIsolationError)
    await _refused(
        lambda: ByProject.find_all().update(Inc({ByProject.budget: 1}), collation=collation),
        TenantIsolationError,
    )
    await _refused(lambda: ByProject.find_all().delete(collation=collation), TenantIsolationError)
    await _refused(
        lambda: ByProject.find_all().aggregate([], collation=collation).to_list(),
        TenantIsolationError,
    )
    async with tenant_context(ACME):
        cursor = ByProject.get_pymongo_collection().find({})
        with pytest.raises(TenantIsolationError):
            cursor.collation(collation)
        await cursor.close()
    assert await _stored(insightdb_settings, "by_projects") == before


async def test_scoped_commands_carry_the_simple_collation(world: insightdb.InsightDB) -> None:
    # Sent explicitly, the simple collation also overrides a collection's default one:
    # "acme" sees exactly its own documents, never ACME's or Acme's.
    async with tenant_context(ACME):
        titles = [p.title for p in await ByProject.find_all().to_list()]
        assert titles == ["acme-p"]
        assert await ByProject.count() == 1
        result = await ByProject.find_all().update(Inc({ByProject.budget: 1}))
        assert result.modified_count == 1


# -- 3. the registry sees collections as Beanie does -------------------------------------------


async def test_a_plain_base_sharing_a_scoped_collection_is_refused(
    insightdb_settings: Settings,
) -> None:
    class Base(CustomerDocument):
        title: str

        class Settings:
            name = "by_shared"

    class Scoped(TenantScoped, Base):
        pass

    with pytest.raises(RoutingError, match="share collection 'by_shared'"):
        await insightdb.init(insightdb_settings, models=[Base, Scoped])
    await insightdb.close()


async def test_an_inherited_global_unique_index_is_refused(insightdb_settings: Settings) -> None:
    import pymongo

    class UserBase(CustomerDocument):
        email: str

        class Settings:
            name = "by_users"
            indexes = [pymongo.IndexModel([("email", 1)], unique=True, name="email_unique")]  # noqa: RUF012

    class TenantUser(TenantScoped, UserBase):
        pass

    with pytest.raises(RoutingError, match="email_unique"):
        await insightdb.init(insightdb_settings, models=[TenantUser])
    await insightdb.close()


async def test_is_root_families_and_unions_of_scoped_models_are_scoped(
    insightdb_settings: Settings,
) -> None:
    class Vehicle(TenantScoped, CustomerDocument):
        wheels: int

        class Settings:
            name = "by_vehicles"
            is_root = True

    class Bike(Vehicle):
        pass

    class Feed(UnionDoc):
        class Settings:
            name = "by_feed"

    class Post(TenantScoped, CustomerDocument):
        text: str

        class Settings:
            union_doc = Feed

    class Note(TenantScoped, CustomerDocument):
        text: str = Field(default="n")

        class Settings:
            union_doc = Feed

    async with insightdb.connect(insightdb_settings, models=[Vehicle, Bike, Feed, Post, Note]):
        for tenant in (ACME, GLOBEX):
            async with tenant_context(tenant):
                await Bike(wheels=2).insert()
                await Post(text=f"{tenant} post").insert()
                await Note(text=f"{tenant} note").insert()
        async with tenant_context(ACME):
            assert len(await Vehicle.find_all(with_children=True).to_list()) == 1
            union = await Feed.find_all().to_list()
            assert sorted(d.text for d in union) == ["acme note", "acme post"]
            assert len(await Feed.aggregate([]).to_list()) == 2
        with pytest.raises(TenantContextError):
            await Feed.find_all().to_list()
        with pytest.raises(TenantContextError):
            await Feed.aggregate([]).to_list()


async def test_a_union_of_scoped_and_plain_members_is_refused(insightdb_settings: Settings) -> None:
    class Mixed(UnionDoc):
        class Settings:
            name = "by_mixed"

    class A(TenantScoped, CustomerDocument):
        class Settings:
            union_doc = Mixed

    class B(CustomerDocument):
        class Settings:
            union_doc = Mixed

    with pytest.raises(RoutingError, match="Mixed"):
        await insightdb.init(insightdb_settings, models=[Mixed, A, B])
    await insightdb.close()


async def test_lookups_by_the_real_collection_name_are_scoped(world: insightdb.InsightDB) -> None:
    lookup = [{"$lookup": {"from": "by_tickets", "pipeline": [], "as": "t"}}]
    async with tenant_context(ACME):
        rows = await ByProject.aggregate(lookup).to_list()
    assert [len(r["t"]) for r in rows] == [1]
    assert {t["tenant_id"] for r in rows for t in r["t"]} == {ACME}
    union = [{"$unionWith": {"coll": "by_tickets"}}]
    async with tenant_context(ACME):
        rows = await ByProject.aggregate(union).to_list()
    assert {r["tenant_id"] for r in rows} == {ACME}


# -- 4. raw driver objects ----------------------------------------------------------------------


async def test_every_handed_out_object_is_guarded(
    world: insightdb.InsightDB, insightdb_settings: Settings
) -> None:
    db = world
    name = insightdb_settings.database("customer").name
    handles: list[Any] = [
        db.database("customer")["by_projects"],
        db.database("customer").by_projects,
        db.database("customer").get_collection("by_projects"),
        db.client("customer")[name]["by_projects"],
        db.client("customer").get_database(name)["by_projects"],
        ByProject.get_settings().pymongo_collection,
        ByProject.get_settings().pymongo_db["by_projects"],
        ByProject.get_pymongo_collection().database["by_projects"],
        db.database("admin").client[name]["by_projects"],
        ByTicket.get_pymongo_collection().with_options().database["by_projects"],
    ]
    async with tenant_context(ACME):
        for handle in handles:
            assert await handle.count_documents({}) == 1
            assert [d["tenant_id"] for d in await handle.find({}).to_list()] == [ACME]
            with pytest.raises(TenantIsolationError):
                _ = handle.drop
            with pytest.raises(TenantIsolationError):
                _ = handle.raw
    for handle in handles:
        with pytest.raises(TenantContextError):
            await handle.count_documents({})
    for refused in (
        lambda: db.database("customer").raw,
        lambda: db.client("customer").raw,
        lambda: db.client("customer").watch,
        lambda: db.client("customer").bulk_write,
        lambda: db.database("customer").watch,
        lambda: db.database("customer").cursor_command,
    ):
        with pytest.raises(TenantIsolationError):
            refused()
    with pytest.raises(TenantIsolationError):
        await db.database("customer").command({"find": "by_projects"})
    with pytest.raises(TenantIsolationError):
        await db.database("customer").drop_collection("by_projects")
    with pytest.raises(TenantIsolationError):
        await db.client("customer").drop_database(name)
    assert len(await _stored(insightdb_settings, "by_projects")) == 4
    with unscoped("test: the escape hatch still reaches the driver"):
        assert await db.database("customer").raw["by_projects"].count_documents({}) == 4


async def test_a_transaction_session_leads_to_guarded_objects_only(
    world: insightdb.InsightDB, insightdb_settings: Settings
) -> None:
    name = insightdb_settings.database("customer").name
    async with world.transaction() as session:
        stolen = session.client[name]["by_projects"]
        async with tenant_context(ACME):
            assert await stolen.count_documents({}, session=session) == 1
            await ByProject(title="in tx").insert(session=session)
        with pytest.raises(TenantIsolationError):
            _ = session.raw
    async with tenant_context(ACME):
        assert await ByProject.count() == 2


async def test_database_level_aggregation_needs_a_tenant(world: insightdb.InsightDB) -> None:
    # (The embedded server has no database-level aggregate; the refusal comes first.)
    pipeline = [
        {"$documents": [{"x": 1}]},
        {"$lookup": {"from": "by_projects", "pipeline": [], "as": "p"}},
    ]
    before = COUNTER.count
    with pytest.raises(TenantContextError):
        await world.database("customer").aggregate(pipeline)
    async with tenant_context(ACME):
        with pytest.raises(TenantIsolationError):
            await world.database("customer").aggregate([{"$out": "by_projects"}])
    assert COUNTER.count == before


async def test_a_database_name_in_another_case_is_the_same_scoped_database(
    world: insightdb.InsightDB, insightdb_settings: Settings
) -> None:
    # MongoDB keeps database names unique regardless of case, so a differently-cased name
    # must be scoped (and protected) like the customer database itself.
    name = insightdb_settings.database("customer").name.upper()
    variant = world.client("customer")[name]["by_projects"]
    assert variant.tenant_scoped
    with pytest.raises(TenantContextError):
        await variant.count_documents({})
    with pytest.raises(TenantIsolationError):
        await world.client("customer").drop_database(name)


async def test_database_level_aggregation_refuses_unlisted_options_by_name(
    world: insightdb.InsightDB,
) -> None:
    before = COUNTER.count
    async with tenant_context(ACME):
        for option in ("collation", "let", "cursor", "explain"):
            with pytest.raises(TenantIsolationError, match=repr(option)):
                await world.database("customer").aggregate(
                    [{"$documents": [{"x": 1}]}], **{option: {}}
                )
    assert COUNTER.count == before
