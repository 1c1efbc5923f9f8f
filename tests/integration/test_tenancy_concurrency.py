"""Concurrency test of tenancy on the real server: hundreds of interleaved tasks, zero bleed.

300 asyncio tasks spread over 10 tenants insert, read, update, count and aggregate at
the same time, yielding to one another between every step. Each task must only ever
see its own tenant's documents; at the end each tenant holds exactly the documents its
tasks wrote, each updated exactly once by its writer, and a raw check inside
``unscoped`` confirms that every stored ``tenant_id`` is the tenant its writer used.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

import pytest
from pymongo.results import UpdateResult

import insightdb
from insightdb import CustomerDocument, Settings, TenantIsolationError
from insightdb.tenancy import TenantScoped, current_tenant, tenant_context, unscoped

pytestmark = pytest.mark.integration
T = TypeVar("T")

TENANTS = tuple(f"conc-{i}" for i in range(10))
TASKS = 300
# Commands in flight at once. All 300 tasks run interleaved, each inside its tenant, but
# the embedded server is a single-threaded emulator: hundreds of queued commands would
# test its queue (and the pool's wait queue), not tenancy.
IN_FLIGHT = 48


class ConcItem(TenantScoped, CustomerDocument):
    writer: str
    written_as: str
    seq: int
    hits: int = 0


def tenant_of(task: int) -> str:
    return TENANTS[task % len(TENANTS)]


def docs_of(task: int) -> int:
    """How many documents task ``task`` writes (1, 2 or 3: insert and insert_many)."""
    return 1 + task % 3


@pytest.fixture
async def conc_db(insightdb_settings: Settings) -> AsyncIterator[insightdb.InsightDB]:
    # A generous per-operation deadline: on a loaded 2-core machine the emulator may
    # take seconds to drain a burst; the test itself is bounded by asyncio.timeout.
    timeouts = insightdb_settings.timeouts.model_copy(update={"operation_ms": 20_000})
    settings = insightdb_settings.model_copy(update={"timeouts": timeouts})
    async with insightdb.connect(settings, models=[ConcItem]) as db:
        yield db


@dataclass
class Activity:
    """How many tasks are inside their tenant block now, and at most."""

    inside: int = 0
    peak: int = 0

    def enter(self) -> None:
        self.inside += 1
        self.peak = max(self.peak, self.inside)

    def leave(self) -> None:
        self.inside -= 1


async def worker(
    task: int, rng: random.Random, gate: asyncio.Semaphore, activity: Activity
) -> list[str]:
    """Run one task's operations; return every cross-tenant observation it made."""

    async def db(operation: Awaitable[T]) -> T:
        async with gate:
            return await operation

    tenant = tenant_of(task)
    writer = f"w{task}"
    problems: list[str] = []

    async def pause() -> None:
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)

    def check(doc: ConcItem, where: str) -> None:
        if doc.tenant_id != tenant or doc.written_as != tenant:
            problems.append(f"{writer}/{tenant} saw {doc.writer}/{doc.tenant_id} in {where}")

    async with tenant_context(tenant):
        activity.enter()
        await pause()
        count = docs_of(task)
        if count == 1:
            await db(ConcItem(writer=writer, written_as=tenant, seq=0).insert())
        else:
            batch = [ConcItem(writer=writer, written_as=tenant, seq=s) for s in range(count)]
            await db(ConcItem.insert_many(batch))
        await pause()
        if current_tenant() != tenant:
            problems.append(f"{writer} runs as {current_tenant()} instead of {tenant}")

        mine = await db(ConcItem.find(ConcItem.writer == writer).to_list())
        if sorted(doc.seq for doc in mine) != list(range(count)):
            problems.append(f"{writer} found {len(mine)} of its {count} documents")
        for doc in mine:
            check(doc, "find by writer")
        await pause()

        result = await db(
            ConcItem.find(ConcItem.writer == writer).update_many({"$inc": {"hits": 1}})
        )
        modified = result.modified_count if isinstance(result, UpdateResult) else None
        if modified != count:
            problems.append(f"{writer} updated {modified} of its {count} documents")
        await pause()

        for doc in await db(ConcItem.find_all().to_list()):
            check(doc, "find_all")
        if await db(ConcItem.count()) < count:
            problems.append(f"{writer}: count below its own documents")
        await pause()

        groups = await db(
            ConcItem.aggregate([{"$group": {"_id": "$tenant_id", "n": {"$sum": 1}}}]).to_list()
        )
        if [g["_id"] for g in groups] != [tenant]:
            problems.append(f"{writer}: aggregate saw tenants {[g['_id'] for g in groups]}")
        if await db(ConcItem.distinct("written_as")) != [tenant]:
            problems.append(f"{writer}: distinct saw another tenant's writers")
        other = TENANTS[(task + 1) % len(TENANTS)]
        if await db(ConcItem.find({"tenant_id": other}).count()) != 0:
            problems.append(f"{writer}: a filter naming {other} matched")
        await pause()

        first = await db(ConcItem.find_one(ConcItem.writer == writer, ConcItem.seq == 0))
        if first is None:
            problems.append(f"{writer}: find_one missed its document")
        else:
            check(first, "find_one")
            if task % 5 == 0:
                # Another tenant, running interleaved in the same task, must not touch it.
                async with tenant_context(other):
                    try:
                        await db(first.save())
                    except TenantIsolationError:
                        pass
                    else:
                        problems.append(f"{writer}: {other} saved {tenant}'s document")
                    if await db(ConcItem.get(first.id)) is not None:
                        problems.append(f"{writer}: {other} got {tenant}'s document by id")
                if current_tenant() != tenant:
                    problems.append(f"{writer}: nested tenant not restored")
        activity.leave()
    return problems


