"""Property-based attacks on tenancy: random operations with random keyword arguments.

Hypothesis draws, step by step, an operation (Beanie's query API, document methods,
``BulkWriter``, ``fetch_links``, and the collections, databases and clients insightdb
hands out), a target model from several inheritance shapes (a plain scoped model, an
``is_root`` family, a ``UnionDoc`` of scoped members, a plain model linking to a scoped
one), a filter, a pipeline, a tenant (``acme`` and its look-alikes ``ACME``, ``Acmé`` and
full-width "acme", which a case-, accent- or width-insensitive collation would make
equal, plus ids the validator must refuse) and keyword arguments from a pool mixing the options
insightdb allows with attack options (``query=``, ``pipeline=``, ``update=``, ``new=``,
non-simple collations...).

Each step is checked three ways:

* **the stored state** (read by a raw client inside ``unscoped``) against a model of
  what every tenant's documents must be: other tenants' documents never change, and the
  current tenant's change exactly as the operation says (or, for an operation whose
  effect depends on the server's choice, only within what it may touch);
* **the wire**: a ``CommandListener`` records every command; a refused operation sent
  none, and every command an accepted one sent to a scoped collection carries the
  tenant predicate and the simple collation (the plugin's tenant guard checks the same
  independently and fails the test on any unscoped command);
* **the results**: whatever is returned to tenant T is T's.

The rule: an operation with an attack option (or a non-simple collation on scoped
data, or no valid tenant) is refused with ``TenantIsolationError`` /
``TenantContextError`` before any command is sent; any other operation affects and
returns only the current tenant's documents.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from beanie import BulkWriter, Link, UnionDoc, UpdateResponse
from beanie.exceptions import DocumentNotFound
from bson import ObjectId
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient, UpdateMany, UpdateOne, monitoring
from pymongo.collation import Collation
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

import insightdb
from insightdb import (
    CustomerDocument,
    Settings,
    TenantContextError,
    TenantIsolationError,
    TenantScoped,
    tenant_context,
    unscoped,
)
from insightdb.testing.guard import has_tenant_predicate

pytestmark = pytest.mark.integration

# Pairwise different as binary strings, equal under some collation (case, accent, width).
TENANTS = ("acme", "ACME", "Acmé", "\uff41\uff43\uff4d\uff45")
# Ids the validator refuses: whitespace, NFD, operators, paths, empty, zero-width, bidi.
REFUSED_TENANTS = ("acme ", "Acme\u0301", "ac$me", "ac.me", "", "a\u200bcme", "\u202eacme", "a\x00")
NAMES = ("alpha", "Alpha", "beta")

# -- models: a plain scoped model, an is_root family, a union, links -------------------------


class AtkProject(TenantScoped, CustomerDocument):
    name: str
    n: int = 0

    class Settings:
        name = "atk_projects"


class AtkTask(TenantScoped, CustomerDocument):
    name: str
    n: int = 0
    project: Link[AtkProject] | None = None

    class Settings:
        name = "atk_tasks"


class AtkVehicle(TenantScoped, CustomerDocument):
    name: str
    n: int = 0

    class Settings:
        name = "atk_vehicles"
        is_root = True


class AtkCar(AtkVehicle):
    pass


class AtkBike(AtkVehicle):
    pass


class AtkFeed(UnionDoc):
    class Settings:
        name = "atk_feed"


class AtkPost(TenantScoped, CustomerDocument):
    name: str
    n: int = 0

    class Settings:
        union_doc = AtkFeed


class AtkNote(TenantScoped, CustomerDocument):
    name: str
    n: int = 0

    class Settings:
        union_doc = AtkFeed


class AtkCategory(CustomerDocument):
    """Shared by every tenant (not scoped), linking to scoped projects."""

    name: str
    projects: list[Link[AtkProject]] = []  # noqa: RUF012 - pydantic copies defaults

    class Settings:
        name = "atk_categories"


MODELS: list[type[Any]] = [
    AtkProject,
    AtkTask,
    AtkVehicle,
    AtkCar,
    AtkBike,
    AtkFeed,
    AtkPost,
    AtkNote,
    AtkCategory,
]
SCOPED_COLLECTIONS = ("atk_projects", "atk_tasks", "atk_vehicles", "atk_feed")
# Writable models: (model, its collection).
WRITABLE: tuple[tuple[type[Any], str], ...] = (
    (AtkProject, "atk_projects"),
    (AtkCar, "atk_vehicles"),
    (AtkBike, "atk_vehicles"),
    (AtkPost, "atk_feed"),
    (AtkNote, "atk_feed"),
)
# Readable models: (model, collection, the member classes a read returns, kwargs).
READABLE: tuple[tuple[Any, str, frozenset[str], dict[str, Any]], ...] = (
    (AtkProject, "atk_projects", frozenset({"AtkProject"}), {}),
    (AtkVehicle, "atk_vehicles", frozenset({"AtkCar", "AtkBike"}), {"with_children": True}),
    (AtkCar, "atk_vehicles", frozenset({"AtkCar"}), {}),
    (AtkFeed, "atk_feed", frozenset({"AtkPost", "AtkNote"}), {}),
    (AtkPost, "atk_feed", frozenset({"AtkPost"}), {}),
)

# -- keyword arguments -----------------------------------------------------------------------

# Options on no method's allowlist: each would replace (or widen) part of the command.
ATTACK_KWARGS: tuple[dict[str, Any], ...] = (
    {"query": {}},
    {"query": {"tenant_id": {"$exists": True}}},
    {"pipeline": [{"$match": {}}]},
    {"filter": {}},
    {"update": {"$set": {"tenant_id": "ACME"}}},
    {"fields": {"tenant_id": 0}},
    {"new": True},
    {"remove": True},
    {"q": {}},
    {"u": {"$set": {"n": 99}}},
    {"multi": True},
    {"updates": [{"q": {}, "u": {"$set": {"n": 99}}, "multi": True}]},
    {"deletes": [{"q": {}, "limit": 0}]},
    {"documents": [{"name": "smuggled"}]},
    {"cursor": {}},
    {"readConcern": {"level": "local"}},
    {"writeConcern": {"w": 1}},
    {"$db": "admin"},
    {"bypassDocumentValidation": True},
    {"key": "tenant_id"},
)
# Collations that would widen ``tenant_id == "acme"`` (or are just not the simple one).
WIDE_COLLATIONS: tuple[Any, ...] = (
    {"locale": "en", "strength": 1},
    {"locale": "en", "strength": 2},
    {"locale": "en", "strength": 2, "caseLevel": False},
    {"locale": "en", "alternate": "shifted"},
    {"locale": "en", "alternate": "shifted", "maxVariable": "space"},
    {"locale": "en", "numericOrdering": True},
    {"locale": "fr", "strength": 1, "backwards": True},
    {"locale": "simple", "strength": 2},
    {"locale": "en"},
    Collation("en", strength=2),
    Collation("en", strength=1, alternate="shifted"),
)
SIMPLE_COLLATIONS: tuple[Any, ...] = ({"locale": "simple"}, Collation("simple"))


@dataclass(frozen=True)
class Kwargs:
    """Keyword arguments for one call and whether insightdb must refuse them."""

    values: dict[str, Any]
    attack: bool

    def __repr__(self) -> str:
        return f"Kwargs({self.values!r}, attack={self.attack})"


def kwargs_strategy(*, collation: bool = True, neutral: bool = True) -> st.SearchStrategy[Kwargs]:
    """Attack options and wide collations (refused), or options that change nothing."""
    attacks = [st.sampled_from(ATTACK_KWARGS)]
    harmless: list[st.SearchStrategy[dict[str, Any]]] = [st.just({})]
    if collation:
        attacks.append(st.sampled_from(WIDE_COLLATIONS).map(lambda c: {"collation": c}))
        harmless.append(st.sampled_from(SIMPLE_COLLATIONS).map(lambda c: {"collation": c}))
    if neutral:
        harmless.append(st.just({"comment": "atk"}))
    refused = st.tuples(st.one_of(*attacks), st.one_of(*harmless)).map(
        lambda pair: Kwargs({**pair[1], **pair[0]}, attack=True)
    )
    allowed = st.one_of(*harmless).map(lambda values: Kwargs(values, attack=False))
    return st.one_of(refused, allowed)


# -- filters and pipelines -------------------------------------------------------------------


def filters(other: str) -> list[dict[str, Any]]:
    """Filters to try as tenant T; ``other`` is another tenant."""
    return [
        {},
        {"name": "alpha"},
        {"name": {"$in": ["Alpha", "beta"]}},
        {"tenant_id": other},
        {"tenant_id": {"$ne": "nobody"}},
        {"tenant_id": {"$regex": "^acme$", "$options": "i"}},
        {"$or": [{"tenant_id": other}, {"name": "alpha"}]},
        {"$expr": {"$eq": ["$tenant_id", other]}},
        {"n": {"$gte": 0}},
    ]


def matches(query: Mapping[str, Any], row: Row, other: str) -> bool:
    """Whether one of :func:`filters` matches a row of the current tenant."""
    if not query:
        return True
    if "name" in query:
        wanted = query["name"]
        return row.name in wanted["$in"] if isinstance(wanted, Mapping) else row.name == wanted
    if "tenant_id" in query:
        spec = query["tenant_id"]
        if spec == other:
            return row.tenant == other
        if isinstance(spec, Mapping) and "$ne" in spec:
            return row.tenant != spec["$ne"]
        return row.tenant.lower() == "acme"  # the case-insensitive regex
    if "$or" in query:
        return row.tenant == other or row.name == "alpha"
    if "$expr" in query:
        return row.tenant == other
    return row.n >= 0


# Pipelines that must be refused in tenant scope.
REFUSED_PIPELINES: tuple[list[dict[str, Any]], ...] = (
    [{"$out": "atk_stolen"}],
    [{"$merge": {"into": "atk_projects"}}],
    [{"$merge": {"into": {"db": "elsewhere", "coll": "atk_projects"}}}],
    [{"$lookup": {"from": {"db": "elsewhere", "coll": "atk_tasks"}, "pipeline": [], "as": "x"}}],
    [{"$unionWith": {"coll": {"db": "elsewhere", "coll": "atk_tasks"}}}],
    [{"$collStats": {"count": {}}}],
    [{"$indexStats": {}}],
    [{"$currentOp": {}}],
    [{"$listSessions": {}}],
    [{"$changeStream": {}}],
    [{"$match": {}}, {"$notAStageYet": {}}],
    [{"$facet": {"x": [{"$out": "atk_projects"}]}}],
)


# -- the model of the stored state ------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One stored document as the test models it."""

    tenant: str
    name: str
    n: int
    kind: str  # the model class that stored it


