"""The named scenarios: one operation, written once per implementation.

Each data scenario turns a :class:`~bench.stack.Stack` into :class:`~bench.harness.Contender`
objects doing the same thing the way a user of each library would write it: raw PyMongo
on dicts, raw Beanie on a ``beanie.Document``, insightdb on a ``TenantScoped`` customer
model inside ``tenant_context`` (which the runner enters once, as a request would) —
with default settings (monitoring on) and with monitoring off — and, for reads,
insightdb's fast path (:func:`insightdb.find_as`) into a Pydantic model, a ``TypedDict``,
a ``msgspec.Struct`` and plain dicts. Writes build their documents inside the timed operation,
as an application does. The startup scenarios compare ``insightdb.init`` (both groups in
parallel) with ``init_beanie`` run group after group, on generated models.

Budgets (rounds x operations per batch) differ per server: the embedded server is an
emulator whose bulk writes take seconds, the canned server answers in microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient

import insightdb
from bench.harness import Contender
from bench.models import (
    BeanieItem,
    InsightItem,
    ItemDict,
    ItemRow,
    ItemStruct,
    QuietItem,
    generated_models,
    item_fields,
)
from bench.stack import INSIGHT_DBS, ServerKind, Stack, insight_settings
from insightdb import find_as, find_one_as
from insightdb.runtime.connections import client_options

__all__ = [
    "BEANIE",
    "DATA_SCENARIOS",
    "FAST_DICT",
    "FAST_MODEL",
    "FAST_STRUCT",
    "FAST_TYPED",
    "INSIGHT",
    "PYMONGO",
    "QUIET",
    "LATENCY_MS",
    "Budget",
    "Scenario",
    "StartupScenario",
    "distant_startup_scenarios",
    "startup_scenarios",
]

PYMONGO = "pymongo"
BEANIE = "beanie"
INSIGHT = "insightdb"
QUIET = "insightdb, monitoring off"
FAST_MODEL = "insightdb find_as → model"
FAST_TYPED = "insightdb find_as → TypedDict"
FAST_DICT = "insightdb find_as → dict"
FAST_STRUCT = "insightdb find_as → msgspec Struct"
SEQUENTIAL = "beanie (init_beanie per group, in sequence)"
PARALLEL = "insightdb.init (groups in parallel)"

AGGREGATION: list[dict[str, Any]] = [
    {"$match": {"active": True}},
    {"$group": {"_id": "$category", "n": {"$sum": 1}, "total": {"$sum": "$value"}}},
    {"$sort": {"_id": 1}},
]


@dataclass(frozen=True)
class Budget:
    """Rounds and operations per batch on each kind of server."""

    canned: tuple[int, int]
    embedded: tuple[int, int]

    def of(self, server: ServerKind, scale: float = 1.0) -> tuple[int, int]:
        """Return ``(rounds, ops)`` for ``server``; ``scale`` shrinks rounds (quick runs)."""
        rounds, ops = self.canned if server == "canned" else self.embedded
        return max(2, round(rounds * scale)), ops


@dataclass(frozen=True)
class Scenario:
    """A data scenario: name, what one operation does, its contenders and budget.

    ``warmup_ops`` is the untimed operations per contender first; bulk writes skip it
    (earlier scenarios have warmed every code path they use, and on the embedded server
    each costs seconds).
    """

    name: str
    description: str
    build: Callable[[Stack], list[Contender]]
    budget: Budget
    warmup_ops: int = 1


def _find_one(stack: Stack) -> list[Contender]:
    raw_id, beanie_id, insight_id = stack.ids["raw"], stack.ids["beanie"], stack.ids["insight"]
    quiet_id = stack.ids["quiet"]

    async def pymongo_op() -> object:
        return await stack.raw.find_one({"_id": raw_id})

    async def beanie_op() -> object:
        return await BeanieItem.get(beanie_id)

    async def insight_op() -> object:
        return await InsightItem.get(insight_id)

    async def quiet_op() -> object:
        return await QuietItem.get(quiet_id)

    async def fast_op() -> object:
        return await find_one_as(InsightItem, {"_id": insight_id}, into=ItemRow)

    return [
        Contender(PYMONGO, pymongo_op),
        Contender(BEANIE, beanie_op),
        Contender(INSIGHT, insight_op),
        Contender(QUIET, quiet_op),
        Contender(FAST_MODEL, fast_op),
    ]


def _find(query: dict[str, Any]) -> Callable[[Stack], list[Contender]]:
    def build(stack: Stack) -> list[Contender]:
        async def pymongo_op() -> object:
            return await stack.raw.find(query).to_list()

        async def beanie_op() -> object:
            return await BeanieItem.find(query).to_list()

        async def insight_op() -> object:
            return await InsightItem.find(query).to_list()

        async def quiet_op() -> object:
            return await QuietItem.find(query).to_list()

        async def fast_model() -> object:
            return await find_as(InsightItem, query, into=ItemRow)

        async def fast_typed() -> object:
            return await find_as(InsightItem, query, into=ItemDict)

        async def fast_dict() -> object:
            return await find_as(InsightItem, query, into=dict)

        async def fast_struct() -> object:
            return await find_as(InsightItem, query, into=ItemStruct)

        return [
            Contender(PYMONGO, pymongo_op),
            Contender(BEANIE, beanie_op),
            Contender(INSIGHT, insight_op),
            Contender(QUIET, quiet_op),
            Contender(FAST_MODEL, fast_model),
            Contender(FAST_TYPED, fast_typed),
            Contender(FAST_STRUCT, fast_struct),
            Contender(FAST_DICT, fast_dict),
        ]

    return build


def _insert_one(stack: Stack) -> list[Contender]:
    async def pymongo_op() -> object:
        return await stack.raw.insert_one(item_fields(1, category="new"))

    async def beanie_op() -> object:
        return await BeanieItem(**item_fields(1, category="new")).insert()

    async def insight_op() -> object:
        return await InsightItem(**item_fields(1, category="new")).insert()

    async def quiet_op() -> object:
        return await QuietItem(**item_fields(1, category="new")).insert()

    return [
        Contender(PYMONGO, pymongo_op, stack.reset_for("raw")),
        Contender(BEANIE, beanie_op, stack.reset_for("beanie")),
        Contender(INSIGHT, insight_op, stack.reset_for("insight")),
        Contender(QUIET, quiet_op, stack.reset_for("quiet")),
    ]


def _insert_many(count: int) -> Callable[[Stack], list[Contender]]:
    def build(stack: Stack) -> list[Contender]:
        async def pymongo_op() -> object:
            return await stack.raw.insert_many(
                [item_fields(i, category="new") for i in range(count)]
            )

        async def beanie_op() -> object:
            return await BeanieItem.insert_many(
                [BeanieItem(**item_fields(i, category="new")) for i in range(count)]
            )

        async def insight_op() -> object:
            return await InsightItem.insert_many(
                [InsightItem(**item_fields(i, category="new")) for i in range(count)]
            )

        async def quiet_op() -> object:
            return await QuietItem.insert_many(
                [QuietItem(**item_fields(i, category="new")) for i in range(count)]
            )

        return [
            Contender(PYMONGO, pymongo_op, stack.reset_for("raw")),
            Contender(BEANIE, beanie_op, stack.reset_for("beanie")),
            Contender(INSIGHT, insight_op, stack.reset_for("insight")),
            Contender(QUIET, quiet_op, stack.reset_for("quiet")),
        ]

    return build


def _update_many(stack: Stack) -> list[Contender]:
    query, change = {"bucket": 3}, {"$inc": {"value": 1}}

    async def pymongo_op() -> object:
        return await stack.raw.update_many(query, change)

    async def beanie_op() -> object:
        return await BeanieItem.find(query).update_many(change)

    async def insight_op() -> object:
        return await InsightItem.find(query).update_many(change)

    async def quiet_op() -> object:
        return await QuietItem.find(query).update_many(change)

    return [
        Contender(PYMONGO, pymongo_op),
        Contender(BEANIE, beanie_op),
        Contender(INSIGHT, insight_op),
        Contender(QUIET, quiet_op),
    ]


def _aggregate(stack: Stack) -> list[Contender]:
    async def pymongo_op() -> object:
        return await (await stack.raw.aggregate(AGGREGATION)).to_list()

    async def beanie_op() -> object:
        return await BeanieItem.aggregate(AGGREGATION).to_list()

    async def insight_op() -> object:
        return await InsightItem.aggregate(AGGREGATION).to_list()

    async def quiet_op() -> object:
        return await QuietItem.aggregate(AGGREGATION).to_list()

    return [
        Contender(PYMONGO, pymongo_op),
        Contender(BEANIE, beanie_op),
        Contender(INSIGHT, insight_op),
        Contender(QUIET, quiet_op),
    ]


DATA_SCENARIOS: list[Scenario] = [
    Scenario(
        "find_one by id",
        "one document by _id (Beanie: Model.get(id); fast path: find_one_as)",
        _find_one,
        Budget(canned=(30, 40), embedded=(6, 10)),
    ),
    Scenario(
        "find 100",
        "find({'bucket': 3}).to_list(): 100 of 1,000 small documents",
        _find({"bucket": 3}),
        Budget(canned=(24, 20), embedded=(4, 5)),
    ),
    Scenario(
        "find 1,000",
        "find({}).to_list(): all 1,000 small documents",
        _find({}),
        Budget(canned=(24, 4), embedded=(4, 2)),
    ),
    Scenario(
        "insert_one",
        "build one document and insert it",
        _insert_one,
        Budget(canned=(24, 40), embedded=(4, 5)),
    ),
    Scenario(
        "insert_many 1,000",
        "build 1,000 documents and insert them in one insert_many",
        _insert_many(1000),
        Budget(canned=(12, 1), embedded=(2, 1)),
        warmup_ops=0,
    ),
    Scenario(
        "update_many",
        "$inc on the 100 documents of one bucket",
        _update_many,
        Budget(canned=(24, 10), embedded=(4, 3)),
    ),
    Scenario(
        "aggregate",
        "$match, $group by category with $sum, $sort over 1,000 documents",
        _aggregate,
        Budget(canned=(24, 10), embedded=(4, 3)),
    ),
]


# -- startup ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StartupScenario:
    """Startup with ``models`` generated models (half admin, half customer)."""

    models: int
    budget: Budget

    @property
    def name(self) -> str:
        """The scenario's label."""
        return f"startup, {self.models} models"

    @property
    def description(self) -> str:
        """What one operation does."""
        return (
            f"connect and initialise {self.models} models in two databases "
            "(client creation and first round trip included; close excluded)"
        )

    def build(self, uri: str, *, patient: bool = False) -> list[Contender]:
        """Return the two contenders, bound to the server at ``uri``.

        Args:
            uri: The server.
            patient: Use the patient timeouts (embedded server).
        """
        beanie_admin, beanie_customer, insight_models = generated_models(self.models)
        settings = insight_settings(uri, patient=patient)
        options = client_options(settings)
        clients: list[AsyncMongoClient[dict[str, Any]]] = []

        async def sequential() -> object:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, **options)
            clients.append(client)
            await init_beanie(
                database=client[INSIGHT_DBS["admin"]], document_models=list(beanie_admin)
            )
            await init_beanie(
                database=client[INSIGHT_DBS["customer"]], document_models=list(beanie_customer)
            )
            return client

        async def close_clients() -> object:
            while clients:
                await clients.pop().close()
            return None

        async def parallel() -> object:
            return await insightdb.init(settings, models=insight_models)

        async def close_insight() -> object:
            await insightdb.close()
            return None

        return [
            Contender(SEQUENTIAL, sequential, close_clients),
            Contender(PARALLEL, parallel, close_insight),
        ]


def startup_scenarios() -> list[StartupScenario]:
    """The startup scenarios: 10 and 100 generated models."""
    return [
        StartupScenario(10, Budget(canned=(10, 1), embedded=(4, 1))),
        StartupScenario(100, Budget(canned=(6, 1), embedded=(3, 1))),
    ]


LATENCY_MS = 2.0
"""The simulated round-trip time of the distant-server startup runs (same-region cloud)."""


def distant_startup_scenarios() -> list[StartupScenario]:
    """Startup against a canned server ``LATENCY_MS`` away: 10 and 100 models."""
    return [
        StartupScenario(10, Budget(canned=(6, 1), embedded=(6, 1))),
        StartupScenario(100, Budget(canned=(4, 1), embedded=(4, 1))),
    ]