async def test_hundreds_of_interleaved_tasks_never_bleed_between_tenants(
    conc_db: insightdb.InsightDB,
) -> None:
    rngs = [random.Random(task) for task in range(TASKS)]
    order = list(range(TASKS))
    random.Random(7).shuffle(order)
    gate = asyncio.Semaphore(IN_FLIGHT)
    activity = Activity()
    async with asyncio.timeout(30):
        results = await asyncio.gather(
            *(worker(task, rngs[task], gate, activity) for task in order)
        )
    assert [problem for problems in results for problem in problems] == []
    # The tasks really ran interleaved: far more were inside their tenant block at
    # once than commands were allowed in flight.
    assert activity.peak > 2 * IN_FLIGHT

    expected = Counter[str]()
    for task in range(TASKS):
        expected[tenant_of(task)] += docs_of(task)

    for tenant in TENANTS:
        async with tenant_context(tenant):
            docs = await ConcItem.find_all().to_list()
            assert len(docs) == expected[tenant] == await ConcItem.count()
            assert {doc.tenant_id for doc in docs} == {tenant}
            writers = {doc.writer for doc in docs}
            assert writers == {f"w{t}" for t in range(TASKS) if tenant_of(t) == tenant}
            assert {doc.hits for doc in docs} == {1}, "an update reached another's documents"

    async with unscoped("verify"):
        stored = await ConcItem.get_pymongo_collection().find({}).to_list()
    assert len(stored) == sum(expected.values()) == sum(docs_of(t) for t in range(TASKS))
    for doc in stored:
        writer_task = int(doc["writer"][1:])
        assert doc["tenant_id"] == doc["written_as"] == tenant_of(writer_task), doc
        assert doc["hits"] == 1, doc


async def test_tasks_spawned_inside_a_tenant_switch_tenants_independently(
    conc_db: insightdb.InsightDB,
) -> None:
    # Child tasks inherit a copy of the parent's context: each may enter another tenant
    # without the parent (or its siblings) noticing.
    async def child(tenant: str) -> set[str]:
        async with tenant_context(tenant):
            await ConcItem(writer=f"child-{tenant}", written_as=tenant, seq=0).insert()
            await asyncio.sleep(0)
            return {doc.tenant_id for doc in await ConcItem.find_all().to_list()}

    async with tenant_context("conc-parent"):
        await ConcItem(writer="parent", written_as="conc-parent", seq=0).insert()
        seen = await asyncio.gather(*(child(t) for t in TENANTS for _ in range(5)))
        assert current_tenant() == "conc-parent"
        assert [doc.writer for doc in await ConcItem.find_all().to_list()] == ["parent"]
    assert seen == [{t} for t in TENANTS for _ in range(5)]
