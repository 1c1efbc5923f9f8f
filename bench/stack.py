"""The implementations side by side on one server: clients, runtimes, models and data.

A :class:`Stack` connects raw PyMongo, raw Beanie and two insightdb runtimes to the same
server, each to its own databases, with the *same* driver options (insightdb's defaults:
``timeoutMS``, ``tz_aware``, pool and timeouts), so that a difference between them is the
library's and not the driver's configuration:

* the *default* runtime (``insightdb.init`` with default settings: tenancy, the circuit
  breaker and monitoring all on) serves :class:`~bench.models.InsightItem`;
* the *quiet* runtime (``features.metrics = false``: no command or server listeners, no
  process sampler) serves :class:`~bench.models.QuietItem` and, on request,
  :class:`~bench.models.QuietPlainItem`. It is started as an :class:`~insightdb.InsightDB`
  instance rather than through ``insightdb.init``, which allows one runtime at a time;
  the two share no model class.

On the embedded server every client gets the same patient timeouts instead
(:data:`PATIENT_TIMEOUTS`). It seeds every collection with the same documents and closes
everything on exit.
:func:`open_server` starts the embedded server or the canned server; both are stopped by
their own PID.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

import insightdb
from bench.canned_server import CannedServer
from bench.models import BeanieItem, InsightItem, QuietItem, QuietPlainItem, item_fields
from insightdb import InsightDB
from insightdb.runtime.connections import client_options
from insightdb.settings import Settings, get_settings
from insightdb.testing.server import EmbeddedServer

__all__ = [
    "DOCS",
    "INSIGHT_DBS",
    "PATIENT_TIMEOUTS",
    "QUIET_DBS",
    "ServerKind",
    "Stack",
    "insight_settings",
    "monitoring_available",
    "open_server",
    "open_stack",
]

ServerKind = Literal["canned", "embedded"]
DOCS = 1000
RAW_DB = "bench_raw"
BEANIE_DB = "bench_beanie"
INSIGHT_DBS = {"admin": "bench_idb_admin", "customer": "bench_idb_customer"}
QUIET_DBS = {"admin": "bench_idbq_admin", "customer": "bench_idbq_customer"}


def monitoring_available() -> bool:
    """Tell whether this insightdb has a monitoring layer (``insightdb.monitoring``)."""
    return importlib.util.find_spec("insightdb.monitoring") is not None


@asynccontextmanager
async def open_server(kind: ServerKind, *, latency_ms: float = 0.0) -> AsyncIterator[str]:
    """Start a server of ``kind`` and yield its URI; stop it on exit.

    Args:
        kind: ``"canned"`` or ``"embedded"``.
        latency_ms: The canned server's delay before each reply (simulated distance).
    """
    if kind == "canned":
        async with CannedServer(latency_ms=latency_ms) as canned:
            yield canned.uri
    else:
        async with EmbeddedServer() as embedded:
            yield embedded.uri


# The embedded server is single-threaded: a bulk insert of 1,000 documents takes seconds
# (more on a busy machine) and holds up the heartbeats meanwhile, so insightdb's tight
# defaults (2 s connect, 5 s per operation) would fail operations that are merely slow.
# There every client — all contenders alike — gets the driver's own, patient timeouts.
PATIENT_TIMEOUTS = {
    "connect_ms": 20_000,
    "server_selection_ms": 30_000,
    "operation_ms": 120_000,
    "heartbeat_frequency_ms": 10_000,
}


def insight_settings(
    uri: str,
    *,
    names: Mapping[str, str] = INSIGHT_DBS,
    metrics: bool = True,
    patient: bool = False,
) -> Settings:
    """Testing settings with both groups on ``uri``.

    Args:
        uri: The server.
        names: The databases of the two groups.
        metrics: ``features.metrics`` (monitoring on or off).
        patient: Use :data:`PATIENT_TIMEOUTS` (for the embedded server).
    """
    overrides: dict[str, Any] = {
        "databases": {g: {"uri": uri, "name": name} for g, name in names.items()},
        "features": {"metrics": metrics},
    }
    if patient:
        overrides["timeouts"] = dict(PATIENT_TIMEOUTS)
    return get_settings("testing", settings_files=[], overrides=overrides)


@dataclass
class Stack:
    """Everything the scenarios touch on one server; build it with :func:`open_stack`.

    Attributes:
        server: ``"canned"`` or ``"embedded"``.
        uri: The server's URI.
        settings: The default runtime's settings (their driver options are used by all).
        raw_client: The raw PyMongo client (also used for seeding and cleaning up).
        beanie_client: The client raw Beanie is initialised on.
        raw: The raw PyMongo collection.
        quiet: The insightdb runtime with monitoring off.
        ids: A document id per collection key (``"raw"``, ``"beanie"``, ``"insight"``,
            ``"quiet"``, ``"quiet_plain"``) for lookups by id.
    """

    server: ServerKind
    uri: str
    settings: Settings
    raw_client: AsyncMongoClient[dict[str, Any]]
    beanie_client: AsyncMongoClient[dict[str, Any]]
    raw: AsyncCollection[dict[str, Any]]
    quiet: InsightDB | None = None
    ids: dict[str, Any] = field(default_factory=dict)

    def collections(self) -> dict[str, AsyncCollection[dict[str, Any]]]:
        """Every seeded collection, by key, through the raw client."""
        insight = self.raw_client[INSIGHT_DBS["customer"]]
        quiet = self.raw_client[QUIET_DBS["customer"]]
        return {
            "raw": self.raw,
            "beanie": self.raw_client[BEANIE_DB]["items"],
            "insight": insight["items"],
            "quiet": quiet["items"],
            "quiet_plain": quiet["plain_items"],
        }

    async def reset_inserted(self) -> None:
        """Delete what the insert scenarios added (``category == "new"``) everywhere."""
        for collection in self.collections().values():
            await collection.delete_many({"category": "new"})

    def reset_for(self, key: str) -> Callable[[], Awaitable[object]]:
        """Return a reset that deletes what an insert scenario added to collection ``key``.

        Inserted documents have ``category == "new"``; the seeded ones never do. Cheaper
        than :meth:`reset_inserted` where every collection costs a round trip.
        """
        collection = self.collections()[key]

        async def reset() -> object:
            return await collection.delete_many({"category": "new"})

        return reset


@asynccontextmanager
async def open_stack(
    server: ServerKind, uri: str, *, plain: bool = False, docs: int = DOCS
) -> AsyncIterator[Stack]:
    """Connect every implementation to ``uri`` and seed ``docs`` documents each.

    Args:
        server: What ``uri`` is (for labels).
        uri: The server's URI.
        plain: Also seed and initialise ``QuietPlainItem`` (insightdb without tenancy).
        docs: Documents per collection.
    """
    patient = server == "embedded"
    settings = insight_settings(uri, patient=patient)
    options = client_options(settings)
    raw_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, **options)
    beanie_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, **options)
    stack = Stack(
        server=server,
        uri=uri,
        settings=settings,
        raw_client=raw_client,
        beanie_client=beanie_client,
        raw=raw_client[RAW_DB]["items"],
    )
    quiet_models: list[type[Any]] = [QuietItem] + ([QuietPlainItem] if plain else [])
    try:
        for key, collection in stack.collections().items():
            if key == "quiet_plain" and not plain:
                continue
            await collection.delete_many({})
            inserted = await collection.insert_many([item_fields(i) for i in range(docs)])
            stack.ids[key] = inserted.inserted_ids[docs // 2]
        await init_beanie(database=beanie_client[BEANIE_DB], document_models=[BeanieItem])
        await insightdb.init(settings, models=[InsightItem])
        stack.quiet = InsightDB(
            insight_settings(uri, names=QUIET_DBS, metrics=False, patient=patient),
            models=quiet_models,
        )
        await stack.quiet.start()
        yield stack
    finally:
        try:
            if stack.quiet is not None:
                await stack.quiet.close()
            await insightdb.close()
        finally:
            await beanie_client.close()
            await raw_client.close()
