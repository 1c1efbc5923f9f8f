"""Model plugins on the server: timestamps, soft delete and the audit trail.

Each mixin alone and combined with ``TenantScoped`` (in both orders), through every
write path the issue names: ``insert``/``save``/``replace``, ``set``/``inc``, query
updates, ``update_many``, upserts and ``BulkWriter``; reads of every kind for soft
delete; audit records committed with their transaction and absent after an abort.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beanie import BulkWriter
from beanie.operators import Inc, Set
from pydantic import Field, SecretStr
from pymongo.operations import DeleteOne, InsertOne, UpdateOne

import insightdb
from insightdb import (
    AdminDocument,
    Audited,
    CustomerDocument,
    Settings,
    SoftDeletable,
    TenantScoped,
    Timestamped,
    actor_context,
    tenant_context,
    unscoped,
)
from insightdb.plugins import AUDIT_COLLECTION, include_deleted


class PlNote(Timestamped, AdminDocument):
    title: str
    views: int = 0


class PlTask(TenantScoped, Timestamped, CustomerDocument):
    title: str
    views: int = 0


class PlMemo(SoftDeletable, AdminDocument):
    title: str


class PlFile(SoftDeletable, TenantScoped, CustomerDocument):
    title: str
    size: int = 0


class PlAccount(Audited, AdminDocument):
    email: str
    api_key: SecretStr = SecretStr("")
    pin: str = Field(default="", json_schema_extra={"secret": True})

    __audit_values__ = True


class PlInvoice(Timestamped, SoftDeletable, Audited, TenantScoped, CustomerDocument):
    number: str
    total: int = 0


MODELS = [PlNote, PlTask, PlMemo, PlFile, PlAccount, PlInvoice]


@pytest.fixture
async def audited_db(insightdb_settings: Settings) -> AsyncIterator[insightdb.InsightDB]:
    features = insightdb_settings.features.model_copy(update={"audit_trail": True})
    settings = insightdb_settings.model_copy(update={"features": features})
    async with insightdb.connect(settings, models=MODELS) as db:
        yield db


async def audit_records(db: insightdb.InsightDB) -> list[dict[str, Any]]:
    cursor = db.database("admin")[AUDIT_COLLECTION].find({}, sort=[("_id", 1)])
    return list(await cursor.to_list())


def recent(value: datetime | None) -> bool:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)
    return abs(datetime.now(UTC) - value) < timedelta(seconds=30)


# -- Timestamped ---------------------------------------------------------------------


@pytest.mark.insightdb(models=MODELS)
async def test_timestamps_on_insert_save_and_replace(insightdb_db: insightdb.InsightDB) -> None:
    note = await PlNote(title="a").insert()
    assert recent(note.created_at)
    assert note.created_at == note.updated_at
    stored = await PlNote.get(note.id)
    assert stored is not None
    assert stored.created_at == note.created_at

    created = note.created_at
    note.title = "b"
    await note.save()
    assert note.created_at == created
    assert note.updated_at is not None
    assert note.updated_at >= created

    before = note.updated_at
    note.title = "c"
    await note.replace()
    again = await PlNote.get(note.id)
    assert again is not None
    assert again.created_at == created
    assert again.updated_at == note.updated_at
    assert note.updated_at >= before

    fresh = PlNote(title="saved new")
    await fresh.save()  # an upsert: created_at from the server, never null
    assert recent(fresh.created_at)


async def _aged(model: Any, **fields: Any) -> datetime:
    """Insert a document whose times are a day old (set around the plugin)."""
    old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    doc = await model(**fields).insert()
    with unscoped("test: age a document"):
        await model.get_pymongo_collection().raw.update_one(
            {"_id": doc.id}, {"$set": {"created_at": old, "updated_at": old}}
        )
    return old


@pytest.mark.insightdb(models=MODELS)
@pytest.mark.parametrize("model", [PlNote, PlTask], ids=["alone", "with-tenant"])
async def test_every_update_path_bumps_updated_at(
    insightdb_db: insightdb.InsightDB, model: Any
) -> None:
    async with tenant_context("acme"):
        old = await _aged(model, title="x")
        doc = await model.find_one(model.title == "x")
        assert doc.updated_at == old

        async def updated() -> datetime:
            current = await model.find_one(model.title == "x")
            assert current.created_at == old  # created_at never moves
            return current.updated_at  # type: ignore[no-any-return]

        paths = [
            lambda: doc.set({model.views: 1}),
            lambda: doc.inc({model.views: 1}),
            lambda: model.find(model.title == "x").update(Inc({model.views: 1})),
            lambda: model.find_one(model.title == "x").update(Inc({model.views: 1})),
            lambda: model.find(model.title == "x").update_many(Inc({model.views: 1})),
            lambda: model.find_all().update(Inc({model.views: 1})),
        ]
        for path in paths:
            await _reset(model, old)
            await path()
            assert recent(await updated())

        await _reset(model, old)
        async with BulkWriter() as writer:
            await model.find(model.title == "x").update(Inc({model.views: 1}), bulk_writer=writer)
            await model.insert_many([model(title="bulk")])
        assert recent(await updated())
        bulk = await model.find_one(model.title == "bulk")
        assert recent(bulk.created_at)
        assert bulk.created_at == bulk.updated_at

        await model.find_one(model.title == "upserted").upsert(
            Set({model.views: 5}), on_insert=model(title="upserted")
        )
        upserted = await model.find_one(model.title == "upserted")
        assert recent(upserted.created_at)
        assert recent(upserted.updated_at)
        await model.find(model.title == "upserted-raw").update(Set({model.views: 1}), upsert=True)
        raw_upsert = await model.find_one(model.title == "upserted-raw")
        assert recent(raw_upsert.created_at)


async def _reset(model: Any, old: datetime) -> None:
    with unscoped("test: reset the times"):
        await model.get_pymongo_collection().raw.update_many({}, {"$set": {"updated_at": old}})


@pytest.mark.insightdb(models=MODELS)
async def test_bulk_write_requests_are_stamped(insightdb_db: insightdb.InsightDB) -> None:
    async with tenant_context("acme"):
        collection = PlTask.get_pymongo_collection()
        await collection.bulk_write(
            [
                InsertOne({"title": "one"}),
                UpdateOne({"title": "two"}, {"$set": {"views": 2}}, upsert=True),
            ]
        )
        one = await PlTask.find_one(PlTask.title == "one")
        two = await PlTask.find_one(PlTask.title == "two")
        assert one is not None
        assert recent(one.created_at)
        assert recent(one.updated_at)
        assert two is not None
        assert recent(two.created_at)
        assert two.tenant_id == "acme"


# -- SoftDeletable -------------------------------------------------------------------


@pytest.mark.insightdb(models=MODELS)
async def test_a_soft_deleted_document_is_hidden_from_every_read(
    insightdb_db: insightdb.InsightDB,
) -> None:
    kept = await PlMemo(title="kept").insert()
    gone = await PlMemo(title="gone").insert()
    await gone.delete()
    assert gone.is_deleted
    assert recent(gone.deleted_at)

    assert [m.title for m in await PlMemo.find_all().to_list()] == ["kept"]
    assert await PlMemo.get(gone.id) is None
    assert await PlMemo.find_one(PlMemo.title == "gone") is None
    assert await PlMemo.count() == 1
    assert await PlMemo.distinct("title") == ["kept"]
    assert [d["title"] for d in await PlMemo.aggregate([]).to_list()] == ["kept"]
    assert await PlMemo.find(PlMemo.title == "gone").exists() is False
    # Writes don't reach it either.
    await PlMemo.find_all().update(Set({PlMemo.title: "renamed"}))
    with include_deleted():
        titles = sorted(m.title for m in await PlMemo.find_all().to_list())
        assert titles == ["gone", "renamed"]
        assert await PlMemo.count() == 2
    assert kept.id is not None


@pytest.mark.insightdb(models=MODELS)
async def test_restore_hard_delete_and_query_deletes(insightdb_db: insightdb.InsightDB) -> None:
    memo = await PlMemo(title="m").insert()
    await memo.delete()
    with include_deleted():
        hidden = await PlMemo.get(memo.id)
    assert hidden is not None
    await hidden.restore()
    assert hidden.deleted_at is None
    assert await PlMemo.get(memo.id) is not None

    await PlMemo.find(PlMemo.title == "m").delete()  # a query delete is soft too
    assert await PlMemo.count() == 0
    with include_deleted():
        assert await PlMemo.count() == 1
        again = await PlMemo.get(memo.id)
    assert again is not None
    await again.hard_delete()
    with include_deleted():
        assert await PlMemo.count() == 0

    async with BulkWriter() as writer:
        await PlMemo(title="b").insert()
        await PlMemo.find(PlMemo.title == "b").delete(bulk_writer=writer)
    with include_deleted():
        assert [m.is_deleted for m in await PlMemo.find_all().to_list()] == [True]


@pytest.mark.insightdb(models=MODELS)
async def test_soft_delete_is_scoped_to_the_tenant(insightdb_db: insightdb.InsightDB) -> None:
    async with tenant_context("acme"):
        mine = await PlFile(title="acme file").insert()
        await PlFile.get_pymongo_collection().bulk_write([DeleteOne({"_id": mine.id})])
        with include_deleted():
            assert [f.title for f in await PlFile.find_all().to_list()] == ["acme file"]
    async with tenant_context("globex"):
        await PlFile(title="globex file").insert()
        with include_deleted():
            # Another tenant's deleted document stays invisible, even when asking.
            assert [f.title for f in await PlFile.find_all().to_list()] == ["globex file"]
            assert await PlFile.get(mine.id) is None
        await PlFile.find_all().delete()
        assert await PlFile.count() == 0
    async with tenant_context("acme"), include_deleted():
        doc = await PlFile.get(mine.id)
        assert doc is not None
        assert doc.is_deleted
        await doc.restore()
    async with tenant_context("acme"):
        assert [f.title for f in await PlFile.find_all().to_list()] == ["acme file"]
    async with tenant_context("globex"), include_deleted():
        assert [f.is_deleted for f in await PlFile.find_all().to_list()] == [True]


# -- Audited -------------------------------------------------------------------------


@pytest.mark.insightdb(models=MODELS)
async def test_no_records_while_the_feature_is_off(insightdb_db: insightdb.InsightDB) -> None:
    await PlAccount(email="a@example.com").insert()
    assert await audit_records(insightdb_db) == []


async def test_every_write_is_recorded_without_secret_values(
    audited_db: insightdb.InsightDB,
) -> None:
    async with actor_context("user:7"):
        account = await PlAccount(
            email="a@example.com", api_key=SecretStr("sk-live-123"), pin="9876"
        ).insert()
        await account.set({PlAccount.email: "b@example.com"})
        account.pin = "1111"
        await account.replace()
        await account.delete()
    records = await audit_records(audited_db)
    assert [r["operation"] for r in records] == ["insert", "update", "replace", "delete"]
    assert all(r["actor"] == "user:7" and r["model"] == "PlAccount" for r in records)
    assert all(r["document_id"] == account.id and r["tenant_id"] is None for r in records)
    assert records[0]["fields"] == ["api_key", "email", "pin"]
    assert records[1]["fields"] == ["email"]
    assert records[1]["values"] == {"email": "b@example.com"}
    assert all(isinstance(r["at"], datetime) for r in records)
    text = repr(records)
    for secret in ("sk-live-123", "9876", "1111"):
        assert secret not in text


async def test_records_of_a_combined_model_carry_tenant_and_operations(
    audited_db: insightdb.InsightDB,
) -> None:
    async with tenant_context("acme"), actor_context("svc:billing"):
        invoice = await PlInvoice(number="F-1").insert()
        await PlInvoice.find(PlInvoice.number == "F-1").update(Inc({PlInvoice.total: 10}))
        await PlInvoice.find_all().update_many(Inc({PlInvoice.total: 1}))
        await invoice.delete()
        with include_deleted():
            stored = await PlInvoice.get(invoice.id)
            assert stored is not None
            assert recent(stored.updated_at)
            await stored.restore()
    records = await audit_records(audited_db)
    assert [r["operation"] for r in records] == [
        "insert",
        "update",
        "update",
        "soft_delete",
        "restore",
    ]
    assert {r["tenant_id"] for r in records} == {"acme"}
    assert records[2]["document_id"] is None
    assert records[2]["count"] == 1
    assert records[3]["fields"] == ["deleted_at"]


async def test_audit_records_of_a_rolled_back_transaction_are_absent(
    audited_db: insightdb.InsightDB,
) -> None:
    async def write_then_fail() -> None:
        async with audited_db.transaction(), tenant_context("acme"):
            await PlInvoice(number="F-2").insert()
            await PlAccount(email="c@example.com").insert()
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    assert await audit_records(audited_db) == []
    async with audited_db.transaction(), tenant_context("acme"):
        await PlInvoice(number="F-3").insert()
    assert [r["operation"] for r in await audit_records(audited_db)] == ["insert"]


def test_mixins_after_the_document_base_are_refused() -> None:
    with pytest.raises(TypeError, match="before the document base class"):

        class Wrong(AdminDocument, Timestamped):  # type: ignore[misc]
            title: str
