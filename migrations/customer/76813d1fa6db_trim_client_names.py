"""Trim spaces around clients.name (Beanie style, with frozen models)

Revision: 76813d1fa6db
Revises: 9b80ee5c57b2
Date: 2026-11-25 09:15:52 UTC
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from beanie import Document

from insightdb.migrations import MigrationContext, free_fall, iterative

revision = "76813d1fa6db"
down_revision = "9b80ee5c57b2"


# Frozen copies of models.customer.client.Client as stored at this revision. The output
# model defines the whole stored document, so every field is declared.
class ClientBefore(Document):
    tenant_id: str
    name: str
    status: Literal["active", "suspended", "closed"] = "active"
    created_at: datetime | None = None

    class Settings:
        name = "clients"


class ClientAfter(ClientBefore):
    class Settings:
        name = "clients"


class Forward:
    """Steps run by `insightdb migrate up`, in the order they are defined."""

    @iterative(batch_size=500)
    async def trim_names(self, input_document: ClientBefore, output_document: ClientAfter) -> None:
        """Called per client; what is set on output_document overrides the input."""
        output_document.name = input_document.name.strip()


class Backward:
    """Steps run by `insightdb migrate down`."""

    @free_fall()
    async def keep_trimmed(self, ctx: MigrationContext) -> None:
        """Nothing to undo: the spaces carried no meaning."""
        ctx.logger.info("trimmed client names are kept")
