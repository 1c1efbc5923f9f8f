"""The migration log of one database: which revisions ran, how, and where they stopped.

The log is the collection ``insightdb_migrations`` in the migrated database itself, one
document per revision (``_id`` is the revision id)::

    {_id, message, checksum, status: "running" | "applied" | "failed", started_at,
     ended_at, documents, checkpoints: {step: {after, documents, done, collection,
     marked}}, error, owner, stamped, fence}

``checkpoints`` is what makes a rerun resume: each batch helper records the last ``_id``
it finished, so a failed or interrupted revision restarts after it. A revision that is
undone (``migrate down``) loses its document. Errors are stored as one line without
document values (:func:`insightdb.migrations.errors.describe_error`).

``fence`` is the fencing token of the lock holder that last wrote the entry. A log bound
to a token (:meth:`MigrationLog.fenced`) writes only where ``fence`` is not newer than
its own, and stores its own: once a newer holder has touched an entry, a stale runner's
checkpoint or status write matches nothing and raises
:class:`~insightdb.exceptions.MigrationLockError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from insightdb.exceptions import MigrationLockError

__all__ = ["LOG_COLLECTION", "Checkpoint", "LogEntry", "MigrationLog"]

LOG_COLLECTION = "insightdb_migrations"
Status = Literal["running", "applied", "failed"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far one step of a revision got.

    Attributes:
        after: The last ``_id`` whose batch was written (``None`` before the first).
        documents: Documents written by the step so far.
        done: Whether the step finished.
        collection: The collection the step writes (for cleaning its markers).
        marked: Whether the step's writes carry per-document idempotence markers.
    """

    after: Any = None
    documents: int = 0
    done: bool = False
    collection: str | None = None
    marked: bool = False

    def to_document(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "after": self.after,
            "documents": self.documents,
            "done": self.done,
            "collection": self.collection,
            "marked": self.marked,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Checkpoint:
        """Build a checkpoint from its stored form."""
        return cls(
            doc.get("after"),
            int(doc.get("documents", 0)),
            bool(doc.get("done")),
            doc.get("collection"),
            bool(doc.get("marked")),
        )


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One revision's record in the log."""

    revision: str
    status: Status
    checksum: str = ""
    message: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    documents: int = 0
    checkpoints: Mapping[str, Checkpoint] = field(default_factory=dict)
    error: str | None = None
    owner: str = ""
    stamped: bool = False

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> LogEntry:
        """Build an entry from its stored document."""
        raw_points = doc.get("checkpoints") or {}
        return cls(
            revision=str(doc["_id"]),
            status=doc.get("status", "applied"),
            checksum=doc.get("checksum", ""),
            message=doc.get("message", ""),
            started_at=doc.get("started_at"),
            ended_at=doc.get("ended_at"),
            documents=int(doc.get("documents", 0)),
            checkpoints={key: Checkpoint.from_document(p) for key, p in raw_points.items()},
            error=doc.get("error"),
            owner=doc.get("owner", ""),
            stamped=bool(doc.get("stamped", False)),
        )


class MigrationLog:
    """Reads and writes the log collection of one database.

    Args:
        database: The migrated database.
        fence: The fencing token of the lock this log writes under (``None``: unfenced,
            for reads).
        label: How errors name it (the group).
    """

    def __init__(
        self, database: AsyncDatabase[Any], *, fence: int | None = None, label: str = ""
    ) -> None:
        self._database = database
        self._collection = database[LOG_COLLECTION]
        self.fence = fence
        self.label = label or database.name

    def fenced(self, token: int | None) -> MigrationLog:
        """Return this log bound to a lock's fencing token."""
        return MigrationLog(self._database, fence=token, label=self.label)

    async def entries(self) -> dict[str, LogEntry]:
        """Return every entry by revision id (reading does not create the collection)."""
        return {
            str(doc["_id"]): LogEntry.from_document(doc) async for doc in self._collection.find()
        }

    async def start(self, revision: str, *, checksum: str, message: str, owner: str) -> LogEntry:
        """Mark a revision as running, keeping the checkpoints of an earlier attempt.

        Returns:
            The entry as it now stands (with any checkpoints to resume from).
        """
        now = datetime.now(UTC)
        await self._write(
            revision,
            {
                "$set": {
                    "status": "running",
                    "checksum": checksum,
                    "message": message,
                    "owner": owner,
                    "started_at": now,
                    "ended_at": None,
                    "error": None,
                    "stamped": False,
                },
                "$setOnInsert": {"documents": 0, "checkpoints": {}},
            },
            upsert=True,
        )
        doc = await self._collection.find_one({"_id": revision})
        assert doc is not None  # just upserted
        return LogEntry.from_document(doc)

    async def checkpoint(
        self,
        revision: str,
        step: str,
        point: Checkpoint,
        *,
        written: int,
        session: AsyncClientSession | None = None,
    ) -> None:
        """Record that a step finished a batch (inside the batch's transaction, if any).

        Args:
            revision: The running revision.
            step: The step's key (``<collection>#<n>`` or a method name).
            point: Where the step now stands.
            written: Documents written by this batch, added to the revision's total.
            session: The session of the batch's transaction.

        Raises:
            MigrationLockError: A newer lock holder has written the entry.
        """
        await self._write(
            revision,
            {"$set": {f"checkpoints.{step}": point.to_document()}, "$inc": {"documents": written}},
            session=session,
        )

    async def finish(self, revision: str) -> None:
        """Mark a revision as applied and drop its checkpoints."""
        await self._write(
            revision,
            {
                "$set": {"status": "applied", "ended_at": datetime.now(UTC), "error": None},
                "$unset": {"checkpoints": ""},
            },
        )

    async def fail(self, revision: str, error: str, *, keep_status: bool = False) -> bool:
        """Record an error; the status becomes ``failed`` unless ``keep_status``.

        ``keep_status`` serves a failed downgrade: the revision is still applied.

        Returns:
            ``False`` when a newer lock holder owns the entry (nothing was written).
        """
        update: dict[str, Any] = {"error": error, "ended_at": datetime.now(UTC)}
        if not keep_status:
            update["status"] = "failed"
        try:
            await self._write(revision, {"$set": update})
        except MigrationLockError:
            return False
        return True

    async def begin_downgrade(self, revision: str, *, owner: str) -> LogEntry | None:
        """Note who is undoing a revision; keeps the checkpoints of an earlier attempt."""
        await self._write(revision, {"$set": {"owner": owner, "error": None}})
        doc = await self._collection.find_one({"_id": revision})
        return LogEntry.from_document(doc) if doc is not None else None

    async def remove(self, revision: str) -> None:
        """Forget a revision (it was undone)."""
        await self._collection.delete_one(self._guard({"_id": revision}))

    async def stamp(self, revision: str, *, checksum: str, message: str, owner: str) -> None:
        """Record a revision as applied without running it."""
        now = datetime.now(UTC)
        fields: dict[str, Any] = {
            "status": "applied",
            "checksum": checksum,
            "message": message,
            "owner": owner,
            "started_at": now,
            "ended_at": now,
            "documents": 0,
            "error": None,
            "stamped": True,
        }
        if self.fence is not None:
            fields["fence"] = self.fence
        try:
            await self._collection.replace_one(self._guard({"_id": revision}), fields, upsert=True)
        except DuplicateKeyError as exc:
            raise MigrationLockError(self._stale(), driver_error=exc) from exc

    async def adopt_checksum(self, revision: str, checksum: str) -> None:
        """Accept a changed file (``--allow-changed``): store its new checksum."""
        await self._write(
            revision, {"$set": {"checksum": checksum, "checksum_adopted_at": datetime.now(UTC)}}
        )

    # --- fencing ------------------------------------------------------------------------

    def _guard(self, filter: dict[str, Any]) -> dict[str, Any]:
        if self.fence is None:
            return filter
        return {**filter, "fence": {"$not": {"$gt": self.fence}}}

    async def _write(
        self,
        revision: str,
        update: dict[str, Any],
        *,
        upsert: bool = False,
        session: AsyncClientSession | None = None,
    ) -> None:
        if self.fence is not None:
            update = {**update, "$set": {**update.get("$set", {}), "fence": self.fence}}
        try:
            result = await self._collection.update_one(
                self._guard({"_id": revision}), update, upsert=upsert, session=session
            )
        except DuplicateKeyError as exc:  # the upsert met an entry with a newer fence
            raise MigrationLockError(self._stale(), driver_error=exc) from exc
        missed = self.fence is not None and not result.matched_count and not result.upserted_id
        if missed and await self._collection.count_documents({"_id": revision}, session=session):
            raise MigrationLockError(self._stale())

    def _stale(self) -> str:
        return (
            f"{self.label}: the migration log was written by a newer lock holder (our fencing "
            f"token {self.fence} is stale): the lock was taken over; stopped before writing"
        )
