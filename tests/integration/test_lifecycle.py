"""Lifecycle against a real server: routing to databases, clients, init/close, backoff."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from beanie import Indexed
from loguru import logger
from pymongo import AsyncMongoClient

import insightdb
from insightdb import (
    AdminDocument,
    CustomerDocument,
    DatabaseUnavailable,
    RoutingError,
    Settings,
    get_settings,
)
from insightdb.testing.plugin import ResolvedServer


class Operator(AdminDocument):
    email: Indexed(str, unique=True)  # type: ignore[valid-type]

    class Settings:
        name = "operators"


class Shipment(CustomerDocument):
    tenant_id: str
    weight: int


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable_settings(uri: str, **startup: float) -> Settings:
    return get_settings(
        "testing",
        settings_files=[],
        overrides={
            "databases": {"admin": {"uri": uri}, "customer": {"uri": uri}},
            "startup": {"max_attempts": 3, "max_time_s": 2, "initial_delay_s": 0.05, **startup},
            "timeouts": {"server_selection_ms": 300, "connect_ms": 300},
        },
    )


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    lines: list[str] = []
    logger.enable("insightdb")
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink)
    logger.disable("insightdb")


@pytest.mark.insightdb(models=[Operator, Shipment])
async def test_models_land_in_their_group_database(
    insightdb_db: insightdb.InsightDB, insightdb_settings: Settings
) -> None:
    await Operator(email="ops@example.com").insert()
    await Shipment(tenant_id="t1", weight=3).insert()

    raw: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        insightdb_settings.databases.admin.uri
    )
    try:
        admin_db = raw[insightdb_settings.databases.admin.name]
        customer_db = raw[insightdb_settings.databases.customer.name]
        assert await admin_db["operators"].count_documents({}) == 1
        assert await customer_db["Shipment"].count_documents({}) == 1
        assert "operators" not in await customer_db.list_collection_names()
        assert "Shipment" not in await admin_db.list_collection_names()
        # The framework bases never become collections of their own.
        for db in (admin_db, customer_db):
            names = set(await db.list_collection_names())
            assert not names & {"AdminDocument", "CustomerDocument", "InsightDocument"}
    finally:
        await raw.close()

    assert insightdb_db.database("admin").name == insightdb_settings.databases.admin.name
    assert insightdb_db.models("customer") == (Shipment,)
    assert (await insightdb_db.health()).status == "ok"


@pytest.mark.insightdb(models=[Operator, Shipment])
async def test_unique_index_created_per_model(insightdb_db: insightdb.InsightDB) -> None:
    from pymongo.errors import DuplicateKeyError

    await Operator(email="dup@example.com").insert()
    with pytest.raises(DuplicateKeyError):
        await Operator(email="dup@example.com").insert()


@pytest.mark.insightdb(models=[Operator, Shipment])
async def test_one_client_when_both_groups_share_a_cluster(
    insightdb_db: insightdb.InsightDB,
) -> None:
    assert insightdb_db.client("admin") is insightdb_db.client("customer")


async def test_two_clients_when_clusters_differ(
    insightdb_settings: Settings, insightdb_server: ResolvedServer
) -> None:
    # The same server reached under two host names is two clusters as far as URIs go.
    other = insightdb_server.uri.replace("127.0.0.1", "localhost")
    assert other != insightdb_server.uri
    settings = insightdb_settings.model_copy(
        update={
            "databases": insightdb_settings.databases.model_copy(
                update={
                    "customer": insightdb_settings.databases.customer.model_copy(
                        update={"uri": other}
                    )
                }
            )
        }
    )
    async with insightdb.connect(settings, models=[Operator, Shipment]) as db:
        assert db.client("admin") is not db.client("customer")
        await Shipment(tenant_id="t", weight=1).insert()
        assert await Shipment.count() == 1


async def test_init_twice_and_close_twice(insightdb_settings: Settings) -> None:
    first = await insightdb.init(insightdb_settings, models=[Operator, Shipment])
    await Operator(email="a@example.com").insert()
    second = await insightdb.init(insightdb_settings, models=[Operator, Shipment])
    assert not first.started  # the second init replaced the first
    assert insightdb.current() is second
    assert await Operator.count() == 1
    await insightdb.close()
    await insightdb.close()  # a second close is a no-op
    assert not second.started

    third = await insightdb.init(insightdb_settings, models=[Operator, Shipment])
    try:
        assert await Operator.find_one(Operator.email == "a@example.com") is not None
    finally:
        await insightdb.close()
    with pytest.raises(insightdb.InsightDBError, match="not started"):
        insightdb.current()
    with pytest.raises(insightdb.InsightDBError, match="not started"):
        third.database("admin")


async def test_start_again_after_close_on_the_same_instance(insightdb_settings: Settings) -> None:
    """A restarted instance hands out drivers of its new clients, not the closed ones."""
    db = insightdb.InsightDB(insightdb_settings, models=[Operator, Shipment])
    await db.start()
    await db.close()
    await db.start()
    try:
        await Operator(email="again@example.com").insert()
        admin = db.database("admin")
        assert await admin["operators"].count_documents({"email": "again@example.com"}) == 1
        assert await db.client("admin").list_database_names()
    finally:
        await db.close()


async def test_models_defined_after_an_earlier_init_work(insightdb_settings: Settings) -> None:
    """Beanie issue 1228: init_beanie dirties shared base classes; later models broke."""
    base_attrs = {cls: dict(vars(cls)) for cls in (AdminDocument, CustomerDocument)}

    class Early(AdminDocument):
        label: str = ""

    async with insightdb.connect(insightdb_settings, models=[Early]):
        await Early(label="one").insert()

    for cls, attrs in base_attrs.items():
        assert dict(vars(cls)) == attrs, f"{cls.__name__} was modified by init"

    class Late(AdminDocument):
        label: str = ""

    class LateCustomer(CustomerDocument):
        label: str = ""

    async with insightdb.connect(insightdb_settings, models=[Early, Late, LateCustomer]):
        assert Late().id is None
        late = await Late(label="two").insert()
        assert late.id is not None
        assert (await LateCustomer(label="three").insert()).id is not None
        assert await Early.count() == 1

    class Later(AdminDocument):
        label: str = ""

    async with insightdb.connect(insightdb_settings, models=[Later]):
        assert (await Later(label="four").insert()).id is not None


async def test_routing_error_before_any_connection(captured_logs: list[str]) -> None:
    class Stray(AdminDocument, CustomerDocument):  # type: ignore[misc]
        x: int = 0

    settings = _unreachable_settings(f"mongodb://127.0.0.1:{_closed_port()}/?directConnection=true")
    started = time.monotonic()
    with pytest.raises(RoutingError, match=r"^Stray derives from both"):
        await insightdb.init(settings, models=[Stray])
    assert time.monotonic() - started < 0.5  # no connection attempt was made
    assert not any("not reachable" in line for line in captured_logs)


async def test_backoff_gives_up_within_its_bound(captured_logs: list[str]) -> None:
    password = "pa55-w0rd-x"
    uri = f"mongodb://svc:{password}@127.0.0.1:{_closed_port()}/?directConnection=true"
    settings = _unreachable_settings(uri, max_attempts=10, max_time_s=2)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as info:
        await insightdb.init(settings, models=[Operator])
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 1.0, f"gave up after {elapsed:.2f}s, bound is 2s"
    message = str(info.value)
    assert message.startswith("admin+customer: not reachable after ")
    assert "within 2s" in message
    assert "\n" not in message
    assert info.value.driver_error is not None
    assert info.value.__cause__ is info.value.driver_error
    # Retries were logged, and no log line or error carries the password.
    assert any("retrying" in line for line in captured_logs)
    for text in [message, repr(info.value), *captured_logs]:
        assert password not in text
    with pytest.raises(insightdb.InsightDBError):
        insightdb.current()


async def test_backoff_respects_max_attempts() -> None:
    settings = _unreachable_settings(
        f"mongodb://127.0.0.1:{_closed_port()}/?directConnection=true",
        max_attempts=2,
        max_time_s=30,
    )
    with pytest.raises(DatabaseUnavailable, match=r"not reachable after 2 attempt\(s\)"):
        await insightdb.init(settings, models=[Operator])


async def test_health_reports_down_when_the_server_goes_away(
    insightdb_settings: Settings,
) -> None:
    from insightdb.testing import EmbeddedServer

    with EmbeddedServer() as server:
        settings = get_settings(
            "testing",
            settings_files=[],
            overrides={
                "databases": {"admin": {"uri": server.uri}, "customer": {"uri": server.uri}},
                "timeouts": {"server_selection_ms": 300},
            },
        )
        db = await insightdb.init(settings, models=[Operator])
        try:
            assert (await db.health()).status == "ok"
            server.stop()
            started = time.monotonic()
            report = await db.health(timeout_s=1.0)
            assert time.monotonic() - started < 2.0
            assert report.status == "down"
            assert not report.ready
            assert report.groups["admin"].error
        finally:
            await insightdb.close()


@pytest.mark.insightdb(models=[Operator, Shipment])
async def test_health_reports_pending_migrations(insightdb_db: insightdb.InsightDB) -> None:
    report = await insightdb_db.health()
    assert report.migrations is not None
    pending = report.migrations["pending"]
    # The repository's migrations/ folder has revisions for both groups; these fresh
    # databases have applied none of them.
    assert pending["admin"]
    assert pending["customer"]
    assert report.ready  # pending migrations are data here; readiness decides per mode
    assert report.to_dict()["migrations"] == {"pending": pending}
    assert (await insightdb_db.health(migrations=False)).migrations is None
