"""The runner of one group: plans from the graph and the log, runs under the lock.

:class:`Runner` joins a :class:`~insightdb.migrations.scripts.ScriptDirectory` (the
files), a :class:`~insightdb.migrations.log.MigrationLog` and a
:class:`~insightdb.migrations.lock.MigrationLock` on one database. Plans are computed
after the lock is taken, so a second process that waited finds nothing left to do. A
revision that raises is recorded ``failed`` (with its checkpoints) and the error is
re-raised as one line (no document values: :mod:`~insightdb.migrations.errors`); the
lock is released either way, and the next run resumes it. Every write of a run is fenced
by the lock's token (the log's writes through :meth:`MigrationLog.fenced`, the batches
through :mod:`~insightdb.migrations.batching`). A revision runs each batch in a
transaction when the server supports them (``use_transaction`` unset: probed; ``True``:
required; ``False``: never) and otherwise with per-document idempotence markers, which
the runner removes before recording the revision as applied (or undone).
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NoReturn

from loguru import logger
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.mongo_client import AsyncMongoClient
from pymongo.errors import PyMongoError

from insightdb.exceptions import MigrationError, MigrationLockError
from insightdb.migrations.batching import MARKER_FIELD
from insightdb.migrations.context import MigrationContext
from insightdb.migrations.controllers import steps_of
from insightdb.migrations.errors import describe_error
from insightdb.migrations.graph import Revision
from insightdb.migrations.lock import MigrationLock, default_owner
from insightdb.migrations.log import LOG_COLLECTION, LogEntry, MigrationLog
from insightdb.migrations.progress import ProgressMode
from insightdb.migrations.scripts import Script, ScriptDirectory
from insightdb.migrations.status import GroupStatus, build_status
from insightdb.tenancy.context import unscoped

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
        holder = await self.lock().holder()
        return build_status(
            self.group, self.database.name, self.scripts, await self.log.entries(), holder
        )

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
            return self._result("up", self._upgrade_plan(entries, goal, allow_changed), dry_run)
        began = time.monotonic()
        async with self.lock().held(wait_s) as lock:
            log = self.log.fenced(lock.token)
            entries = await log.entries()
            plan = self._upgrade_plan(entries, goal, allow_changed)
            for revision, script in self._adopted(entries, allow_changed):
                logger.warning("insightdb: {}: accepting changed file of {}", self.group, revision)
                await log.adopt_checksum(revision, script.checksum)
            documents = 0
            for rev in plan:
                documents += await self._run(self.scripts.get(rev.revision), "up", lock)
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
        graph = self.scripts.graph
        goal = graph.resolve(target) if target is not None else None

        def plan_for(entries: dict[str, LogEntry]) -> list[Revision]:
            applied = {r for r, e in entries.items() if e.status == "applied"}
            self._check_orphans(entries)
            return graph.downgrade_plan(applied, steps=steps, target=goal)

        if dry_run:
            return self._result("down", plan_for(await self.log.entries()), True)
        began = time.monotonic()
        async with self.lock().held(wait_s) as lock:
            entries = await self.log.entries()
            plan = plan_for(entries)
            for rev in plan:  # refuse before running anything
                _downgrade_of(self.scripts.get(rev.revision))
            documents = 0
            for rev in plan:
                documents += await self._run(self.scripts.get(rev.revision), "down", lock)
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

    def _upgrade_plan(
        self, entries: dict[str, LogEntry], goal: str | None, allow_changed: bool
    ) -> list[Revision]:
        graph = self.scripts.graph
        self._check_orphans(entries)
        changed = [r for r, _ in self._adopted(entries, True)]
        if changed and not allow_changed:
            raise MigrationError(
                f"{self.group}: applied revision {changed[0]} "
                f"({self.scripts.get(changed[0]).path.name}) changed since it was applied"
                f"{f' (and {len(changed) - 1} more)' if len(changed) > 1 else ''}; "
                "review the change, then rerun with --allow-changed"
            )
        applied = {r for r, e in entries.items() if e.status == "applied"}
        if goal is None:
            return []
        return graph.upgrade_plan(applied, goal)

    def _adopted(
        self, entries: dict[str, LogEntry], allow_changed: bool
    ) -> list[tuple[str, Script]]:
        if not allow_changed:
            return []
        return [
            (r, self.scripts.scripts[r])
            for r, e in entries.items()
            if e.status == "applied" and r in self.scripts.scripts
            and e.checksum != self.scripts.scripts[r].checksum
        ]  # fmt: skip

    def _check_orphans(self, entries: dict[str, LogEntry]) -> None:
        """Refuse to plan while the log records a revision that no file defines."""
        graph = self.scripts.graph
        unknown = sorted(set(entries) - set(graph.revisions))
        if not unknown:
            return
        entry = entries[unknown[0]]
        applied = [r for r, e in entries.items() if e.status == "applied"]
        current = ", ".join(graph.current(applied)) or "base"
        state = "applied" if entry.status == "applied" else f"{entry.status} (not applied)"
        raise MigrationError(
            f"the {self.group} database records revision {unknown[0]!r} as {state}, but "
            f"{graph.label} has no file for it; restore the file, or forget it with "
            f"`insightdb migrate stamp {current} --db {self.group}`"
        )

    async def _run(self, script: Script, direction: str, lock: MigrationLock) -> int:
        module = script.load()
        log = self.log.fenced(lock.token)
        async with self.client.start_session() as session:
            use_transaction = await self._transactions(module, script, direction, session)
            if direction == "up":
                entry: LogEntry | None = await log.start(
                    script.id, checksum=script.checksum, message=script.revision.message,
                    owner=self.owner,
                )  # fmt: skip
            else:
                entry = await log.begin_downgrade(script.id, owner=self.owner)
            resumed = entry is not None and bool(entry.checkpoints)
            logger.info(
                "insightdb: {}: {} {} {}{} (batches {})",
                self.group,
                "applying" if direction == "up" else "undoing",
                script.id,
                script.revision.message,
                " (resuming from its checkpoints)" if resumed else "",
                "in transactions" if use_transaction else "with idempotence markers",
            )
            ctx = MigrationContext(
                group=self.group, revision=script.id, direction=direction,
                database=self.database, client=self.client, session=session, log=log,
                checkpoints=entry.checkpoints if entry is not None else None,
                batch_size=getattr(module, "batch_size", self.options.batch_size),
                server_batch_size=self.options.server_batch_size,
                use_transaction=use_transaction, progress=self.options.progress, lock=lock,
            )  # fmt: skip
            began = time.monotonic()
            try:
                # A migration works across tenants by nature: say so, once per revision.
                with unscoped(f"migration {self.group} {script.id} ({direction})"):
                    await _execute(module, script, direction, ctx)
                    await self._clear_markers(ctx, lock)
                lock.check()
            except BaseException as exc:  # cancelled and interrupted runs are recorded too
                await self._failed(script, direction, exc, log, lock)
        if direction == "up":
            await log.finish(script.id)
        else:
            await log.remove(script.id)
        logger.info(
            "insightdb: {}: {} {} in {:.1f} s ({} documents written)",
            self.group,
            "applied" if direction == "up" else "undid",
            script.id,
            time.monotonic() - began,
            ctx.documents,
        )
        return ctx.documents

    async def _failed(
        self,
        script: Script,
        direction: str,
        exc: BaseException,
        log: MigrationLog,
        lock: MigrationLock,
    ) -> NoReturn:
        """Record a failed revision (unless the lock was lost) and raise one line."""
        error = describe_error(exc)
        lost = lock.lost or isinstance(exc, MigrationLockError)
        if not lost and isinstance(exc, Exception):
            with suppress(PyMongoError):  # the server is away: record below, if it answers
                lost = not await lock.verify()
        if not lost:  # else the log is the new lock holder's to write
            try:
                lost = not await log.fail(script.id, error, keep_status=direction == "down")
            except PyMongoError as write_error:
                logger.warning(
                    "insightdb: {}: could not record {} as failed: {}",
                    self.group,
                    script.id,
                    describe_error(write_error),
                )
        if not isinstance(exc, Exception):
            raise exc
        if lost:
            raise MigrationLockError(
                f"{lock.lost_message()}; revision {script.id} was left to the new holder "
                f"(last error: {error})",
                driver_error=exc if isinstance(exc, PyMongoError) else None,
            ) from exc
        kind = type(exc) if isinstance(exc, MigrationError) else MigrationError
        raise kind(
            f"{self.group}: revision {script.id} ({script.revision.message}) failed "
            f"{'upgrading' if direction == 'up' else 'downgrading'}: {error}; "
            "recorded as failed; fix it and rerun to resume",
            driver_error=exc if isinstance(exc, PyMongoError) else None,
        ) from exc

    async def _clear_markers(self, ctx: MigrationContext, lock: MigrationLock) -> None:
        """Remove the idempotence markers of a finished revision (fenced; idempotent)."""
        for name in sorted(ctx.marked_collections()):
            await lock.fence()
            await self.database[name].update_many(
                {MARKER_FIELD: {"$exists": True}}, {"$unset": {MARKER_FIELD: ""}}
            )

    async def _transactions(
        self, module: ModuleType, script: Script, direction: str, session: Any
    ) -> bool:
        """Decide whether this revision's batches run in transactions (probing the server)."""
        wanted = _wants_transaction(module, direction)
        if wanted is False:
            return False
        try:
            async with await session.start_transaction():
                await self.database[LOG_COLLECTION].find_one({}, session=session)
        except PyMongoError as exc:
            if wanted is None:
                logger.info(
                    "insightdb: {}: the server runs no transactions ({}); batches of {} use "
                    "idempotence markers",
                    self.group,
                    describe_error(exc),
                    script.id,
                )
                return False
            raise MigrationError(
                f"{self.group}: revision {script.id} asks for transactions (use_transaction = "
                f"True) but the server refused one: {describe_error(exc)}; run it against a "
                "replica set or remove use_transaction",
                driver_error=exc,
            ) from exc
        return True

    def _result(
        self,
        direction: str,
        plan: list[Revision],
        dry_run: bool,
        documents: int = 0,
        seconds: float = 0.0,
    ) -> RunResult:
        return RunResult(self.group, direction, tuple(plan), dry_run, documents, seconds)


def _wants_transaction(module: ModuleType, direction: str) -> bool | None:
    """``True`` (required), ``False`` (never) or ``None`` (when the server supports them)."""
    cls = getattr(module, "Forward" if direction == "up" else "Backward", None)
    wanted = getattr(cls, "use_transaction", getattr(module, "use_transaction", None))
    return None if wanted is None else bool(wanted)


def _downgrade_of(script: Script) -> ModuleType:
    module = script.load()
    if not callable(getattr(module, "downgrade", None)) and not isinstance(
        getattr(module, "Backward", None), type
    ):
        raise MigrationError(
            f"{script.path.name}: revision {script.id} can't be undone: it defines neither "
            "`async def downgrade(ctx)` nor `class Backward`"
        )
    return module


async def _execute(
    module: ModuleType, script: Script, direction: str, ctx: MigrationContext
) -> None:
    cls = getattr(module, "Forward" if direction == "up" else "Backward", None)
    if isinstance(cls, type):
        for name, step in steps_of(cls):
            await step.run(ctx, name)
        return
    function = getattr(module, "upgrade" if direction == "up" else "downgrade", None)
    if not callable(function):
        raise MigrationError(f"{script.path.name}: no {direction} function")
    await function(ctx)
