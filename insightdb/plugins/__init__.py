"""Model plugins: mixins that add behaviour to every write and read of a model.

``Timestamped``, ``SoftDeletable`` and ``Audited`` combine with each other and with
``TenantScoped`` in any order, before the document base class::

    class Invoice(Timestamped, SoftDeletable, Audited, TenantScoped, CustomerDocument):
        total: int

They work below Beanie, at the model's collection (:mod:`insightdb.plugins.collection`),
so query updates, bulk writes and upserts get the same treatment as ``doc.save()``.
"""

from __future__ import annotations

from insightdb.plugins.audit import AUDIT_COLLECTION, Audited, actor_context, current_actor
from insightdb.plugins.base import PluginMixin
from insightdb.plugins.collection import PluginCollection
from insightdb.plugins.softdelete import SoftDeletable, include_deleted
from insightdb.plugins.timestamps import Timestamped

__all__ = [
    "AUDIT_COLLECTION",
    "Audited",
    "PluginCollection",
    "PluginMixin",
    "SoftDeletable",
    "Timestamped",
    "actor_context",
    "current_actor",
    "include_deleted",
]