State = dict[str, dict[ObjectId, Row]]


def class_of(document: Mapping[str, Any], collection: str) -> str:
    class_id = document.get("_class_id")
    if isinstance(class_id, str):
        return class_id.rsplit(".", 1)[-1]
    return {"atk_projects": "AtkProject", "atk_tasks": "AtkTask"}.get(collection, "?")


class Wire(monitoring.CommandListener):
    """Records every command sent to the test's databases while ``recording`` is set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.databases: frozenset[str] = frozenset()
        self.commands: list[tuple[str, str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.database_name in self.databases and event.command_name not in (
            "ping",
            "hello",
            "isMaster",
            "buildInfo",
            "endSessions",
        ):
            with self._lock:
                self.commands.append((event.database_name, event.command_name, event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None

    def take(self) -> list[tuple[str, str, dict[str, Any]]]:
        with self._lock:
            taken, self.commands = self.commands, []
        return taken


WIRE = Wire()
monitoring.register(WIRE)  # clients created afterwards (each test's) report to it

_DATA = {"find", "count", "distinct", "findAndModify", "update", "delete", "aggregate", "insert"}


def check_wire(commands: list[tuple[str, str, dict[str, Any]]], tenant: str) -> None:
    """Every data command on a scoped collection carries the tenant and simple collation."""
    for _database, name, command in commands:
        if name not in _DATA or command.get(name) not in SCOPED_COLLECTIONS:
            continue
        where = f"{name} on {command.get(name)}: {command}"
        if name == "insert":
            assert all(d.get("tenant_id") == tenant for d in command["documents"]), where
            continue
        if name == "aggregate":
            first = (command.get("pipeline") or [{}])[0]
            assert has_tenant_predicate(first.get("$match"), tenant), where
        elif name in ("update", "delete"):
            for statement in command[f"{name}s"]:
                assert has_tenant_predicate(statement["q"], tenant), where
                assert statement.get("collation") == {"locale": "simple"}, where
            continue
        else:
            query = command.get("filter" if name == "find" else "query")
            assert has_tenant_predicate(query, tenant), where
        assert command.get("collation") == {"locale": "simple"}, where


@dataclass
class World:
    """The running test: the runtime, a raw client, the model of the stored state."""

    db: insightdb.InsightDB
    raw: AsyncMongoClient[Any]
    database_name: str
    state: State = field(default_factory=dict)
    # Every document instance created so far, any tenant's: a careless application
    # keeps using them after switching tenants.
    held: list[Any] = field(default_factory=list)
    category_id: ObjectId | None = None

    async def stored(self) -> State:
        state: State = {}
        async with unscoped("test: read the stored state"):
            database = self.raw[self.database_name]
            for collection in SCOPED_COLLECTIONS:
                rows = await database[collection].find({}).to_list()
                state[collection] = {
                    d["_id"]: Row(
                        d.get("tenant_id"), d.get("name"), d.get("n", 0), class_of(d, collection)
                    )
                    for d in rows
                }
        return state

    async def reset(self) -> None:
        async with unscoped("test: reset"):
            database = self.raw[self.database_name]
            for collection in (*SCOPED_COLLECTIONS, "atk_categories", "atk_stolen"):
                await database[collection].delete_many({})
        self.held = []

    def own(
        self, collection: str, tenant: str, kinds: frozenset[str] | None = None
    ) -> dict[ObjectId, Row]:
        return {
            i: r
            for i, r in self.state[collection].items()
            if r.tenant == tenant and (kinds is None or r.kind in kinds)
        }


async def seed(world: World) -> None:
    """Every tenant gets look-alike documents in every collection, linked across tenants."""
    projects: list[AtkProject] = []
    for index, tenant in enumerate(TENANTS):
        async with tenant_context(tenant):
            docs: list[Any] = [AtkProject(name=name, n=index) for name in NAMES[:2]]
            docs += [AtkCar(name="alpha", n=index), AtkBike(name="beta", n=index)]
            docs += [AtkPost(name="alpha", n=index), AtkNote(name="Alpha", n=index)]
            for doc in docs:
                await doc.insert()
            projects += docs[:2]
            world.held += docs
    for index, tenant in enumerate(TENANTS):
        neighbour = projects[((index + 1) % len(TENANTS)) * 2]
        async with tenant_context(tenant):
            for project in (projects[index * 2], neighbour):
                task = AtkTask(name="alpha", n=index, project=project)
                await task.insert()
                world.held.append(task)
    category = AtkCategory(name="shared", projects=projects)
    await category.insert()
    world.category_id = category.id
    world.state = await world.stored()


# -- the steps --------------------------------------------------------------------------------


@dataclass
class Step:
    """One drawn operation, ready to run as tenant ``tenant``."""

    label: str
    call: Callable[[], Awaitable[Any]]
    refused: bool  # must raise TenantIsolationError/TenantContextError, send nothing
    check: Callable[[Any], None] = lambda result: None
    # The current tenant's rows after the step, or None when only ``may_touch`` is known.
    expect: Callable[[State], State] | None = None
    may_touch: frozenset[ObjectId] = frozenset()
    may_insert: int = 0
    # Errors the server may give instead (an own duplicate key, a vanished document).
    tolerated: tuple[type[BaseException], ...] = ()


def member_ids(rows: Mapping[ObjectId, Row]) -> set[ObjectId]:
    return set(rows)


def returned_ids(result: Any) -> list[Any]:
    items = result if isinstance(result, list) else [result]
    found = []
    for item in items:
        if item is None:
            continue
        found.append(item["_id"] if isinstance(item, Mapping) else item.id)
    return found


def assert_own(result: Any, tenant: str) -> None:
    """Every document returned carries the current tenant."""
    items = result if isinstance(result, list) else [result]
    for item in items:
        if item is None:
            continue
        value = item.get("tenant_id") if isinstance(item, Mapping) else item.tenant_id
        assert value in (tenant, None), f"returned {value!r}'s document to {tenant!r}"


def walk_tenants(value: Any) -> list[Any]:
    """Every ``tenant_id`` value anywhere in a result (documents, lookups, facets)."""
    found: list[Any] = []
    if isinstance(value, Mapping):
        if "tenant_id" in value:
            found.append(value["tenant_id"])
        for item in value.values():
            found += walk_tenants(item)
    elif isinstance(value, list):
        for item in value:
            found += walk_tenants(item)
    elif hasattr(value, "model_dump"):
        found += walk_tenants(value.model_dump())
    return found


def only_own(result: Any, tenant: str, label: str) -> None:
    leaked = {t for t in walk_tenants(result) if t != tenant}
    assert not leaked, f"{label}: returned documents of {leaked} to {tenant!r}"


def handle_factories(world: World, model: Any, collection: str) -> list[tuple[str, Any]]:
    """Every path to a driver collection that insightdb hands out."""
    name = world.database_name
    return [
        ("model", lambda: model.get_pymongo_collection()),
        ("settings", lambda: model.get_settings().pymongo_collection),
        ("settings.db", lambda: model.get_settings().pymongo_db[collection]),
        ("database", lambda: world.db.database("customer")[collection]),
        ("database attr", lambda: getattr(world.db.database("customer"), collection)),
        ("client", lambda: world.db.client("customer")[name][collection]),
        (
            "coll.database",
            lambda: model.get_pymongo_collection().database.get_collection(collection),
        ),
        (
            "with_options",
            lambda: model.get_pymongo_collection().with_options().database[collection],
        ),
        ("admin.client", lambda: world.db.database("admin").client.get_database(name)[collection]),
    ]


async def to_list(cursor: Any) -> list[Any]:
    return (
        await (await cursor).to_list() if isinstance(cursor, Awaitable) else await cursor.to_list()
    )


def rows_matching(
    rows: Mapping[ObjectId, Row], query: Mapping[str, Any], other: str
) -> set[ObjectId]:
    return {i for i, row in rows.items() if matches(query, row, other)}


def changed(state: State, collection: str, change: Callable[[ObjectId, Row], Row | None]) -> State:
    """A copy of ``state`` with ``change`` applied to one collection's rows (None: removed)."""
    result = {c: dict(rows) for c, rows in state.items()}
    updated: dict[ObjectId, Row] = {}
    for i, row in state[collection].items():
        new = change(i, row)
        if new is not None:
            updated[i] = new
    result[collection] = updated
    return result


