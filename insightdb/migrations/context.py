"""``ctx``: what a revision's ``upgrade(ctx)`` / ``downgrade(ctx)`` works with.

A :class:`MigrationContext` gives the group's database and client, a session, a logger
bound to the revision, and batch helpers that make large migrations safe:

- :meth:`~MigrationContext.batches` and :meth:`~MigrationContext.for_each` stream a
  collection with one cursor sorted by ``_id``, hand over one batch at a time (memory is
  bounded by one batch), write with unordered ``bulk_write`` and record a checkpoint (the
  last ``_id``) per batch, so a rerun resumes after the last finished batch
  (:mod:`insightdb.migrations.clientside`);
- :meth:`~MigrationContext.update_with_pipeline` and :meth:`~MigrationContext.merge_into`
  run on the server (:mod:`insightdb.migrations.serverside`);
- :meth:`~MigrationContext.transaction` opens a transaction for arbitrary code.

Each batch is written once (:mod:`insightdb.migrations.batching`): where the server runs
transactions, a batch's writes commit with its checkpoint and the lock's fence in one
transaction (never one transaction around a whole collection); elsewhere, or with
``use_transaction = False``, the writes of :meth:`~MigrationContext.for_each` and the
server-side helpers carry per-document idempotence markers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from loguru import logger
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.mongo_client import AsyncMongoClient

from insightdb.exceptions import MigrationError
from insightdb.migrations import clientside, serverside
from insightdb.migrations.batching import mark_filter
from insightdb.migrations.clientside import Transform
from insightdb.migrations.progress import ProgressMode, Reporter, make_reporter
from insightdb.migrations.steps import Step
from insightdb.revisions.log import Checkpoint, MigrationLog

if TYPE_CHECKING:
    from insightdb.revisions.lock import MigrationLock

__all__ = ["MigrationContext", "Transform"]

_BAD_KEY = re.compile(r"[.$]")


class MigrationContext:
    """The ``ctx`` passed to a revision's functions and Beanie-style steps.

    Attributes:
        group: ``"admin"`` or ``"customer"``.
        revision: The revision being run.
        direction: ``"up"`` or ``"down"``.
        database: The group's database.
        client: The client serving it.
        session: A session for this revision (pass it to writes that should join a
            transaction opened by :meth:`transaction`).
        logger: A loguru logger bound to the group and revision.
        batch_size: Default documents per batch of the batch helpers.
        server_batch_size: Default documents per server-side operation of
            :meth:`update_with_pipeline` and :meth:`merge_into` (``None``: one operation).
        use_transaction: Whether each batch commits with its checkpoint in a transaction
            (else its writes carry idempotence markers).
        lock: The migration lock the run holds (its fence guards every batch).
        documents: Documents written by this run so far.
    """

    def __init__(
        self,
        *,
        group: str,
        revision: str,
        direction: str,
        database: AsyncDatabase[Any],
        client: AsyncMongoClient[Any],
        session: AsyncClientSession,
        log: MigrationLog,
        checkpoints: Mapping[str, Checkpoint] | None = None,
        batch_size: int = 1000,
        server_batch_size: int | None = 10_000,
        use_transaction: bool = False,
        progress: ProgressMode = "auto",
        lock: MigrationLock | None = None,
    ) -> None:
        if batch_size < 1:
            raise MigrationError(f"batch_size must be at least 1, got {batch_size}")
        self.group = group
        self.revision = revision
        self.direction = direction
        self.database = database
        self.client = client
        self.session = session
        self.logger = logger.bind(group=group, revision=revision)
        self.batch_size = batch_size
        self.server_batch_size = server_batch_size
        self.use_transaction = use_transaction
        self.documents = 0
        self.server_side: dict[str, bool] = {}  # feature -> supported, learnt while running
        self._log = log
        self._checkpoints = dict(checkpoints or {})
        self._progress: ProgressMode = progress
        self.lock = lock
        self._calls = 0

    def collection(self, name: str) -> AsyncCollection[Any]:
        """Return a collection of the group's database."""
        return self.database[name]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncClientSession]:
        """Run a block in a transaction on :attr:`session`; pass ``session=`` to its writes.

        Raises:
            MigrationError: A transaction is already open, or the server refused one.
        """
        if self.session.in_transaction:
            raise MigrationError(f"{self.revision}: a transaction is already open")
        async with await self.session.start_transaction():
            yield self.session

    def batches(
        self,
        collection: str,
        *,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
        key: str | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the matching documents, one batch (a list) at a time, in ``_id`` order.

        The checkpoint of a batch is written when the loop asks for the next one, so a
        batch whose processing raised is processed again by the rerun. With a
        transaction (:attr:`use_transaction`), the loop body runs inside the batch's
        transaction: pass ``session=ctx.session`` to its writes and they commit with the
        checkpoint, exactly once. Without one, the batch in flight at a crash is handed
        over again on resume: keep such writes idempotent. Don't ``break`` out of the
        loop (wrap it in :func:`contextlib.aclosing` if you must).

        Args:
            collection: The collection name.
            filter: Which documents; all by default.
            projection: Which fields to fetch.
            batch_size: Documents per batch; :attr:`batch_size` by default.
            key: The checkpoint name; ``<collection>#<n>`` (n-th helper call) by default.
        """
        return clientside.batches(self, collection, filter, projection, batch_size, key)

    async def for_each(
        self,
        collection: str,
        transform: Transform,
        *,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
        key: str | None = None,
    ) -> int:
        """Call ``transform`` on each matching document and bulk-write what it returns.

        ``transform(doc)`` (sync or async) returns ``None`` (leave the document alone),
        an update document such as ``{"$set": {...}}`` (applied to that document), or any
        PyMongo write model (``ReplaceOne``, ``DeleteOne``...). Each batch's writes are
        applied once, even across a crash and a rerun (see the module docstring).

        Returns:
            The number of writes sent.
        """
        return await clientside.for_each(
            self, collection, transform, filter, projection, batch_size, key
        )

    async def update_with_pipeline(
        self,
        collection: str,
        filter: Mapping[str, Any],
        pipeline: list[Mapping[str, Any]],
        *,
        batch_size: int | EllipsisType | None = ...,
        key: str | None = None,
    ) -> int:
        """Update the matching documents with an aggregation pipeline, on the server.

        See :func:`insightdb.migrations.serverside.update_with_pipeline`.

        Returns:
            The number of documents modified.
        """
        size = self.server_batch_size if isinstance(batch_size, EllipsisType) else batch_size
        return await serverside.update_with_pipeline(self, collection, filter, pipeline, size, key)

    async def merge_into(
        self,
        source: str,
        target: str,
        pipeline: list[Mapping[str, Any]] | None = None,
        *,
        on: str | list[str] = "_id",
        when_matched: str = "replace",
        when_not_matched: str = "insert",
        batch_size: int | EllipsisType | None = ...,
        key: str | None = None,
    ) -> int:
        """Write ``source`` through ``pipeline`` into ``target`` with ``$merge``, on the server.

        See :func:`insightdb.migrations.serverside.merge_into`.

        Returns:
            The number of source documents processed.
        """
        size = self.server_batch_size if isinstance(batch_size, EllipsisType) else batch_size
        return await serverside.merge_into(
            self, source, target, list(pipeline or []), on, when_matched, when_not_matched,
            size, key,
        )  # fmt: skip

    # --- machinery shared with serverside.py and controllers.py ------------------------

    def step(self, collection: str, key: str | None, *, markable: bool = True) -> Step:
        """Return the resumable step of a helper call (internal).

        ``markable=False`` for steps whose writes are idempotent by nature (``$merge``).
        """
        name = key if key is not None else f"{collection}#{self._calls}"
        self._calls += 1
        name = _BAD_KEY.sub("_", name)
        if self.direction == "down":
            name = f"down:{name}"
        point = self._checkpoints.get(name, Checkpoint())
        return Step(self, name, collection, point, markable)

    def unmarked(self, step: Step, filter: Mapping[str, Any]) -> dict[str, Any]:
        """``filter`` restricted to documents the step has not written yet (internal)."""
        return mark_filter(filter, step.marker) if step.marked else dict(filter)

    def marked_collections(self) -> set[str]:
        """The collections whose documents may carry this revision's markers (internal)."""
        return {p.collection for p in self._checkpoints.values() if p.marked and p.collection}

    def reporter(self, collection: str, total: int | None) -> Reporter:
        """Return the progress reporter of one step (internal)."""
        return make_reporter(f"{self.group} {self.revision} {collection}", total, self._progress)

    def check_lock(self) -> None:
        """Stop between batches when the lock is known to be lost (internal)."""
        if self.lock is not None:
            self.lock.check()

    async def save_checkpoint(
        self, key: str, point: Checkpoint, *, written: int, session: AsyncClientSession | None
    ) -> None:
        """Write a step's checkpoint to the log (internal)."""
        await self._log.checkpoint(self.revision, key, point, written=written, session=session)

    def adopt_checkpoint(self, key: str, point: Checkpoint, written: int) -> None:
        """Count a written checkpoint and its documents as done (internal)."""
        self.documents += written
        self._checkpoints[key] = point
