"""The migration lock of one database: one writer at a time, fenced by a token.

The lock is one document, ``{_id: "lock"}`` in ``insightdb_migration_lock`` of the
migrated database, holding the ``owner`` (``host:pid:uuid``, or ``None`` when free), a
fencing ``token``, ``acquired_at`` and ``expires_at``. It is taken with a single
``find_one_and_update`` that matches only a free (released, expired, or our own) lock,
raises ``token`` by one and upserts otherwise: when another owner holds it, the upsert
collides on the unique ``_id`` and fails, so two processes can never both win. The
document is never deleted (a release empties ``owner``), so tokens only grow.

The token fences every write of the run that holds it: :meth:`MigrationLock.fence`
renews the lease only where ``owner`` and ``token`` are still ours, and the runner calls
it before every batch write (inside the batch's transaction when there is one), while
the log refuses writes whose token is older than the newest it has seen. A runner whose
lease expired while a step blocked the event loop, and was taken over, therefore stops
with :class:`~insightdb.exceptions.MigrationLockError` before its next write. Between
batches an asyncio task renews the lease every TTL/3 (it stays quiet while a batch
transaction is open, as the batch's own fence renews it). Expiry uses the clocks of the
hosts involved: keep the TTL well above their skew.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from loguru import logger
from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from insightdb.exceptions import MigrationLockError
from insightdb.resilience._driver_errors import masked_first_line

__all__ = ["LOCK_COLLECTION", "MigrationLock", "default_owner"]

LOCK_COLLECTION = "insightdb_migration_lock"
_LOCK_ID = "lock"


def default_owner() -> str:
    """Return ``host:pid:uuid``, unique to this process and call."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class MigrationLock:
    """The lock of one database.

    Args:
        database: The migrated database.
        label: How messages name it (the group).
        owner: This holder's name; :func:`default_owner` by default.
        ttl_s: Seconds after the last renewal at which the lock counts as abandoned.
        poll_s: Seconds between attempts while waiting.

    Attributes:
        token: The fencing token of the current hold (``None`` before acquiring).
        lost: Whether the lock was found taken over while held.
    """

    def __init__(
        self,
        database: AsyncDatabase[Any],
        *,
        label: str,
        owner: str | None = None,
        ttl_s: float = 60.0,
        poll_s: float = 0.5,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._collection = database[LOCK_COLLECTION]
        self.label = label
        self.owner = owner or default_owner()
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.token: int | None = None
        self.lost = False
        self._renewed_at = 0.0
        self._busy = 0

    async def holder(self) -> dict[str, Any] | None:
        """Return the lock document, or ``None`` when nobody holds it."""
        doc = await self._collection.find_one({"_id": _LOCK_ID})
        return doc if doc is not None and doc.get("owner") is not None else None

    async def try_acquire(self) -> bool:
        """Take the lock if it is free, expired, or already ours; never waits."""
        now = datetime.now(UTC)
        free = [{"owner": None}, {"expires_at": {"$lte": now}}, {"owner": self.owner}]
        try:
            doc = await self._collection.find_one_and_update(
                {"_id": _LOCK_ID, "$or": free},
                {
                    "$set": {
                        "owner": self.owner,
                        "acquired_at": now,
                        "expires_at": now + timedelta(seconds=self.ttl_s),
                    },
                    "$inc": {"token": 1},
                },
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
        except DuplicateKeyError:
            return False  # held by someone else, and not expired
        self.token = int((doc or {}).get("token") or 0) + 1
        if doc is not None and doc.get("owner") not in (None, self.owner):
            logger.warning(
                "insightdb: {}: took over the migration lock of {} (expired at {})",
                self.label,
                doc.get("owner"),
                doc.get("expires_at"),
            )
        self.lost = False
        self._renewed_at = time.monotonic()
        return True

    async def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds for its holder to finish.

        Raises:
            MigrationLockError: It is still held by another owner after ``wait_s``.
        """
        deadline = time.monotonic() + max(wait_s, 0.0)
        announced = False
        while not await self.try_acquire():
            if time.monotonic() >= deadline:
                raise MigrationLockError(await self._busy_message(wait_s))
            if not announced:
                logger.info(
                    "insightdb: {}: waiting up to {:g} s for the migration lock ({})",
                    self.label,
                    wait_s,
                    await self._describe_holder(),
                )
                announced = True
            await asyncio.sleep(min(self.poll_s, max(deadline - time.monotonic(), 0.01)))

    async def renew(self, session: AsyncClientSession | None = None) -> bool:
        """Push ``expires_at`` forward if the lock is still ours (same owner and token).

        Returns:
            ``False`` (and :attr:`lost` set) when it was taken over.
        """
        if self.lost or self.token is None:
            return False
        now = datetime.now(UTC)
        result = await self._collection.update_one(
            {"_id": _LOCK_ID, "owner": self.owner, "token": self.token},
            {"$set": {"expires_at": now + timedelta(seconds=self.ttl_s), "renewed_at": now}},
            session=session,
        )
        if result.matched_count == 0:
            self.lost = True
            return False
        if session is None:
            self._renewed_at = time.monotonic()
        return True

    async def fence(self, session: AsyncClientSession | None = None) -> None:
        """Renew the lease right before a write, or stop: the write happens under our token.

        Inside a transaction (``session`` in one) the renewal commits with the write, so
        a takeover racing the write aborts one of the two.

        Raises:
            MigrationLockError: The lock was taken over (a newer token holds it).
        """
        if not await self.renew(session):
            raise MigrationLockError(self.lost_message())

    def renewed(self) -> None:
        """Note that a fenced transaction committed (its renewal is now in effect)."""
        self._renewed_at = time.monotonic()

    async def verify(self) -> bool:
        """Read the lock and tell whether it is still ours (sets :attr:`lost` if not)."""
        doc = await self._collection.find_one({"_id": _LOCK_ID})
        ours = doc is not None and doc.get("owner") == self.owner and doc.get("token") == self.token
        if not ours:
            self.lost = True
        return ours

    async def release(self) -> None:
        """Give the lock back (only if it is still ours); the document and token stay."""
        if self.token is None:
            return
        await self._collection.update_one(
            {"_id": _LOCK_ID, "owner": self.owner, "token": self.token},
            {"$set": {"owner": None, "expires_at": datetime.now(UTC)}},
        )

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Keep the background renewal quiet for a block (a batch transaction fences itself).

        A write of the renewal would make the embedded server abort the open transaction.
        """
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    @asynccontextmanager
    async def held(self, wait_s: float = 0.0) -> AsyncIterator[MigrationLock]:
        """Hold the lock for the ``with`` block, renewing it; released in ``finally``.

        Raises:
            MigrationLockError: It could not be taken within ``wait_s`` seconds.
        """
        await self.acquire(wait_s)
        renewer = asyncio.create_task(self._renew_forever(), name=f"lock-renewal-{self.label}")
        try:
            yield self
        finally:
            renewer.cancel()
            with suppress(asyncio.CancelledError):
                await renewer
            await asyncio.shield(self.release())

    def check(self) -> None:
        """Raise when the lock is known to be lost (no round trip; :meth:`fence` makes one).

        Raises:
            MigrationLockError: Another process took the lock over.
        """
        if self.lost:
            raise MigrationLockError(self.lost_message())

    def lost_message(self) -> str:
        """The one-line message of a lost lock."""
        return (
            f"{self.label}: the migration lock expired and was taken over by another run "
            f"(our fencing token {self.token} is stale); stopped before the next write "
            "(raise --lock-ttl if a step blocks the event loop or the server is slow)"
        )

    async def _renew_forever(self) -> None:
        interval = self.ttl_s / 3
        while True:
            await asyncio.sleep(interval / 2)
            if self._busy or time.monotonic() - self._renewed_at < interval:
                continue  # a batch is in flight, or its fence renewed the lease recently
            try:
                if not await self.renew():
                    logger.error("insightdb: {}: lost the migration lock", self.label)
                    return
            except Exception as exc:  # a transient error: the next renewal may succeed
                logger.warning(
                    "insightdb: {}: could not renew the migration lock: {}",
                    self.label,
                    masked_first_line(exc),
                )

    async def _describe_holder(self) -> str:
        doc = await self.holder()
        if doc is None:
            return "just released"
        expires = doc.get("expires_at")
        left = ""
        if isinstance(expires, datetime):
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            left = f", expires in {max((expires - datetime.now(UTC)).total_seconds(), 0):.0f} s"
        return f"held by {doc.get('owner')} since {doc.get('acquired_at')}{left}"

    async def _busy_message(self, wait_s: float) -> str:
        waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
        return (
            f"{self.label}: another migration is running ({await self._describe_holder()})"
            f"{waited}; retry later or pass --wait SECONDS"
        )
