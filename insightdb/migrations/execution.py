"""Running one revision under the held lock: its log entry, its code, its markers.

The :class:`~insightdb.migrations.runner.Runner` takes the lock and plans; an
:class:`Executor` then applies (``up``) or undoes (``down``) each planned revision. Every
write is fenced by the lock's token (the log's writes through
:meth:`MigrationLog.fenced <insightdb.revisions.log.MigrationLog.fenced>`, the batches
through :mod:`~insightdb.migrations.batching`). A revision runs each batch in a
transaction when the server supports them (``use_transaction`` unset: probed; ``True``:
required; ``False``: never) and otherwise with per-document idempotence markers, which
are removed before the revision is recorded as applied (or undone). A revision that
raises is recorded ``failed`` (with its checkpoints) and the error is re-raised as one
line (no document values: :mod:`~insightdb.migrations.errors`); the runner releases the
lock either way, and the next run resumes it. If the process dies while removing the
markers, the rerun finds its steps done and removes them again; if it dies after that,
before the log says applied, the rerun records it applied.
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
from insightdb.migrations.progress import ProgressMode
from insightdb.revisions.lock import MigrationLock
from insightdb.revisions.log import LOG_COLLECTION, LogEntry, MigrationLog
from insightdb.revisions.scripts import Script
from insightdb.tenancy.context import unscoped

__all__ = ["Executor", "downgrade_of"]


@dataclass(frozen=True, slots=True)
class Executor:
    """Applies or undoes one revision at a time of a group, under a lock already held.

    Attributes:
        group: The group.
        database: The group's database.
        client: The client serving it (for sessions).
        log: The group's log (unfenced: each run fences it with the lock's token).
        owner: The lock owner, recorded in the log entries.
        batch_size: Default documents per batch (a revision's ``batch_size`` wins).
        server_batch_size: Default documents per server-side operation.
        progress: ``"auto"``, ``"bar"``, ``"log"`` or ``"off"``.
    """

    group: str
    database: AsyncDatabase[Any]
    client: AsyncMongoClient[Any]
    log: MigrationLog
    owner: str
    batch_size: int
    server_batch_size: int | None
    progress: ProgressMode

    async def run(self, script: Script, direction: str, lock: MigrationLock) -> int:
        """Run one revision ``up`` or ``down`` and record it; return the documents written.

        Raises:
            MigrationError: The revision failed (recorded ``failed``; a rerun resumes it).
            MigrationLockError: The lock was lost; the log is left to the new holder.
        """
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
                batch_size=getattr(module, "batch_size", self.batch_size),
                server_batch_size=self.server_batch_size,
                use_transaction=use_transaction, progress=self.progress, lock=lock,
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


def downgrade_of(script: Script) -> ModuleType:
    """Load a revision that is about to be undone; refuse one that can't be.

    Raises:
        MigrationError: It defines neither ``downgrade`` nor ``Backward``.
    """
    module = script.load()
    if not callable(getattr(module, "downgrade", None)) and not isinstance(
        getattr(module, "Backward", None), type
    ):
        raise MigrationError(
            f"{script.path.name}: revision {script.id} can't be undone: it defines neither "
            "`async def downgrade(ctx)` nor `class Backward`"
        )
    return module


def _wants_transaction(module: ModuleType, direction: str) -> bool | None:
    """``True`` (required), ``False`` (never) or ``None`` (when the server supports them)."""
    cls = getattr(module, "Forward" if direction == "up" else "Backward", None)
    wanted = getattr(cls, "use_transaction", getattr(module, "use_transaction", None))
    return None if wanted is None else bool(wanted)


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