def added(state: State, collection: str, rows: Mapping[ObjectId, Row]) -> State:
    result = {c: dict(r) for c, r in state.items()}
    result[collection].update(rows)
    return result


# Pipelines a tenant may run: (pipeline, what the result must be given the expected ids).
def pipelines(world: World, tenant: str) -> list[tuple[list[dict[str, Any]], str]]:
    return [
        ([], "ids"),
        ([{"$project": {"tenant_id": 0}}], "ids"),
        ([{"$lookup": {"from": "atk_feed", "pipeline": [], "as": "x"}}], "ids"),
        (
            [
                {
                    "$lookup": {
                        "from": "atk_projects",
                        "localField": "name",
                        "foreignField": "name",
                        "as": "x",
                    }
                }
            ],
            "ids",
        ),
        ([{"$unionWith": {"coll": "atk_vehicles"}}], "union atk_vehicles"),
        ([{"$unionWith": "atk_tasks"}], "union atk_tasks"),
        ([{"$group": {"_id": "$tenant_id", "k": {"$sum": 1}}}], "group"),
        (
            [{"$facet": {"a": [{"$lookup": {"from": "atk_tasks", "pipeline": [], "as": "t"}}]}}],
            "any",
        ),
    ]


def draw_read(data: st.DataObject, world: World, tenant: str, other: str) -> Step:
    model, collection, kinds, extra = data.draw(st.sampled_from(READABLE), label="read model")
    query = data.draw(st.sampled_from(filters(other)), label="filter")
    kw = data.draw(kwargs_strategy(), label="kwargs")
    own = world.own(collection, tenant, kinds)
    expected = rows_matching(own, query, other)
    union = model is AtkFeed
    kind = data.draw(
        st.sampled_from(
            ("find", "aggregate", "raw")
            if union
            else ("find", "find_one", "get", "count", "distinct", "aggregate", "raw")
        ),
        label="read",
    )
    label = f"{kind} {model.__name__} {query} {kw}"

    if kind == "find":

        def found(result: Any) -> None:
            only_own(result, tenant, label)
            assert set(returned_ids(result)) == expected, label

        return Step(
            label, lambda: model.find(query, **extra, **kw.values).to_list(), kw.attack, found
        )
    if kind == "find_one":

        def one(result: Any) -> None:
            only_own(result, tenant, label)
            assert set(returned_ids(result)) <= expected, label
            assert (result is None) == (not expected), label

        return Step(label, lambda: model.find_one(query, **extra, **kw.values), kw.attack, one)
    if kind == "get":
        target = data.draw(st.sampled_from(world.held), label="get target")
        mine = world.own(collection, tenant)

        def got(result: Any) -> None:
            only_own(result, tenant, label)
            if target.id not in mine:
                assert result is None, label
            elif type(target) is model:
                assert result is not None, label
                assert result.id == target.id, label

        return Step(
            f"{label} {target.id}", lambda: model.get(target.id, **kw.values), kw.attack, got
        )
    if kind == "count":

        def counted(result: Any) -> None:
            assert result == len(expected), label

        return Step(
            label, lambda: model.find(query, **extra, **kw.values).count(), kw.attack, counted
        )
    if kind == "distinct":
        every = rows_matching(world.own(collection, tenant), query, other)

        def distinct(result: Any) -> None:
            assert {own[i].name for i in expected} <= set(result), label
            assert set(result) <= {world.state[collection][i].name for i in every}, label

        return Step(label, lambda: model.distinct("name", query, **kw.values), kw.attack, distinct)
    if kind == "aggregate":
        refused = data.draw(st.booleans(), label="refused pipeline")
        if refused:
            pipeline = data.draw(st.sampled_from(REFUSED_PIPELINES), label="pipeline")
            shape = "refused"
        else:
            pipeline, shape = data.draw(st.sampled_from(pipelines(world, tenant)), label="pipeline")
        label = f"{label} pipeline={pipeline}"

        def aggregated(result: Any) -> None:
            only_own(result, tenant, label)
            if shape == "ids":
                ids = {row["_id"] for row in result}
                assert ids == expected, label
            elif shape.startswith("union"):
                ids = {row["_id"] for row in result}
                assert ids == expected | set(world.own(shape.split()[1], tenant)), label
            elif shape == "group":
                assert result == ([{"_id": tenant, "k": len(expected)}] if expected else []), label

        return Step(
            label,
            lambda: model.find(query, **extra).aggregate(pipeline, **kw.values).to_list(),
            kw.attack or refused,
            aggregated,
        )
    where, factory = data.draw(st.sampled_from(handle_factories(world, model, collection)))
    raw = data.draw(st.sampled_from(("find", "find_one", "count", "distinct", "aggregate")))
    every = rows_matching(world.own(collection, tenant), query, other)
    label = f"raw {raw} via {where} on {collection} {query} {kw}"

    async def call() -> Any:
        handle = factory()
        if raw == "find":
            return await handle.find(query, **kw.values).to_list()
        if raw == "find_one":
            return await handle.find_one(query, **kw.values)
        if raw == "count":
            return await handle.count_documents(query, **kw.values)
        if raw == "distinct":
            return await handle.distinct("name", query, **kw.values)
        cursor = await handle.aggregate([{"$match": query}], **kw.values)
        return await cursor.to_list()

    def checked(result: Any) -> None:
        if raw == "count":
            assert result == len(every), label
        elif raw == "distinct":
            assert set(result) == {world.state[collection][i].name for i in every}, label
        else:
            only_own(result, tenant, label)
            assert set(returned_ids(result)) <= every, label
            if raw != "find_one":
                assert set(returned_ids(result)) == every, label

    return Step(label, call, kw.attack, checked)


