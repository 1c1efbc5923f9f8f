"""A platform-wide configuration value (feature switches, support addresses), by key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from beanie import Indexed
from pydantic import Field

from insightdb import AdminDocument, Audited


class SystemSetting(Audited, AdminDocument):
    """One named setting of the platform, edited by its administrators.

    Audited with its values (``__audit_values__``): a configuration change is worth
    seeing in full in the audit view.
    """

    __audit_values__ = True

    key: Indexed(str, unique=True)  # type: ignore[valid-type]
    value: Any = None
    description: str = ""
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    class Settings:
        name = "system_settings"
