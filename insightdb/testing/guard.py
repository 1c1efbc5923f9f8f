"""A test-mode tenant guard: a PyMongo ``CommandListener`` that catches unscoped commands.

Enabled by the pytest plugin for every test (ini option ``insightdb_tenant_guard``), it
looks at each command sent to a tenant-scoped collection and records a violation when
the command lacks ``tenant_id == <current tenant>``: a find or count filter, each
update and delete statement, each inserted document, the leading stage of a pipeline,
and every sub-pipeline (``$lookup``, ``$unionWith``, ``$facet``) that reads a scoped
collection. Commands issued inside :func:`~insightdb.tenancy.context.unscoped` are allowed.

Listeners can't stop a command (PyMongo swallows their exceptions), so the guard
records violations and the plugin fails the test that caused them. Its handler is
cheap and has no I/O, as the driver calls it inline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from beanie import UnionDoc, View
from pymongo import monitoring

from insightdb.tenancy.collection import GuardedCollection
from insightdb.tenancy.context import current_tenant, unscoped_reason
from insightdb.tenancy.mixin import TenantScoped
from insightdb.tenancy.pipelines import reads_scoped
from insightdb.tenancy.tenant_ids import TENANT_FIELD

__all__ = ["TenantGuard", "Violation", "has_tenant_predicate", "scoped_namespaces"]

_DATA_COMMANDS = frozenset(
    {"find", "aggregate", "count", "distinct", "update", "delete", "insert", "findAndModify"}
)
# Commands on a scoped namespace that touch no document: allowed outside unscoped()
# (Beanie creates and lists indexes at startup; cursors are continued and closed).
_METADATA_COMMANDS = frozenset(
    {"listIndexes", "createIndexes", "getMore", "killCursors", "listCollections"}
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One command that reached a tenant-scoped collection without the tenant filter."""

    command: str
    namespace: str
    reason: str

    def __str__(self) -> str:
        return f"{self.command} on {self.namespace}: {self.reason}"


def scoped_namespaces() -> frozenset[str]:
    """Return ``db.collection`` of every tenant-scoped collection insightdb has installed.

    That covers tenant-scoped models, unions of them and views over them: whatever
    object later sends a command there (a model, a raw collection taken inside
    ``unscoped`` and kept, a name typed into a ``$lookup``), the namespace is checked.
    """
    found: set[str] = set()
    stack: list[type[Any]] = [TenantScoped, UnionDoc, View]
    seen: set[type[Any]] = set()
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        stack.extend(model.__subclasses__())
        settings = model.__dict__.get("_document_settings") or model.__dict__.get("_settings")
        guarded = getattr(settings, "pymongo_collection", None)
        if isinstance(guarded, GuardedCollection) and guarded.tenant_scoped:
            found.add(guarded.full_name)
    return frozenset(found)


def is_simple_collation(command: Mapping[str, Any]) -> bool:
    """Tell whether a command (or statement) carries exactly the simple collation."""
    return command.get("collation") == {"locale": "simple"}


def has_tenant_predicate(query: Any, tenant: str) -> bool:
    """Tell whether ``query`` requires ``tenant_id == tenant`` (top level or in ``$and``)."""
    if not isinstance(query, Mapping):
        return False
    if query.get(TENANT_FIELD) == tenant:
        return True
    clauses = query.get("$and")
    if isinstance(clauses, Sequence):
        return any(has_tenant_predicate(clause, tenant) for clause in clauses)
    return False


class TenantGuard(monitoring.CommandListener):
    """Record every command on a tenant-scoped collection that lacks the tenant filter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._violations: list[Violation] = []
        self.enabled = True

    def violations(self) -> list[Violation]:
        """Return the violations recorded since the last :meth:`reset`."""
        with self._lock:
            return list(self._violations)

    def reset(self) -> None:
        """Forget recorded violations."""
        with self._lock:
            self._violations.clear()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Check one command (called inline by the driver: no I/O here)."""
        if not self.enabled or unscoped_reason() is not None:
            return
        name = event.command_name
        if name in _METADATA_COMMANDS:
            return
        namespaces = scoped_namespaces()
        if not namespaces:
            return
        database = event.database_name
        collection = event.command.get(name)
        namespace = f"{database}.{collection}" if isinstance(collection, str) else ""
        if name not in _DATA_COMMANDS:
            problems = [f"{name} on a tenant-scoped collection"] if namespace in namespaces else []
            if name == "bulkWrite":  # client-level: its namespaces are listed in nsInfo
                listed = [i.get("ns") for i in event.command.get("nsInfo") or []]
                problems += [f"bulkWrite into {ns}" for ns in listed if ns in namespaces]
            if problems:
                with self._lock:
                    self._violations.extend(Violation(name, namespace, r) for r in problems)
            return
        if not isinstance(collection, str):
            return
        tenant = current_tenant()
        problems = list(
            _check(
                name,
                event.command,
                namespace in namespaces,
                tenant,
                database,
                namespaces,
            )
        )
        if problems:
            with self._lock:
                self._violations.extend(
                    Violation(event.command_name, namespace, reason) for reason in problems
                )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to check after success."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing to check after failure."""