def draw_write(data: st.DataObject, world: World, tenant: str, other: str) -> Step:
    model, collection = data.draw(st.sampled_from(WRITABLE), label="write model")
    kind_name = model.__name__
    query = data.draw(st.sampled_from(filters(other)), label="filter")
    own = world.own(collection, tenant, frozenset({kind_name}))
    hits = rows_matching(own, query, other)
    held = [d for d in world.held if type(d) is model]
    kind = data.draw(
        st.sampled_from(
            (
                "update_many",
                "upsert",
                "update_one",
                "set",
                "inc",
                "save",
                "replace",
                "delete",
                "delete_many",
                "insert",
                "insert_many",
                "bulk",
                "move",
                "raw",
            )
        ),
        label="write",
    )
    kw = data.draw(kwargs_strategy(), label="kwargs")
    label = f"{kind} {kind_name} {query} {kw}"

    def bump(amount: int, ids: set[ObjectId]) -> Callable[[State], State]:
        return lambda s: changed(
            s,
            collection,
            lambda i, r: Row(r.tenant, r.name, r.n + amount, r.kind) if i in ids else r,
        )

    if kind == "update_many":
        return Step(
            label,
            lambda: model.find(query).update({"$inc": {"n": 1}}, **kw.values),
            kw.attack,
            expect=bump(1, hits),
        )
    if kind == "upsert":
        return Step(
            label,
            lambda: model.find(query).update({"$inc": {"n": 1}}, upsert=True, **kw.values),
            kw.attack,
            may_touch=frozenset(hits),
            may_insert=1,
            tolerated=(OperationFailure,),
        )
    if kind == "update_one":
        response = data.draw(st.booleans(), label="response_type")
        extra: dict[str, Any] = {"response_type": UpdateResponse.NEW_DOCUMENT} if response else {}
        return Step(
            f"{label} {extra}",
            lambda: model.find_one(query).update({"$set": {"n": 7}}, **extra, **kw.values),
            kw.attack,
            check=lambda result: only_own(result, tenant, label),
            may_touch=frozenset(hits),
        )
    if kind in ("set", "inc", "save", "replace", "delete") and held:
        doc = data.draw(st.sampled_from(held), label="instance")
        mine = doc.id in own
        label = f"{label} on {doc.tenant_id!r}'s {doc.id}"
        if kind in ("set", "inc"):
            value = {"n": 5}
            call = (
                (lambda: doc.set(value, **kw.values))
                if kind == "set"
                else (lambda: doc.inc(value, **kw.values))
            )
            stored_n = own[doc.id].n if mine else 0
            new_n = 5 if kind == "set" else stored_n + 5
            expect = (
                (
                    lambda s: changed(
                        s,
                        collection,
                        lambda i, r: Row(r.tenant, r.name, new_n, r.kind) if i == doc.id else r,
                    )
                )
                if mine
                else (lambda s: s)
            )
            return Step(
                label,
                call,
                kw.attack,
                expect=expect,
                tolerated=() if mine else (DocumentNotFound, AttributeError),
            )
        if kind == "delete":
            return Step(
                label,
                lambda: doc.delete(**kw.values),
                kw.attack,
                expect=lambda s: changed(
                    s, collection, lambda i, r: None if i == doc.id and mine else r
                ),
            )
        forged = data.draw(st.booleans(), label="forged")
        copy = doc.model_copy(update={"n": 9, **({"tenant_id": tenant} if forged else {})})
        label += " forged" if forged else ""
        holder = world.state[collection].get(doc.id)
        if copy.tenant_id != tenant:
            # A document naming another tenant: refused whatever the options.
            call = (
                (lambda: copy.save(**kw.values))
                if kind == "save"
                else (lambda: copy.replace(**kw.values))
            )
            return Step(label, call, True)
        if kind == "replace":

            def expect(s: State) -> State:
                return changed(
                    s,
                    collection,
                    lambda i, r: Row(r.tenant, r.name, 9, r.kind) if i == doc.id and mine else r,
                )

            return Step(
                label,
                lambda: copy.replace(**kw.values),
                bool(kw.values),  # Beanie's replace() takes no driver options
                expect=expect,
                tolerated=() if mine else (DocumentNotFound,),
            )
        if holder is not None and holder.tenant != tenant:
            # Its _id is another tenant's: the duplicate key an own document would give.
            return Step(
                label,
                lambda: copy.save(**kw.values),
                kw.attack,
                expect=lambda s: s,
                tolerated=(DuplicateKeyError,),
            )
        row = Row(tenant, copy.name, 9, kind_name)
        return Step(
            label,
            lambda: copy.save(**kw.values),
            kw.attack,
            expect=lambda s: added(s, collection, {doc.id: row}),
        )
    if kind == "delete_many":
        return Step(
            label,
            lambda: model.find(query).delete(**kw.values),
            kw.attack,
            expect=lambda s: changed(s, collection, lambda i, r: None if i in hits else r),
        )
    if kind in ("insert", "insert_many"):
        forged = data.draw(st.booleans(), label="forged")
        docs = [model(name="alpha", n=3), model(name="beta", n=4)]
        if forged:
            docs.append(model(name="forged", n=5, tenant_id=other))
        if kind == "insert":
            docs = docs[-1:]

        def expect_inserted(s: State) -> State:
            return added(s, collection, {d.id: Row(tenant, d.name, d.n, kind_name) for d in docs})

        async def insert() -> Any:
            if kind == "insert":
                result = await docs[0].insert(**kw.values)
            else:
                result = await model.insert_many(docs, **kw.values)
                for doc, inserted in zip(docs, result.inserted_ids, strict=True):
                    doc.id = inserted
            world.held.extend(docs)
            return result

        refused = forged or kw.attack or (kind == "insert" and bool(kw.values))
        if kind == "insert_many" and "collation" in kw.values:
            refused = True  # insert_many takes no collation
        return Step(
            f"{label} {'forged' if forged else ''}", insert, refused, expect=expect_inserted
        )
    if kind == "bulk":
        collation = data.draw(
            st.one_of(
                st.none(), st.sampled_from(SIMPLE_COLLATIONS), st.sampled_from(WIDE_COLLATIONS)
            ),
            label="bulk collation",
        )
        fresh = model(id=ObjectId(), name="alpha", n=1)
        wide = collation is not None and collation not in SIMPLE_COLLATIONS
        options = {} if collation is None else {"collation": collation}

        async def bulk() -> None:
            async with BulkWriter() as writer:
                await model.insert_one(fresh, bulk_writer=writer)
                await model.find(query).update({"$inc": {"n": 1}}, bulk_writer=writer, **options)
            world.held.append(fresh)

        def expect_bulk(s: State) -> State:
            s = added(s, collection, {fresh.id: Row(tenant, "alpha", 1, kind_name)})
            targets = hits | (
                {fresh.id} if matches(query, s[collection][fresh.id], other) else set()
            )
            return bump(1, targets)(s)

        return Step(f"bulk {kind_name} {query} {options}", bulk, wide, expect=expect_bulk)
    if kind == "move":
        update = data.draw(
            st.sampled_from(
                (
                    {"$set": {"tenant_id": other}},
                    {"$unset": {"tenant_id": ""}},
                    {"$rename": {"name": "tenant_id"}},
                    {"$set": {"tenant_id.x": 1}},
                    {"$max": {"tenant_id": "~"}},
                    {"$currentDate": {"tenant_id": True}},
                    {"$setOnInsert": {"tenant_id": other}},
                )
            ),
            label="move",
        )
        upsert = "$setOnInsert" in update
        return Step(
            f"move {kind_name} {query} {update}",
            lambda: model.find(query).update(update, upsert=upsert),
            True,
        )
    return draw_raw_write(data, world, tenant, other, model, collection, query, kw)


