"""The allowlists: what insightdb lets through to the driver, method by method.

Tenant scoping rewrites a command's filter, pipeline, documents and update. PyMongo
merges keyword arguments it does not know into the command document *after* building it,
so an argument such as ``query=`` or ``pipeline=`` would replace the scoped part; options
such as ``collation`` change how the tenant predicate compares. Safety therefore can't
depend on a list of dangerous arguments: for every method this module names the keyword
arguments that can't change the command's filter, pipeline, update, target or
namespace, and everything else is refused before a command is sent
(:func:`check_options`).

It also classifies every public attribute of the driver objects insightdb hands out
(collection, database, client, session, cursors). ``tests/unit/test_allowlist_inventory.py``
walks the installed PyMongo and Beanie and fails when a public name exists that is in no
class here, so an upgrade that adds a method or an option fails a test instead of
opening a hole. This is a catalogue of one kind of thing, hence its length.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.collation import Collation

from insightdb.exceptions import TenantIsolationError

__all__ = [
    "COLLECTION_ADMIN",
    "COLLECTION_DATA",
    "COLLECTION_DERIVED",
    "COLLECTION_METADATA",
    "DATABASE_AGGREGATE_OPTIONS",
    "HARMLESS",
    "OPTIONS",
    "POSITIONAL",
    "SIMPLE_COLLATION",
    "bind_positional",
    "check_collation",
    "check_options",
    "is_simple_collation",
    "refuse_unlisted",
]

# The collation under which the tenant predicate is an exact, binary comparison.
SIMPLE_COLLATION: Mapping[str, Any] = {"locale": "simple"}

# Attributes that reveal nothing about documents and reach no other object.
HARMLESS = frozenset(
    {"name", "full_name", "codec_options", "read_preference", "write_concern", "read_concern"}
)

_CURSOR_OPTIONS = frozenset(
    {
        "projection",
        "skip",
        "limit",
        "no_cursor_timeout",
        "cursor_type",
        "sort",
        "allow_partial_results",
        "batch_size",
        "collation",
        "hint",
        "max_time_ms",
        "max",
        "min",
        "return_key",
        "show_record_id",
        "comment",
        "session",
        "allow_disk_use",
        "let",
    }
)
_DELETE_OPTIONS = frozenset({"collation", "hint", "session", "let", "comment"})

# Per collection method: the keyword arguments that can't change the command's filter,
# pipeline, update, documents, target or namespace. ``collation`` is allowed here and
# then checked on its own (check_collation); ``let`` only defines variables, which the
# injected plain equality on tenant_id never reads.
OPTIONS: Mapping[str, frozenset[str]] = {
    "find": _CURSOR_OPTIONS,
    "find_one": _CURSOR_OPTIONS,
    "find_raw_batches": _CURSOR_OPTIONS,
    "count_documents": frozenset(
        {"session", "comment", "skip", "limit", "maxTimeMS", "collation", "hint"}
    ),
    "distinct": frozenset({"session", "comment", "hint", "maxTimeMS", "collation"}),
    "aggregate": frozenset(
        {
            "session",
            "let",
            "comment",
            "allowDiskUse",
            "maxTimeMS",
            "maxAwaitTimeMS",
            "batchSize",
            "collation",
            "hint",
        }
    ),
    "aggregate_raw_batches": frozenset(
        {"session", "comment", "allowDiskUse", "maxTimeMS", "batchSize", "collation", "hint"}
    ),
    "estimated_document_count": frozenset({"comment", "maxTimeMS"}),
    "insert_one": frozenset({"bypass_document_validation", "session", "comment"}),
    "insert_many": frozenset({"ordered", "bypass_document_validation", "session", "comment"}),
    "update_one": frozenset(
        {
            "upsert",
            "bypass_document_validation",
            "collation",
            "array_filters",
            "hint",
            "session",
            "let",
            "sort",
            "comment",
        }
    ),
    "update_many": frozenset(
        {
            "upsert",
            "array_filters",
            "bypass_document_validation",
            "collation",
            "hint",
            "session",
            "let",
            "comment",
        }
    ),
    "replace_one": frozenset(
        {
            "upsert",
            "bypass_document_validation",
            "collation",
            "hint",
            "session",
            "let",
            "sort",
            "comment",
        }
    ),
    "delete_one": _DELETE_OPTIONS,
    "delete_many": _DELETE_OPTIONS,
    "find_one_and_delete": frozenset(
        {"projection", "sort", "hint", "session", "let", "comment", "maxTimeMS", "collation"}
    ),
    "find_one_and_replace": frozenset(
        {
            "projection",
            "sort",
            "upsert",
            "return_document",
            "hint",
            "session",
            "let",
            "comment",
            "maxTimeMS",
            "collation",
        }
    ),
    "find_one_and_update": frozenset(
        {
            "projection",
            "sort",
            "upsert",
            "return_document",
            "array_filters",
            "hint",
            "session",
            "let",
            "comment",
            "maxTimeMS",
            "collation",
        }
    ),
    "bulk_write": frozenset({"ordered", "bypass_document_validation", "session", "comment", "let"}),
}

# A database-level aggregation (``$documents``, ``$currentOp``...): its pipeline is scoped
# like a collection's, and its options are the command's own.
DATABASE_AGGREGATE_OPTIONS = frozenset(
    {"session", "comment", "allowDiskUse", "maxTimeMS", "batchSize"}
)

# Collection methods insightdb scopes (or, for estimated_document_count, refuses in scope).
COLLECTION_DATA = frozenset(
    name for name in OPTIONS if name not in {"find_raw_batches", "aggregate_raw_batches"}
)
# Methods that return another driver object: insightdb returns a guarded one.
COLLECTION_DERIVED = frozenset({"database", "with_options", "__getitem__", "__getattr__"})
# Methods that read metadata only (index definitions, collection options).
COLLECTION_METADATA = frozenset(
    {"index_information", "list_indexes", "options", "list_search_indexes"}
)
# Everything else: schema and administration, raw batches, change streams. On a
# tenant-scoped collection only inside unscoped(); on others, as the driver has them,
# except that rename may not target a tenant-scoped name and raw aggregation is scoped.
COLLECTION_ADMIN = frozenset(
    {
        "create_index",
        "create_indexes",
        "drop_index",
        "drop_indexes",
        "create_search_index",
        "create_search_indexes",
        "drop_search_index",
        "update_search_index",
        "drop",
        "rename",
        "watch",
        "find_raw_batches",
        "aggregate_raw_batches",
    }
)
# Public names of AsyncCollection that are not methods to call on a guarded collection
# (iteration and truth testing raise in the driver itself).
COLLECTION_INERT = frozenset({"next", "__iter__", "__bool__"})


def _positional_names(function: Any, skip: int) -> tuple[str, ...]:
    """The names a function binds positional arguments to, after the first ``skip``."""
    names = []
    for parameter in list(inspect.signature(function).parameters.values())[skip:]:
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            break
        names.append(parameter.name)
    return tuple(names)


# How each method binds extra positional arguments, read from the installed driver:
# (self, filter) for find goes to the cursor, (self, <primary arguments>) for the rest.
_PRIMARY = {
    "find": 0,
    "find_one": 0,
    "find_raw_batches": 0,
    "count_documents": 2,
    "distinct": 3,
    "aggregate": 2,
    "aggregate_raw_batches": 2,
    "estimated_document_count": 1,
    "insert_one": 2,
    "insert_many": 2,
    "update_one": 3,
    "update_many": 3,
    "replace_one": 3,
    "delete_one": 2,
    "delete_many": 2,
    "find_one_and_delete": 2,
    "find_one_and_replace": 3,
    "find_one_and_update": 3,
    "bulk_write": 2,
}
POSITIONAL: Mapping[str, tuple[str, ...]] = {
    name: (
        _positional_names(AsyncCursor.__init__, 3)  # (self, collection, filter, ...)
        if name in {"find", "find_one", "find_raw_batches"}
        else _positional_names(getattr(AsyncCollection, name), skip)
    )
    for name, skip in _PRIMARY.items()
}


def bind_positional(
    method: str, label: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Name the positional options of a call as the driver would bind them.

    Raises:
        TenantIsolationError: More positional arguments than the driver takes, or one
            given both ways.
    """
    names = POSITIONAL[method]
    if len(args) > len(names):
        raise TenantIsolationError(
            f"{label}.{method}() got {len(args)} extra positional arguments; "
            "pass options by keyword"
        )
    bound = dict(zip(names, args, strict=False))
    duplicated = bound.keys() & kwargs.keys()
    if duplicated:
        raise TenantIsolationError(f"{label}.{method}() got {sorted(duplicated)[0]!r} twice")
    return {**bound, **kwargs}


