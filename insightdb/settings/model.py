"""The root model: :class:`Settings`, every section under its key, and the names it knows.

``ENVIRONMENTS`` and ``GROUPS`` are the environments insightdb runs in and the two database
groups; ``TOP_LEVEL_KEYS`` and ``SECRET_KEYS`` are the keys the files and the environment
may set at the top level (``env`` is chosen, never set).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, SecretStr, field_validator

from insightdb._redact import mask_mapping, shorten
from insightdb.exceptions import ConfigurationError
from insightdb.settings.base import FROZEN, Str
from insightdb.settings.sections import (
    DatabaseSettings,
    DatabasesSettings,
    DriverSettings,
    EmbeddedSettings,
    FeatureSettings,
    MonitoringSettings,
    PoolSettings,
    ResilienceSettings,
    StartupSettings,
    TimeoutSettings,
)

__all__ = ["ENVIRONMENTS", "GROUPS", "SECRET_KEYS", "TOP_LEVEL_KEYS", "Settings"]

ENVIRONMENTS = ("development", "testing", "staging", "production")
GROUPS = ("admin", "customer")
TOP_LEVEL_KEYS = frozenset(
    {
        "databases",
        "pool",
        "timeouts",
        "driver",
        "startup",
        "resilience",
        "monitoring",
        "features",
        "embedded",
        "models",
        "migrations_dir",
        "seeds_dir",
        "log_level",
    }
)
SECRET_KEYS = frozenset({"admin_password"})


class Settings(BaseModel):
    """All of insightdb's settings, frozen and validated.

    Build with :func:`get_settings`; never mutate (use ``model_copy(update=...)``).
    """

    model_config = FROZEN

    env: Literal["development", "testing", "staging", "production"] = "development"
    databases: DatabasesSettings = DatabasesSettings()
    pool: PoolSettings = PoolSettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    driver: DriverSettings = DriverSettings()
    startup: StartupSettings = StartupSettings()
    resilience: ResilienceSettings = ResilienceSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    features: FeatureSettings = FeatureSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    models: tuple[Str, ...] = ("models",)
    migrations_dir: Str = "migrations"
    seeds_dir: Str = "seeds"
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    admin_password: SecretStr | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("models")
    @classmethod
    def _check_packages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for package in value:
            if not all(part.isidentifier() for part in package.split(".")):
                raise ValueError(f"{shorten(package, 60)!r} is not a dotted package name")
        return value

    def database(self, group: str) -> DatabaseSettings:
        """Return the settings of one group (``"admin"`` or ``"customer"``)."""
        if group not in GROUPS:
            raise ConfigurationError(
                f"unknown database group {group!r}: expected one of {', '.join(GROUPS)}"
            )
        result: DatabaseSettings = getattr(self.databases, group)
        return result

    def masked(self) -> dict[str, Any]:
        """Return the settings as plain data with every secret masked (``config show``)."""
        data = self.model_dump(mode="json")
        if self.admin_password is not None:
            data["admin_password"] = self.admin_password.get_secret_value()
        return mask_mapping(data)
