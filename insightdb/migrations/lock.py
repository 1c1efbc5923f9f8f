"""The migration lock of one database: one writer at a time, across processes and hosts.

The lock is one document, ``{_id: "lock"}`` in ``insightdb_migration_lock`` of the
migrated database, holding the ``owner`` (``host:pid:uuid``), ``acquired_at`` and
``expires_at``. It is taken with a single ``find_one_and_update`` that matches only a
free (expired, or our own) lock and upserts otherwise: when another owner holds it, the
upsert collides on the unique ``_id`` and fails, so two processes can never both win.
While held, a background task renews ``expires_at``; a crashed process stops renewing and
its lock expires after the TTL, after which the next run takes it over. Expiry uses the
clocks of the hosts involved: keep the TTL well above their skew.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from loguru import logger
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from insightdb.exceptions import MigrationLockError

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
        self.lost = False

    async def holder(self) -> dict[str, Any] | None:
        """Return the lock document, or ``None`` when nobody holds it."""
        return await self._collection.find_one({"_id": _LOCK_ID})

    async def try_acquire(self) -> bool:
        """Take the lock if it is free, expired, or already ours; never waits."""
        now = datetime.now(UTC)
        try:
            doc = await self._collection.find_one_and_update(
                {"_id": _LOCK_ID, "$or": [{"expires_at": {"$lte": now}}, {"owner": self.owner}]},
                {
                    "$set": {
                        "owner": self.owner,
                        "acquired_at": now,
                        "expires_at": now + timedelta(seconds=self.ttl_s),
                    }
                },
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
        except DuplicateKeyError:
            return False  # held by someone else, and not expired
        if doc is not None and doc.get("owner") not in (None, self.owner):
            logger.warning(
                "insightdb: {}: took over the migration lock of {} (expired at {})",
                self.label,
                doc.get("owner"),
                doc.get("expires_at"),
            )
        self.lost = False
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

    async def renew(self) -> bool:
        """Push ``expires_at`` forward; ``False`` (and :attr:`lost`) if it is not ours."""
        expires = datetime.now(UTC) + timedelta(seconds=self.ttl_s)
        result = await self._collection.update_one(
            {"_id": _LOCK_ID, "owner": self.owner}, {"$set": {"expires_at": expires}}
        )
        if result.matched_count == 0:
            self.lost = True
        return not self.lost

    async def release(self) -> None:
        """Give the lock back (only if it is still ours)."""
        await self._collection.delete_one({"_id": _LOCK_ID, "owner": self.owner})

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
        """Raise when the lock was lost (expired and taken over) while running.

        Raises:
            MigrationLockError: Another process took the lock over.
        """
        if self.lost:
            raise MigrationLockError(
                f"{self.label}: the migration lock expired and was taken over while running; "
                "stopped before the next batch (raise the lock TTL if the server is slow)"
            )

    async def _renew_forever(self) -> None:
        interval = self.ttl_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.renew():
                    logger.error("insightdb: {}: lost the migration lock", self.label)
                    return
            except Exception as exc:  # a transient error: the next renewal may succeed
                logger.warning(
                    "insightdb: {}: could not renew the migration lock: {}", self.label, exc
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