def draw_raw_write(
    data: st.DataObject,
    world: World,
    tenant: str,
    other: str,
    model: Any,
    collection: str,
    query: dict[str, Any],
    kw: Kwargs,
) -> Step:
    where, factory = data.draw(st.sampled_from(handle_factories(world, model, collection)))
    op = data.draw(
        st.sampled_from(
            (
                "update_many",
                "update_one",
                "find_one_and_update",
                "find_one_and_delete",
                "delete_many",
                "delete_one",
                "bulk_write",
                "pipeline_update",
            )
        )
    )
    hits = rows_matching(world.own(collection, tenant), query, other)
    label = f"raw {op} via {where} on {collection} {query} {kw}"

    async def call() -> Any:
        handle = factory()
        if op == "update_many":
            return await handle.update_many(query, {"$inc": {"n": 1}}, **kw.values)
        if op == "update_one":
            return await handle.update_one(query, {"$set": {"n": 3}}, **kw.values)
        if op == "find_one_and_update":
            return await handle.find_one_and_update(query, {"$set": {"n": 4}}, **kw.values)
        if op == "find_one_and_delete":
            return await handle.find_one_and_delete(query, **kw.values)
        if op == "delete_many":
            return await handle.delete_many(query, **kw.values)
        if op == "delete_one":
            return await handle.delete_one(query, **kw.values)
        if op == "pipeline_update":
            # The pipeline tries to move the documents; the tenant is pinned after it.
            update = [{"$set": {"tenant_id": other, "n": {"$add": ["$n", 1]}}}]
            return await handle.update_many(query, update, **kw.values)
        collation = kw.values.get("collation")
        options = {k: v for k, v in kw.values.items() if k != "collation"}
        requests = [
            UpdateMany(query, {"$inc": {"n": 1}}, collation=collation),
            UpdateOne(query, {"$set": {"n": 2}}),
        ]
        return await handle.bulk_write(requests, **options)

    def inc(amount: int) -> Callable[[State], State]:
        return lambda s: changed(
            s,
            collection,
            lambda i, r: Row(r.tenant, r.name, r.n + amount, r.kind) if i in hits else r,
        )

    refused = kw.attack
    expect: Callable[[State], State] | None = None
    if op in ("update_many", "pipeline_update"):
        expect = inc(1)
    elif op == "delete_many":
        expect = lambda s: changed(s, collection, lambda i, r: None if i in hits else r)  # noqa: E731
    return Step(
        label,
        call,
        refused,
        check=lambda result: only_own(result, tenant, label),
        expect=expect,
        may_touch=frozenset(hits),
    )