def check_options(
    method: str, label: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Return ``args`` and ``kwargs`` as keyword arguments, or refuse an unlisted one.

    Args:
        method: The collection method, a key of :data:`OPTIONS`.
        label: The collection, for the error message.
        args: Positional arguments after the method's primary ones.
        kwargs: Keyword arguments.

    Raises:
        TenantIsolationError: An argument is not on the method's allowlist (it could
            replace the scoped filter, pipeline or update), or there are too many.
    """
    allowed = OPTIONS[method]
    if args:
        kwargs = bind_positional(method, label, args, kwargs)
    if not kwargs.keys() <= allowed:
        refuse_unlisted(kwargs, allowed, f"{label}.{method}()")
    return kwargs


def refuse_unlisted(kwargs: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    """Raise for the keyword arguments of ``kwargs`` that are not in ``allowed``.

    Raises:
        TenantIsolationError: Naming every unlisted argument.
    """
    refused = sorted(kwargs.keys() - allowed)
    if refused:
        raise TenantIsolationError(
            f"{where} does not accept {', '.join(map(repr, refused))}: insightdb allows only "
            "options that can't change the command's filter, pipeline, update or target"
        )


def is_simple_collation(value: Any) -> bool:
    """Tell whether ``value`` is the simple (binary) collation."""
    document = value.document if isinstance(value, Collation) else value
    return isinstance(document, Mapping) and dict(document) == dict(SIMPLE_COLLATION)


def check_collation(value: Any, where: str) -> Mapping[str, Any]:
    """Return the simple collation for a scoped command, or refuse another one.

    A collation applies to every string comparison of a command, the injected
    ``tenant_id`` equality included: under a case- or accent-insensitive collation,
    ``"acme"`` would match ``"ACME"`` and ``"Acmé"``. Scoped commands therefore always
    run with the simple collation — sent explicitly, so that a collection's default
    collation can't widen the predicate either.

    Raises:
        TenantIsolationError: ``value`` is a collation other than the simple one.
    """
    if value is None or is_simple_collation(value):
        return SIMPLE_COLLATION
    raise TenantIsolationError(
        f"{where}: a collation other than {{'locale': 'simple'}} is refused on tenant-scoped "
        "data, because it would also widen the tenant filter (case- or accent-insensitive "
        "tenant ids); store a normalised copy of the field to search instead"
    )
