"""Backfill users.name from the e-mail address where it is missing or empty

Revision: 0b2c0a5326a8
Revises: cea36f220599
Date: 2026-11-25 09:15:43 UTC
"""

from __future__ import annotations

from typing import Any

from insightdb.migrations import MigrationContext

revision = "0b2c0a5326a8"
down_revision = "cea36f220599"

_UNNAMED = {"$or": [{"name": {"$exists": False}}, {"name": ""}]}


def _name_from_email(user: dict[str, Any]) -> dict[str, Any] | None:
    local_part = str(user.get("email", "")).split("@", 1)[0]
    if not local_part:
        return None  # nothing to derive a name from: leave the document alone
    return {"$set": {"name": local_part.replace(".", " ").title()}}


async def upgrade(ctx: MigrationContext) -> None:
    """Stream the unnamed users in _id order, one checkpointed batch at a time."""
    await ctx.for_each("users", _name_from_email, filter=_UNNAMED, projection={"email": 1})


async def downgrade(ctx: MigrationContext) -> None:
    """Nothing to undo: a derived name is as good as none, and real names must survive."""
