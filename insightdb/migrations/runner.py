"""The runner of one group: plans from the graph and the log, runs under the lock.

:class:`Runner` joins a :class:`~insightdb.revisions.scripts.ScriptDirectory` (the
files), a :class:`~insightdb.revisions.log.MigrationLog` and a
:class:`~insightdb.revisions.lock.MigrationLock` on one database. Plans
(:mod:`~insightdb.migrations.planning`) are computed after the lock is taken, so a
second process that waited finds nothing left to do; each planned revision is then run
by an :class:`~insightdb.migrations.execution.Executor`, which fences every write with
the lock's token and records a failure. The lock is released either way (``finally``),
and the next run resumes a failed or interrupted revision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.mongo_client import AsyncMongoClient

from insightdb.exceptions import MigrationError
from insightdb.migrations.execution import Executor, downgrade_of
from insightdb.migrations.planning import adopted, downgrade_plan, upgrade_plan
from insightdb.migrations.progress import ProgressMode
from insightdb.revisions.graph import Revision
from insightdb.revisions.lock import MigrationLock, default_owner
from insightdb.revisions.log import MigrationLog
from insightdb.revisions.pending import read_status
from insightdb.revisions.scripts import ScriptDirectory
from insightdb.revisions.status import GroupStatus

__all__ = ["RunOptions", "RunResult", "Runner"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a runner runs.

    Attributes:
        batch_size: Default documents per batch of the batch helpers.
        server_batch_size: Default documents per server-side operation (``None``: one).
        progress: ``"auto"``, ``"bar"``, ``"log"`` or ``"off"``.
        lock_ttl_s: Seconds after which an unrenewed lock counts as abandoned.
        owner: The lock owner; ``host:pid:uuid`` by default.
    """

    batch_size: int = 1000
    server_batch_size: int | None = 10_000
    progress: ProgressMode = "auto"
    lock_ttl_s: float = 60.0
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one group's ``up``, ``down`` or ``stamp`` did (or would do, in a dry run).

    Attributes:
        group: The group.
        direction: ``"up"``, ``"down"`` or ``"stamp"``.
        revisions: The revisions run (or planned), in order.
        dry_run: Whether nothing was written.
        documents: Documents written.
        seconds: Time taken.
    """

    group: str
    direction: str
    revisions: tuple[Revision, ...] = ()
    dry_run: bool = False
    documents: int = 0
    seconds: float = 0.0


class Runner:
    """Migrates one group's database.

    Args:
        scripts: The group's revision files.
        database: The group's database.
        client: The client serving it (for sessions).
        options: Batch sizes, progress, lock TTL.
    """

    def __init__(
        self,
        scripts: ScriptDirectory,
        database: AsyncDatabase[Any],
        client: AsyncMongoClient[Any],
        options: RunOptions | None = None,
    ) -> None:
        self.scripts = scripts
        self.group = scripts.group
        self.database = database
        self.client = client
        self.options = options or RunOptions()
        self.log = MigrationLog(database)
        self.owner = self.options.owner or default_owner()

    def lock(self) -> MigrationLock:
        """Return this group's lock (not yet taken)."""
        return MigrationLock(
            self.database, label=self.group, owner=self.owner, ttl_s=self.options.lock_ttl_s
        )

    async def status(self) -> GroupStatus:
        """Return the group's revisions with their state (reads only)."""
        return await read_status(self.scripts, self.database, self.lock())

    async def upgrade(
        self,
        target: str | None = None,
        *,
        dry_run: bool = False,
        allow_changed: bool = False,
        wait_s: float = 0.0,
    ) -> RunResult:
        """Apply every revision up to ``target`` (default: the head) that is not applied.

        Raises:
            MultipleHeadsError: No target and several heads.
            MigrationError: A revision failed, an applied file changed (without
                ``allow_changed``), or the files and the log disagree.
            MigrationLockError: The lock was not free within ``wait_s``.
        """
        graph = self.scripts.graph
        goal = graph.resolve(target) if target is not None else graph.head()
        if dry_run or len(graph) == 0:  # an empty chain needs no lock (nor a database)
            entries = await self.log.entries()
            plan = upgrade_plan(self.scripts, entries, goal, allow_changed)
            return self._result("up", plan, dry_run)
        began = time.monotonic()
        async with self.lock().held(wait_s) as lock:
            log = self.log.fenced(lock.token)
            entries = await log.entries()
            plan = upgrade_plan(self.scripts, entries, goal, allow_changed)
            for revision, script in adopted(self.scripts, entries, allow_changed):
                logger.warning("insightdb: {}: accepting changed file of {}", self.group, revision)
                await log.adopt_checksum(revision, script.checksum)
            executor = self._executor()
            documents = 0
            for rev in plan:
                documents += await executor.run(self.scripts.get(rev.revision), "up", lock)
        return self._result("up", plan, False, documents, time.monotonic() - began)

    async def downgrade(
        self,
        *,
        steps: int | None = None,
        target: str | None = None,
        dry_run: bool = False,
        wait_s: float = 0.0,
    ) -> RunResult:
        """Undo the newest ``steps`` revisions, or every revision after ``target``.

        ``target`` may be ``"base"`` (undo everything).

        Raises:
            MigrationError: A revision has no ``downgrade`` or failed.
            MigrationLockError: The lock was not free within ``wait_s``.
        """
        if steps is None and target is None:
            raise MigrationError("migrate down needs --steps N or --to REVISION (or base)")
        goal = self.scripts.graph.resolve(target) if target is not None else None
        if dry_run:
            entries = await self.log.entries()
            return self._result("down", downgrade_plan(self.scripts, entries, steps, goal), True)
        began = time.monotonic()
        async with self.lock().held(wait_s) as lock:
            entries = await self.log.entries()
            plan = downgrade_plan(self.scripts, entries, steps, goal)
            for rev in plan:  # refuse before running anything
                downgrade_of(self.scripts.get(rev.revision))
            executor = self._executor()
            documents = 0
            for rev in plan:
                documents += await executor.run(self.scripts.get(rev.revision), "down", lock)
        return self._result("down", plan, False, documents, time.monotonic() - began)

    async def stamp(self, target: str, *, wait_s: float = 0.0) -> RunResult:
        """Record exactly ``target`` and its ancestors as applied, running nothing.

        ``target`` may be ``"base"`` (forget everything) or ``"head"``.
        """
        graph = self.scripts.graph
        goal = graph.resolve(target)
        wanted = graph.ancestors(goal) if goal is not None else frozenset()
        async with self.lock().held(wait_s) as lock:
            log = self.log.fenced(lock.token)
            entries = await log.entries()
            for revision in sorted(set(entries) - wanted):
                await log.remove(revision)
            stamped = []
            for rev in graph.ordered():
                current = entries.get(rev.revision)
                if rev.revision in wanted and (current is None or current.status != "applied"):
                    script = self.scripts.get(rev.revision)
                    await log.stamp(
                        rev.revision,
                        checksum=script.checksum,
                        message=rev.message,
                        owner=self.owner,
                    )
                    stamped.append(rev)
        return self._result("stamp", stamped, False)

    # --- internals ----------------------------------------------------------------------

    def _executor(self) -> Executor:
        return Executor(
            self.group, self.database, self.client, self.log, self.owner,
            self.options.batch_size, self.options.server_batch_size, self.options.progress,
        )  # fmt: skip

    def _result(
        self,
        direction: str,
        plan: list[Revision],
        dry_run: bool,
        documents: int = 0,
        seconds: float = 0.0,
    ) -> RunResult:
        return RunResult(self.group, direction, tuple(plan), dry_run, documents, seconds)
