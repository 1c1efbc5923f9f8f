"""The migration log of one database: which revisions ran, how, and where they stopped.

The log is the collection ``insightdb_migrations`` in the migrated database itself, one
document per revision (``_id`` is the revision id)::

    {_id, message, checksum, status: "running" | "applied" | "failed", started_at,
     ended_at, documents, checkpoints: {step: {after, documents, done}}, error, owner,
     stamped}

``checkpoints`` is what makes a rerun resume: each batch helper records the last ``_id``
it finished, so a failed or interrupted revision restarts after it. A revision that is
undone (``migrate down``) loses its document. Errors are stored as one line; document
values are never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

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
    """

    after: Any = None
    documents: int = 0
    done: bool = False


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
            checkpoints={
                key: Checkpoint(p.get("after"), int(p.get("documents", 0)), bool(p.get("done")))
                for key, p in raw_points.items()
            },
            error=doc.get("error"),
            owner=doc.get("owner", ""),
            stamped=bool(doc.get("stamped", False)),
        )


class MigrationLog:
    """Reads and writes the log collection of one database.

    Args:
        database: The migrated database.
    """

    def __init__(self, database: AsyncDatabase[Any]) -> None:
        self._collection = database[LOG_COLLECTION]

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
        await self._collection.update_one(
            {"_id": revision},
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
        """
        await self._collection.update_one(
            {"_id": revision},
            {
                "$set": {
                    f"checkpoints.{step}": {
                        "after": point.after,
                        "documents": point.documents,
                        "done": point.done,
                    }
                },
                "$inc": {"documents": written},
            },
            session=session,
        )

    async def finish(self, revision: str) -> None:
        """Mark a revision as applied and drop its checkpoints."""
        await self._collection.update_one(
            {"_id": revision},
            {
                "$set": {"status": "applied", "ended_at": datetime.now(UTC), "error": None},
                "$unset": {"checkpoints": ""},
            },
        )

    async def fail(self, revision: str, error: str, *, keep_status: bool = False) -> None:
        """Record an error; the status becomes ``failed`` unless ``keep_status``.

        ``keep_status`` serves a failed downgrade: the revision is still applied.
        """
        update: dict[str, Any] = {"error": error, "ended_at": datetime.now(UTC)}
        if not keep_status:
            update["status"] = "failed"
        await self._collection.update_one({"_id": revision}, {"$set": update})

    async def begin_downgrade(self, revision: str, *, owner: str) -> LogEntry | None:
        """Note who is undoing a revision; keeps the checkpoints of an earlier attempt."""
        await self._collection.update_one(
            {"_id": revision}, {"$set": {"owner": owner, "error": None}}
        )
        doc = await self._collection.find_one({"_id": revision})
        return LogEntry.from_document(doc) if doc is not None else None

    async def remove(self, revision: str) -> None:
        """Forget a revision (it was undone)."""
        await self._collection.delete_one({"_id": revision})

    async def stamp(self, revision: str, *, checksum: str, message: str, owner: str) -> None:
        """Record a revision as applied without running it."""
        now = datetime.now(UTC)
        await self._collection.replace_one(
            {"_id": revision},
            {
                "status": "applied",
                "checksum": checksum,
                "message": message,
                "owner": owner,
                "started_at": now,
                "ended_at": now,
                "documents": 0,
                "error": None,
                "stamped": True,
            },
            upsert=True,
        )

    async def adopt_checksum(self, revision: str, checksum: str) -> None:
        """Accept a changed file (``--allow-changed``): store its new checksum."""
        await self._collection.update_one(
            {"_id": revision},
            {"$set": {"checksum": checksum, "checksum_adopted_at": datetime.now(UTC)}},
        )
