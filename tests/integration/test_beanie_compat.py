"""What code written for plain Beanie meets: datetimes as it chose, no phantom collections.

``driver.tz_aware`` picks aware or naive datetimes, and the framework base classes
(``InsightDocument``, ``AdminDocument``, ``CustomerDocument``) never reach the server —
``init_beanie`` would otherwise read their indexes, and ``/metrics`` would show series for
collections nobody uses. A command listener registered on every client proves it.
"""

from __future__ import annotations

import datetime
import threading

import pytest
from pymongo import monitoring

import insightdb
from insightdb import AdminDocument, CustomerDocument, RoutingError, Settings
from insightdb.runtime.documents import FRAMEWORK_BASES, InsightDocument

pytestmark = pytest.mark.integration

BASE_NAMES = frozenset(base.__name__ for base in FRAMEWORK_BASES)
WHEN = datetime.datetime(2025, 3, 1, 12, 30, tzinfo=datetime.UTC)


class CommandLog(monitoring.CommandListener):
    """Records (database, collection, command) of every command a client starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        with self._lock:
            self.seen.append(
                (event.database_name, target if isinstance(target, str) else "", event.command_name)
            )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None

    def on(self, databases: set[str]) -> list[tuple[str, str, str]]:
        with self._lock:
            return [entry for entry in self.seen if entry[0] in databases]


LOG = CommandLog()
monitoring.register(LOG)  # global: every client created from now on reports to it


class CompatAccount(AdminDocument):
    name: str
    opened_at: datetime.datetime


class CompatOrder(CustomerDocument):
    total: int
    placed_at: datetime.datetime


MODELS = [CompatAccount, CompatOrder]


def databases(settings: Settings) -> set[str]:
    return {settings.databases.admin.name, settings.databases.customer.name}


async def test_base_classes_send_no_command(insightdb_settings: Settings) -> None:
    async with insightdb.connect(insightdb_settings, models=MODELS) as db:
        await CompatAccount(name="a", opened_at=WHEN).insert()
        await CompatOrder(total=3, placed_at=WHEN).insert()
        series = {(c.database, c.collection) for c in db.metrics().commands}
    seen = LOG.on(databases(insightdb_settings))
    assert {collection for _, collection, name in seen if name == "listIndexes"} == {
        "CompatAccount",
        "CompatOrder",
    }
    assert not [entry for entry in seen if entry[1] in BASE_NAMES]
    assert not {collection for _, collection in series} & BASE_NAMES


async def test_base_classes_stay_clean_across_repeated_init(insightdb_settings: Settings) -> None:
    for _ in range(2):
        async with insightdb.connect(insightdb_settings, models=MODELS):
            assert await CompatOrder(total=1, placed_at=WHEN).insert()
    assert not [e for e in LOG.on(databases(insightdb_settings)) if e[1] in BASE_NAMES]


@pytest.mark.parametrize("base", [InsightDocument, AdminDocument, CustomerDocument])
async def test_a_base_class_is_not_a_collection(
    insightdb_settings: Settings, base: type[InsightDocument]
) -> None:
    async with insightdb.connect(insightdb_settings, models=MODELS):
        collection = base.get_pymongo_collection()
        with pytest.raises(RoutingError, match=f"^{base.__name__} is a base class, not a coll"):
            collection.find_one  # noqa: B018 - the attribute access is what is refused
    assert not [e for e in LOG.on(databases(insightdb_settings)) if e[1] in BASE_NAMES]


async def test_datetimes_are_timezone_aware_by_default(insightdb_settings: Settings) -> None:
    assert insightdb_settings.driver.tz_aware is True
    async with insightdb.connect(insightdb_settings, models=MODELS):
        order = await CompatOrder(total=2, placed_at=WHEN).insert()
        found = await CompatOrder.get(order.id)
        raw = await CompatOrder.get_pymongo_collection().find_one({"_id": order.id})
    assert found is not None
    assert found.placed_at == WHEN
    assert found.placed_at.tzinfo is not None
    assert raw["placed_at"].tzinfo is not None


async def test_tz_aware_false_gives_naive_utc_datetimes(insightdb_settings: Settings) -> None:
    settings = insightdb_settings.model_copy(
        update={"driver": insightdb_settings.driver.model_copy(update={"tz_aware": False})}
    )
    async with insightdb.connect(settings, models=MODELS) as db:
        account = await CompatAccount(name="b", opened_at=WHEN).insert()
        found = await CompatAccount.get(account.id)
        raw = await db.database("admin")["CompatAccount"].find_one({"_id": account.id})
    assert found is not None
    assert found.opened_at.tzinfo is None
    assert found.opened_at == WHEN.replace(tzinfo=None)  # the same instant, in UTC
    assert raw["opened_at"] == WHEN.replace(tzinfo=None)


def test_tz_aware_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHTDB_DRIVER__TZ_AWARE", "false")
    assert insightdb.get_settings("testing", settings_files=[]).driver.tz_aware is False


async def test_init_takes_class_paths_modules_and_package_names(
    insightdb_settings: Settings,
) -> None:
    import models.customer.client as client_module

    # A class path (as init_beanie takes), a module, a package name and a class; Client
    # comes twice (module and package) and is routed once.
    specs = ["models.admin.user.User", client_module, "models.customer", CompatOrder]
    async with insightdb.connect(insightdb_settings, models=specs) as db:  # type: ignore[arg-type]
        assert [m.__name__ for m in db.models("admin")] == ["User"]
        # The package brings the reference application's other customer models too.
        assert [m.__name__ for m in db.models("customer")] == [
            "Client",
            "Branding",
            "Project",
            "CompatOrder",
        ]
        await CompatOrder(total=5, placed_at=WHEN).insert()
        assert await CompatOrder.count() == 1


async def test_init_refuses_an_unknown_model_entry_before_connecting(
    insightdb_settings: Settings,
) -> None:
    with pytest.raises(RoutingError, match=r"^init\(models=\.\.\.\): got a int object; expected"):
        await insightdb.init(insightdb_settings, models=[CompatOrder, 42])  # type: ignore[list-item]
    with pytest.raises(
        RoutingError, match=r"^init\(models=\.\.\.\): 'models\.admin\.Nobody' names"
    ):
        await insightdb.init(insightdb_settings, models=["models.admin.Nobody"])  # type: ignore[list-item]
