"""Add an index on users.role (the admin console lists users by role)

Revision: cea36f220599
Revises: <base>
Date: 2026-11-25 09:15:43 UTC
"""

from __future__ import annotations

from insightdb.migrations import MigrationContext

revision = "cea36f220599"
down_revision = None


async def upgrade(ctx: MigrationContext) -> None:
    """Create users.role_1 (creating an existing index again is a no-op, so reruns are safe)."""
    await ctx.database["users"].create_index("role", name="role_1")


async def downgrade(ctx: MigrationContext) -> None:
    """Drop users.role_1 if it exists."""
    if "role_1" in await ctx.database["users"].index_information():
        await ctx.database["users"].drop_index("role_1")
