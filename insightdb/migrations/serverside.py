"""Server-side migrations: pipeline updates and ``$merge``, so documents stay on the server.

:func:`update_with_pipeline` runs ``update_many(filter, [pipeline])`` and
:func:`merge_into` runs ``aggregate([...pipeline, {"$merge": ...}])``. Both cut the
collection into ``_id`` ranges of ``batch_size`` documents (one ``_id`` per range crosses
the wire to find its end), so each operation is bounded, progress is reported and a rerun
resumes after the last finished range; ``batch_size=None`` runs one operation.

When the server refuses the feature (MongoDB before 4.2, or an emulator without it), the
helper logs a warning once and falls back to batches: the same pipeline runs as an
aggregation and its results are written back with ``bulk_write`` — correct, but documents
then cross the wire. Chunking (and the fallback) assume a per-document pipeline (``$set``,
``$unset``, ``$project``, ``$replaceWith``...); pass ``batch_size=None`` for one that groups.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pymongo import ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from insightdb.exceptions import MigrationError
from insightdb.migrations.batching import commit_batch, mark_update
from insightdb.migrations.errors import describe_error
from insightdb.migrations.steps import Step, StepContext, after_id

__all__ = ["is_unsupported", "merge_into", "update_with_pipeline"]

# FailedToParse, TypeMismatch, "unrecognized pipeline stage", "$merge not allowed".
_UNSUPPORTED_CODES = frozenset({9, 14, 40324, 31319})
_UNSUPPORTED_TEXT = re.compile(r"unsupported|unrecognized|not supported|unknown", re.IGNORECASE)
_MERGE_MODES = {"replace", "merge", "keepExisting"}


def is_unsupported(exc: OperationFailure) -> bool:
    """Tell whether a server error means "this server can't do that" rather than bad data."""
    message = str((exc.details or {}).get("errmsg", exc))
    return exc.code in _UNSUPPORTED_CODES or bool(_UNSUPPORTED_TEXT.search(message))


async def update_with_pipeline(
    ctx: StepContext,
    collection: str,
    filter: Mapping[str, Any],
    pipeline: list[Mapping[str, Any]],
    batch_size: int | None,
    key: str | None,
) -> int:
    """Update the documents matching ``filter`` with an aggregation ``pipeline``.

    Args:
        ctx: The running revision's context.
        collection: The collection to update in place.
        filter: Which documents.
        pipeline: Update stages (``$set``, ``$unset``, ``$replaceWith``...).
        batch_size: Documents per operation; ``None`` for one ``update_many``.
        key: The checkpoint name.

    Returns:
        The number of documents modified.
    """
    coll = ctx.database[collection]
    step = ctx.step(collection, key)
    if step.point.done:
        return 0
    reporter = ctx.reporter(collection, await coll.count_documents(after_id(filter, None)))
    marked = _marked_pipeline(ctx, step, pipeline)
    modified = 0
    matched = [0]

    async def write(session: AsyncClientSession | None) -> int:
        update = _pipeline_update if ctx.server_side.get("pipeline_update", True) else None
        run = update or _pipeline_in_batches
        matched[0], written = await run(ctx, coll, ctx.unmarked(step, scope), marked, session)
        return written

    try:
        while True:
            ctx.check_lock()
            scope, end = await _next_range(coll, filter, step, batch_size)
            try:
                modified += await commit_batch(ctx, step, write, end, done=end is None)
            except OperationFailure as exc:
                if not is_unsupported(exc) or not ctx.server_side.get("pipeline_update", True):
                    raise
                _fall_back(ctx, "pipeline_update", "updates with a pipeline", exc)
                modified += await commit_batch(ctx, step, write, end, done=end is None)
            reporter.advance(matched[0])
            if end is None:
                return modified
    finally:
        reporter.close()


async def merge_into(
    ctx: StepContext,
    source: str,
    target: str,
    pipeline: list[Mapping[str, Any]],
    on: str | list[str],
    when_matched: str,
    when_not_matched: str,
    batch_size: int | None,
    key: str | None,
) -> int:
    """Run ``source`` through ``pipeline`` and ``$merge`` the results into ``target``.

    ``$merge`` can't run inside a transaction, so it never joins one. A ``on`` other
    than ``_id`` needs a unique index on those fields of ``target`` (a server rule).

    Args:
        ctx: The running revision's context.
        source: The collection read.
        target: The collection written (created if needed).
        pipeline: Stages applied before ``$merge``.
        on: ``$merge``'s ``on`` field(s).
        when_matched: ``replace``, ``merge``, ``keepExisting``, ``fail`` or a pipeline
            (the batch fallback supports the first three).
        when_not_matched: ``insert``, ``discard`` or ``fail``.
        batch_size: Source documents per operation; ``None`` for one aggregation.
        key: The checkpoint name.

    Returns:
        The number of source documents processed.
    """
    coll = ctx.database[source]
    step = ctx.step(source, key, markable=False)
    if step.point.done:
        return 0
    merge = {"into": target, "on": on, "whenMatched": when_matched}
    merge["whenNotMatched"] = when_not_matched
    reporter = ctx.reporter(source, await coll.estimated_document_count())
    processed = 0
    try:
        while True:
            ctx.check_lock()
            scope, end = await _next_range(coll, {}, step, batch_size)
            count = batch_size if end is not None and batch_size else None
            if count is None:
                count = await coll.count_documents(scope)

            async def write(
                session: AsyncClientSession | None, scope: Any = scope, count: int = count
            ) -> int:
                if ctx.server_side.get("merge", True):
                    try:
                        stages = [{"$match": scope}, *pipeline, {"$merge": merge}]
                        await (await coll.aggregate(stages)).to_list()
                        return count
                    except OperationFailure as exc:
                        if not is_unsupported(exc):
                            raise
                        _fall_back(ctx, "merge", "$merge", exc)
                await _merge_in_batches(ctx, coll, scope, pipeline, target, merge)
                return count

            await commit_batch(ctx, step, write, end, done=end is None, transactional=False)
            processed += count
            reporter.advance(count)
            if end is None:
                return processed
    finally:
        reporter.close()


async def _next_range(
    coll: AsyncCollection[Any], filter: Mapping[str, Any], step: Step, batch_size: int | None
) -> tuple[dict[str, Any], Any]:
    """Return the filter of the next ``_id`` range and its last ``_id`` (None: to the end)."""
    query = after_id(filter, step.point.after)
    if batch_size is None:
        return query, None
    found = await coll.find(
        query, {"_id": 1}, sort=[("_id", 1)], skip=batch_size - 1, limit=1
    ).to_list(1)
    if not found:
        return query, None
    end = found[0]["_id"]
    return {"$and": [query, {"_id": {"$lte": end}}]}, end


def _fall_back(ctx: StepContext, feature: str, what: str, exc: OperationFailure) -> None:
    ctx.server_side[feature] = False
    ctx.logger.warning(
        "insightdb: {} {}: the server refused {} ({}); falling back to batches, "
        "so documents now cross the wire",
        ctx.group,
        ctx.revision,
        what,
        describe_error(exc),
    )


def _marked_pipeline(
    ctx: StepContext, step: Step, pipeline: list[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The pipeline, plus the step's marker when its writes are not transactional."""
    token = ctx.lock.token if ctx.lock is not None else None
    if not step.marked or token is None:
        return list(pipeline)
    return list(mark_update(list(pipeline), step.marker, token))


