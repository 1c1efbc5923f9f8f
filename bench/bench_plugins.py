"""What transactions without ``session=`` and the model plugins cost, against raw Beanie.

Issue 13's figures, in client CPU per operation on the embedded server (every contender
talks to the same server with the same driver options; the server's own time is in the
wall figures and cancels out of the CPU ratios):

* ``insert`` and ``update`` (``doc.set``) for models with the same fields: a plain
  ``beanie.Document``; an insightdb ``AdminDocument`` without plugins; the same with
  ``Timestamped``, with ``SoftDeletable``, and with ``Audited`` (audit trail on: one
  more insert per write, so roughly twice the work by design);
* ``get`` by id for the plain and the ``SoftDeletable`` model (the hidden-document
  filter on every read);
* ``insert in a transaction``: one transaction holding one insert — raw Beanie opening a
  session and passing ``session=`` by hand, against ``async with db.transaction():`` with
  no ``session=`` (the context variable, the task check and the retry machinery).

Run ``python -m bench.bench_plugins`` (``BENCH_QUICK=1`` for a short run); results go to
``bench/results/bench_plugins.json`` for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Sequence
from typing import Any

from beanie import Document, init_beanie
from pymongo import AsyncMongoClient

import insightdb
from bench.harness import Contender, ScenarioResult, format_result, measure, write_results
from bench.stack import insight_settings, open_server
from insightdb import AdminDocument, Audited, SoftDeletable, Timestamped
from insightdb.runtime.connections import client_options

BEANIE = "beanie"
PLAIN = "insightdb"
NAMES = {"admin": "bench_plug_admin", "customer": "bench_plug_customer"}


class BpBeanie(Document):
    name: str
    value: int = 0


class BpPlain(AdminDocument):
    name: str
    value: int = 0


class BpStamped(Timestamped, AdminDocument):
    name: str
    value: int = 0


class BpSoft(SoftDeletable, AdminDocument):
    name: str
    value: int = 0


class BpAudited(Audited, AdminDocument):
    name: str
    value: int = 0


VARIANTS: dict[str, type[Document]] = {
    BEANIE: BpBeanie,
    PLAIN: BpPlain,
    "insightdb + Timestamped": BpStamped,
    "insightdb + SoftDeletable": BpSoft,
    "insightdb + Audited": BpAudited,
}


def _writes(kind: str, docs: dict[str, Document]) -> list[Contender]:
    counter = itertools.count()
    contenders = []
    for name, model in VARIANTS.items():
        if kind == "insert":

            async def op(model: type[Document] = model) -> object:
                return await model(name=f"n{next(counter)}").insert()

        else:

            async def op(doc: Document = docs[name]) -> object:
                return await doc.set({"value": next(counter)})

        contenders.append(Contender(name, op))
    return contenders


def _reads(docs: dict[str, Document]) -> list[Contender]:
    contenders = []
    for name in (BEANIE, PLAIN, "insightdb + SoftDeletable"):
        model, ident = type(docs[name]), docs[name].id

        async def op(model: type[Document] = model, ident: Any = ident) -> object:
            return await model.get(ident)

        contenders.append(Contender(name, op))
    return contenders


def _transactions(client: AsyncMongoClient[Any], db: insightdb.InsightDB) -> list[Contender]:
    counter = itertools.count()

    async def beanie_tx() -> None:
        async with client.start_session() as session, await session.start_transaction():
            await BpBeanie(name=f"t{next(counter)}").insert(session=session)

    async def insight_tx() -> None:
        async with db.transaction(groups=["admin"]):
            await BpPlain(name=f"t{next(counter)}").insert()

    async def insight_explicit() -> None:
        async with db.transaction(groups=["admin"]) as session:
            await BpPlain(name=f"t{next(counter)}").insert(session=session)

    return [
        Contender(BEANIE + " (session= by hand)", beanie_tx),
        Contender(PLAIN + " (no session=)", insight_tx),
        Contender(PLAIN + " (explicit session=)", insight_explicit),
    ]


async def _run(scale: float) -> list[ScenarioResult]:
    results: list[ScenarioResult] = []
    async with open_server("embedded") as uri:
        settings = insight_settings(uri, names=NAMES, metrics=False, patient=True)
        features = settings.features.model_copy(update={"audit_trail": True})
        settings = settings.model_copy(update={"features": features})
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, **client_options(settings))
        await init_beanie(database=client["bench_plug_beanie"], document_models=[BpBeanie])
        db = await insightdb.init(
            settings, models=[m for m in VARIANTS.values() if m is not BpBeanie]
        )
        try:
            docs = {name: await model(name="seed").insert() for name, model in VARIANTS.items()}
            rounds = max(3, round(12 * scale))
            plan: list[tuple[str, str, list[Contender], Sequence[str]]] = [
                ("insert", "Model(...).insert()", _writes("insert", docs), (BEANIE, PLAIN)),
                ("update", "doc.set({'value': n})", _writes("update", docs), (BEANIE, PLAIN)),
                ("get by id", "Model.get(id)", _reads(docs), (BEANIE, PLAIN)),
                (
                    "insert in a transaction",
                    "one transaction holding one insert",
                    _transactions(client, db),
                    (BEANIE + " (session= by hand)", PLAIN + " (explicit session=)"),
                ),
            ]
            for scenario, description, contenders, baselines in plan:
                measured = await measure(contenders, rounds=rounds, ops=20, warmup_ops=3)
                result = ScenarioResult(
                    scenario, "embedded", description, rounds, 20, measured, baselines=baselines
                )
                results.append(result)
                print(format_result(result), flush=True)
        finally:
            await insightdb.close()
            await client.drop_database("bench_plug_beanie")
            await client.close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and store the plugin and transaction figures; see the module docstring."""
    scale = 0.25 if os.environ.get("BENCH_QUICK") == "1" else 1.0
    results = asyncio.run(_run(scale))
    path = write_results(
        __file__,
        "Transactions without session= and model plugins (issue 13)",
        results,
        notes=[
            "Client CPU per operation on the embedded server, monitoring off; ratios are "
            "against raw Beanie and against insightdb without the feature. `Audited` writes "
            "an audit record per write (a second insert), so its cost is about one more "
            "write by design. The transaction scenario compares one transaction with one "
            "insert: raw Beanie passing `session=` by hand, insightdb without `session=` "
            "(context-variable propagation) and with an explicit `session=`."
        ],
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
