"""Benchmark: insightdb's migration runner against Beanie's, on the same N documents.

Not a test: run it by hand and copy the table into ``docs/benchmarks.md``::

    .venv/bin/python bench/bench_migrations.py --docs 3000 --rounds 3

One collection of N documents is seeded once on the embedded MongoDB-compatible server
(an emulator in a child process, so its CPU is not the client's). Then each contender
runs one forward migration that increments ``counter`` on every document; rounds rotate
the contenders' order and every contender must leave every document incremented exactly
once per run (checked). Contenders:

``beanie``             Beanie's own runner (``MigrationNode``, as ``beanie migrate`` runs it,
                       ``--no-use-transaction``) with an ``@iterative_migration`` Forward class.
``beanie+tx``          the same with Beanie's default ``--use-transaction`` (``--with-tx``).
``insightdb-iterative`` insightdb's runner, the same Forward class written with
                       ``@iterative`` on the same frozen model (per-document Python).
``insightdb-for_each`` insightdb's runner, ``ctx.for_each`` returning ``{"$inc": ...}``.
``insightdb-pipeline`` insightdb's runner, ``ctx.update_with_pipeline`` (server-side).

Figures per contender: documents per second (wall, median of rounds), client CPU per
document (``time.process_time`` of this process), and the peak of Python memory allocated
during one run (``tracemalloc``, a separate run so it does not slow the timed ones).
Ratios are against ``beanie``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from insightdb.migrations.runner import Runner, RunOptions  # noqa: E402
from insightdb.revisions.lock import LOCK_COLLECTION  # noqa: E402
from insightdb.revisions.log import LOG_COLLECTION  # noqa: E402
from insightdb.revisions.scripts import ScriptDirectory  # noqa: E402
from insightdb.testing.server import EmbeddedServer  # noqa: E402

DB = "bench_migrations"
COLLECTION = "people"
# A long server-side write must not look like a dead server to the driver's heartbeat.
URI_OPTIONS = "connectTimeoutMS=600000&socketTimeoutMS=600000&serverSelectionTimeoutMS=60000"

MODEL = """
from beanie import Document


class Person(Document):
    name: str
    email: str
    age: int
    tags: list[str] = []
    counter: int = 0

    class Settings:
        name = "people"
"""

BEANIE_FILE = (
    MODEL
    + """
from beanie import iterative_migration


class Forward:
    @iterative_migration(batch_size={batch})
    async def bump(self, input_document: Person, output_document: Person):
        output_document.counter = input_document.counter + 1


class Backward:
    pass
"""
)

INSIGHTDB_ITERATIVE = (
    '"""bench: iterative"""\nrevision = "it1"\ndown_revision = None\n'
    + MODEL
    + """
from insightdb.migrations import iterative


class Forward:
    @iterative(batch_size={batch})
    async def bump(self, input_document: Person, output_document: Person):
        output_document.counter = input_document.counter + 1
"""
)

INSIGHTDB_FOR_EACH = """\"\"\"bench: for_each\"\"\"
revision = "fe1"
down_revision = None


async def upgrade(ctx):
    await ctx.for_each("people", lambda doc: {"$inc": {"counter": 1}}, batch_size={batch})
"""

INSIGHTDB_PIPELINE = """\"\"\"bench: pipeline\"\"\"
revision = "pl1"
down_revision = None


async def upgrade(ctx):
    await ctx.update_with_pipeline(
        "people", {}, [{"$set": {"counter": {"$add": ["$counter", 1]}}}], batch_size=None
    )
