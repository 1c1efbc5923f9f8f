"""A canned-reply MongoDB wire-protocol server, so that benchmarks measure the client only.

The embedded server (mongoeco) is an emulator written in Python: its wall time per command
dwarfs the client's, and on a 2-core machine it competes with the client for CPU. This
module answers the driver from memory instead, with as little work as possible, in a child
process of its own (so its CPU time is never counted in the client's ``process_time()``).

How it works: an asyncio TCP server on 127.0.0.1 reads ``OP_MSG`` frames (the only opcode
PyMongo 4.x sends), decodes the command body with ``bson`` (from PyMongo) and answers one
``OP_MSG`` reply per request, honouring ``moreToCome``. Documents are kept per namespace in
insertion order, each as its original BSON bytes plus a decoded copy used for matching; a
``find`` reply embeds the stored bytes unchanged (``RawBSONDocument``), so serving 1,000
documents costs the server a list slice and one ``bson.encode``. Results of ``find`` and
``aggregate`` are memoised per collection until its next write, so a repeated query costs
the server the same whatever its filter (the client's waiting time would otherwise leak
into its CPU figures through scheduling effects). The handshake presents a
standalone MongoDB 7.0 (wire version 21) without ``topologyVersion``, so the driver polls
instead of streaming heartbeats, and with ``logicalSessionTimeoutMinutes`` so that commands
carry implicit sessions as they do against a real server.

Commands: ``hello``/``isMaster``, ``ping``, ``buildInfo``, ``endSessions``, ``find``,
``getMore``, ``killCursors``, ``insert``, ``update``, ``findAndModify`` (query, update or
remove, upsert, new), ``delete``, ``aggregate``, ``count``,
``distinct``, ``listIndexes``, ``createIndexes``, ``dropIndexes``, ``listCollections``,
``listDatabases``, ``create``, ``drop``, ``dropDatabase``, ``serverStatus``,
``connectionStatus``, and ``commitTransaction``/``abortTransaction`` as no-ops.

Limits (it is a measuring instrument, not a database): filters support equality, ``$eq``,
``$ne``, ``$gt``/``$gte``/``$lt``/``$lte``, ``$in``/``$nin``, ``$exists``, ``$not``,
``$and``/``$or``/``$nor`` on dotted paths (equality also matches array elements); updates
support ``$set``, ``$unset``, ``$inc``, ``$setOnInsert`` (dotted paths too) and
replacements; aggregation
supports ``$match``, ``$group`` (``$sum``/``$avg``/``$min``/``$max``/``$first``/``$last``/
``$push``/``$count`` over field paths and constants), ``$sort``, ``$skip``, ``$limit``,
``$count`` and inclusion ``$project``; projections in ``find`` include top-level fields
only. No authentication, TLS, compression, transactions (accepted, not isolated), write
concern, unique-index enforcement other than ``_id``, or size limits. Anything else is
answered with an error naming the unsupported feature, never silently ignored.

``--latency-ms`` delays every reply, to play a server that far away (startup benchmarks:
concurrency only pays when round trips wait on the network).

Run it standalone with ``python bench/canned_server.py --port 27777``; from Python use
:class:`CannedServer`, which starts it as a child process on a free port and stops it by its
own PID. The child also exits by itself after ``--max-seconds`` or when its parent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import bson
from bson import ObjectId
from bson.int64 import Int64
from bson.raw_bson import RawBSONDocument

from insightdb.testing.server import ServerProcess

__all__ = ["CannedServer", "Store", "matches", "serve"]

OP_MSG = 2013
_CHECKSUM_PRESENT = 1
_MORE_TO_COME = 1 << 1
_HEADER = struct.Struct("<iiii")
_DEFAULT_BATCH = 101
_MISSING = object()
_PARENT_POLL_SECONDS = 0.5
_CACHE_ENTRIES = 1024


class CommandError(Exception):
    """A command the server answers with ``ok: 0``."""

    def __init__(self, message: str, code: int = 2, code_name: str = "BadValue") -> None:
        super().__init__(message)
        self.code = code
        self.code_name = code_name


def _unsupported(what: str) -> CommandError:
    return CommandError(f"canned server: unsupported {what}", 2, "BadValue")


# -- matching -----------------------------------------------------------------------


def _get(doc: Any, path: str) -> Any:
    value = doc
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _same(a: Any, b: Any) -> bool:
    # BSON keeps booleans apart from numbers: true matches neither 1 nor 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _equal(value: Any, target: Any) -> bool:
    if value is _MISSING:
        return target is None
    if _same(value, target):
        return True
    # Equality with a scalar also matches an array that contains it.
    return (
        isinstance(value, list)
        and not isinstance(target, list)
        and any(_same(v, target) for v in value)
    )


def _compare(value: Any, target: Any, test: Callable[[Any, Any], bool]) -> bool:
    if value is _MISSING:
        return False
    candidates = value if isinstance(value, list) else [value]
    for candidate in candidates:
        try:
            if test(candidate, target):
                return True
        except TypeError:
            continue
    return False


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _condition(value: Any, condition: Any) -> bool:
    if not (
        isinstance(condition, Mapping) and condition and all(k.startswith("$") for k in condition)
    ):
        return _equal(value, condition)
    for operator, target in condition.items():
        if operator == "$eq":
            ok = _equal(value, target)
        elif operator == "$ne":
            ok = not _equal(value, target)
        elif operator in _COMPARISONS:
            ok = _compare(value, target, _COMPARISONS[operator])
        elif operator == "$in":
            ok = any(_equal(value, t) for t in target)
        elif operator == "$nin":
            ok = not any(_equal(value, t) for t in target)
        elif operator == "$exists":
            ok = (value is not _MISSING) == bool(target)
        elif operator == "$not":
            ok = not _condition(value, target)
        else:
            raise _unsupported(f"query operator {operator}")
        if not ok:
            return False
    return True


def matches(doc: Mapping[str, Any], query: Mapping[str, Any] | None) -> bool:
    """Tell whether ``doc`` matches ``query`` (the subset described in the module docstring).

    Args:
        doc: A decoded document.
        query: A MongoDB filter; empty or ``None`` matches everything.

    Raises:
        CommandError: The filter uses an operator this server does not implement.
    """
    if not query:
        return True
    for key, condition in query.items():
        if key == "$and":
            if not all(matches(doc, q) for q in condition):
                return False
        elif key == "$or":
            if not any(matches(doc, q) for q in condition):
                return False
        elif key == "$nor":
            if any(matches(doc, q) for q in condition):
                return False
        elif key.startswith("$"):
            raise _unsupported(f"query operator {key}")
        elif not _condition(_get(doc, key), condition):
            return False
    return True


def _rank(value: Any) -> tuple[int, Any]:
    # MongoDB's cross-type order, roughly: null < numbers < strings < objects < arrays <
    # binary < ObjectId < booleans < dates.
    if value is _MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (7, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, Mapping):
        return (3, str(value))
    if isinstance(value, list):
        return (4, str(value))
    if isinstance(value, bytes):
        return (5, value)
    if isinstance(value, ObjectId):
        return (6, value.binary)
    if isinstance(value, datetime.datetime):
        return (8, value)
    return (9, str(value))


def _sorted(items: list[Any], spec: Any, doc_of: Callable[[Any], Mapping[str, Any]]) -> list[Any]:
    if not spec:
        return items
    pairs = list(spec.items()) if isinstance(spec, Mapping) else [tuple(p) for p in spec]
    result = list(items)
    # Stable sorts from the last key to the first give a multi-key order.
    for field, direction in reversed(pairs):
        if not isinstance(direction, int | float):
            raise _unsupported(f"sort direction {direction!r}")

        def key(item: Any, path: str = field) -> tuple[int, Any]:
            return _rank(_get(doc_of(item), path))

        result.sort(key=key, reverse=direction < 0)
    return result


# -- storage ------------------------------------------------------------------------


def _key(value: Any) -> Any:
    if isinstance(value, ObjectId | str | int | float | bytes | datetime.datetime | uuid.UUID):
        return (type(value).__name__, value)
    return ("bson", bson.encode({"v": value}))


class _Stored:
    __slots__ = ("doc", "raw")

    def __init__(self, doc: dict[str, Any], raw: bytes) -> None:
        self.doc = doc
        self.raw = raw


class _Collection:
    __slots__ = ("docs", "indexes")

    def __init__(self) -> None:
        self.docs: dict[Any, _Stored] = {}
        self.indexes: dict[str, dict[str, Any]] = {
            "_id_": {"v": 2, "key": {"_id": 1}, "name": "_id_"}
        }


class Store:
    """Every namespace's documents and indexes, in memory; see the module docstring."""

    def __init__(self) -> None:
        self.collections: dict[str, _Collection] = {}
        self._versions: dict[str, int] = {}

    def version(self, ns: str) -> int:
        """Return how many times ``ns`` has been written to (for cached results)."""
        return self._versions.get(ns, 0)

    def touch(self, ns: str) -> None:
        """Record a write to ``ns``: results cached before it are stale."""
        self._versions[ns] = self._versions.get(ns, 0) + 1

    def get(self, ns: str) -> _Collection | None:
        """Return the collection of ``ns`` (``"db.coll"``), or ``None``."""
        return self.collections.get(ns)

    def ensure(self, ns: str) -> tuple[_Collection, bool]:
        """Return the collection of ``ns`` and whether it was just created."""
        collection = self.collections.get(ns)
        if collection is not None:
            return collection, False
        collection = self.collections[ns] = _Collection()
        self.touch(ns)
        return collection, True

    def candidates(self, ns: str, query: Mapping[str, Any] | None) -> Iterator[_Stored]:
        """Yield the stored documents of ``ns`` that match ``query``."""
        collection = self.collections.get(ns)
        if collection is None:
            return
        ident = query.get("_id", _MISSING) if query else _MISSING
        if ident is not _MISSING and not (
            isinstance(ident, Mapping) and any(k.startswith("$") for k in ident)
        ):
            found = collection.docs.get(_key(ident))
            if found is not None and matches(found.doc, query):
                yield found
            return
        for stored in collection.docs.values():
            if matches(stored.doc, query):
                yield stored


