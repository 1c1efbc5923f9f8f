"""The fast read path keeps tenancy and answers what Beanie answers.

``find_as`` / ``find_one_as`` skip Document construction but not the guarded collection:
no tenant is a ``TenantContextError`` before any command, another tenant's documents are
never returned (not even when the filter names them), and for the same query the rows
equal Beanie's documents, field for field and in the same order.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import msgspec
import pytest
from beanie import PydanticObjectId
from bson import ObjectId
from pydantic import BaseModel, ConfigDict, Field

import insightdb
from insightdb import (
    AdminDocument,
    CustomerDocument,
    Settings,
    TenantContextError,
    TenantScoped,
    find_as,
    find_one_as,
    tenant_context,
    unscoped,
)
from tests.commandcounter import COUNTER

ACME, GLOBEX = "acme", "globex"


class FpProject(TenantScoped, CustomerDocument):
    title: str
    budget: int
    due: datetime.datetime

    class Settings:
        name = "fp_projects"


class FpRegion(CustomerDocument):
    code: str

    class Settings:
        name = "fp_regions"


class FpPlan(AdminDocument):
    name: str
    seats: int

    class Settings:
        name = "fp_plans"


class ProjectRow(BaseModel):
    id: PydanticObjectId = Field(alias="_id")
    title: str
    budget: int
    due: datetime.datetime


class FastRow(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: ObjectId = Field(alias="_id")
    title: str


class TitleDict(TypedDict):
    title: str
    budget: int


@dataclasses.dataclass
class TitleData:
    title: str


class ProjectStruct(msgspec.Struct):
    id: ObjectId = msgspec.field(name="_id")
    title: str
    budget: int
    due: datetime.datetime


class TitleStruct(msgspec.Struct):
    title: str
    budget: int = 0


DUE = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)


@pytest.fixture
async def seeded(insightdb_settings: Settings) -> AsyncIterator[dict[str, list[FpProject]]]:
    async with insightdb.connect(insightdb_settings, models=[FpProject, FpRegion, FpPlan]):
        made: dict[str, list[FpProject]] = {}
        for tenant, budgets in ((ACME, [30, 10, 20, 40, 50]), (GLOBEX, [15, 25])):
            async with tenant_context(tenant):
                made[tenant] = [
                    await FpProject(title=f"{tenant}-{i}", budget=b, due=DUE).insert()
                    for i, b in enumerate(budgets)
                ]
        await FpRegion(code="eu").insert()
        await FpPlan(name="pro", seats=5).insert()
        yield made


async def test_no_tenant_is_refused_before_any_command(seeded: dict[str, Any]) -> None:
    before = COUNTER.count
    with pytest.raises(TenantContextError):
        await find_as(FpProject, {}, into=ProjectRow)
    with pytest.raises(TenantContextError):
        await find_one_as(FpProject, {"title": "acme-0"}, into=dict)
    assert COUNTER.count == before, "a command reached the server without a tenant"


async def test_only_the_current_tenants_documents_are_read(
    seeded: dict[str, list[FpProject]],
) -> None:
    globex_ids = {p.id for p in seeded[GLOBEX]}
    async with tenant_context(ACME):
        rows = await find_as(FpProject, {}, into=ProjectRow)
        assert {r.title for r in rows} == {p.title for p in seeded[ACME]}
        assert not {r.id for r in rows} & globex_ids
        # Naming the other tenant narrows to nothing; it never widens the scope.
        assert await find_as(FpProject, {"tenant_id": GLOBEX}, into=dict) == []
        other = seeded[GLOBEX][0].id
        assert await find_one_as(FpProject, {"_id": other}, into=ProjectRow) is None
    async with tenant_context(GLOBEX):
        rows = await find_as(FpProject, {}, into=ProjectRow)
        assert {r.id for r in rows} == globex_ids


async def test_rows_equal_beanies_documents_for_the_same_query(
    seeded: dict[str, list[FpProject]],
) -> None:
    async with tenant_context(ACME):
        queries: list[dict[str, Any]] = [
            {"filters": ({},)},
            {"filters": (FpProject.budget > 15,), "sort": "-budget"},
            {"filters": ({"budget": {"$lte": 40}},), "sort": "budget", "skip": 1, "limit": 2},
            {"filters": (FpProject.budget >= 10, {"title": {"$ne": "acme-1"}}), "sort": "title"},
        ]
        for query in queries:
            filters = query.pop("filters")
            documents = await FpProject.find(*filters, **query).to_list()
            rows = await find_as(FpProject, *filters, into=ProjectRow, **query)
            assert [ProjectRow.model_validate(d.model_dump(by_alias=True)) for d in documents] == (
                rows
            )
            raw = await find_as(FpProject, *filters, into=dict, **query)
            assert [d.model_dump(by_alias=True) for d in documents] == raw
        # Beanie's find_one hands ``sort`` to the driver as is; find_one_as takes both forms.
        first = await FpProject.find_one(FpProject.budget > 25, sort=[("budget", 1)])
        row = await find_one_as(FpProject, FpProject.budget > 25, into=ProjectRow, sort="budget")
        assert first is not None
        assert row is not None
        assert (row.id, row.title, row.budget, row.due) == (
            first.id,
            first.title,
            first.budget,
            first.due,
        )


async def test_targets_fetch_only_their_fields(seeded: dict[str, list[FpProject]]) -> None:
    async with tenant_context(ACME):
        typed = await find_as(FpProject, {"budget": 10}, into=TitleDict)
        assert typed == [{"title": "acme-1", "budget": 10}]
        data = await find_as(FpProject, {"budget": 10}, into=TitleData)
        assert data == [TitleData(title="acme-1")]
        fast = await find_as(FpProject, {"budget": 10}, into=FastRow)
        assert [(type(r.id), r.title) for r in fast] == [(ObjectId, "acme-1")]
        explicit = await find_as(FpProject, {"budget": 10}, into=dict, projection={"title": 1})
        assert [set(d) for d in explicit] == [{"_id", "title"}]


async def test_unscoped_reads_every_tenant(seeded: dict[str, list[FpProject]]) -> None:
    with unscoped("test: the fast path honours the escape hatch"):
        rows = await find_as(FpProject, {}, into=ProjectRow, sort="title")
    assert len(rows) == len(seeded[ACME]) + len(seeded[GLOBEX])


async def test_models_without_tenancy_read_without_a_tenant(seeded: dict[str, Any]) -> None:
    regions = await find_as(FpRegion, {}, into=dict)
    assert [r["code"] for r in regions] == ["eu"]
    plan = await find_one_as(FpPlan, {"name": "pro"}, into=dict)
    assert plan is not None
    assert plan["seats"] == 5


async def test_documents_are_not_a_target(seeded: dict[str, Any]) -> None:
    async with tenant_context(ACME):
        with pytest.raises(TypeError, match=r"FpProject\.find\(\)"):
            await find_as(FpProject, {}, into=FpProject)


# msgspec structs: the fastest validated target --------------------------------------------


async def test_structs_equal_beanies_documents_and_keep_the_tenant(
    seeded: dict[str, list[FpProject]],
) -> None:
    globex_ids = {p.id for p in seeded[GLOBEX]}
    async with tenant_context(ACME):
        for filters, sort in (((), None), ((FpProject.budget > 15,), "-budget")):
            documents = await FpProject.find(*filters, sort=sort).to_list()
            rows = await find_as(FpProject, *filters, into=ProjectStruct, sort=sort)
            assert [(r.id, r.title, r.budget, r.due) for r in rows] == [
                (d.id, d.title, d.budget, d.due) for d in documents
            ]
            assert all(type(r.id) is ObjectId for r in rows)
            assert not {r.id for r in rows} & globex_ids
        other = seeded[GLOBEX][0].id
        assert await find_one_as(FpProject, {"_id": other}, into=ProjectStruct) is None
        one = await find_one_as(FpProject, {"title": "acme-1"}, into=ProjectStruct)
        assert one is not None
        assert (one.title, one.budget, one.due) == ("acme-1", 10, DUE)
        assert await find_as(FpProject, {"tenant_id": GLOBEX}, into=ProjectStruct) == []


async def test_structs_fetch_only_their_fields_and_take_defaults(
    seeded: dict[str, list[FpProject]],
) -> None:
    async with tenant_context(ACME):
        rows = await find_as(FpProject, {"budget": 10}, into=TitleStruct)
        assert rows == [TitleStruct(title="acme-1", budget=10)]
        # A field the projection leaves out takes the struct's default.
        narrow = await find_as(FpProject, {"budget": 10}, into=TitleStruct, projection={"title": 1})
        assert narrow == [TitleStruct(title="acme-1")]


async def test_structs_check_types_strictly(seeded: dict[str, list[FpProject]]) -> None:
    class WrongType(msgspec.Struct):
        title: int

    async with tenant_context(ACME):
        with pytest.raises(msgspec.ValidationError, match="title"):
            await find_as(FpProject, {}, into=WrongType)
        with pytest.raises(msgspec.ValidationError):
            await find_one_as(FpProject, {"budget": 10}, into=WrongType)


async def test_structs_without_a_tenant_are_refused_before_any_command(
    seeded: dict[str, Any],
) -> None:
    before = COUNTER.count
    with pytest.raises(TenantContextError):
        await find_as(FpProject, {}, into=ProjectStruct)
    with pytest.raises(TenantContextError):
        await find_one_as(FpProject, {}, into=ProjectStruct)
    assert COUNTER.count == before
