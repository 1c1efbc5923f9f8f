"""Full Documents on the fast path against raw PyMongo and raw Beanie (issue 15, part 2).

Client CPU per operation on the canned-reply server (``bench/canned_server.py``: it
answers from memory in its own process, so the figures are the client's work). The
contenders read and write the same 1,000 small documents:

* ``pymongo``: dicts;
* ``pydantic only``: PyMongo, then ``ItemRow.model_validate`` per document (the cost of
  validation alone, for reference);
* ``beanie``: a plain ``beanie.Document``;
* ``insightdb``: a ``TenantScoped`` ``CustomerDocument`` with default settings — tenancy,
  monitoring and the fast Documents path (:mod:`insightdb.runtime.hydration`) on;
* ``insightdb, fast path off``: the same model with ``insightdb_fast_path = False``.

Scenarios: ``find({}).to_list()`` of 1,000 documents, ``Model.get(id)``,
``aggregate(..., projection_model=Model)`` of 1,000, ``insert_many`` of 1,000 (documents
built inside the timed operation) and ``insert()`` of one. (``save()`` is not measured
here: the canned server has no ``findAndModify``.) Run ``python -m bench.bench_hydration``
(``BENCH_QUICK=1`` for a short run); results go to ``bench/results/bench_hydration.json``
for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient

import insightdb
from bench.harness import Contender, ScenarioResult, format_result, measure, write_results
from bench.models import TENANT, BeanieItem, ItemRow, item_fields
from bench.stack import insight_settings, open_server
from insightdb import CustomerDocument, TenantScoped, tenant_context
from insightdb.runtime.connections import client_options

PYMONGO = "pymongo"
PYDANTIC = "pydantic only (PyMongo + model_validate)"
BEANIE = "beanie"
FAST = "insightdb"
SLOW = "insightdb, fast path off"
NAMES = {"admin": "bench_hy_admin", "customer": "bench_hy_customer"}
RAW_DB, BEANIE_DB = "bench_hy_raw", "bench_hy_beanie"
DOCS = 1000


class HyItem(TenantScoped, CustomerDocument):
    """insightdb with default settings: the fast Documents path on."""

    name: str
    category: str
    bucket: int
    value: int
    price: float
    active: bool
    created: datetime.datetime

    class Settings:
        name = "items"


class HySlowItem(TenantScoped, CustomerDocument):
    """The same model with the fast path turned off for it alone."""

    name: str
    category: str
    bucket: int
    value: int
    price: float
    active: bool
    created: datetime.datetime

    class Settings:
        name = "items_slow"
        insightdb_fast_path = False


MATCH_ALL: list[dict[str, Any]] = [{"$match": {"bucket": {"$gte": 0}}}]


def _reads(raw: Any, ids: dict[str, Any]) -> dict[str, tuple[str, list[Contender]]]:
    async def pymongo_find() -> object:
        return await raw.find({}).to_list()

    async def pydantic_find() -> object:
        return [ItemRow.model_validate(d) for d in await raw.find({}).to_list()]

    async def pymongo_get() -> object:
        return await raw.find_one({"_id": ids["raw"]})

    async def pymongo_aggregate() -> object:
        return await (await raw.aggregate(MATCH_ALL)).to_list()

    def find(model: Any) -> Callable[[], Any]:
        return lambda: model.find({}).to_list()

    def get(model: Any, key: str) -> Callable[[], Any]:
        return lambda: model.get(ids[key])

    def aggregate(model: Any) -> Callable[[], Any]:
        return lambda: model.aggregate(MATCH_ALL, projection_model=model).to_list()

    models = ((BEANIE, BeanieItem, "beanie"), (FAST, HyItem, "fast"), (SLOW, HySlowItem, "slow"))
    return {
        "find 1,000": (
            "find({}).to_list(): all 1,000 small documents, as Documents",
            [
                Contender(PYMONGO, pymongo_find),
                Contender(PYDANTIC, pydantic_find),
                *(Contender(n, find(m)) for n, m, _ in models),
            ],
        ),
        "get by id": (
            "Model.get(id): one document",
            [Contender(PYMONGO, pymongo_get), *(Contender(n, get(m, k)) for n, m, k in models)],
        ),
        "aggregate → Documents": (
            "aggregate([$match], projection_model=Model).to_list(): 1,000 documents",
            [
                Contender(PYMONGO, pymongo_aggregate),
                *(Contender(n, aggregate(m)) for n, m, _ in models),
            ],
        ),
    }


def _writes(
    raw: Any, resets: dict[str, Callable[[], Any]]
) -> dict[str, tuple[str, list[Contender]]]:
    async def pymongo_many() -> object:
        return await raw.insert_many([item_fields(i, category="new") for i in range(DOCS)])

    async def pymongo_one() -> object:
        return await raw.insert_one(item_fields(1, category="new"))

    def many(model: Any) -> Callable[[], Any]:
        return lambda: model.insert_many(
            [model(**item_fields(i, category="new")) for i in range(DOCS)]
        )

    def one(model: Any) -> Callable[[], Any]:
        return lambda: model(**item_fields(1, category="new")).insert()

    models = ((BEANIE, BeanieItem, "beanie"), (FAST, HyItem, "fast"), (SLOW, HySlowItem, "slow"))
    return {
        "insert_many 1,000": (
            "build 1,000 documents and insert them in one insert_many",
            [
                Contender(PYMONGO, pymongo_many, resets["raw"]),
                *(Contender(n, many(m), resets[k]) for n, m, k in models),
            ],
        ),
        "insert one": (
            "build one document and insert() it",
            [
                Contender(PYMONGO, pymongo_one, resets["raw"]),
                *(Contender(n, one(m), resets[k]) for n, m, k in models),
            ],
        ),
    }


BUDGETS = {
    "find 1,000": (24, 4),
    "get by id": (24, 40),
    "aggregate → Documents": (16, 4),
    "insert_many 1,000": (12, 1),
    "insert one": (16, 40),
}


async def _run(scale: float) -> list[ScenarioResult]:
    results: list[ScenarioResult] = []
    async with open_server("canned") as uri:
        settings = insight_settings(uri, names=NAMES)
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, **client_options(settings))
        collections = {
            "raw": client[RAW_DB]["items"],
            "beanie": client[BEANIE_DB]["items"],
            "fast": client[NAMES["customer"]]["items"],
            "slow": client[NAMES["customer"]]["items_slow"],
        }
        ids = {}
        for key, collection in collections.items():
            await collection.delete_many({})
            inserted = await collection.insert_many([item_fields(i) for i in range(DOCS)])
            ids[key] = inserted.inserted_ids[DOCS // 2]
        await init_beanie(database=client[BEANIE_DB], document_models=[BeanieItem])
        await insightdb.init(settings, models=[HyItem, HySlowItem])
        resets = {
            key: (lambda c=collection: c.delete_many({"category": "new"}))
            for key, collection in collections.items()
        }
        try:
            with tenant_context(TENANT):
                plan = {
                    **_reads(collections["raw"], ids),
                    **_writes(collections["raw"], resets),
                }
                for scenario, (description, contenders) in plan.items():
                    rounds, ops = BUDGETS[scenario]
                    rounds = max(4, round(rounds * scale))
                    warmup = 0 if scenario == "insert_many 1,000" else 1
                    measured = await measure(contenders, rounds=rounds, ops=ops, warmup_ops=warmup)
                    result = ScenarioResult(
                        scenario,
                        "canned",
                        description,
                        rounds,
                        ops,
                        measured,
                        baselines=(PYMONGO, BEANIE),
                    )
                    results.append(result)
                    print(format_result(result), flush=True)
        finally:
            await insightdb.close()
            await client.close()
    return results


def _goals(results: Sequence[ScenarioResult]) -> list[dict[str, Any]]:
    goals = []
    for scenario, bound in (("find 1,000", 2.5), ("insert_many 1,000", 3.0)):
        result = next((r for r in results if r.scenario == scenario), None)
        if result is None:
            continue
        fast = result.ratio(FAST, PYMONGO, "cpu")
        beanie = result.ratio(BEANIE, PYMONGO, "cpu")
        assert fast is not None
        assert beanie is not None
        goals.append(
            {
                "goal": f"Documents on the fast path ≤ {bound:g}x raw PyMongo client CPU, "
                f"{scenario}",
                "figure": f"{fast.value:.2f}x (IQR {fast.q1:.2f} to {fast.q3:.2f}); raw Beanie "
                f"{beanie.value:.2f}x (IQR {beanie.q1:.2f} to {beanie.q3:.2f})",
                "met": fast.value <= bound,
            }
        )
    return goals


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and store the fast Documents figures; see the module docstring."""
    scale = 0.25 if os.environ.get("BENCH_QUICK") == "1" else 1.0
    results = asyncio.run(_run(scale))
    goals = _goals(results)
    for goal in goals:
        print(f"goal: {goal['goal']}: {goal['figure']} → {'MET' if goal['met'] else 'NOT MET'}")
    path = write_results(
        __file__,
        "Full Documents on the fast path (issue 15)",
        results,
        notes=[
            "Client CPU per operation on the canned-reply server. *insightdb* is a "
            "`TenantScoped` `CustomerDocument` with default settings (tenancy, monitoring "
            "and the fast Documents path on); *insightdb, fast path off* is the same model "
            "with `insightdb_fast_path = False`. *pydantic only* validates PyMongo's "
            "documents into a plain Pydantic model: the cost of validation alone."
        ],
        extra={"goals": goals},
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