def draw_links(data: st.DataObject, world: World, tenant: str, other: str) -> Step:
    kw = data.draw(kwargs_strategy(neutral=False), label="kwargs")
    kind = data.draw(
        st.sampled_from(("tasks", "categories", "fetch_all", "get_task")), label="links"
    )
    mine = set(world.own("atk_projects", tenant))
    label = f"links {kind} {kw}"

    def resolved_own(result: Any) -> None:
        only_own(result, tenant, label)
        for item in result if isinstance(result, list) else [result]:
            for value in [getattr(item, "project", None), *getattr(item, "projects", [])]:
                if isinstance(value, AtkProject):
                    assert value.id in mine, label

    if kind == "tasks":
        return Step(
            label,
            lambda: AtkTask.find({}, fetch_links=True, **kw.values).to_list(),
            kw.attack,
            resolved_own,
        )
    if kind == "categories":
        return Step(
            label,
            lambda: AtkCategory.find({}, fetch_links=True, **kw.values).to_list(),
            kw.attack,
            resolved_own,
        )
    if kind == "fetch_all":

        async def fetch_all() -> Any:
            category = await AtkCategory.get(world.category_id)
            assert category is not None
            await category.fetch_all_links()
            return category

        return Step("links fetch_all_links", fetch_all, False, resolved_own)
    task = data.draw(
        st.sampled_from([d for d in world.held if isinstance(d, AtkTask)]), label="task"
    )
    own_task = task.id in world.own("atk_tasks", tenant)

    def got(result: Any) -> None:
        resolved_own(result)
        assert (result is not None) == own_task, label

    return Step(
        f"{label} {task.id}",
        lambda: AtkTask.get(task.id, fetch_links=True, **kw.values),
        kw.attack,
        got,
    )


