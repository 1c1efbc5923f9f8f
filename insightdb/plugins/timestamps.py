"""``Timestamped``: ``created_at`` and ``updated_at``, in UTC, kept right on every write.

Two layers, so that every write path is covered once:

* Beanie event actions (before ``Insert`` and ``Replace``) stamp the document object, so
  ``doc.created_at`` is set after ``await doc.insert()``;
* the model's plugin collection (:mod:`insightdb.plugins.collection`) stamps what
  reaches the server — inserts, replacements, every update (``set``/``inc``, query
  updates, ``update_many``, upserts) and each request of a bulk write — with the pure
  functions below. Updates are merged back into the object by Beanie where it does so
  (``save``, ``set``, ``inc``).

Times come from the client's clock, in UTC, cut to milliseconds (what BSON stores), so
the object and the stored document hold the same value.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

from beanie import Insert, Replace, before_event
from pydantic import BaseModel

from insightdb.plugins.base import PluginMixin

__all__ = [
    "CREATED",
    "UPDATED",
    "Timestamped",
    "stamp_document",
    "stamp_replacement",
    "stamp_update",
    "utc_now",
]

CREATED = "created_at"
UPDATED = "updated_at"

# The last stamp an event action put on a document object in this context: the plugin
# collection keeps that value rather than taking a second, later reading of the clock.
_issued: contextvars.ContextVar[datetime | None] = contextvars.ContextVar(
    "insightdb_timestamp", default=None
)


def utc_now() -> datetime:
    """The current UTC time, cut to the millisecond (BSON's precision)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond - now.microsecond % 1000)


def _issue() -> datetime:
    stamp = utc_now()
    _issued.set(stamp)
    return stamp


def _fresh(value: Any) -> bool:
    issued = _issued.get()
    return issued is not None and value == issued


def stamp_document(document: Any, now: datetime) -> Any:
    """Give a new document ``created_at``/``updated_at`` where it has none (in place)."""
    if isinstance(document, MutableMapping):
        if document.get(CREATED) is None:
            document[CREATED] = now
        if document.get(UPDATED) is None:
            document[UPDATED] = now
    return document


def stamp_replacement(replacement: Any, now: datetime) -> Any:
    """A copy of a replacement with ``updated_at`` now (``created_at`` kept or now)."""
    if not isinstance(replacement, Mapping):
        return replacement
    stamped = dict(replacement)
    if not _fresh(stamped.get(UPDATED)):
        stamped[UPDATED] = now
    if stamped.get(CREATED) is None:
        stamped[CREATED] = now
    return stamped


def stamp_update(update: Any, now: datetime, *, upsert: bool) -> Any:
    """An update that also sets ``updated_at`` (and ``created_at`` when it inserts).

    A ``$set`` of ``created_at: None`` (Beanie's ``save()`` of a new object) is dropped:
    ``created_at`` is never cleared, and an upsert sets it with ``$setOnInsert``.
    """
    if isinstance(update, Sequence) and not isinstance(update, str | bytes):
        stage = {UPDATED: now, CREATED: {"$ifNull": [f"${CREATED}", now]}}
        return [*update, {"$set": stage}]
    if not isinstance(update, Mapping):
        return update
    stamped: dict[str, Any] = {}
    elsewhere: set[str] = set()
    for operator, fields in update.items():
        if isinstance(fields, Mapping):
            fields = dict(fields)
            if operator == "$set" and CREATED in fields and fields[CREATED] is None:
                del fields[CREATED]
            if operator != "$set":
                elsewhere.update(fields)
        stamped[operator] = fields
    sets = dict(stamped.get("$set") or {})
    if UPDATED not in elsewhere and not _fresh(sets.get(UPDATED)):
        sets[UPDATED] = now
    if sets:
        stamped["$set"] = sets
    if upsert and CREATED not in sets and CREATED not in elsewhere:
        stamped["$setOnInsert"] = {**dict(stamped.get("$setOnInsert") or {}), CREATED: now}
    return stamped


class Timestamped(PluginMixin, BaseModel):
    """Mixin: ``created_at`` and ``updated_at`` (UTC) on every write of the model.

    ``class Invoice(Timestamped, TenantScoped, CustomerDocument)``: mixins go before the
    document base class, in any order among themselves.
    """

    created_at: datetime | None = None
    updated_at: datetime | None = None

    @before_event(Insert)
    def _insightdb_stamp_insert(self) -> None:
        now = _issue()
        if self.created_at is None:
            self.created_at = now
        self.updated_at = now

    @before_event(Replace)
    def _insightdb_stamp_replace(self) -> None:
        now = _issue()
        if self.created_at is None:
            self.created_at = now
        self.updated_at = now