async def _pipeline_update(
    ctx: StepContext,
    coll: AsyncCollection[Any],
    scope: Mapping[str, Any],
    pipeline: list[Mapping[str, Any]],
    session: AsyncClientSession | None,
) -> tuple[int, int]:
    result = await coll.update_many(dict(scope), list(pipeline), session=session)
    return result.matched_count, result.modified_count


async def _pipeline_in_batches(
    ctx: StepContext,
    coll: AsyncCollection[Any],
    scope: Mapping[str, Any],
    pipeline: list[Mapping[str, Any]],
    session: AsyncClientSession | None,
) -> tuple[int, int]:
    stages: list[Mapping[str, Any]] = [{"$match": scope}, {"$sort": {"_id": 1}}, *pipeline]
    seen = written = 0
    batch: list[ReplaceOne[Any]] = []
    async with await coll.aggregate(stages, batchSize=ctx.batch_size, session=session) as cursor:
        async for doc in cursor:
            seen += 1
            # ``scope`` keeps the step's unmarked condition, so a replay skips written ones.
            batch.append(ReplaceOne({"$and": [dict(scope), {"_id": doc["_id"]}]}, doc))
            if len(batch) >= ctx.batch_size:
                written += (
                    await coll.bulk_write(batch, ordered=False, session=session)
                ).modified_count
                batch = []
    if batch:
        written += (await coll.bulk_write(batch, ordered=False, session=session)).modified_count
    return seen, written


async def _merge_in_batches(
    ctx: StepContext,
    coll: AsyncCollection[Any],
    scope: Mapping[str, Any],
    pipeline: list[Mapping[str, Any]],
    target: str,
    merge: Mapping[str, Any],
) -> None:
    mode, missing = merge["whenMatched"], merge["whenNotMatched"]
    if mode not in _MERGE_MODES or missing not in {"insert", "discard"}:
        raise MigrationError(
            f"{ctx.revision}: the server has no $merge and the batch fallback supports only "
            f"whenMatched replace/merge/keepExisting with whenNotMatched insert/discard"
        )
    fields = [merge["on"]] if isinstance(merge["on"], str) else list(merge["on"])
    out = ctx.database[target]
    batch: list[Any] = []
    stages: list[Mapping[str, Any]] = [{"$match": scope}, {"$sort": {"_id": 1}}, *pipeline]
    async with await coll.aggregate(stages, batchSize=ctx.batch_size) as cursor:
        async for doc in cursor:
            where = {name: doc.get(name) for name in fields}
            upsert = missing == "insert"
            if mode == "replace":
                batch.append(ReplaceOne(where, doc, upsert=upsert))
            elif mode == "merge":
                batch.append(UpdateOne(where, {"$set": doc}, upsert=upsert))
            else:
                batch.append(UpdateOne(where, {"$setOnInsert": doc}, upsert=upsert))
            if len(batch) >= ctx.batch_size:
                await out.bulk_write(batch, ordered=False)
                batch = []
    if batch:
        await out.bulk_write(batch, ordered=False)
