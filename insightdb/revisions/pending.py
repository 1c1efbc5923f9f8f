"""Reading where one database stands, without writing: its status and pending revisions.

:func:`read_status` reads the lock's holder and the log's entries and compares them with
the files (:func:`~insightdb.revisions.status.build_status`); it is what ``migrate
status`` and :meth:`Runner.status <insightdb.migrations.runner.Runner.status>` return.
:func:`pending_revisions` lists the revisions it finds not applied: the one reading behind
both :func:`insightdb.migrations.pending_migrations` and the started instance's health
report (:mod:`insightdb.runtime.health.pending`). Neither function takes the lock.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from insightdb.revisions.lock import MigrationLock
from insightdb.revisions.log import MigrationLog
from insightdb.revisions.scripts import ScriptDirectory
from insightdb.revisions.status import GroupStatus, build_status

__all__ = ["pending_revisions", "read_status"]


async def read_status(
    scripts: ScriptDirectory, database: AsyncDatabase[Any], lock: MigrationLock | None = None
) -> GroupStatus:
    """Return the group's revisions with their state (reads only).

    Args:
        scripts: The group's revision files.
        database: The group's database (the driver's own: the log spans tenants).
        lock: The group's lock, to read its holder (default: one on ``database``).
    """
    lock = lock or MigrationLock(database, label=scripts.group)
    holder = await lock.holder()
    entries = await MigrationLog(database).entries()
    return build_status(scripts.group, database.name, scripts, entries, holder)


async def pending_revisions(scripts: ScriptDirectory, database: AsyncDatabase[Any]) -> list[str]:
    """Return the ids of the group's revisions not applied yet, oldest first.

    Failed, interrupted and running revisions count as pending.

    Args:
        scripts: The group's revision files (``ScriptDirectory.from_settings``).
        database: The group's database (the driver's own: the log spans tenants).

    Raises:
        MigrationError: The files are inconsistent (a cycle, a missing revision...).
    """
    state = await read_status(scripts, database)
    return [r.revision.revision for r in state.pending]