"""


@dataclass
class Contender:
    name: str
    run: Callable[[], Awaitable[None]]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_bytes: int = 0


async def seed(client: AsyncMongoClient[Any], docs: int) -> None:
    coll = client[DB][COLLECTION]
    await coll.drop()
    began = time.perf_counter()
    for start in range(0, docs, 500):
        await coll.insert_many(
            [
                {
                    "name": f"Person {i}",
                    "email": f"person{i}@example.com",
                    "age": 20 + i % 60,
                    "tags": ["a", "b"] if i % 2 else ["c"],
                    "counter": 0,
                }
                for i in range(start, min(start + 500, docs))
            ]
        )
    print(f"seeded {docs} documents in {time.perf_counter() - began:.1f} s", flush=True)


def beanie_contender(
    uri: str, folder: Path, batch: int, use_transaction: bool
) -> Callable[[], Awaitable[None]]:
    from beanie.migrations.database import DBHandler
    from beanie.migrations.models import RunningDirections, RunningMode
    from beanie.migrations.runner import MigrationNode

    folder.mkdir(parents=True)
    (folder / "20250101000000_bump.py").write_text(BEANIE_FILE.replace("{batch}", str(batch)))

    async def run() -> None:
        DBHandler.set_db(uri, DB)  # what `beanie migrate` does: its own client
        client = DBHandler.get_cli()
        try:
            await client[DB]["migrations_log"].drop()  # so the migration runs again
            root = await MigrationNode.build(folder)
            mode = RunningMode(direction=RunningDirections.FORWARD, distance=0)
            await root.run(mode=mode, allow_index_dropping=False, use_transaction=use_transaction)
        finally:
            await client.close()

    return run


def insightdb_contender(
    client: AsyncMongoClient[Any], folder: Path, text: str, batch: int
) -> Callable[[], Awaitable[None]]:
    (folder / "admin").mkdir(parents=True)
    (folder / "admin" / "rev.py").write_text(text.replace("{batch}", str(batch)))
    options = RunOptions(batch_size=batch, progress="off")

    async def run() -> None:
        await client[DB][LOG_COLLECTION].drop()  # so the revision runs again
        await client[DB][LOCK_COLLECTION].drop()
        runner = Runner(ScriptDirectory(folder / "admin", "admin"), client[DB], client, options)
        await runner.upgrade()

    return run


async def measure(
    contenders: list[Contender], client: AsyncMongoClient[Any], docs: int, rounds: int
) -> None:
    coll = client[DB][COLLECTION]
    expected = await coll.find_one({}, {"counter": 1})
    counter = expected["counter"] if expected else 0
    for round_no in range(rounds):
        shift = round_no % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            gc.collect()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await contender.run()
            contender.cpu.append(time.process_time() - cpu0)
            contender.wall.append(time.perf_counter() - wall0)
            counter += 1
            done = await coll.count_documents({"counter": counter})
            assert done == docs, f"{contender.name}: {done}/{docs} documents at counter {counter}"
            print(
                f"round {round_no + 1} {contender.name:<20} {contender.wall[-1]:8.2f} s wall "
                f"{contender.cpu[-1]:7.2f} s cpu",
                flush=True,
            )
    for contender in contenders:  # memory: one more run each, traced
        gc.collect()
        tracemalloc.start()
        await contender.run()
        contender.peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        counter += 1
        assert await coll.count_documents({"counter": counter}) == docs


def report(contenders: list[Contender], docs: int, batch: int) -> str:
    base = next(c for c in contenders if c.name == "beanie")
    base_wall, base_cpu = statistics.median(base.wall), statistics.median(base.cpu)
    lines = [
        f"N = {docs} documents, batch size {batch}, {len(base.wall)} rounds, "
        "embedded MongoDB-compatible server (mongoeco, memory engine)",
        "",
        "| contender | docs/s | x beanie | client CPU/doc | x less CPU | peak memory | x less |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in contenders:
        wall, cpu = statistics.median(c.wall), statistics.median(c.cpu)
        lines.append(
            f"| {c.name} | {docs / wall:,.0f} | {base_wall / wall:.1f}x | "
            f"{cpu / docs * 1e6:,.0f} µs | {base_cpu / cpu:.1f}x | "
            f"{c.peak_bytes / 2**20:,.1f} MiB | {base.peak_bytes / max(c.peak_bytes, 1):.1f}x |"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    logger.remove()
    with tempfile.TemporaryDirectory(prefix="bench-migrations-") as scratch:
        work = Path(scratch)
        async with EmbeddedServer() as server:
            uri = f"{server.uri}&{URI_OPTIONS}"
            async with AsyncMongoClient[dict[str, Any]](uri) as client:
                await seed(client, args.docs)
                contenders = [
                    Contender("beanie", beanie_contender(uri, work / "beanie", args.batch, False)),
                    Contender(
                        "insightdb-iterative",
                        insightdb_contender(client, work / "it", INSIGHTDB_ITERATIVE, args.batch),
                    ),
                    Contender(
                        "insightdb-for_each",
                        insightdb_contender(client, work / "fe", INSIGHTDB_FOR_EACH, args.batch),
                    ),
                    Contender(
                        "insightdb-pipeline",
                        insightdb_contender(client, work / "pl", INSIGHTDB_PIPELINE, args.batch),
                    ),
                ]
                if args.with_tx:
                    contenders.insert(
                        1,
                        Contender(
                            "beanie+tx", beanie_contender(uri, work / "btx", args.batch, True)
                        ),
                    )
                await measure(contenders, client, args.docs, args.rounds)
                await client.drop_database(DB)
    print()
    print(report(contenders, args.docs, args.batch))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=3000, help="documents in the collection")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per contender")
    parser.add_argument("--batch", type=int, default=1000, help="batch size of both runners")
    parser.add_argument("--with-tx", action="store_true", help="also Beanie's --use-transaction")
    asyncio.run(main(parser.parse_args()))
