"""Exactly-once batches: each batch's writes and its checkpoint, fenced by the lock.

A batch helper hands one batch's write to :func:`commit_batch`, which makes it count
once whatever happens to the process:

- **with a transaction** (the server supports them and the revision did not opt out):
  the lock's fence (a renewal that matches only our token), the batch's writes and its
  checkpoint commit together. A crash before the commit leaves nothing; after it,
  everything. A commit that conflicts (a transient error) is retried with the same
  writes unless the lock was taken over meanwhile;
- **without one**: the lock is fenced right before the write, and every write carries an
  idempotence marker — the update matches a document only while it lacks the step's
  marker (``_insightdb_migration.<revision>__<step>``) and sets it — so replaying a
  batch whose checkpoint was lost skips the documents it already changed. The runner
  removes the markers when the revision is done.

Per-document markers cover updates and replacements (update documents, pipeline
updates, ``UpdateOne``/``UpdateMany``/``ReplaceOne``); ``InsertOne`` and ``DeleteOne``
are sent as they are (a delete by ``_id`` is idempotent; an insert is not).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from typing import Any

from pymongo import ReplaceOne, UpdateMany, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

from insightdb.exceptions import MigrationError, MigrationLockError
from insightdb.migrations.errors import describe_error
from insightdb.migrations.steps import MARKER_FIELD, Step, StepContext, marker_path

__all__ = [
    "MARKER_FIELD",
    "commit_batch",
    "is_transient",
    "mark_filter",
    "mark_op",
    "mark_replacement",
    "mark_update",
    "marker_path",
]

ATTEMPTS = 5

Write = Callable[[AsyncClientSession | None], Awaitable[int]]
"""Sends one batch's writes (in the given session, if any) and returns how many."""


def mark_filter(filter: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Restrict ``filter`` to documents that don't carry the marker yet."""
    unmarked = {path: {"$exists": False}}
    return {"$and": [dict(filter), unmarked]} if filter else unmarked


def mark_update(update: Any, path: str, token: int) -> Any:
    """Add ``$set`` of the marker to an update document or an update pipeline."""
    if isinstance(update, list):
        return [*update, {"$set": {path: token}}]
    marked = dict(update)
    marked["$set"] = {**dict(marked.get("$set") or {}), path: token}
    return marked


def mark_replacement(document: Mapping[str, Any], path: str, token: int) -> dict[str, Any]:
    """Return a copy of a replacement document carrying the marker."""
    field, key = path.split(".", 1)
    marked = dict(document)
    marked[field] = {**dict(marked.get(field) or {}), key: token}
    return marked


def mark_op(op: Any, path: str, token: int) -> Any:
    """Return a copy of a PyMongo write model that applies once per document.

    ``InsertOne`` and ``DeleteOne`` come back unchanged.
    """
    if isinstance(op, UpdateOne | UpdateMany):
        marked = copy.copy(op)
        marked._filter = mark_filter(op._filter, path)
        marked._doc = mark_update(op._doc, path, token)
        return marked
    if isinstance(op, ReplaceOne):
        replaced = copy.copy(op)
        replaced._filter = mark_filter(op._filter, path)
        replaced._doc = mark_replacement(op._doc, path, token)
        return replaced
    return op


def is_transient(exc: BaseException) -> bool:
    """Tell whether a failed transaction may succeed when retried (a write conflict)."""
    if not isinstance(exc, PyMongoError):
        return False
    if exc.has_error_label("TransientTransactionError"):
        return True
    return getattr(exc, "code", None) == 112 or "write conflict" in str(exc).lower()


async def commit_batch(
    ctx: StepContext,
    step: Step,
    write: Write,
    after: Any,
    *,
    done: bool = False,
    transactional: bool = True,
) -> int:
    """Send one batch and its checkpoint so that the batch counts exactly once.

    Args:
        ctx: The running revision's context.
        step: The step the batch belongs to.
        write: Sends the batch (marked, when there is no transaction).
        after: The last ``_id`` of the batch (the new checkpoint).
        done: Whether this batch ends the step.
        transactional: ``False`` for writes that can't join a transaction (``$merge``).

    Returns:
        What ``write`` returned.

    Raises:
        MigrationLockError: The lock was taken over; nothing of this batch was written
            (with a transaction), or only its idempotent part (without).
    """
    lock = ctx.lock
    if not (ctx.use_transaction and transactional):
        if lock is not None:
            await lock.fence()
        written = await write(None)
        await step.save(after, written, done=done)
        return written
    session = ctx.session
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with lock.busy() if lock is not None else nullcontext():
                async with await session.start_transaction():
                    if lock is not None:
                        await lock.fence(session)
                    written = await write(session)
                    point = await step.save(after, written, done=done, session=session, apply=False)
        except MigrationLockError:
            raise
        except PyMongoError as exc:
            if not is_transient(exc):
                raise
            if lock is not None and not await lock.verify():
                raise MigrationLockError(lock.lost_message()) from exc
            if attempt == ATTEMPTS:
                raise MigrationError(
                    f"{ctx.revision}: step {step.key}: the batch's transaction kept "
                    f"conflicting ({describe_error(exc)}) after {ATTEMPTS} attempts; rerun "
                    "to resume",
                    driver_error=exc,
                ) from exc
            ctx.logger.debug("batch transaction conflicted; retrying ({})", attempt)
            await asyncio.sleep(0.05 * 2**attempt)
            continue
        if lock is not None:
            lock.renewed()
        step.apply(point, written)
        return written
    raise AssertionError("unreachable")  # pragma: no cover
