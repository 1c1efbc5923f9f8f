"""Property-based tenancy test: random operation sequences against the real server.

Hypothesis generates sequences of reads, writes, bulk writes and aggregations with
``$lookup`` (and ``fetch_links``) for three tenants on two linked tenant-scoped models.
A plain-Python model of the expected state is kept alongside; after every operation the
whole stored state (read raw inside ``unscoped``) must equal the model, and every read
must return exactly the current tenant's documents. Operations that cross tenants must
raise ``TenantIsolationError`` (or ``TenantContextError`` without a tenant) and change
nothing. The plugin's tenant guard watches every command as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from beanie import BulkWriter, Link
from beanie.exceptions import DocumentNotFound
from bson import DBRef, ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.results import UpdateResult

import insightdb
from insightdb import CustomerDocument, Settings, TenantContextError, TenantIsolationError
from insightdb.tenancy import TenantScoped, tenant_context, unscoped
from insightdb.testing.guard import TenantGuard

pytestmark = pytest.mark.integration

TENANTS = ("t0", "t1", "t2")
NAMES = ("alpha", "beta", "gamma")


class PropProject(TenantScoped, CustomerDocument):
    name: str
    n: int = 0


class PropTask(TenantScoped, CustomerDocument):
    title: str
    n: int = 0
    project: Link[PropProject] | None = None


# -- the operations ----------------------------------------------------------------------

KINDS = (
    "insert",
    "insert_foreign",
    "insert_existing_id",
    "insert_many",
    "insert_task",
    "find_all",
    "find_one",
    "get",
    "count",
    "distinct",
    "update_inc",
    "update_set",
    "update_other_tenant_filter",
    "find_update",
    "move_tenant",
    "delete",
    "delete_many",
    "save",
    "save_forged",
    "replace",
    "bulk",
    "aggregate_lookup",
    "fetch_links",
    "no_tenant",
)


# Writes that create documents, writes through instances that may belong to another
# tenant, bulk writes and lookups are drawn more often.
WEIGHTED_KINDS = (
    *KINDS,
    *("insert", "insert_many", "insert_task", "save", "replace", "delete"),
    *("bulk", "bulk", "aggregate_lookup", "fetch_links"),
)


@dataclass(frozen=True)
class Op:
    """One generated operation; each kind uses the parameters it needs."""

    kind: str
    tenant: int
    name: str
    pick: int
    amount: int
    names: tuple[str, ...]
    flag: bool

    @property
    def t(self) -> str:
        return TENANTS[self.tenant]

    @property
    def other(self) -> str:
        return TENANTS[(self.tenant + 1 + self.pick % 2) % len(TENANTS)]


operations = st.builds(
    Op,
    kind=st.sampled_from(WEIGHTED_KINDS),
    tenant=st.integers(0, len(TENANTS) - 1),
    name=st.sampled_from(NAMES),
    pick=st.integers(0, 50),
    amount=st.integers(0, 4),
    names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(tuple),
    flag=st.booleans(),
)


# -- the model of what the database must hold ------------------------------------------------


@dataclass
class Expected:
    """The state the database must be in, plus the instances the test holds."""

    projects: dict[ObjectId, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[ObjectId, dict[str, Any]] = field(default_factory=dict)
    # Every project instance ever created (deleted ones too), in creation order: the
    # test keeps using them from any tenant, as a careless application would.
    project_objs: list[PropProject] = field(default_factory=list)
    task_ids: list[ObjectId] = field(default_factory=list)

    def own(self, tenant: str) -> dict[ObjectId, dict[str, Any]]:
        return {i: d for i, d in self.projects.items() if d["tenant_id"] == tenant}

    def own_tasks(self, tenant: str) -> dict[ObjectId, dict[str, Any]]:
        return {i: d for i, d in self.tasks.items() if d["tenant_id"] == tenant}

    def pick_project(self, pick: int) -> PropProject | None:
        return self.project_objs[pick % len(self.project_objs)] if self.project_objs else None

    def pick_target(self, op: Op) -> PropProject | None:
        """Any project instance; with ``op.flag`` one created by another tenant if any."""
        if op.flag:
            foreign = [p for p in self.project_objs if p.tenant_id != op.t]
            if foreign:
                return foreign[op.pick % len(foreign)]
        return self.pick_project(op.pick)

    def add_project(self, doc: PropProject, tenant: str) -> None:
        assert doc.id is not None
        self.projects[doc.id] = {"tenant_id": tenant, "name": doc.name, "n": doc.n}
        self.project_objs.append(doc)


def project_view(doc: PropProject) -> dict[str, Any]:
    return {"tenant_id": doc.tenant_id, "name": doc.name, "n": doc.n}


def link_id(value: Any) -> ObjectId | None:
    if value is None:
        return None
    if isinstance(value, DBRef):
        return value.id  # type: ignore[no-any-return]
    if isinstance(value, Link):
        return value.ref.id  # type: ignore[no-any-return]
    assert isinstance(value, PropProject)
    return value.id


async def stored_state() -> tuple[dict[ObjectId, Any], dict[ObjectId, Any]]:
    """Everything in both collections, read raw across tenants."""
    async with unscoped("test verification"):
        raw_projects = await PropProject.get_pymongo_collection().find({}).to_list()
        raw_tasks = await PropTask.get_pymongo_collection().find({}).to_list()
    projects = {d.pop("_id"): d for d in raw_projects}
    tasks = {d.pop("_id"): {**d, "project": link_id(d.get("project"))} for d in raw_tasks}
    return projects, tasks


async def seed(exp: Expected) -> None:
    """Give every tenant projects of the same names and tasks linking across tenants.

    Random operations then always meet other tenants' look-alike documents, so a
    missing filter shows up as a wrong result instead of going unnoticed.
    """
    for index, tenant in enumerate(TENANTS):
        async with tenant_context(tenant):
            first = PropProject(name=NAMES[0], n=index)
            await first.insert()
            exp.add_project(first, tenant)
            rest = [PropProject(name=name, n=index) for name in NAMES[1:]]
            result = await PropProject.insert_many(rest)
            for doc, inserted in zip(rest, result.inserted_ids, strict=True):
                doc.id = inserted
                exp.add_project(doc, tenant)
    for index, tenant in enumerate(TENANTS):
        neighbour = exp.project_objs[(index + 1) % len(TENANTS) * len(NAMES)]
        async with tenant_context(tenant):
            for title, project in ((NAMES[0], exp.project_objs[index * len(NAMES)]),
                                   (NAMES[1], neighbour)):  # fmt: skip
                task = PropTask(title=title, n=index, project=project)
                await task.insert()
                assert task.id is not None
                exp.tasks[task.id] = {
                    "tenant_id": tenant,
                    "title": title,
                    "n": index,
                    "project": project.id,
                }
                exp.task_ids.append(task.id)


async def reset() -> None:
    async with unscoped("test reset"):
        await PropProject.get_pymongo_collection().delete_many({})
        await PropTask.get_pymongo_collection().delete_many({})


# -- running one operation -------------------------------------------------------------------


async def refused(
    call: Any, error: type[Exception] | tuple[type[Exception], ...] = TenantIsolationError
) -> None:
    with pytest.raises(error):
        await call


async def run(op: Op, exp: Expected) -> None:
    t, other = op.t, op.other
    if op.kind == "no_tenant":
        await run_without_tenant(op)
        return
    async with tenant_context(t):
        own = exp.own(t)
        if op.kind == "insert":
            doc = PropProject(name=op.name, n=op.amount)
            await doc.insert()
            assert doc.tenant_id == t
            exp.add_project(doc, t)

        elif op.kind == "insert_foreign":
            with tenant_context(other):
                foreign = PropProject(name=op.name)
            await refused(foreign.insert())
            assert foreign.id is None

        elif op.kind == "insert_existing_id":
            # Another tenant's document, re-stamped for this tenant: its _id is taken.
            target = exp.pick_target(op)
            if target is None:
                return
            claimed = target.model_copy(update={"tenant_id": t})
            assert claimed.id is not None
            holder = exp.projects.get(claimed.id)
            if holder is None:  # deleted since: an ordinary insert again
                await claimed.insert()
                exp.projects[claimed.id] = project_view(claimed)
            elif holder["tenant_id"] != t:
                # The same duplicate key an own document gives (no existence oracle).
                await refused(claimed.insert(), DuplicateKeyError)
            # else: a duplicate of this tenant's own document; see the dedicated test.

        elif op.kind == "insert_many":
            docs = [PropProject(name=name, n=op.amount) for name in op.names]
            if op.flag:  # one document built in another tenant spoils the whole batch
                with tenant_context(other):
                    docs.append(PropProject(name=op.name))
                await refused(PropProject.insert_many(docs))
                return
            result = await PropProject.insert_many(docs)
            for doc, inserted in zip(docs, result.inserted_ids, strict=True):
                doc.id = inserted
                exp.add_project(doc, t)

        elif op.kind == "insert_task":
            project = None if op.flag else exp.pick_project(op.pick)
            task = PropTask(title=op.name, n=op.amount, project=project)
            await task.insert()
            assert task.id is not None
            exp.tasks[task.id] = {
                "tenant_id": t,
                "title": op.name,
                "n": op.amount,
                "project": None if project is None else project.id,
            }
            exp.task_ids.append(task.id)

        elif op.kind == "find_all":
            projects = await PropProject.find_all().to_list()
            assert {p.id: project_view(p) for p in projects} == own
            tasks = await PropTask.find(PropTask.n >= 0).to_list()
            assert {x.id for x in tasks} == set(exp.own_tasks(t))
            assert all(x.tenant_id == t for x in tasks)

        elif op.kind == "find_one":
            found = await PropProject.find_one(PropProject.name == op.name)
            candidates = {i for i, d in own.items() if d["name"] == op.name}
            if found is None:
                assert candidates == set()
            else:
                assert found.id in candidates
                assert project_view(found) == own[found.id]

        elif op.kind == "get":
            target = exp.pick_target(op)
            if target is None:
                return
            got = await PropProject.get(target.id)
            if target.id in own:
                assert got is not None
                assert project_view(got) == own[target.id]
            else:
                assert got is None
            # The same id as a raw filter naming the other tenant explicitly.
            assert await PropProject.find_one({"_id": target.id, "tenant_id": other}) is None

        elif op.kind == "count":
            assert await PropProject.count() == len(own)
            assert await PropTask.count() == len(exp.own_tasks(t))
            named = sum(d["name"] == op.name for d in own.values())
            assert await PropProject.find(PropProject.name == op.name).count() == named
            assert await PropProject.find({"tenant_id": other}).count() == 0
            assert await PropProject.find_all().exists() == bool(own)

        elif op.kind == "distinct":
            names = await PropProject.distinct("name")
            assert sorted(names) == sorted({d["name"] for d in own.values()})
            tenants = await PropProject.distinct("tenant_id")
            assert tenants == ([t] if own else [])

        elif op.kind == "update_inc":
            floor = op.pick % 5
            await PropProject.find(PropProject.n >= floor).update_many({"$inc": {"n": op.amount}})
            for row in own.values():
                if row["n"] >= floor:
                    row["n"] += op.amount

        elif op.kind == "update_set":
            await PropProject.find(PropProject.name == op.names[0]).update(
                {"$set": {"name": op.name}}
            )
            for row in own.values():
                if row["name"] == op.names[0]:
                    row["name"] = op.name

        elif op.kind == "update_other_tenant_filter":
            # A filter naming another tenant matches nothing; it never widens the scope.
            updated = await PropProject.find({"tenant_id": other}).update_many({"$inc": {"n": 100}})
            assert isinstance(updated, UpdateResult)
            assert updated.matched_count == 0

        elif op.kind == "find_update":
            await PropProject.find(PropProject.name == op.name).update({"$set": {"n": op.amount}})
            for row in own.values():
                if row["name"] == op.name:
                    row["n"] = op.amount

        elif op.kind == "move_tenant":
            query = PropProject.find_all() if op.flag else PropProject.find(PropProject.n >= 0)
            await refused(query.update_many({"$set": {"tenant_id": other}}))
            await refused(query.update_many({"$unset": {"tenant_id": ""}}))
            await refused(query.update_many({"$rename": {"name": "tenant_id"}}))

        elif op.kind == "delete":
            target = exp.pick_target(op)
            if target is None:
                return
            await target.delete()  # an instance possibly fetched in another tenant
            if target.id in own:
                del exp.projects[target.id]

        elif op.kind == "delete_many":
            await PropProject.find(PropProject.name == op.name).delete()
            for i, row in own.items():
                if row["name"] == op.name:
                    del exp.projects[i]

        elif op.kind in ("save", "save_forged"):
            target = exp.pick_target(op)
            if target is None:
                return
            if op.kind == "save_forged":  # claim the document for this tenant
                target = target.model_copy(update={"tenant_id": t})
            target.n = op.amount
            await expect_save(target, t, exp)

        elif op.kind == "replace":
            target = exp.pick_target(op)
            if target is None:
                return
            target.n = op.amount
            if target.tenant_id != t:
                await refused(target.replace())
            elif target.id in own:
                await target.replace()
                exp.projects[target.id] = project_view(target)
            else:
                await refused(target.replace(), DocumentNotFound)

        elif op.kind == "bulk":
            await run_bulk(op, exp)

        elif op.kind == "aggregate_lookup":
            await check_lookups(t, exp)

        elif op.kind == "fetch_links":
            await check_fetch_links(op, exp)

        else:  # pragma: no cover - every kind has a branch
            raise AssertionError(op.kind)


async def expect_save(target: PropProject, t: str, exp: Expected) -> None:
    assert target.id is not None
    holder = exp.projects.get(target.id)
    if target.tenant_id != t:
        await refused(target.save())  # a document that names another tenant
        return
    if holder is not None and holder["tenant_id"] != t:
        await refused(target.save(), DuplicateKeyError)  # its _id is another tenant's
        return
    await target.save()  # an update of our own document, or its re-creation
    exp.projects[target.id] = project_view(target)


async def run_bulk(op: Op, exp: Expected) -> None:
    t = op.t
    fresh = PropProject(id=ObjectId(), name=op.name, n=op.amount)
    if op.flag:
        with tenant_context(op.other):
            intruder = PropProject(id=ObjectId(), name=op.name)

        async def spoiled() -> None:
            async with BulkWriter() as writer:
                await PropProject.insert_one(fresh, bulk_writer=writer)
                await PropProject.find(PropProject.n >= 0).update(
                    {"$inc": {"n": 1}}, bulk_writer=writer
                )
                await PropProject.insert_one(intruder, bulk_writer=writer)

        await refused(spoiled())
        return
    async with BulkWriter() as writer:
        await PropProject.insert_one(fresh, bulk_writer=writer)
        await PropProject.find(PropProject.name == op.names[0]).update(
            {"$inc": {"n": 1}}, bulk_writer=writer
        )
        await PropProject.find({"tenant_id": op.other}).update(
            {"$set": {"n": 99}}, bulk_writer=writer
        )
        await PropProject.find(PropProject.n == op.amount).delete(bulk_writer=writer)
    exp.add_project(fresh, t)
    own = exp.own(t)
    for doc in own.values():
        if doc["name"] == op.names[0]:
            doc["n"] += 1
    for i, doc in own.items():
        if doc["n"] == op.amount:
            del exp.projects[i]


async def check_lookups(t: str, exp: Expected) -> None:
    own, own_tasks = exp.own(t), exp.own_tasks(t)
    rows = await PropTask.aggregate(
        [
            {
                "$lookup": {
                    "from": PropProject.get_collection_name(),
                    "localField": "project.$id",
                    "foreignField": "_id",
                    "as": "found",
                }
            }
        ]
    ).to_list()
    assert {row["_id"] for row in rows} == set(own_tasks)
    for row in rows:
        assert row["tenant_id"] == t
        project = own_tasks[row["_id"]]["project"]
        assert [p["_id"] for p in row["found"]] == ([project] if project in own else [])
        assert all(p["tenant_id"] == t for p in row["found"])

    rows = await PropProject.aggregate(
        [
            {
                "$lookup": {
                    "from": PropTask.get_collection_name(),
                    "let": {"pid": "$_id"},
                    "pipeline": [{"$match": {"$expr": {"$eq": ["$project.$id", "$$pid"]}}}],
                    "as": "tasks",
                }
            },
            {"$facet": {"all": [{"$project": {"tasks._id": 1}}], "n": [{"$count": "n"}]}},
        ]
    ).to_list()
    (facets,) = rows
    assert {row["_id"] for row in facets["all"]} == set(own)
    for row in facets["all"]:
        expected = {i for i, task in own_tasks.items() if task["project"] == row["_id"]}
        assert {task["_id"] for task in row["tasks"]} == expected
    # MongoDB's $count emits nothing for no input, the embedded emulator emits n=0.
    assert sum(row["n"] for row in facets["n"]) == len(own)


async def check_fetch_links(op: Op, exp: Expected) -> None:
    t = op.t
    own = exp.own(t)
    own_tasks = exp.own_tasks(t)
    tasks = await PropTask.find_all(fetch_links=True).to_list()
    assert {task.id for task in tasks} == set(own_tasks)
    for task in tasks:
        assert task.tenant_id == t
        assert task.id is not None
        project = own_tasks[task.id]["project"]
        if project in own:
            assert isinstance(task.project, PropProject)
            assert project_view(task.project) == own[project]
        elif project is None:
            assert task.project is None
        else:  # another tenant's (or a deleted) project stays an unresolved link
            assert isinstance(task.project, Link)
            assert await task.project.fetch() is task.project
    if exp.task_ids:
        task_id = exp.task_ids[op.pick % len(exp.task_ids)]
        got = await PropTask.get(task_id, fetch_links=True)
        assert (got is not None) == (task_id in own_tasks)
        unfetched = await PropTask.get(task_id)
        if unfetched is not None and isinstance(unfetched.project, Link):
            fetched = await unfetched.project.fetch()
            if isinstance(fetched, PropProject):
                assert fetched.id in own
                assert fetched.tenant_id == t


async def run_without_tenant(op: Op) -> None:
    attempts: list[Callable[[], Awaitable[Any]]] = [
        lambda: PropProject.find_all().to_list(),
        lambda: PropProject.count(),
        lambda: PropProject(name=op.name).insert(),
        lambda: PropProject.find_all().update_many({"$inc": {"n": 1}}),
        lambda: PropProject.distinct("name"),
        lambda: PropTask.aggregate([]).to_list(),
        lambda: PropProject.find_all().delete(),
    ]
    await refused(attempts[op.pick % len(attempts)](), TenantContextError)


# -- the test ------------------------------------------------------------------------------


@pytest.fixture
async def prop_db(insightdb_settings: Settings) -> AsyncIterator[insightdb.InsightDB]:
    async with insightdb.connect(insightdb_settings, models=[PropProject, PropTask]) as db:
        yield db


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(operations, min_size=3, max_size=40))
async def test_random_operation_sequences_never_cross_tenants(
    prop_db: insightdb.InsightDB, insightdb_tenant_guard: TenantGuard, ops: list[Op]
) -> None:
    await reset()
    insightdb_tenant_guard.reset()
    exp = Expected()
    await seed(exp)
    for step, op in enumerate(ops):
        await run(op, exp)
        projects, tasks = await stored_state()
        assert projects == exp.projects, f"step {step}: {op}"
        assert tasks == exp.tasks, f"step {step}: {op}"
    assert insightdb_tenant_guard.violations() == []


# -- deterministic cases found while writing the property test -----------------------------


async def _claim_other_tenants_id() -> tuple[PropProject, PropProject]:
    """Store a project for t0; return it and a copy re-stamped for t1 (same _id)."""
    await reset()
    async with tenant_context("t0"):
        original = PropProject(name="owned by t0", n=1)
        await original.insert()
    claimed = original.model_copy(update={"tenant_id": "t1", "name": "claimed", "n": 2})
    return original, claimed


async def _only(original: PropProject) -> None:
    projects, _ = await stored_state()
    assert projects == {original.id: project_view(original)}


async def test_writes_with_another_tenants_id_fail_like_an_own_duplicate(
    prop_db: insightdb.InsightDB,
) -> None:
    # Issue 9 (existence oracle): a write that clashes with another tenant's _id fails
    # exactly as a clash with the tenant's own document does (a duplicate key), so the
    # error can't be used to learn that another tenant's document exists. Nothing of the
    # other tenant's document changes.
    original, claimed = await _claim_other_tenants_id()
    async with tenant_context("t1"):
        own = PropProject(name="own", n=1)
        await own.insert()
        with pytest.raises(DuplicateKeyError) as own_clash:
            await own.model_copy().insert()
        with pytest.raises(DuplicateKeyError) as foreign_clash:
            await claimed.insert()
        assert type(own_clash.value) is type(foreign_clash.value)
        assert "tenant" not in str(foreign_clash.value)
        with pytest.raises((DuplicateKeyError, BulkWriteError)):
            await PropProject.insert_many([claimed])
        with pytest.raises(DuplicateKeyError):
            await claimed.save()

        async def save_in_bulk() -> None:
            async with BulkWriter() as writer:
                await claimed.save(bulk_writer=writer)

        with pytest.raises(BulkWriteError) as bulk_clash:
            await save_in_bulk()
        assert "another tenant" not in str(bulk_clash.value)  # only the caller's own op
    projects, _ = await stored_state()
    assert projects[original.id] == project_view(original)


async def test_duplicate_insert_of_own_document_is_not_blamed_on_another_tenant(
    prop_db: insightdb.InsightDB,
) -> None:
    # Inserting the tenant's own document twice is an ordinary duplicate key. The
    # collection reports every _id clash of a scoped write as "a document with this _id
    # belongs to another tenant" (TenantIsolationError), which is false here and breaks
    # the usual "insert, ignore DuplicateKeyError" idempotency pattern.
    await reset()
    async with tenant_context("t0"):
        mine = PropProject(name="mine")
        await mine.insert()
        again = mine.model_copy()
        with pytest.raises(DuplicateKeyError):
            await again.insert()
    projects, _ = await stored_state()
    assert projects == {mine.id: project_view(mine)}