def _check(
    name: str,
    command: Mapping[str, Any],
    scoped: bool,
    tenant: str | None,
    database: str,
    namespaces: frozenset[str],
) -> Iterator[str]:
    if name == "aggregate":
        problems = list(
            _check_pipeline(command.get("pipeline") or [], scoped, tenant, database, namespaces)
        )
        yield from problems
        reads = scoped or _reads(command, namespaces, database)
        if reads and not is_simple_collation(command):
            yield "an aggregation over tenant-scoped data without the simple collation"
        return
    if not scoped:
        return
    if tenant is None:
        yield "no tenant set and not inside unscoped()"
        return
    if name in ("find", "count", "distinct", "findAndModify") and not is_simple_collation(command):
        yield f"{name} without the simple collation (a collation can widen the tenant filter)"
    for key in ("updates", "deletes"):
        for statement in command.get(key) or []:
            if not is_simple_collation(statement):
                yield f"an {key[:-1]} statement without the simple collation"
    if name == "find" and not has_tenant_predicate(command.get("filter"), tenant):
        yield "filter lacks the tenant predicate"
    elif name in ("count", "distinct", "findAndModify") and not has_tenant_predicate(
        command.get("query"), tenant
    ):
        yield "query lacks the tenant predicate"
    elif name == "update":
        for statement in command.get("updates") or []:
            if not has_tenant_predicate(statement.get("q"), tenant):
                yield "an update statement lacks the tenant predicate"
    elif name == "delete":
        for statement in command.get("deletes") or []:
            if not has_tenant_predicate(statement.get("q"), tenant):
                yield "a delete statement lacks the tenant predicate"
    elif name == "insert":
        for document in command.get("documents") or []:
            if document.get(TENANT_FIELD) != tenant:
                yield "an inserted document is not stamped with the current tenant"


def _check_pipeline(
    pipeline: Sequence[Mapping[str, Any]],
    scoped: bool,
    tenant: str | None,
    database: str,
    namespaces: frozenset[str],
) -> Iterator[str]:
    if scoped:
        if tenant is None:
            yield "no tenant set and not inside unscoped()"
            return
        first = pipeline[0] if pipeline else {}
        if "$match" in first:
            ok = has_tenant_predicate(first["$match"], tenant)
        elif "$geoNear" in first:
            ok = has_tenant_predicate(first["$geoNear"].get("query"), tenant)
        else:
            ok = False
        if not ok:
            yield "pipeline does not start with the tenant predicate"
    for stage in pipeline:
        for name, spec in stage.items():
            if name in ("$out", "$merge") and tenant is not None:
                yield f"{name} in tenant scope"
            elif name == "$lookup" and isinstance(spec, Mapping):
                target = spec.get("from")
                sub = spec.get("pipeline") or []
                yield from _check_pipeline(
                    sub, f"{database}.{target}" in namespaces, tenant, database, namespaces
                )
            elif name == "$unionWith":
                union: Mapping[str, Any] = {"coll": spec} if isinstance(spec, str) else spec
                yield from _check_pipeline(
                    union.get("pipeline") or [],
                    f"{database}.{union.get('coll')}" in namespaces,
                    tenant,
                    database,
                    namespaces,
                )
            elif name == "$graphLookup" and isinstance(spec, Mapping):
                if f"{database}.{spec.get('from')}" in namespaces and (
                    tenant is None
                    or not has_tenant_predicate(spec.get("restrictSearchWithMatch"), tenant)
                ):
                    yield "$graphLookup into a scoped collection lacks the tenant predicate"
            elif name == "$facet" and isinstance(spec, Mapping):
                for sub in spec.values():
                    yield from _check_pipeline(sub, False, tenant, database, namespaces)


def _reads(command: Mapping[str, Any], namespaces: frozenset[str], database: str) -> bool:
    """Whether an aggregation's sub-pipelines read a tenant-scoped namespace."""
    return reads_scoped(
        command.get("pipeline") or [], lambda name: f"{database}.{name}" in namespaces
    )
