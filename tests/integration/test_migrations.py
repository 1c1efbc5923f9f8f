"""Migrations against the server the plugin resolves, in process: each test its own databases.

Revision files are written into a scratch ``migrations/`` folder per test. Every test is
bounded by :func:`bounded`; documents per collection stay in the hundreds (the embedded
server's bulk inserts are slow).
"""

from __future__ import annotations

import asyncio
import functools
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest
from pymongo import AsyncMongoClient

import insightdb
from insightdb.exceptions import MigrationError, MigrationLockError, MultipleHeadsError
from insightdb.migrations import RunOptions, command, pending_migrations, upgrade
from insightdb.revisions.lock import LOCK_COLLECTION, MigrationLock
from insightdb.revisions.log import LOG_COLLECTION
from insightdb.settings import Settings
from insightdb.testing.plugin import ResolvedServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
P = ParamSpec("P")
R = TypeVar("R")
QUIET = RunOptions(progress="off", batch_size=100)


def bounded(seconds: float) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Fail an async test that runs longer than ``seconds``."""

    def decorate(test: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(test)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            async with asyncio.timeout(seconds):
                return await test(*args, **kwargs)

        return run

    return decorate


def revision(
    settings: Settings,
    group: str,
    rev: str,
    down: str | tuple[str, ...] | None,
    upgrade_body: str = "pass",
    downgrade_body: str = "pass",
    header: str = "",
    name: str | None = None,
) -> Path:
    """Write a function-style revision file and return its path."""
    folder = Path(settings.migrations_dir) / group
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or rev}.py"
    text = (
        f'"""Revision {rev}"""\n\n{textwrap.dedent(header)}\n'
        f"revision = {rev!r}\ndown_revision = {down!r}\n\n\n"
        f"async def upgrade(ctx):\n{textwrap.indent(textwrap.dedent(upgrade_body), '    ')}\n\n\n"
        f"async def downgrade(ctx):\n{textwrap.indent(textwrap.dedent(downgrade_body), '    ')}\n"
    )
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def settings(insightdb_settings: Settings, tmp_path: Path) -> Settings:
    return insightdb_settings.model_copy(update={"migrations_dir": str(tmp_path / "migrations")})


@pytest.fixture
async def client(insightdb_server: ResolvedServer) -> AsyncIterator[AsyncMongoClient[Any]]:
    async with AsyncMongoClient[dict[str, Any]](insightdb_server.uri) as opened:
        yield opened


def dbs(client: AsyncMongoClient[Any], settings: Settings) -> tuple[Any, Any]:
    return (
        client[settings.database("admin").name],
        client[settings.database("customer").name],
    )


MARK = """
await ctx.database["marks"].update_one(
    {"_id": ctx.revision}, {"$inc": {"runs": 1}}, upsert=True
)
"""
UNMARK = 'await ctx.database["marks"].delete_one({"_id": ctx.revision})'


@bounded(60)
async def test_new_up_status_down_up_across_both_groups(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    admin, customer = dbs(client, settings)
    await admin["users"].insert_many([{"_id": i, "email": f"u{i}@x.io"} for i in range(150)])
    await customer["clients"].insert_many([{"_id": i, "tenant_id": "t"} for i in range(120)])
    paths = {
        "admin": command.new(settings, "add_role_index", group="admin"),
        "customer": command.new(settings, "backfill_status", group="customer"),
    }
    paths["admin"].write_text(
        paths["admin"]
        .read_text()
        .replace(
            '    """Apply this revision to the admin database."""',
            '    """Apply."""\n'
            '    await ctx.database["users"].create_index("role", name="role_1")\n'
            + textwrap.indent(MARK, "    "),
        )
        .replace(
            '    """Undo upgrade() on the admin database."""',
            '    """Undo."""\n    await ctx.database["users"].drop_index("role_1")\n    ' + UNMARK,
        )
    )
    paths["customer"].write_text(
        paths["customer"]
        .read_text()
        .replace(
            '    """Apply this revision to the customer database."""',
            '    """Apply."""\n    await ctx.update_with_pipeline("clients", '
            '{"status": {"$exists": False}}, [{"$set": {"status": "active"}}], batch_size=50)',
        )
        .replace(
            '    """Undo upgrade() on the customer database."""',
            '    """Undo."""\n    await ctx.database["clients"].update_many({}, '
            '{"$unset": {"status": ""}})',
        )
    )
    second = command.new(settings, "backfill_names", group="admin")
    second.write_text(
        second.read_text().replace(
            '    """Apply this revision to the admin database."""',
            '    """Apply."""\n    await ctx.for_each("users", lambda u: {"$set": {"name": '
            'u["email"].split("@")[0]}}, filter={"name": {"$exists": False}})',
        )
    )

    results = await command.up(settings, options=QUIET)
    assert [len(r.revisions) for r in results] == [2, 1]
    assert results[0].documents == 150
    assert results[1].documents == 120
    states = await command.status(settings)
    assert all(s.up_to_date for s in states)
    assert [r.state for r in states[0].revisions] == ["applied", "applied"]
    assert await customer["clients"].count_documents({"status": "active"}) == 120
    assert await admin["users"].count_documents({"name": {"$exists": True}}) == 150
    assert "role_1" in await admin["users"].index_information()

    undone = await command.down(settings, steps=1, options=QUIET)
    assert [len(r.revisions) for r in undone] == [1, 1]
    states = await command.status(settings)
    assert [len(s.pending) for s in states] == [1, 1]
    assert states[0].current == (paths["admin"].name.split("_")[0],)
    assert await customer["clients"].count_documents({"status": {"$exists": True}}) == 0

    again = await command.up(settings, options=QUIET)
    assert [len(r.revisions) for r in again] == [1, 1]
    assert all(s.up_to_date for s in await command.status(settings))
    nothing = await command.up(settings, options=QUIET)
    assert [r.revisions for r in nothing] == [(), ()]
    await command.down(settings, group="admin", to="base", options=QUIET)
    assert await admin["marks"].count_documents({}) == 0
    assert "role_1" not in await admin["users"].index_information()


@bounded(60)
async def test_dry_run_touches_nothing(settings: Settings, client: AsyncMongoClient[Any]) -> None:
    admin, customer = dbs(client, settings)
    await admin["items"].insert_many([{"_id": i} for i in range(10)])
    revision(settings, "admin", "a1", None, MARK)
    revision(
        settings, "admin", "a2", "a1", 'await ctx.for_each("items", lambda d: {"$set": {"x": 1}})'
    )
    revision(settings, "customer", "c1", None, MARK)

    results = await command.up(settings, dry_run=True, options=QUIET)
    assert [[r.revision for r in res.revisions] for res in results] == [["a1", "a2"], ["c1"]]
    assert all(r.dry_run for r in results)
    assert await admin.list_collection_names() == ["items"]
    assert await customer.list_collection_names() == []
    assert await admin["items"].count_documents({"x": {"$exists": True}}) == 0

    await command.up(settings, options=QUIET)
    before = sorted(await admin.list_collection_names())
    log_before = await admin[LOG_COLLECTION].find().to_list()
    planned = await command.down(settings, to="base", dry_run=True, options=QUIET)
    assert [[r.revision for r in res.revisions] for res in planned] == [["a2", "a1"], ["c1"]]
    assert sorted(await admin.list_collection_names()) == before
    assert await admin[LOG_COLLECTION].find().to_list() == log_before


@bounded(90)
async def test_failure_midway_is_recorded_and_rerun_resumes_without_redoing_batches(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    admin, _ = dbs(client, settings)
    await admin["items"].insert_many([{"_id": i} for i in range(600)])
    body = """
    async def bump(doc):
        if doc["_id"] == 350 and not FIXED:
            raise RuntimeError("item 350 is malformed")
        return {"$inc": {"writes": 1}}

    await ctx.for_each("items", bump, batch_size=100)
    """
    path = revision(settings, "admin", "r1", None, body, header="FIXED = False\n")

    with pytest.raises(MigrationError) as info:
        await command.up(settings, group="admin", options=QUIET)
    message = str(info.value)
    assert "r1" in message
    assert "RuntimeError: item 350 is malformed" in message
    assert "\n" not in message
    [state] = await command.status(settings, group="admin")
    assert [r.state for r in state.revisions] == ["failed"]
    assert state.revisions[0].entry is not None
    assert "item 350" in (state.revisions[0].entry.error or "")
    assert state.lock_owner is None
    assert await admin[LOCK_COLLECTION].count_documents({"owner": {"$ne": None}}) == 0
    log = await admin[LOG_COLLECTION].find_one({"_id": "r1"})
    assert log is not None
    assert log["checkpoints"]["items#0"]["after"] == 299
    assert await admin["items"].count_documents({"writes": 1}) == 300
    assert await admin["items"].count_documents({"writes": {"$exists": False}}) == 300

    path.write_text(path.read_text().replace("FIXED = False", "FIXED = True"))
    [result] = await command.up(settings, group="admin", options=QUIET)
    assert [r.revision for r in result.revisions] == ["r1"]
    assert result.documents == 300  # only the batches that had not finished
    assert await admin["items"].count_documents({"writes": 1}) == 600
    log = await admin[LOG_COLLECTION].find_one({"_id": "r1"})
    assert log is not None
    assert log["status"] == "applied"
    assert log["documents"] == 600
    assert "checkpoints" not in log


@bounded(90)
async def test_transactional_batches_roll_back_a_failed_batch(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    admin, _ = dbs(client, settings)
    await admin["items"].insert_many([{"_id": i} for i in range(300)])
    body = """
    coll = ctx.database["items"]
    async for batch in ctx.batches("items", batch_size=100):
        ids = [d["_id"] for d in batch]
        await coll.update_many({"_id": {"$in": ids}}, {"$inc": {"writes": 1}}, session=ctx.session)
        if 150 in ids and not FIXED:
            raise RuntimeError("failed after writing the batch")
    """
    header = "FIXED = False\nuse_transaction = True\n"
    path = revision(settings, "admin", "t1", None, body, header=header)
    with pytest.raises(MigrationError, match="failed after writing the batch"):
        await command.up(settings, group="admin", options=QUIET)
    # The second batch wrote, then raised: its transaction was rolled back.
    assert await admin["items"].count_documents({"writes": 1}) == 100
    path.write_text(path.read_text().replace("FIXED = False", "FIXED = True"))
    await command.up(settings, group="admin", options=QUIET)
    assert await admin["items"].count_documents({"writes": 1}) == 300


@bounded(60)
async def test_changed_checksum_is_reported_and_refused(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    path = revision(settings, "customer", "c1", None, MARK)
    revision(settings, "customer", "c2", "c1", MARK)
    await command.up(settings, group="customer", options=QUIET)
    path.write_text(path.read_text() + "\n# edited after it was applied\n")

    [state] = await command.status(settings, group="customer")
    assert [(r.state, r.changed) for r in state.revisions] == [
        ("applied", True),
        ("applied", False),
    ]
    assert state.up_to_date  # changed is reported, not pending
    revision(settings, "customer", "c3", "c2", MARK)
    with pytest.raises(MigrationError, match=r"c1 \(c1.py\) changed since it was applied.*--allow"):
        await command.up(settings, group="customer", options=QUIET)
    [result] = await command.up(settings, group="customer", allow_changed=True, options=QUIET)
    assert [r.revision for r in result.revisions] == ["c3"]
    [state] = await command.status(settings, group="customer")
    assert not state.changed
    _, customer = dbs(client, settings)
    assert await customer["marks"].find_one({"_id": "c1"}) == {"_id": "c1", "runs": 1}


@bounded(60)
async def test_stamp_adopts_a_database_without_running(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    admin, _ = dbs(client, settings)
    for rev, down in (("s1", None), ("s2", "s1"), ("s3", "s2")):
        revision(settings, "admin", rev, down, MARK)

    result = await command.stamp(settings, "s2", group="admin")
    assert [r.revision for r in result.revisions] == ["s1", "s2"]
    [state] = await command.status(settings, group="admin")
    assert [r.state for r in state.revisions] == ["applied", "applied", "pending"]
    assert state.revisions[0].entry is not None
    assert state.revisions[0].entry.stamped
    assert await admin["marks"].count_documents({}) == 0

    [ran] = await command.up(settings, group="admin", options=QUIET)
    assert [r.revision for r in ran.revisions] == ["s3"]
    await command.stamp(settings, "base", group="admin")
    [state] = await command.status(settings, group="admin")
    assert [r.state for r in state.revisions] == ["pending"] * 3
    await command.stamp(settings, "head", group="admin")
    [state] = await command.status(settings, group="admin")
    assert state.up_to_date
    with pytest.raises(MigrationError, match="one chain"):
        await command.stamp(settings, "head", group="all")
    with pytest.raises(MigrationError, match="unknown revision 'zz'"):
        await command.stamp(settings, "zz", group="admin")


@bounded(60)
async def test_lock_held_by_another_owner_refuses_then_expires(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    admin, _ = dbs(client, settings)
    revision(settings, "admin", "l1", None, MARK)
    now = datetime.now(UTC)
    await admin[LOCK_COLLECTION].insert_one(
        {"_id": "lock", "owner": "elsewhere:42:abc", "acquired_at": now,
         "expires_at": now + timedelta(seconds=60)}
    )  # fmt: skip

    with pytest.raises(MigrationLockError) as info:
        await command.up(settings, group="admin", options=QUIET)
    assert "another migration is running (held by elsewhere:42:abc" in str(info.value)
    assert "--wait" in str(info.value)
    began = asyncio.get_running_loop().time()
    with pytest.raises(MigrationLockError, match=r"after waiting 0\.6 s"):
        await command.up(settings, group="admin", wait_s=0.6, options=QUIET)
    assert asyncio.get_running_loop().time() - began >= 0.6
    [state] = await command.status(settings, group="admin")
    assert state.lock_owner == "elsewhere:42:abc"
    assert await admin["marks"].count_documents({}) == 0

    # A crashed holder stops renewing; once expired, the lock is taken over.
    await admin[LOCK_COLLECTION].update_one(
        {"_id": "lock"}, {"$set": {"expires_at": now - timedelta(seconds=1)}}
    )
    await command.up(settings, group="admin", options=QUIET)
    assert await admin["marks"].count_documents({}) == 1
    assert await admin[LOCK_COLLECTION].count_documents({"owner": {"$ne": None}}) == 0


@bounded(60)
async def test_lock_is_renewed_while_held_and_loss_is_detected(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    admin, _ = dbs(client, settings)
    mine = MigrationLock(admin, label="admin", owner="me", ttl_s=0.6)
    theirs = MigrationLock(admin, label="admin", owner="them", ttl_s=0.6, poll_s=0.05)
    async with mine.held():
        await asyncio.sleep(1.0)  # longer than the TTL: renewal keeps it alive
        assert not await theirs.try_acquire()
        holder = await mine.holder()
        assert holder is not None
        assert holder["owner"] == "me"
        await admin[LOCK_COLLECTION].update_one({"_id": "lock"}, {"$set": {"owner": "thief"}})
        await asyncio.sleep(0.5)
        assert mine.lost
        with pytest.raises(MigrationLockError, match="taken over"):
            mine.check()
    # Release only deletes our own lock: the thief's stays.
    assert (await admin[LOCK_COLLECTION].find_one({"_id": "lock"}) or {})["owner"] == "thief"


@bounded(60)
async def test_concurrent_runs_in_one_process_apply_each_revision_once(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    slow = MARK + "\nimport asyncio\nawait asyncio.sleep(0.3)\n"
    for rev, down in (("p1", None), ("p2", "p1")):
        revision(settings, "admin", rev, down, slow)
        revision(settings, "customer", f"q{rev}", f"q{down}" if down else None, slow)
    results = await asyncio.gather(
        *(command.up(settings, wait_s=30, options=QUIET) for _ in range(3))
    )
    applied = sorted(r.revision for run in results for res in run for r in res.revisions)
    assert applied == ["p1", "p2", "qp1", "qp2"]
    admin, customer = dbs(client, settings)
    assert [d["runs"] for d in await admin["marks"].find().to_list()] == [1, 1]
    assert [d["runs"] for d in await customer["marks"].find().to_list()] == [1, 1]


@bounded(60)
async def test_multiple_heads_are_refused_until_merged(settings: Settings) -> None:
    revision(settings, "admin", "m1", None)
    revision(settings, "admin", "m2", "m1")
    revision(settings, "admin", "m3", "m1")
    with pytest.raises(MultipleHeadsError, match="2 heads"):
        await command.up(settings, group="admin", options=QUIET)
    [partial] = await command.up(settings, group="admin", to="m3", options=QUIET)
    assert [r.revision for r in partial.revisions] == ["m1", "m3"]
    command.new(settings, "merge", group="admin", merge=True)
    [result] = await command.up(settings, group="admin", options=QUIET)
    assert [r.revision for r in result.revisions][:1] == ["m2"]
    assert len(result.revisions) == 2
    with pytest.raises(MigrationError, match="--to names a revision of one chain"):
        await command.up(settings, to="m2", options=QUIET)


@bounded(60)
async def test_downgrade_without_a_downgrade_is_refused_before_running(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    revision(settings, "admin", "d1", None, MARK, UNMARK)
    path = revision(settings, "admin", "d2", "d1", MARK)
    path.write_text(path.read_text().split("async def downgrade")[0])
    await command.up(settings, group="admin", options=QUIET)
    with pytest.raises(MigrationError, match="d2 can't be undone"):
        await command.down(settings, group="admin", to="base", options=QUIET)
    admin, _ = dbs(client, settings)
    assert await admin["marks"].count_documents({}) == 2
    with pytest.raises(MigrationError, match="exactly one of --steps"):
        await command.down(settings, group="admin", options=QUIET)


BEANIE_STYLE = '''
"""Trim names, Beanie style"""

from __future__ import annotations

from beanie import Document

from insightdb.migrations import MigrationContext, free_fall, iterative

revision = "b1"
down_revision = None


class PersonBefore(Document):
    name: str
    age: int = 0

    class Settings:
        name = "people"


class PersonAfter(Document):
    name: str
    age: int = 0
    slug: str = ""

    class Settings:
        name = "people"


class Forward:
    @free_fall()
    async def mark(self, ctx: MigrationContext) -> None:
        await ctx.database["marks"].insert_one({"_id": "forward"})

    @iterative(batch_size=40)
    async def trim(self, input_document: PersonBefore, output_document: PersonAfter) -> None:
        output_document.name = input_document.name.strip()
        output_document.slug = input_document.name.strip().lower()


class Backward:
    @free_fall()
    async def unmark(self, session) -> None:  # Beanie's signature
        assert session is not None
'''


@bounded(60)
async def test_beanie_style_revision_with_frozen_models(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    admin, _ = dbs(client, settings)
    people = [{"name": f"  P{i} " if i % 2 else f"p{i}", "age": i} for i in range(100)]
    await admin["people"].insert_many(people)
    # Even ones already have the slug the step computes: they are left unwritten.
    await admin["people"].update_many({"name": {"$regex": "^p"}}, [{"$set": {"slug": "$name"}}])
    folder = Path(settings.migrations_dir) / "admin"
    folder.mkdir(parents=True)
    (folder / "b1_trim.py").write_text(BEANIE_STYLE)

    [result] = await command.up(settings, group="admin", options=QUIET)
    assert result.documents == 50
    doc = await admin["people"].find_one({"age": 7}, {"_id": 0})
    assert doc == {"name": "P7", "age": 7, "slug": "p7"}
    assert await admin["people"].count_documents({"name": {"$regex": "^ "}}) == 0
    assert await admin["marks"].count_documents({}) == 1
    again = await command.down(settings, group="admin", steps=1, options=QUIET)
    assert [r.revision for r in again[0].revisions] == ["b1"]


@bounded(60)
async def test_server_side_helpers_and_their_batch_fallback(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    _, customer = dbs(client, settings)
    await customer["orders"].insert_many([{"_id": i, "qty": i % 5, "price": 2} for i in range(250)])
    server = """
    n = await ctx.update_with_pipeline(
        "orders", {"qty": {"$gt": 0}},
        [{"$set": {"total": {"$multiply": ["$qty", "$price"]}}}], batch_size=60,
    )
    assert n == 200, n
    await ctx.merge_into(
        "orders", "order_totals", [{"$project": {"total": {"$ifNull": ["$total", 0]}}}],
        batch_size=100,
    )
    """
    fallback = """
    ctx.server_side.update({"pipeline_update": False, "merge": False})
    await ctx.update_with_pipeline(
        "orders", {}, [{"$set": {"double": {"$multiply": ["$price", 2]}}}], batch_size=70
    )
    await ctx.merge_into("orders", "order_copies", [{"$project": {"qty": 1}}])
    """
    revision(settings, "customer", "x1", None, server)
    revision(settings, "customer", "x2", "x1", fallback)
    await command.up(settings, group="customer", options=QUIET)
    assert await customer["orders"].count_documents({"total": {"$exists": True}}) == 200
    assert await customer["order_totals"].count_documents({}) == 250
    assert await customer["order_totals"].find_one({"_id": 3}) == {"_id": 3, "total": 6}
    assert await customer["orders"].count_documents({"double": 4}) == 250
    assert await customer["order_copies"].find_one({"_id": 4}) == {"_id": 4, "qty": 4}


@bounded(60)
async def test_programmatic_pending_and_upgrade_for_a_lifespan(
    settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    revision(settings, "admin", "a1", None, MARK)
    revision(settings, "customer", "c1", None, MARK)
    revision(settings, "customer", "c2", "c1", MARK)
    async with insightdb.connect(settings, models=[]) as db:
        assert await pending_migrations(db) == {"admin": ["a1"], "customer": ["c1", "c2"]}
        applied = await upgrade(db, wait_s=5, options=QUIET)
        assert applied == {"admin": ["a1"], "customer": ["c1", "c2"]}
        assert await pending_migrations(db) == {"admin": [], "customer": []}
        assert await upgrade(db, options=QUIET) == {"admin": [], "customer": []}


@bounded(90)
async def test_repository_example_migrations(
    insightdb_settings: Settings, client: AsyncMongoClient[Any]
) -> None:
    settings = insightdb_settings.model_copy(update={"migrations_dir": str(REPO / "migrations")})
    admin, customer = dbs(client, settings)
    await admin["users"].insert_many(
        [{"email": "ada.lovelace@example.com", "name": ""}, {"email": "x@example.com", "name": "X"}]
    )
    await customer["clients"].insert_many(
        [
            {"tenant_id": "acme", "name": " Acme  "},
            {"tenant_id": "acme", "name": "B", "status": "closed"},
        ]
    )
    await command.up(settings, options=QUIET)
    assert await admin["users"].find_one({"name": "Ada Lovelace"}) is not None
    assert await admin["users"].find_one({"name": "X"}) is not None
    assert "role_1" in await admin["users"].index_information()
    names = sorted([(d["name"], d["status"]) async for d in customer["clients"].find()])
    assert names == [("Acme", "active"), ("B", "closed")]
    assert all(s.up_to_date for s in await command.status(settings))
    await command.down(settings, to="base", options=QUIET)
    assert "role_1" not in await admin["users"].index_information()
    await command.up(settings, options=QUIET)
    assert all(s.up_to_date for s in await command.status(settings))
