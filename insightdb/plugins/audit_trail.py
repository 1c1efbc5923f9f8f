"""The audit trail of a plugin collection: a write's audit records, built and written.

:class:`AuditTrail` turns a write of an ``Audited`` model — its operation, the body the
caller sent and the driver's result — into audit records
(:func:`~insightdb.plugins.audit.audit_record`) and writes them to the admin database's
``insightdb_audit`` collection: in the open transaction when it covers the admin
database, else right after its commit. :func:`audit_trail` gives a model its trail, or
``None`` when it is not audited or ``features.audit_trail`` is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from insightdb.exceptions import InsightDBError
from insightdb.plugins.audit import (
    AUDIT_COLLECTION,
    Audited,
    audit_record,
    changed_fields,
    changed_values,
    secret_fields,
)
from insightdb.session_context import active_transaction
from insightdb.tenancy.context import current_tenant

__all__ = ["AuditTrail", "audit_trail", "id_in"]


def audit_trail(model: type[Any]) -> AuditTrail | None:
    """The audit trail of ``model``'s writes, or ``None`` when none is kept."""
    if issubclass(model, Audited) and _audit_enabled():
        return AuditTrail(model)
    return None


def id_in(filter: Any) -> Any:
    """The ``_id`` a filter names by equality, else ``None``."""
    if isinstance(filter, Mapping):
        value = filter.get("_id")
        if value is not None and not (
            isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)
        ):
            return value
        return None
    return filter


class AuditTrail:
    """Builds and writes the audit records of one model's writes.

    Args:
        model: The audited model class.
    """

    __slots__ = ("_model", "_secret", "_target")

    def __init__(self, model: type[Any]) -> None:
        self._model = model
        self._secret = secret_fields(model)
        self._target: Any = None

    def entry(
        self,
        operation: str,
        document_id: Any,
        body: Any,
        now: datetime,
        count: int | None = None,
    ) -> dict[str, Any]:
        """The record of one write (``count`` for one that matched many documents)."""
        fields = changed_fields(operation, body)
        if operation == "soft_delete":
            fields = [f for f in fields if f != "updated_at"]
        values = (
            changed_values(body, fields, self._secret)
            if getattr(self._model, "__audit_values__", False)
            else None
        )
        tenant = current_tenant()
        if tenant is None and isinstance(body, Mapping) and operation == "insert":
            tenant = body.get("tenant_id") or None
        return audit_record(
            self._model,
            operation=operation,
            document_id=document_id,
            tenant=tenant,
            fields=fields,
            at=now,
            count=count,
            values=values,
        )

    async def record_result(
        self, operation: str, method: str, filter: Any, body: Any, result: Any, now: datetime
    ) -> None:
        """Record a write that matched by ``filter``, from what the driver answered."""
        if method.startswith("find_one_and_"):
            if result is None:
                return
            ident = result.get("_id") if isinstance(result, Mapping) else id_in(filter)
            await self.record([self.entry(operation, ident, body, now)])
            return
        upserted = getattr(result, "upserted_id", None)
        if method.endswith("_many"):
            found = getattr(result, "modified_count", None)
            if found is None:
                found = getattr(result, "deleted_count", 0)
            count = int(found or 0) + (1 if upserted is not None else 0)
            if count:
                await self.record([self.entry(operation, None, body, now, count=count)])
            return
        changed = (
            getattr(result, "matched_count", None) or getattr(result, "deleted_count", None) or 0
        )
        if changed or upserted is not None:
            ident = upserted if upserted is not None else id_in(filter)
            await self.record([self.entry(operation, ident, body, now)])

    async def record(self, records: list[dict[str, Any]]) -> None:
        """Write ``records``: in the open transaction, or after it when it can't hold them."""
        if not records:
            return
        target = self._target
        if target is None:
            from insightdb.runtime.lifecycle import current

            target = self._target = current().database("admin")[AUDIT_COLLECTION]
        active = active_transaction()
        if active is not None and not active.covers(target.raw.database.client):
            # The transaction's cluster is not the admin database's: record after commit.
            async def write_later() -> None:
                await target.insert_many(records)

            active.after_commit.append(write_later)
            return
        await target.insert_many(records)


def _audit_enabled() -> bool:
    from insightdb.runtime.lifecycle import current

    try:
        return current().settings.features.audit_trail
    except InsightDBError:
        return False
