"""Hot reads that skip Beanie's Document construction, with tenancy kept.

Beanie turns every document it reads into a full ``Document``: validation plus state
tracking, about 10 µs for a small document, which makes ``find(...).to_list()`` of 1,000
documents several times as expensive (in client CPU) as the same read with PyMongo alone.
For read paths that only need the data, :func:`find_as` and :func:`find_one_as` read into
a plain type instead — a ``msgspec.Struct``, a Pydantic model, a ``TypedDict``, a
dataclass, or ``dict`` for the documents exactly as the driver decoded them — validated in
one pass: by ``msgspec.convert`` for a ``Struct`` (the fastest: strict types, about 0.4 µs
per small document; the ``fast`` extra installs msgspec), by a cached
``pydantic.TypeAdapter`` for the others.

Nothing else is skipped. The filter and sort are built by the model's own ``find()``
(Beanie's operators, encoders, inheritance and soft-delete filters apply), and the query
runs on ``Model.get_pymongo_collection()`` — for an insightdb model that is the guarded
collection, so tenant scoping (and :class:`~insightdb.exceptions.TenantContextError`
without a tenant), the circuit breaker and error translation all apply as they do to
``Model.find()``. Links are not fetched: a ``Link`` field arrives as its stored reference.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from beanie import Document
from beanie.odm.utils.projection import get_projection
from pydantic import BaseModel, TypeAdapter
from pymongo.asynchronous.client_session import AsyncClientSession

__all__ = ["find_as", "find_one_as"]

T = TypeVar("T")

SortSpec = str | tuple[str, int] | Sequence[tuple[str, int]] | None


async def find_as(
    model: type[Document],
    *filters: Mapping[Any, Any] | bool,
    into: type[T],
    sort: SortSpec = None,
    skip: int = 0,
    limit: int = 0,
    projection: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    with_children: bool = False,
    session: AsyncClientSession | None = None,
    **pymongo_kwargs: Any,
) -> list[T]:
    """Return the documents of ``model`` matching ``filters``, each read as ``into``.

    Example:
        ```py
        class ProjectRow(BaseModel):
            title: str
            budget: int

        with tenant_context("acme"):
            rows = await find_as(Project, Project.budget > 100, into=ProjectRow, limit=50)
        ```

    Args:
        model: The document class to query (its collection, tenancy and filters apply).
        *filters: Filters as accepted by ``model.find()`` (dicts or Beanie expressions),
            combined with AND.
        into: What each document becomes: a ``msgspec.Struct`` (validated strictly by
            msgspec, the fastest), a Pydantic model, ``TypedDict`` or dataclass
            (validated by Pydantic; only its fields are fetched), or ``dict`` (no
            validation, every field). Not a Beanie ``Document``: use ``model.find()``
            for those.
        sort: A field name (``"-budget"`` for descending), a ``(field, direction)``
            pair or a list of pairs, as ``model.find(sort=...)`` takes.
        skip: Documents to skip.
        limit: The most documents to return; 0 for no limit.
        projection: The fields to fetch; defaults to the fields of ``into``.
        batch_size: The cursor batch size; defaults to ``limit`` when one is given, so
            that a bounded read takes one round trip.
        with_children: Include documents of subclasses (Beanie inheritance).
        session: A PyMongo session (e.g. a transaction's).
        **pymongo_kwargs: Passed to ``find`` (``hint``, ``comment``, ``max_time_ms``...).

    Returns:
        The documents, in the server's order (or ``sort``'s).

    Raises:
        TenantContextError: ``model`` is tenant-scoped and no tenant is set (raised
            before any command is sent).
        DatabaseUnavailable: The database could not be reached.
        pydantic.ValidationError: A document does not fit ``into`` (a Pydantic target).
        msgspec.ValidationError: A document does not fit ``into`` (a ``Struct``).
    """
    reader = _reader(into)
    query, order = _query(model, filters, sort, with_children)
    if batch_size is None and limit > 0:
        batch_size = limit
    cursor = model.get_pymongo_collection().find(
        query,
        projection=reader.projection if projection is None else projection,
        sort=order or None,
        skip=skip,
        limit=limit,
        batch_size=batch_size or 0,
        session=session,
        **pymongo_kwargs,
    )
    documents: list[Any] = await cursor.to_list()
    if reader.many is None:
        return documents
    result: list[T] = reader.many(documents)
    return result


async def find_one_as(
    model: type[Document],
    *filters: Mapping[Any, Any] | bool,
    into: type[T],
    sort: SortSpec = None,
    projection: Mapping[str, Any] | None = None,
    with_children: bool = False,
    session: AsyncClientSession | None = None,
    **pymongo_kwargs: Any,
) -> T | None:
    """Return the first document of ``model`` matching ``filters`` as ``into``, or ``None``.

    A lookup by id is ``find_one_as(Project, {"_id": project_id}, into=ProjectRow)``.

    Args:
        model: The document class to query (its collection, tenancy and filters apply).
        *filters: Filters as accepted by ``model.find()``, combined with AND.
        into: What the document becomes, as for :func:`find_as`.
        sort: Which document comes first when several match, as for :func:`find_as`.
        projection: The fields to fetch; defaults to the fields of ``into``.
        with_children: Include documents of subclasses (Beanie inheritance).
        session: A PyMongo session.
        **pymongo_kwargs: Passed to ``find_one``.

    Returns:
        The document, or ``None`` when none matches (in the current tenant).

    Raises:
        TenantContextError: ``model`` is tenant-scoped and no tenant is set.
        DatabaseUnavailable: The database could not be reached.
        pydantic.ValidationError: The document does not fit ``into`` (Pydantic targets).
        msgspec.ValidationError: The document does not fit ``into`` (a ``Struct``).
    """
    reader = _reader(into)
    query, order = _query(model, filters, sort, with_children)
    document = await model.get_pymongo_collection().find_one(
        query,
        projection=reader.projection if projection is None else projection,
        sort=order or None,
        session=session,
        **pymongo_kwargs,
    )
    if document is None or reader.one is None:
        return typing.cast("T | None", document)
    result: T = reader.one(document)
    return result


def _query(
    model: type[Document],
    filters: tuple[Mapping[Any, Any] | bool, ...],
    sort: SortSpec,
    with_children: bool,
) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """Build the filter and sort exactly as ``model.find()`` would send them."""
    query = model.find(*filters, sort=sort, with_children=with_children)  # type: ignore[arg-type]
    return query.get_filter_query(), [(str(k), int(v)) for k, v in query.sort_expressions]


@dataclasses.dataclass(frozen=True, slots=True)
class _Reader:
    """How to read documents into one target type."""

    projection: dict[str, Any] | None
    many: Callable[[list[Any]], list[Any]] | None  # None: documents are returned as decoded
    one: Callable[[Any], Any] | None


# One entry per target type a program reads into: a handful, built on first use.
_READERS: dict[Any, _Reader] = {}


def _reader(into: Any) -> _Reader:
    """Return (and cache) the projection and validators for ``into``."""
    reader = _READERS.get(into)
    if reader is None:
        reader = _READERS[into] = _build_reader(into)
    return reader


def _build_reader(into: Any) -> _Reader:
    if into is dict:
        return _Reader(projection=None, many=None, one=None)
    if isinstance(into, type) and issubclass(into, Document):
        raise TypeError(
            f"find_as(into={into.__name__}) reads into plain types; for Documents use "
            f"{into.__name__}.find()"
        )
    struct = _msgspec_struct(into)
    if struct is not None:
        return struct
    projection: dict[str, Any] | None = None
    if isinstance(into, type) and issubclass(into, BaseModel):
        projection = get_projection(into)
    elif typing.is_typeddict(into):
        keys = into.__required_keys__ | into.__optional_keys__
        projection = dict.fromkeys(sorted(keys), 1)
    elif dataclasses.is_dataclass(into):
        projection = {field.name: 1 for field in dataclasses.fields(into)}
    many, one = TypeAdapter(list[into]), TypeAdapter(into)
    return _Reader(projection=projection, many=many.validate_python, one=one.validate_python)


def _msgspec_struct(into: Any) -> _Reader | None:
    """The reader of a ``msgspec.Struct`` target, or ``None`` when ``into`` is not one."""
    try:
        import msgspec
    except ModuleNotFoundError:  # the fast extra is not installed: no Struct exists either
        return None
    if not (isinstance(into, type) and issubclass(into, msgspec.Struct)):
        return None
    # msgspec checks each value's type strictly (no coercion) and ignores fields it
    # doesn't declare; ids stay bson.ObjectId (declare `id: ObjectId = field(name="_id")`).
    many_type = list[into]
    projection = dict.fromkeys(into.__struct_encode_fields__, 1)

    def many(documents: list[Any]) -> list[Any]:
        result: list[Any] = msgspec.convert(documents, many_type)
        return result

    def one(document: Any) -> Any:
        return msgspec.convert(document, into)

    return _Reader(projection=projection, many=many, one=one)
