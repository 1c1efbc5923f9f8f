"""Client-side batches: ``ctx.batches`` and ``ctx.for_each`` stream a collection by ``_id``.

Both open **one cursor sorted by** ``_id`` (no session: it outlives the per-batch
transactions), hand over ``batch_size`` documents at a time (memory holds one batch) and
record a checkpoint — the batch's last ``_id`` — after each batch, so a rerun resumes
after the last finished batch. Each batch is written once
(:mod:`~insightdb.migrations.batching`):

- :func:`for_each` hands its batch's unordered ``bulk_write`` to
  :func:`~insightdb.migrations.batching.commit_batch`: with a transaction, the lock's
  fence, the writes and the checkpoint commit together; without one, the lock is fenced
  right before the write and every update carries the step's idempotence marker;
- :func:`batches` yields the batch to the revision's own code. With a transaction the
  order is: start the transaction, fence the lock, yield (the caller's writes, passed
  ``session=ctx.session``, join it), write the checkpoint, commit; the in-memory
  checkpoint is adopted only after the commit, so a retried transaction doesn't count
  twice. Without one, the checkpoint is written when the loop asks for the next batch,
  so the batch in flight at a crash is handed over again on resume.

A finished helper call writes its step's checkpoint once more, marked done.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, nullcontext
from typing import Any

from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from insightdb.exceptions import MigrationError
from insightdb.migrations.batching import commit_batch, mark_op
from insightdb.migrations.steps import Step, StepContext, after_id

__all__ = ["Transform", "batches", "for_each"]

WriteOp = InsertOne[Any] | UpdateOne | UpdateMany | ReplaceOne[Any] | DeleteOne
Transform = Callable[[dict[str, Any]], "Mapping[str, Any] | WriteOp | Awaitable[Any] | None"]
"""What ``ctx.for_each`` calls per document (sync or async)."""
_WRITE_OPS = (InsertOne, UpdateOne, UpdateMany, ReplaceOne, DeleteOne)


async def batches(
    ctx: StepContext,
    collection: str,
    filter: Mapping[str, Any] | None,
    projection: Mapping[str, Any] | None,
    batch_size: int | None,
    key: str | None,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield the matching documents one batch at a time (``ctx.batches``; see above)."""
    step = ctx.step(collection, key)
    async with aclosing(_stream(ctx, step, filter, projection, batch_size)) as it:
        async for batch in it:
            if not ctx.use_transaction:
                yield batch
                await commit_batch(ctx, step, _noop(len(batch)), batch[-1]["_id"])
                continue
            with ctx.lock.busy() if ctx.lock is not None else nullcontext():
                async with await ctx.session.start_transaction():
                    if ctx.lock is not None:
                        await ctx.lock.fence(ctx.session)
                    yield batch
                    point = await step.save(
                        batch[-1]["_id"], len(batch), session=ctx.session, apply=False
                    )
            if ctx.lock is not None:
                ctx.lock.renewed()
            step.apply(point, len(batch))
    await step.save(step.point.after, 0, done=True)


async def for_each(
    ctx: StepContext,
    collection: str,
    transform: Transform,
    filter: Mapping[str, Any] | None,
    projection: Mapping[str, Any] | None,
    batch_size: int | None,
    key: str | None,
) -> int:
    """Bulk-write what ``transform`` returns per document (``ctx.for_each``); return the count."""
    coll = ctx.database[collection]
    step = ctx.step(collection, key)
    total = 0
    async with aclosing(_stream(ctx, step, filter, projection, batch_size)) as it:
        async for batch in it:
            ops: list[Any] = []
            for doc in batch:
                result = transform(doc)
                if inspect.isawaitable(result):
                    result = await result
                if result is None:
                    continue
                if isinstance(result, _WRITE_OPS):
                    ops.append(result)
                elif isinstance(result, Mapping):
                    ops.append(UpdateOne({"_id": doc["_id"]}, dict(result)))
                else:
                    raise MigrationError(
                        f"{ctx.revision}: for_each's transform returned "
                        f"{type(result).__name__}; expected None, an update or a write model"
                    )
            if step.marked and ctx.lock is not None and ctx.lock.token is not None:
                ops = [mark_op(op, step.marker, ctx.lock.token) for op in ops]
            total += await commit_batch(ctx, step, _bulk(coll, ops), batch[-1]["_id"])
    await step.save(step.point.after, 0, done=True)
    return total


async def _stream(
    ctx: StepContext,
    step: Step,
    filter: Mapping[str, Any] | None,
    projection: Mapping[str, Any] | None,
    batch_size: int | None,
) -> AsyncGenerator[list[dict[str, Any]], None]:
    size = batch_size or ctx.batch_size
    if step.point.done:
        ctx.logger.info("{} {}: step {} already done", ctx.group, ctx.revision, step.key)
        return
    query = after_id(filter, step.point.after)
    coll = ctx.database[step.collection]
    total = await (coll.count_documents(query) if query else coll.estimated_document_count())
    reporter = ctx.reporter(step.collection, total)
    try:
        # No session on the cursor: it outlives the per-batch transactions.
        cursor = coll.find(query, projection, sort=[("_id", 1)], batch_size=size)
        batch: list[dict[str, Any]] = []
        async for doc in cursor:
            batch.append(doc)
            if len(batch) >= size:
                _hand_over(ctx, step, batch)
                yield batch
                reporter.advance(len(batch))
                batch = []
        if batch:
            _hand_over(ctx, step, batch)
            yield batch
            reporter.advance(len(batch))
    finally:
        reporter.close()


def _hand_over(ctx: StepContext, step: Step, batch: list[dict[str, Any]]) -> None:
    ctx.check_lock()
    if "_id" not in batch[-1]:
        raise MigrationError(
            f"{ctx.revision}: step {step.key}: the projection must keep _id "
            "(batches are checkpointed by _id)"
        )


def _bulk(coll: AsyncCollection[Any], ops: list[Any]) -> Callable[..., Awaitable[int]]:
    async def write(session: AsyncClientSession | None) -> int:
        if ops:
            await coll.bulk_write(ops, ordered=False, session=session)
        return len(ops)

    return write


def _noop(count: int) -> Callable[..., Awaitable[int]]:
    async def write(session: AsyncClientSession | None) -> int:
        return count

    return write
