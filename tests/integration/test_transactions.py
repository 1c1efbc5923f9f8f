"""Transactions over both databases: commit together, abort together, clear refusals."""

from __future__ import annotations

import pytest
from pymongo.errors import DuplicateKeyError

import insightdb
from insightdb import (
    AdminDocument,
    CustomerDocument,
    Settings,
    TenantScoped,
    TransactionError,
    tenant_context,
)
from insightdb.testing.plugin import ResolvedServer


class TxAccount(AdminDocument):
    email: str

    class Settings:
        name = "tx_accounts"


class TxSeat(TenantScoped, CustomerDocument):
    email: str


MODELS = [TxAccount, TxSeat]


@pytest.mark.insightdb(models=MODELS)
async def test_commit_writes_both_databases(insightdb_db: insightdb.InsightDB) -> None:
    async with tenant_context("acme"):
        async with insightdb_db.transaction() as session:
            await TxAccount(email="ada@example.com").insert(session=session)
            await TxSeat(email="ada@example.com").insert(session=session)
        assert await TxAccount.count() == 1
        assert await TxSeat.count() == 1


@pytest.mark.insightdb(models=MODELS)
async def test_an_error_in_the_block_aborts_both(insightdb_db: insightdb.InsightDB) -> None:
    async def write_then_fail() -> None:
        async with insightdb_db.transaction() as session:
            await TxAccount(email="bob@example.com").insert(session=session)
            await TxSeat(email="bob@example.com").insert(session=session)
            raise RuntimeError("boom")

    async with tenant_context("acme"):
        with pytest.raises(RuntimeError, match="boom"):
            await write_then_fail()
        assert await TxAccount.count() == 0
        assert await TxSeat.count() == 0


@pytest.mark.insightdb(models=MODELS)
async def test_a_driver_error_in_the_block_keeps_its_type(
    insightdb_db: insightdb.InsightDB,
) -> None:
    first = await TxAccount(email="c@example.com").insert()

    async def write_a_duplicate() -> None:
        async with insightdb_db.transaction(groups=["admin"]) as session:
            await TxAccount(email="d@example.com").insert(session=session)
            await TxAccount(id=first.id, email="dup@example.com").insert(session=session)

    with pytest.raises(DuplicateKeyError):
        await write_a_duplicate()
    assert [a.email for a in await TxAccount.find_all().to_list()] == ["c@example.com"]


async def test_groups_on_different_clusters_are_refused(
    insightdb_settings: Settings, insightdb_server: ResolvedServer
) -> None:
    other = insightdb_server.uri.replace("127.0.0.1", "localhost")
    databases = insightdb_settings.databases
    settings = insightdb_settings.model_copy(
        update={
            "databases": databases.model_copy(
                update={"customer": databases.customer.model_copy(update={"uri": other})}
            )
        }
    )
    async with insightdb.connect(settings, models=MODELS) as db:
        with pytest.raises(TransactionError, match="different clusters"):
            async with db.transaction():
                pass
        async with (
            db.transaction(groups=["customer"]) as session,  # one group is fine
            tenant_context("acme"),
        ):
            await TxSeat(email="e@example.com").insert(session=session)


@pytest.mark.insightdb(models=MODELS)
async def test_no_groups_is_refused(insightdb_db: insightdb.InsightDB) -> None:
    with pytest.raises(TransactionError, match="at least one group"):
        async with insightdb_db.transaction(groups=[]):
            pass