# -- commands -----------------------------------------------------------------------


def _project(stored: _Stored, projection: Mapping[str, Any] | None) -> Any:
    if not projection:
        return RawBSONDocument(stored.raw)
    if any(not v for k, v in projection.items() if k != "_id"):
        raise _unsupported("exclusion projection in find")
    fields = {k.split(".", 1)[0] for k, v in projection.items() if v}
    if projection.get("_id", 1):
        fields.add("_id")
    if fields.issuperset(stored.doc):  # everything is asked for: send the stored bytes
        return RawBSONDocument(stored.raw)
    return {k: v for k, v in stored.doc.items() if k in fields}


def _apply_update(doc: dict[str, Any], update: Any, *, inserting: bool) -> dict[str, Any]:
    if isinstance(update, list):
        raise _unsupported("update pipeline")
    if not any(k.startswith("$") for k in update):
        return {"_id": doc["_id"], **{k: v for k, v in update.items() if k != "_id"}}
    result = dict(doc)
    for operator, fields in update.items():
        for path, value in fields.items():
            # Dotted paths walk (and create) embedded documents, copied on the way down.
            *parents, field = path.split(".")
            target = result
            for part in parents:
                child = target.get(part)
                child = dict(child) if isinstance(child, Mapping) else {}
                target[part] = child
                target = child
            if operator == "$set" or (operator == "$setOnInsert" and inserting):
                target[field] = value
            elif operator == "$setOnInsert":
                continue
            elif operator == "$unset":
                target.pop(field, None)
            elif operator == "$inc":
                target[field] = target.get(field, 0) + value
            else:
                raise _unsupported(f"update operator {operator}")
    return result


