"""Backfill clients.status = "active" where it is missing

Revision: 9b80ee5c57b2
Revises: <base>
Date: 2026-11-25 09:15:43 UTC
"""

from __future__ import annotations

from insightdb.migrations import MigrationContext

revision = "9b80ee5c57b2"
down_revision = None


async def upgrade(ctx: MigrationContext) -> None:
    """One server-side update per _id range: no document crosses the wire."""
    await ctx.update_with_pipeline(
        "clients", {"status": {"$exists": False}}, [{"$set": {"status": "active"}}]
    )


async def downgrade(ctx: MigrationContext) -> None:
    """Nothing to undo: "active" is what the model assumed for a missing status."""
