"""Beanie's query classes on the fast Documents path: ``to_list`` parses a batch in one pass.

The models' ``_find_many_query_class``/``_find_one_query_class`` (set by
InsightDocument) make Beanie build these; anything the plan does not cover (lazy
parsing, a projection that is not a planned Document, inheritance routing) is Beanie's.
"""

from __future__ import annotations

from typing import Any

from beanie import Document

from insightdb.runtime import _beanie_seams as seams
from insightdb.runtime.hydration.plan import plan_for

__all__ = ["FastAggregationQuery", "FastFindMany", "FastFindOne", "hydrate_many"]


def hydrate_many(model: type[Any], documents: list[dict[str, Any]]) -> list[Any]:
    """Read ``documents`` as ``model`` (a Beanie cursor's ``to_list``), fast where it applies."""
    plan = plan_for(model)
    if plan is None or plan.validator is None or (model._inheritance_inited and model._children):
        return [seams.parse_obj(model, document) for document in documents]
    hydrate = plan.hydrate
    return [
        hydrate(document) if type(document) is dict else seams.parse_obj(model, document)
        for document in documents
    ]


def _fast_projection(projection: Any, lazy_parse: bool) -> bool:
    return (
        not lazy_parse
        and isinstance(projection, type)
        and issubclass(projection, Document)
        and plan_for(projection) is not None
    )


class _FastCursor:
    """``to_list`` of Beanie's cursor queries, parsing the batch in one pass.

    Mirrors ``BaseCursorQuery.to_list`` (pinned in :mod:`insightdb.runtime._beanie_seams`).
    """

    async def to_list(self, length: int | None = None) -> list[Any]:
        query: Any = self
        projection = query.get_projection_model()
        if not _fast_projection(projection, query.lazy_parse):
            return await super().to_list(length)  # type: ignore[misc, no-any-return]
        cursor = await query.get_cursor()
        documents = query._get_cache()
        if documents is None:
            documents = await cursor.to_list(length)
            query._set_cache(documents)
        return hydrate_many(projection, documents)


class FastAggregationQuery(_FastCursor, seams.AggregationQuery[Any]):
    """Beanie's ``AggregationQuery`` with a batched ``to_list`` for Document projections."""


class FastFindMany(_FastCursor, seams.FindMany[Any]):
    """Beanie's ``FindMany`` with a batched ``to_list`` (and aggregations that have one)."""

    AggregationQueryType = FastAggregationQuery


class FastFindOne(seams.FindOne[Any]):
    """Beanie's ``FindOne`` whose ``replace_one`` encodes with the model's plan."""

    async def replace_one(
        self,
        document: Any,
        session: Any = None,
        bulk_writer: Any = None,
    ) -> Any:
        """Replace the found document by ``document`` (Beanie's ``FindOne.replace_one``)."""
        plan = plan_for(type(document))
        if plan is None or bulk_writer is not None:
            return await super().replace_one(document, session=session, bulk_writer=bulk_writer)
        self.set_session(session=session)
        result = await self.document_model.get_pymongo_collection().replace_one(
            self.get_filter_query(),
            plan.to_dict(
                document, to_db=True, exclude=("_id",), keep_nulls=plan.settings.keep_nulls
            ),
            session=self.session,
        )
        if not result.raw_result["updatedExisting"]:  # type: ignore[index]
            from beanie.exceptions import DocumentNotFound

            raise DocumentNotFound
        return result