def _accumulate(operator: str, values: list[Any]) -> Any:
    present = [v for v in values if v is not _MISSING and v is not None]
    if operator == "$sum":
        return sum(v for v in present if isinstance(v, int | float) and not isinstance(v, bool))
    if operator == "$avg":
        numbers = [v for v in present if isinstance(v, int | float) and not isinstance(v, bool)]
        return sum(numbers) / len(numbers) if numbers else None
    if operator == "$min":
        return min(present, key=_rank) if present else None
    if operator == "$max":
        return max(present, key=_rank) if present else None
    if operator == "$first":
        return values[0] if values else None
    if operator == "$last":
        return values[-1] if values else None
    if operator == "$push":
        return [v for v in values if v is not _MISSING]
    raise _unsupported(f"accumulator {operator}")


def _expression(doc: Mapping[str, Any], expr: Any) -> Any:
    if isinstance(expr, str) and expr.startswith("$"):
        return _get(doc, expr[1:])
    if isinstance(expr, Mapping):
        if any(k.startswith("$") for k in expr):
            raise _unsupported(f"expression {next(iter(expr))}")
        return {k: _expression(doc, v) for k, v in expr.items()}
    return expr


def _group(docs: list[dict[str, Any]], spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    groups: dict[Any, tuple[Any, list[dict[str, Any]]]] = {}
    for doc in docs:
        ident = _expression(doc, spec["_id"])
        ident = None if ident is _MISSING else ident
        groups.setdefault(_key(ident), (ident, []))[1].append(doc)
    result = []
    for ident, members in groups.values():
        out: dict[str, Any] = {"_id": ident}
        for name, accumulator in spec.items():
            if name == "_id":
                continue
            ((operator, expr),) = accumulator.items()
            if operator == "$count":
                out[name] = len(members)
            else:
                out[name] = _accumulate(operator, [_expression(d, expr) for d in members])
        result.append(out)
    return result


def _pipeline(docs: list[dict[str, Any]], pipeline: Iterable[Mapping[str, Any]]) -> list[Any]:
    for stage in pipeline:
        ((name, spec),) = stage.items()
        if name == "$match":
            docs = [d for d in docs if matches(d, spec)]
        elif name == "$group":
            docs = _group(docs, spec)
        elif name == "$sort":
            docs = _sorted(docs, spec, lambda d: d)
        elif name == "$skip":
            docs = docs[int(spec) :]
        elif name == "$limit":
            docs = docs[: int(spec)]
        elif name == "$count":
            docs = [{spec: len(docs)}] if docs else []
        elif name == "$project":
            if any(not v for k, v in spec.items() if k != "_id"):
                raise _unsupported("exclusion or computed $project")
            keep = {k for k, v in spec.items() if v}
            if spec.get("_id", 1):
                keep.add("_id")
            docs = [{k: v for k, v in d.items() if k in keep} for d in docs]
        else:
            raise _unsupported(f"aggregation stage {name}")
    return docs


class Handler:
    """Answers decoded commands from a :class:`Store`; one per server."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or Store()
        self._cursors: dict[int, tuple[str, list[Any]]] = {}
        self._results: dict[tuple[str, bytes], tuple[int, list[Any]]] = {}
        self._cursor_ids = itertools.count(1_000_001)
        self._connection_ids = itertools.count(1)
        self._commands: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
            "ping": lambda db, body: {},
            "buildinfo": self._build_info,
            "endsessions": lambda db, body: {},
            "committransaction": lambda db, body: {},
            "aborttransaction": lambda db, body: {},
            "serverstatus": lambda db, body: {"host": "canned", "version": "7.0.0"},
            "connectionstatus": lambda db, body: {"authInfo": {"authenticatedUsers": []}},
            "find": self._find,
            "getmore": self._get_more,
            "killcursors": self._kill_cursors,
            "insert": self._insert,
            "update": self._update,
            "findandmodify": self._find_and_modify,
            "delete": self._delete,
            "aggregate": self._aggregate,
            "count": self._count,
            "distinct": self._distinct,
            "listindexes": self._list_indexes,
            "createindexes": self._create_indexes,
            "dropindexes": self._drop_indexes,
            "listcollections": self._list_collections,
            "listdatabases": self._list_databases,
            "create": self._create,
            "drop": self._drop,
            "dropdatabase": self._drop_database,
        }

    def new_connection_id(self) -> int:
        """Return the id the next connection reports in ``hello``."""
        return next(self._connection_ids)

    def dispatch(self, body: dict[str, Any], connection_id: int = 0) -> dict[str, Any]:
        """Answer one command; errors become ``ok: 0`` replies."""
        name = next(iter(body), "")
        db = str(body.get("$db", "admin"))
        try:
            if name.lower() in ("hello", "ismaster"):
                reply = self._hello(body, connection_id)
            else:
                handler = self._commands.get(name.lower())
                if handler is None:
                    raise CommandError(f"no such command: '{name}'", 59, "CommandNotFound")
                reply = handler(db, body)
        except CommandError as exc:
            return {"ok": 0.0, "errmsg": str(exc), "code": exc.code, "codeName": exc.code_name}
        reply["ok"] = 1.0
        return reply

    # -- handshake and server information

    def _hello(self, body: dict[str, Any], connection_id: int) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "helloOk": True,
            "isWritablePrimary": True,
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
            "localTime": datetime.datetime.now(datetime.UTC),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": connection_id,
            "minWireVersion": 0,
            "maxWireVersion": 21,
            "readOnly": False,
        }
        if next(iter(body)).lower() == "ismaster":
            reply["ismaster"] = True
        return reply

    def _build_info(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": "7.0.0",
            "versionArray": [7, 0, 0, 0],
            "gitVersion": "canned",
            "bits": 64,
            "maxBsonObjectSize": 16 * 1024 * 1024,
        }

    # -- cursors

    def _cursor_reply(self, ns: str, items: list[Any], batch: int | None) -> dict[str, Any]:
        size = _DEFAULT_BATCH if batch is None or batch <= 0 else batch
        first, rest = items[:size], items[size:]
        cursor_id = 0
        if rest:
            cursor_id = next(self._cursor_ids)
            self._cursors[cursor_id] = (ns, rest)
        return {"cursor": {"firstBatch": first, "id": Int64(cursor_id), "ns": ns}}

    def _cached(self, ns: str, spec: dict[str, Any], compute: Callable[[], list[Any]]) -> list[Any]:
        # Benchmarks repeat the same query on unchanged data: answering it from a cache
        # keeps the server's time the same whatever the filter's shape (a tenant predicate
        # would otherwise cost this Python server a pass over the collection, and the
        # client's wait would show up in its CPU through scheduling effects).
        key = (ns, bson.encode(spec))
        version = self.store.version(ns)
        hit = self._results.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        items = compute()
        if len(self._results) >= _CACHE_ENTRIES:
            self._results.clear()
        self._results[key] = (version, items)
        return items

    def _find(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        ns = f"{db}.{body['find']}"
        skip = int(body.get("skip") or 0)
        limit = int(body.get("limit") or 0)

        def compute() -> list[Any]:
            found = list(self.store.candidates(ns, body.get("filter")))
            found = _sorted(found, body.get("sort"), lambda s: s.doc)
            if skip:
                found = found[skip:]
            if limit:
                found = found[: abs(limit)]
            projection = body.get("projection")
            return [_project(s, projection) for s in found]

        spec = {k: body.get(k) for k in ("filter", "sort", "projection")}
        items = self._cached(ns, {**spec, "skip": skip, "limit": limit}, compute)
        batch = body.get("batchSize")
        if body.get("singleBatch") or limit < 0:
            batch = len(items) or 1
        return self._cursor_reply(ns, items, batch)

    def _get_more(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        cursor_id = int(body["getMore"])
        entry = self._cursors.pop(cursor_id, None)
        if entry is None:
            raise CommandError(f"cursor id {cursor_id} not found", 43, "CursorNotFound")
        ns, items = entry
        batch = body.get("batchSize")
        if batch:
            items, rest = items[:batch], items[batch:]
        else:
            rest = []
        if rest:
            self._cursors[cursor_id] = (ns, rest)
        else:
            cursor_id = 0
        return {"cursor": {"nextBatch": items, "id": Int64(cursor_id), "ns": ns}}

    def _kill_cursors(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        killed = [c for c in body.get("cursors", []) if self._cursors.pop(int(c), None)]
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": [c for c in body.get("cursors", []) if c not in killed],
            "cursorsAlive": [],
            "cursorsUnknown": [],
        }

    # -- writes

    def _insert(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        ns = f"{db}.{body['insert']}"
        collection, _ = self.store.ensure(ns)
        errors: list[dict[str, Any]] = []
        inserted = 0
        for index, item in enumerate(body.get("documents", [])):
            if isinstance(item, RawBSONDocument):
                raw = bytes(item.raw)
                doc = bson.decode(raw)
            else:
                doc = dict(item)
                if "_id" not in doc:
                    doc = {"_id": ObjectId(), **doc}
                raw = bson.encode(doc)
            key = _key(doc.get("_id"))
            if key in collection.docs:
                errors.append(_duplicate(ns, index, doc.get("_id")))
                if body.get("ordered", True):
                    break
                continue
            collection.docs[key] = _Stored(doc, raw)
            inserted += 1
        self.store.touch(ns)
        reply: dict[str, Any] = {"n": inserted}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def _update(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        ns = f"{db}.{body['update']}"
        collection, _ = self.store.ensure(ns)
        matched = modified = 0
        upserted: list[dict[str, Any]] = []
        self.store.touch(ns)
        for index, spec in enumerate(body.get("updates", [])):
            targets = list(self.store.candidates(ns, spec.get("q")))
            if not spec.get("multi"):
                targets = targets[:1]
            for stored in targets:
                new = _apply_update(stored.doc, spec["u"], inserting=False)
                if new != stored.doc:
                    modified += 1
                    collection.docs[_key(stored.doc["_id"])] = _Stored(new, bson.encode(new))
            matched += len(targets)
            if not targets and spec.get("upsert"):
                seed = {
                    k: v
                    for k, v in (spec.get("q") or {}).items()
                    if not k.startswith("$") and not isinstance(v, Mapping)
                }
                new = _apply_update({"_id": ObjectId(), **seed}, spec["u"], inserting=True)
                collection.docs[_key(new["_id"])] = _Stored(new, bson.encode(new))
                upserted.append({"index": index, "_id": new["_id"]})
        reply: dict[str, Any] = {"n": matched + len(upserted), "nModified": modified}
        if upserted:
            reply["upserted"] = upserted
        return reply

    def _find_and_modify(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        # Enough for insightdb's migration lock: query, update or remove, upsert, new.
        ns = f"{db}.{body['findAndModify']}"
        collection, _ = self.store.ensure(ns)
        self.store.touch(ns)
        found = next(iter(self.store.candidates(ns, body.get("query"))), None)
        if body.get("remove"):
            if found is not None:
                del collection.docs[_key(found.doc["_id"])]
            return {
                "value": None if found is None else found.doc,
                "lastErrorObject": {"n": 0 if found is None else 1},
            }
        update = body.get("update") or {}
        if found is None:
            if not body.get("upsert"):
                return {"value": None, "lastErrorObject": {"n": 0, "updatedExisting": False}}
            seed = {
                k: v
                for k, v in (body.get("query") or {}).items()
                if not k.startswith("$") and not isinstance(v, Mapping)
            }
            new = _apply_update({"_id": ObjectId(), **seed}, update, inserting=True)
            collection.docs[_key(new["_id"])] = _Stored(new, bson.encode(new))
            return {
                "value": new if body.get("new") else None,
                "lastErrorObject": {"n": 1, "updatedExisting": False, "upserted": new["_id"]},
            }
        new = _apply_update(found.doc, update, inserting=False)
        collection.docs[_key(new["_id"])] = _Stored(new, bson.encode(new))
        return {
            "value": new if body.get("new") else found.doc,
            "lastErrorObject": {"n": 1, "updatedExisting": True},
        }

    def _delete(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        ns = f"{db}.{body['delete']}"
        collection = self.store.get(ns)
        removed = 0
        self.store.touch(ns)
        for spec in body.get("deletes", []):
            if collection is None:
                break
            targets = list(self.store.candidates(ns, spec.get("q")))
            if spec.get("limit"):
                targets = targets[:1]
            for stored in targets:
                del collection.docs[_key(stored.doc["_id"])]
            removed += len(targets)
        return {"n": removed}

    # -- queries other than find

    def _aggregate(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        target = body["aggregate"]
        if not isinstance(target, str):
            raise _unsupported("database-level aggregate")
        ns = f"{db}.{target}"
        pipeline = body.get("pipeline", [])

        def compute() -> list[Any]:
            collection = self.store.get(ns)
            docs = [s.doc for s in collection.docs.values()] if collection else []
            return _pipeline(docs, pipeline)

        items = self._cached(ns, {"pipeline": pipeline}, compute)
        return self._cursor_reply(ns, items, (body.get("cursor") or {}).get("batchSize"))

    def _count(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        found = list(self.store.candidates(f"{db}.{body['count']}", body.get("query")))
        skip = int(body.get("skip") or 0)
        limit = int(body.get("limit") or 0)
        found = found[skip:]
        return {"n": len(found[:limit] if limit else found)}

    def _distinct(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        values: list[Any] = []
        seen: set[Any] = set()
        for stored in self.store.candidates(f"{db}.{body['distinct']}", body.get("query")):
            value = _get(stored.doc, body["key"])
            for item in value if isinstance(value, list) else [value]:
                if item is not _MISSING and _key(item) not in seen:
                    seen.add(_key(item))
                    values.append(item)
        return {"values": values}

    # -- indexes, collections, databases

    def _list_indexes(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        ns = f"{db}.{body['listIndexes']}"
        collection = self.store.get(ns)
        if collection is None:
            raise CommandError(f"ns does not exist: {ns}", 26, "NamespaceNotFound")
        return self._cursor_reply(ns, list(collection.indexes.values()), None)

    def _create_indexes(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        collection, created = self.store.ensure(f"{db}.{body['createIndexes']}")
        before = len(collection.indexes)
        for spec in body.get("indexes", []):
            collection.indexes.setdefault(spec["name"], {"v": 2, **spec})
        return {
            "numIndexesBefore": before,
            "numIndexesAfter": len(collection.indexes),
            "createdCollectionAutomatically": created,
        }

    def _drop_indexes(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        collection = self.store.get(f"{db}.{body['dropIndexes']}")
        if collection is None:
            raise CommandError("ns not found", 26, "NamespaceNotFound")
        names = body.get("index")
        for name in list(collection.indexes):
            if name != "_id_" and (names == "*" or name == names or name in (names or [])):
                del collection.indexes[name]
        return {"nIndexesWas": len(collection.indexes)}

    def _list_collections(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        prefix = f"{db}."
        infos = [
            {"name": ns[len(prefix) :], "type": "collection", "options": {}, "info": {}}
            for ns in self.store.collections
            if ns.startswith(prefix)
        ]
        infos = [i for i in infos if matches(i, body.get("filter"))]
        return self._cursor_reply(f"{db}.$cmd.listCollections", infos, None)

    def _list_databases(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        names = sorted({ns.split(".", 1)[0] for ns in self.store.collections})
        return {
            "databases": [{"name": n, "sizeOnDisk": 0, "empty": False} for n in names],
            "totalSize": 0,
        }

    def _create(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        _, created = self.store.ensure(f"{db}.{body['create']}")
        if not created:
            raise CommandError("collection already exists", 48, "NamespaceExists")
        return {}

    def _drop(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        self.store.touch(f"{db}.{body['drop']}")
        if self.store.collections.pop(f"{db}.{body['drop']}", None) is None:
            raise CommandError("ns not found", 26, "NamespaceNotFound")
        return {}

    def _drop_database(self, db: str, body: dict[str, Any]) -> dict[str, Any]:
        for ns in [n for n in self.store.collections if n.startswith(f"{db}.")]:
            del self.store.collections[ns]
            self.store.touch(ns)
        return {"dropped": db}


def _duplicate(ns: str, index: int, ident: Any) -> dict[str, Any]:
    return {
        "index": index,
        "code": 11000,
        "keyPattern": {"_id": 1},
        "keyValue": {"_id": ident},
        "errmsg": f"E11000 duplicate key error collection: {ns} index: _id_ dup key: "
        f"{{ _id: {ident!r} }}",
    }


# -- the wire -----------------------------------------------------------------------


def parse_op_msg(payload: bytes) -> tuple[int, dict[str, Any]]:
    """Decode an ``OP_MSG`` payload (after the header) into its flags and command body.

    Document sequences (kind 1, e.g. ``documents`` of an insert) are merged into the body;
    their documents stay raw (``RawBSONDocument``) so that inserts keep their exact bytes.
    """
    (flags,) = struct.unpack_from("<I", payload)
    end = len(payload) - (4 if flags & _CHECKSUM_PRESENT else 0)
    position = 4
    body: dict[str, Any] | None = None
    sequences: dict[str, list[Any]] = {}
    while position < end:
        kind = payload[position]
        position += 1
        (size,) = struct.unpack_from("<i", payload, position)
        if kind == 0:
            body = bson.decode(payload[position : position + size])
            position += size
        elif kind == 1:
            section_end = position + size
            name_end = payload.index(b"\x00", position + 4)
            name = payload[position + 4 : name_end].decode()
            docs: list[Any] = []
            cursor = name_end + 1
            while cursor < section_end:
                (doc_size,) = struct.unpack_from("<i", payload, cursor)
                docs.append(RawBSONDocument(payload[cursor : cursor + doc_size]))
                cursor += doc_size
            sequences[name] = docs
            position = section_end
        else:
            raise ValueError(f"unknown OP_MSG section kind {kind}")
    if body is None:
        raise ValueError("OP_MSG without a body section")
    body.update(sequences)
    return flags, body


def encode_op_msg(reply: Mapping[str, Any], request_id: int, response_to: int) -> bytes:
    """Encode ``reply`` as one ``OP_MSG`` message answering ``response_to``."""
    document = bson.encode(reply)
    length = _HEADER.size + 5 + len(document)
    return b"".join(
        (
            _HEADER.pack(length, request_id, response_to, OP_MSG),
            struct.pack("<IB", 0, 0),
            document,
        )
    )


async def _connection(
    handler: Handler,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    latency_s: float = 0.0,
) -> None:
    connection_id = handler.new_connection_id()
    request_ids = itertools.count(1)
    try:
        while True:
            header = await reader.readexactly(_HEADER.size)
            length, request_id, _, op_code = _HEADER.unpack(header)
            payload = await reader.readexactly(length - _HEADER.size)
            if op_code != OP_MSG:
                break  # PyMongo 4 speaks OP_MSG only; anything else ends the connection
            flags, body = parse_op_msg(payload)
            reply = handler.dispatch(body, connection_id)
            if flags & _MORE_TO_COME:
                continue  # an unacknowledged write: no reply expected
            if latency_s:
                await asyncio.sleep(latency_s)  # a distant server: the reply comes later
            writer.write(encode_op_msg(reply, next(request_ids), request_id))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready: Callable[[int], None] | None = None,
    max_seconds: float = 1800.0,
    latency_ms: float = 0.0,
) -> None:
    """Serve until SIGTERM/SIGINT, the parent process dies, or ``max_seconds`` pass.

    Args:
        host: A loopback address.
        port: The port; 0 picks a free one.
        ready: Called with the bound port once connections are accepted.
        max_seconds: The lifetime bound.
        latency_ms: Delay before each reply, simulating a server that far away
            (per connection, so concurrent requests on several connections overlap).
    """
    handler = Handler()
    latency_s = latency_ms / 1000
    server = await asyncio.start_server(
        lambda r, w: _connection(handler, r, w, latency_s), host, port, limit=64 * 1024 * 1024
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    parent = os.getppid()
    deadline = time.monotonic() + max_seconds
    async with server:
        while not stop.is_set():
            if os.getppid() != parent or time.monotonic() > deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _PARENT_POLL_SECONDS)
        server.close()


# -- the child process, seen from the parent ---------------------------------------


class CannedServer(ServerProcess):
    """Run the canned-reply server in a child process on 127.0.0.1; sync or async context.

    Args:
        latency_ms: Delay before each reply (a simulated round-trip time).
        startup_timeout: Seconds to wait for the child to accept connections.
        stop_timeout: Seconds between SIGTERM and SIGKILL when stopping.
        max_seconds: The child's own lifetime bound.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        max_seconds: float = 1800.0,
    ) -> None:
        self._latency_ms = latency_ms
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._max_seconds = max_seconds
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.port = 0

    @property
    def uri(self) -> str:
        """The client URI (``directConnection=true``)."""
        if self._proc is None:
            raise RuntimeError("the canned server is not running")
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def pid(self) -> int:
        """The child's PID."""
        if self._proc is None:
            raise RuntimeError("the canned server is not running")
        return self._proc.pid

    def start(self) -> None:
        """Start the child and wait until it reports its port."""
        self._workdir = Path(tempfile.mkdtemp(prefix="insightdb-canned-"))
        ready = self._workdir / "ready.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--ready-file",
            str(ready),
            "--max-seconds",
            str(self._max_seconds),
            "--latency-ms",
            str(self._latency_ms),
        ]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self._startup_timeout
        while not ready.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the canned server did not start")
            time.sleep(0.02)
        self.port = int(json.loads(ready.read_text())["port"])

    def stop(self) -> None:
        """Stop the child by its PID: SIGTERM, then SIGKILL after the bound."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(self._stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait()
        if self._workdir is not None:
            for leftover in self._workdir.iterdir():
                leftover.unlink()
            self._workdir.rmdir()
            self._workdir = None


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Canned-reply MongoDB wire server (benchmarks).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", help="written as {'port': N} once serving")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before replies")
    args = parser.parse_args(argv)

    def ready(port: int) -> None:
        if args.ready_file:
            tmp = f"{args.ready_file}.tmp"
            Path(tmp).write_text(json.dumps({"port": port, "pid": os.getpid()}))
            os.replace(tmp, args.ready_file)
        else:
            print(f"canned server on mongodb://{args.host}:{port}/?directConnection=true")

    asyncio.run(
        serve(
            args.host,
            args.port,
            ready=ready,
            max_seconds=args.max_seconds,
            latency_ms=args.latency_ms,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main())
