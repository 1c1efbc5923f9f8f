"""Bulk writes through the plugins: each request rewritten like its single-command form.

:func:`rewrite_request` gives one ``bulk_write`` request of a plugin model what the plugin
collection (:mod:`insightdb.plugins.collection`) gives the matching single command:
``Timestamped`` stamps inserts, replacements and updates; ``SoftDeletable`` leaves
deleted documents out of filters and turns deletes into updates of ``deleted_at``. It
also names the request's operation for the audit trail and returns the body the caller
sent. The guarded collection below still scopes each request to the tenant.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo.operations import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne

from insightdb.plugins.softdelete import deletes_are_soft, soft_delete_update
from insightdb.plugins.timestamps import stamp_document, stamp_replacement, stamp_update

__all__ = ["rewrite_request"]


def rewrite_request(
    request: Any,
    now: datetime,
    *,
    stamp: bool,
    soft: bool,
    visible: Callable[[Any], Any],
) -> tuple[Any, str, Any]:
    """Rewrite one ``bulk_write`` request for a model's plugins.

    Args:
        request: A PyMongo request (``InsertOne``, ``UpdateMany``...).
        now: The time of the bulk write.
        stamp: Whether the model is ``Timestamped``.
        soft: Whether the model is ``SoftDeletable``.
        visible: Restricts a filter to the documents the model shows here.

    Returns:
        The rewritten request, its audit operation and the body the caller sent.
    """
    kind = type(request)
    if kind is InsertOne:
        rewritten = copy.copy(request)
        if stamp:
            rewritten._doc = stamp_document(dict(request._doc), now)
        return rewritten, "insert", request._doc
    if kind in (DeleteOne, DeleteMany) and soft and deletes_are_soft():
        update = soft_delete_update(now)
        if stamp:
            update = stamp_update(update, now, upsert=False)
        as_update = UpdateOne if kind is DeleteOne else UpdateMany
        converted = as_update(
            visible(request._filter),
            update,
            collation=request._collation,
            hint=request._hint,
        )
        return converted, "soft_delete", update
    rewritten = copy.copy(request)
    if kind in (DeleteOne, DeleteMany):
        rewritten._filter = visible(request._filter)
        return rewritten, "delete", None
    if kind is ReplaceOne:
        rewritten._filter = visible(request._filter)
        if stamp:
            rewritten._doc = stamp_replacement(request._doc, now)
        return rewritten, "replace", request._doc
    if kind in (UpdateOne, UpdateMany):
        rewritten._filter = visible(request._filter)
        if stamp:
            rewritten._doc = stamp_update(request._doc, now, upsert=bool(request._upsert))
        return rewritten, "update", request._doc
    return request, "write", None  # the guarded collection refuses what it can't check