def draw_no_tenant(data: st.DataObject, world: World) -> Step:
    """Without a tenant every operation on scoped data fails before a command is sent."""
    attempts: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("find", lambda: AtkProject.find_all().to_list()),
        ("union find", lambda: AtkFeed.find_all().to_list()),
        ("union aggregate", lambda: AtkFeed.aggregate([]).to_list()),
        ("children", lambda: AtkVehicle.find_all(with_children=True).to_list()),
        ("count", lambda: AtkCar.count()),
        ("insert", lambda: AtkPost(name="x").insert()),
        ("update", lambda: AtkBike.find_all().update({"$inc": {"n": 1}})),
        ("delete", lambda: AtkNote.find_all().delete()),
        ("fetch_links", lambda: AtkCategory.find_all(fetch_links=True).to_list()),
        ("raw", lambda: world.db.database("customer")["atk_feed"].find_one({})),
        (
            "raw client",
            lambda: world.db.client("customer")[world.database_name][
                "atk_vehicles"
            ].count_documents({}),
        ),
        (
            "db lookup",
            lambda: AtkCategory.aggregate(
                [{"$lookup": {"from": "atk_tasks", "pipeline": [], "as": "t"}}]
            ).to_list(),
        ),
    ]
    name, call = data.draw(st.sampled_from(attempts), label="no tenant")
    return Step(f"no tenant: {name}", call, True)


