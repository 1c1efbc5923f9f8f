"""One resumable step of a revision, and the part of ``ctx`` the batch helpers work with.

Each call of a batch helper (``ctx.batches``, ``ctx.for_each``, ``ctx.update_with_pipeline``,
``ctx.merge_into``) is a :class:`Step`: a name, a collection and a checkpoint (the last
``_id`` done), so a rerun resumes after the last finished batch. The helpers in
:mod:`~insightdb.migrations.batching` and :mod:`~insightdb.migrations.serverside` see the
running revision through :class:`StepContext`, the protocol that
:class:`~insightdb.migrations.context.MigrationContext` implements. This module is what
those three share; it imports none of them, so they form no import cycle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from insightdb.migrations.progress import Reporter
from insightdb.revisions.lock import MigrationLock
from insightdb.revisions.log import Checkpoint

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["MARKER_FIELD", "Step", "StepContext", "after_id", "marker_path"]

MARKER_FIELD = "_insightdb_migration"
_UNSAFE = re.compile(r"[^A-Za-z0-9_#:-]")


class StepContext(Protocol):
    """What the batch helpers use of the running revision's ``ctx`` (internal)."""

    group: str
    revision: str
    database: AsyncDatabase[Any]
    session: AsyncClientSession
    logger: Logger
    lock: MigrationLock | None
    batch_size: int
    use_transaction: bool
    server_side: dict[str, bool]

    def step(self, collection: str, key: str | None, *, markable: bool = True) -> Step:
        """Return the resumable step of a helper call."""
        ...

    def unmarked(self, step: Step, filter: Mapping[str, Any]) -> dict[str, Any]:
        """``filter`` restricted to documents the step has not written yet."""
        ...

    def reporter(self, collection: str, total: int | None) -> Reporter:
        """Return the progress reporter of one step."""
        ...

    def check_lock(self) -> None:
        """Stop between batches when the lock is known to be lost."""
        ...

    async def save_checkpoint(
        self, key: str, point: Checkpoint, *, written: int, session: AsyncClientSession | None
    ) -> None:
        """Write a step's checkpoint to the log (in ``session``'s transaction, if given)."""
        ...

    def adopt_checkpoint(self, key: str, point: Checkpoint, written: int) -> None:
        """Count a written checkpoint and its documents as done."""
        ...


@dataclass
class Step:
    """One resumable step of a revision (a batch helper call)."""

    ctx: StepContext
    key: str
    collection: str
    point: Checkpoint = field(default_factory=Checkpoint)
    markable: bool = True

    @property
    def marked(self) -> bool:
        """Whether this step's writes carry idempotence markers (no transaction)."""
        return self.markable and (not self.ctx.use_transaction or self.point.marked)

    @property
    def marker(self) -> str:
        """The dotted path of this step's marker in the documents it writes."""
        return marker_path(self.ctx.revision, self.key)

    async def save(
        self,
        after: Any,
        written: int,
        *,
        done: bool = False,
        session: AsyncClientSession | None = None,
        apply: bool = True,
    ) -> Checkpoint:
        """Write the checkpoint (in ``session``'s transaction, if given).

        With ``apply=False`` the in-memory state waits for :meth:`apply` (after the
        transaction commits, so a retried transaction is not counted twice).
        """
        point = Checkpoint(
            after, self.point.documents + written, done, self.collection, self.marked
        )
        await self.ctx.save_checkpoint(self.key, point, written=written, session=session)
        if apply:
            self.apply(point, written)
        return point

    def apply(self, point: Checkpoint, written: int) -> None:
        """Adopt a written checkpoint."""
        self.point = point
        self.ctx.adopt_checkpoint(self.key, point, written)


def marker_path(revision: str, step: str) -> str:
    """Return the dotted path of a step's marker in a migrated document."""
    return f"{MARKER_FIELD}.{_UNSAFE.sub('_', revision)}__{_UNSAFE.sub('_', step)}"


def after_id(filter: Mapping[str, Any] | None, after: Any) -> dict[str, Any]:
    """Return ``filter`` restricted to ``_id > after`` (unchanged when ``after`` is None)."""
    base = dict(filter or {})
    if after is None:
        return base
    bound = {"_id": {"$gt": after}}
    return {"$and": [base, bound]} if base else bound
