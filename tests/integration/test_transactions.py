"""Transactions over both databases: commit together, abort together, clear refusals.

Operations inside a block join it without ``session=`` (the context variable of
:mod:`insightdb.session_context`); the tests below write without it unless they test
the explicit form.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError, OperationFailure

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


async def test_groups_on_different_clusters_are_refused_naming_the_hosts(
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
        with pytest.raises(TransactionError, match="different clusters") as caught:
            async with db.transaction():
                pass
        port = other.rsplit(":", 1)[1].split("/")[0].split("?")[0]
        assert f"localhost:{port}" in str(caught.value)
        assert f"127.0.0.1:{port}" in str(caught.value)
        async with (
            db.transaction(groups=["customer"]) as session,  # one group is fine
            tenant_context("acme"),
        ):
            await TxSeat(email="e@example.com").insert(session=session)
            await TxSeat(email="f@example.com").insert()  # joins without session=
            # The admin database is on the other cluster: refused, not run outside.
            with pytest.raises(TransactionError, match="another cluster"):
                await TxAccount(email="g@example.com").insert()
        async with tenant_context("acme"):
            assert await TxSeat.count() == 2
        assert await TxAccount.count() == 0


@pytest.mark.insightdb(models=MODELS)
async def test_no_groups_is_refused(insightdb_db: insightdb.InsightDB) -> None:
    with pytest.raises(TransactionError, match="at least one group"):
        async with insightdb_db.transaction(groups=[]):
            pass


# -- no session= ---------------------------------------------------------------------


@pytest.mark.insightdb(models=MODELS)
async def test_writes_without_session_commit_to_both_databases(
    insightdb_db: insightdb.InsightDB,
) -> None:
    async with tenant_context("acme"):
        async with insightdb_db.transaction():
            await TxAccount(email="ada@example.com").insert()
            await TxSeat(email="ada@example.com").insert()
            # Reads inside the block see the block's own writes.
            assert await TxAccount.count() == 1
            assert await TxSeat.find_one(TxSeat.email == "ada@example.com") is not None
        assert await TxAccount.count() == 1
        assert await TxSeat.count() == 1


@pytest.mark.insightdb(models=MODELS)
async def test_a_write_without_session_is_rolled_back_with_the_rest(
    insightdb_db: insightdb.InsightDB,
) -> None:
    async with tenant_context("acme"):
        seat = await TxSeat(email="kept@example.com").insert()

        async def write_then_fail() -> None:
            async with insightdb.transaction():  # the module-level form
                await TxAccount(email="bob@example.com").insert(session=None)
                await TxSeat(email="bob@example.com").insert()
                await seat.set({TxSeat.email: "changed@example.com"})
                await TxSeat.find(TxSeat.email == "kept@example.com").delete()
                raise RuntimeError("payment declined")

        with pytest.raises(RuntimeError, match="declined"):
            await write_then_fail()
        assert await TxAccount.count() == 0
        assert [s.email for s in await TxSeat.find_all().to_list()] == ["kept@example.com"]


@pytest.mark.insightdb(models=MODELS)
async def test_an_explicit_session_wins(insightdb_db: insightdb.InsightDB) -> None:
    client = insightdb_db.client("admin")

    async def write_then_fail(own: Any) -> None:
        async with insightdb_db.transaction():
            await TxAccount(email="outside@example.com").insert(session=own)
            await TxAccount(email="inside@example.com").insert()
            raise RuntimeError("abort")

    async with client.start_session() as own:
        with pytest.raises(RuntimeError):
            await write_then_fail(own)
    assert [a.email for a in await TxAccount.find_all().to_list()] == ["outside@example.com"]


@pytest.mark.insightdb(models=MODELS)
async def test_operations_after_the_block_run_outside_it(
    insightdb_db: insightdb.InsightDB,
) -> None:
    async with insightdb_db.transaction():
        await TxAccount(email="a@example.com").insert()
    await TxAccount(email="b@example.com").insert()  # no transaction: lands at once
    assert await TxAccount.count() == 2


# -- retries -------------------------------------------------------------------------


def _transient() -> OperationFailure:
    return OperationFailure(
        "WriteConflict (simulated)",
        code=112,
        details={"errorLabels": ["TransientTransactionError"]},
    )


@pytest.mark.insightdb(models=MODELS)
async def test_a_transient_error_reruns_the_block_and_its_effects_land_once(
    insightdb_db: insightdb.InsightDB,
) -> None:
    runs = 0
    async with tenant_context("acme"):
        async for attempt in insightdb_db.transaction():
            async with attempt:
                runs += 1
                await TxAccount(email=f"run{runs}@example.com").insert()
                await TxSeat(email="seat@example.com").insert()
                if runs < 3:
                    raise _transient()
        assert runs == 3
        assert [a.email for a in await TxAccount.find_all().to_list()] == ["run3@example.com"]
        assert await TxSeat.count() == 1


@pytest.mark.insightdb(models=MODELS)
async def test_run_retries_the_callback_and_returns_its_result(
    insightdb_db: insightdb.InsightDB,
) -> None:
    calls: list[str] = []

    async def transfer(email: str) -> str:
        calls.append(email)
        await TxAccount(email=email).insert()
        if len(calls) == 1:
            raise _transient()
        return "done"

    assert await insightdb_db.transaction().run(transfer, "x@example.com") == "done"
    assert calls == ["x@example.com", "x@example.com"]
    assert await TxAccount.count() == 1


@pytest.mark.insightdb(models=MODELS)
async def test_retries_are_bounded(insightdb_db: insightdb.InsightDB) -> None:
    async def always_conflicts() -> None:
        await TxAccount(email="never@example.com").insert()
        raise _transient()

    with pytest.raises(TransactionError, match="after 2 attempt") as caught:
        await insightdb_db.transaction(max_attempts=2).run(always_conflicts)
    assert isinstance(caught.value.driver_error, OperationFailure)
    assert await TxAccount.count() == 0


@pytest.mark.insightdb(models=MODELS)
async def test_a_plain_block_is_one_attempt_and_keeps_the_transient_error(
    insightdb_db: insightdb.InsightDB,
) -> None:

    async def write_then_conflict() -> None:
        async with insightdb_db.transaction():
            await TxAccount(email="once@example.com").insert()
            raise _transient()

    with pytest.raises(OperationFailure) as caught:
        await write_then_conflict()
    assert caught.value.has_error_label("TransientTransactionError")
    assert await TxAccount.count() == 0


@pytest.mark.insightdb(models=MODELS)
async def test_an_unknown_commit_result_retries_the_commit_only(
    insightdb_db: insightdb.InsightDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymongo.asynchronous.client_session import AsyncClientSession

    real_commit = AsyncClientSession.commit_transaction
    commits = 0

    async def flaky_commit(self: AsyncClientSession) -> None:
        nonlocal commits
        commits += 1
        if commits == 1:
            raise OperationFailure(
                "commit result unknown (simulated)",
                code=91,
                details={"errorLabels": ["UnknownTransactionCommitResult"]},
            )
        await real_commit(self)

    monkeypatch.setattr(AsyncClientSession, "commit_transaction", flaky_commit)
    runs = 0
    async with insightdb_db.transaction():
        runs += 1
        await TxAccount(email="commit@example.com").insert()
    assert (runs, commits) == (1, 2)
    assert await TxAccount.count() == 1


@pytest.mark.insightdb(models=MODELS)
async def test_a_deployment_without_transactions_is_a_clear_error(
    insightdb_db: insightdb.InsightDB,
) -> None:
    standalone = OperationFailure(
        "Transaction numbers are only allowed on a replica set member or mongos", code=20
    )
    with pytest.raises(TransactionError, match="does not support transactions") as caught:
        async with insightdb_db.transaction():
            raise standalone  # what a standalone mongod answers to the first write
    assert caught.value.driver_error is standalone


# -- isolation, nesting and tasks ----------------------------------------------------


@pytest.mark.insightdb(models=MODELS)
async def test_concurrent_transactions_do_not_see_each_others_uncommitted_writes(
    insightdb_db: insightdb.InsightDB,
) -> None:
    first_wrote = asyncio.Event()
    second_looked = asyncio.Event()
    seen: dict[str, Any] = {}

    async def first() -> None:
        async with insightdb_db.transaction():
            await TxAccount(email="first@example.com").insert()
            first_wrote.set()
            await second_looked.wait()

    async def second() -> None:
        await first_wrote.wait()
        async with insightdb_db.transaction():
            seen["inside"] = await TxAccount.count()
        seen["outside"] = await TxAccount.count()
        second_looked.set()

    await asyncio.gather(first(), second())
    assert seen == {"inside": 0, "outside": 0}
    assert await TxAccount.count() == 1


@pytest.mark.insightdb(models=MODELS)
async def test_a_nested_block_joins_the_enclosing_transaction(
    insightdb_db: insightdb.InsightDB,
) -> None:

    async def nested_then_fail() -> None:
        async with insightdb_db.transaction() as outer:
            async with insightdb_db.transaction(groups=["admin"]) as inner:
                await TxAccount(email="inner@example.com").insert()
            assert inner is outer
            raise RuntimeError("the outer block fails")

    with pytest.raises(RuntimeError):
        await nested_then_fail()
    assert await TxAccount.count() == 0  # the inner write was part of the outer one


@pytest.mark.insightdb(models=MODELS)
async def test_a_failed_nested_block_dooms_the_transaction_even_if_caught(
    insightdb_db: insightdb.InsightDB,
) -> None:

    async def swallow_an_inner_failure() -> None:
        async with insightdb_db.transaction():
            await TxAccount(email="outer@example.com").insert()
            try:
                async with insightdb_db.transaction():
                    raise ValueError("inner")
            except ValueError:
                pass

    with pytest.raises(TransactionError, match="nested transaction block failed"):
        await swallow_an_inner_failure()
    assert await TxAccount.count() == 0


@pytest.mark.insightdb(models=MODELS)
async def test_a_task_started_inside_the_block_neither_joins_nor_leaves_silently(
    insightdb_db: insightdb.InsightDB,
) -> None:
    async def background_write() -> None:
        await TxAccount(email="task@example.com").insert()

    async def own_transaction() -> None:
        async with insightdb_db.transaction():  # its own, independent transaction
            await TxAccount(email="own@example.com").insert()

    async def block() -> None:
        async with insightdb_db.transaction():
            with pytest.raises(TransactionError, match="not the task that opened it"):
                await asyncio.create_task(background_write())
            with pytest.raises(TransactionError, match="not the task that opened it"):
                await asyncio.gather(background_write())
            await asyncio.create_task(own_transaction())
            await TxAccount(email="block@example.com").insert()
            raise RuntimeError("abort the block only")

    with pytest.raises(RuntimeError):
        await block()
    assert [a.email for a in await TxAccount.find_all().to_list()] == ["own@example.com"]