# -- the test ---------------------------------------------------------------------------------


async def run_step(world: World, step: Step, tenant: str | None) -> None:
    before = world.state
    WIRE.take()
    error: BaseException | None = None
    result: Any = None
    try:
        if tenant is None:
            result = await step.call()
        else:
            async with tenant_context(tenant):
                result = await step.call()
    except (
        TenantIsolationError,
        TenantContextError,
        TypeError,
        DocumentNotFound,
        AttributeError,  # Beanie's doc.set() of a document it can't see (merge with None)
        DuplicateKeyError,
        BulkWriteError,
        OperationFailure,
    ) as exc:
        error = exc
    commands = WIRE.take()
    after = await world.stored()
    if step.refused:
        assert isinstance(error, TenantIsolationError | TenantContextError | TypeError), (
            f"{step.label}: not refused ({error!r}, result {result!r})"
        )
        assert commands == [], f"{step.label}: refused, yet sent {[c[1] for c in commands]}"
        assert after == before, f"{step.label}: refused, yet the stored state changed"
        return
    if error is not None and not isinstance(error, step.tolerated):
        raise AssertionError(f"{step.label}: failed with {error!r}") from error
    if error is None:
        step.check(result)
    if tenant is not None:
        check_wire(commands, tenant)
    check_state(before, after, tenant, step, error)
    world.state = after


def check_state(
    before: State, after: State, tenant: str | None, step: Step, error: BaseException | None
) -> None:
    label = step.label
    for collection in SCOPED_COLLECTIONS:
        old, new = before[collection], after[collection]
        assert all(row.tenant in TENANTS for row in new.values()), (
            f"{label}: a document lost its tenant"
        )
        others_old = {i: r for i, r in old.items() if r.tenant != tenant}
        others_new = {i: r for i, r in new.items() if r.tenant != tenant}
        assert others_new == others_old, (
            f"{label}: another tenant's documents changed in {collection}"
        )
        fresh = new.keys() - old.keys()
        assert all(new[i].tenant == tenant for i in fresh), label
        if step.expect is None or error is not None:
            touched = {i for i in old if old[i].tenant == tenant and new.get(i) != old[i]}
            assert touched <= step.may_touch, f"{label}: touched {touched - step.may_touch}"
            assert len(fresh) <= step.may_insert, f"{label}: inserted {len(fresh)}"
    if step.expect is not None and error is None:
        assert after == step.expect(before), f"{label}: stored state differs from the model"


@pytest.fixture
async def attack_world(insightdb_settings: Settings) -> AsyncIterator[World]:
    name = insightdb_settings.database("customer").name
    WIRE.databases = frozenset({name, insightdb_settings.database("admin").name})
    raw: AsyncMongoClient[Any] = AsyncMongoClient(insightdb_settings.database("customer").uri)
    try:
        async with insightdb.connect(insightdb_settings, models=MODELS) as db:
            yield World(db=db, raw=raw, database_name=name)
    finally:
        WIRE.databases = frozenset()
        await raw.close()


@settings(
    max_examples=50,
    # No shrinking: a failure prints every draw, and shrinking this stateful test takes
    # minutes on the embedded server.
    phases=[Phase.explicit, Phase.generate],
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_random_attacks_never_cross_tenants(attack_world: World, data: st.DataObject) -> None:
    world = attack_world
    await world.reset()
    await seed(world)
    for _ in range(data.draw(st.integers(1, 10), label="steps")):
        what = data.draw(
            st.sampled_from(
                ("read", "read", "write", "write", "write", "links", "no tenant", "bad tenant")
            ),
            label="what",
        )
        tenant_index = data.draw(st.integers(0, len(TENANTS) - 1), label="tenant")
        tenant = TENANTS[tenant_index]
        other = TENANTS[(tenant_index + data.draw(st.integers(1, len(TENANTS) - 1))) % len(TENANTS)]
        if what == "bad tenant":
            bad = data.draw(st.sampled_from(REFUSED_TENANTS), label="refused tenant")
            WIRE.take()
            with pytest.raises(TenantContextError):
                async with tenant_context(bad):
                    await AtkProject.find_all().to_list()
            assert WIRE.take() == []
            continue
        if what == "no tenant":
            await run_step(world, draw_no_tenant(data, world), None)
            continue
        draw = {"read": draw_read, "write": draw_write, "links": draw_links}[what]
        await run_step(world, draw(data, world, tenant, other), tenant)
