"""What a failed revision leaves in the log and prints: no document values, true states.

In process against the server the plugin resolves, each test with its own databases.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from insightdb.exceptions import MigrationError
from insightdb.migrations import RunOptions, command
from insightdb.revisions.log import LOG_COLLECTION
from insightdb.settings import Settings
from insightdb.testing.plugin import ResolvedServer

pytestmark = pytest.mark.integration

QUIET = RunOptions(progress="off", batch_size=50)
SECRET = "ada.secret@example.com"


@pytest.fixture
def settings(insightdb_settings: Settings, tmp_path: Path) -> Settings:
    return insightdb_settings.model_copy(update={"migrations_dir": str(tmp_path / "migrations")})


@pytest.fixture
async def admin(insightdb_server: ResolvedServer, settings: Settings) -> AsyncIterator[Any]:
    async with AsyncMongoClient[dict[str, Any]](insightdb_server.uri) as client:
        yield client[settings.database("admin").name]


def write(settings: Settings, rev: str, down: str | None, body: str, header: str = "") -> Path:
    folder = Path(settings.migrations_dir) / "admin"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rev}.py"
    path.write_text(
        f'"""Revision {rev}"""\n{header}\nrevision = {rev!r}\ndown_revision = {down!r}\n\n\n'
        f"async def upgrade(ctx):\n{textwrap.indent(textwrap.dedent(body), '    ')}\n",
        encoding="utf-8",
    )
    return path


async def stored_error(admin: Any, rev: str) -> str:
    entry = await admin[LOG_COLLECTION].find_one({"_id": rev})
    assert entry is not None
    assert entry["status"] == "failed"
    return str(entry["error"])


@pytest.mark.parametrize("transactions", [True, False], ids=["transactions", "markers"])
async def test_duplicate_key_error_is_stored_and_printed_without_the_key_value(
    settings: Settings, admin: Any, transactions: bool
) -> None:
    await admin["users"].create_index("email", unique=True)
    await admin["users"].insert_many(
        [{"_id": 1, "email": SECRET}, {"_id": 2, "email": "other@example.com"}]
    )
    body = f"""
    def steal(doc):
        return {{"$set": {{"email": {SECRET!r}}}}} if doc["_id"] == 2 else None

    await ctx.for_each("users", steal)
    """
    write(settings, "d1", None, body, f"use_transaction = {transactions}\n")
    async with asyncio.timeout(60):
        with pytest.raises(MigrationError) as info:
            await command.up(settings, group="admin", options=QUIET)
        error = await stored_error(admin, "d1")
        states = await command.status(settings, group="admin")
    assert "11000" in error
    assert "duplicate key" in error
    for text in (str(info.value), error, json.dumps([s.to_dict() for s in states], default=str)):
        assert SECRET not in text
        assert "ada.secret" not in text
        assert "\n" not in str(info.value)


async def test_exception_text_with_a_document_dump_is_stored_without_it(
    settings: Settings, admin: Any
) -> None:
    await admin["people"].insert_many([{"_id": i, "ssn": f"123-45-{i:04d}"} for i in range(20)])
    body = """
    def check(doc):
        if doc["_id"] == 7:
            raise ValueError(f"malformed person {doc} (see ssn)")
        return None

    await ctx.for_each("people", check)
    """
    write(settings, "p1", None, body)
    async with asyncio.timeout(60):
        with pytest.raises(MigrationError) as info:
            await command.up(settings, group="admin", options=QUIET)
        error = await stored_error(admin, "p1")
    assert error.startswith("ValueError: malformed person {…} (see ssn)")
    assert "123-45" not in error
    assert "123-45" not in str(info.value)


async def test_failed_revision_whose_file_was_deleted_is_not_reported_applied(
    settings: Settings, admin: Any
) -> None:
    write(settings, "a1", None, 'await ctx.database["marks"].insert_one({"_id": "a1"})')
    path = write(settings, "b2", "a1", 'raise RuntimeError("b2 is broken")')
    async with asyncio.timeout(60):
        with pytest.raises(MigrationError, match="b2 is broken"):
            await command.up(settings, group="admin", options=QUIET)
        path.unlink()  # the broken revision is abandoned

        [state] = await command.status(settings, group="admin")
        assert [(o.revision.revision, o.state) for o in state.orphans] == [("b2", "failed")]
        assert state.orphans[0].entry is not None
        assert state.orphans[0].entry.error == "RuntimeError: b2 is broken"
        assert state.current == ("a1",)
        assert not state.up_to_date
        assert state.to_dict()["orphans"] == [
            {"revision": "b2", "state": "failed", "error": "RuntimeError: b2 is broken"}
        ]

        with pytest.raises(MigrationError) as info:
            await command.up(settings, group="admin", options=QUIET)
        message = str(info.value)
        assert "records revision 'b2' as failed (not applied)" in message
        assert "as applied" not in message
        assert "insightdb migrate stamp a1 --db admin" in message

        await command.stamp(settings, "a1", group="admin")
        [state] = await command.status(settings, group="admin")
        assert state.up_to_date
        assert state.orphans == ()
