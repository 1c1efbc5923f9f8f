"""The sections of the settings, one model each: a catalogue of one kind of thing.

Each section is a frozen :class:`~insightdb.settings.base.Section` whose fields are the keys
of one ``[section]`` of ``settings.toml``, with their types, bounds and defaults; the
configuration reference (``docs/reference/configuration.md``) is generated from them. The
root model that holds them is :class:`~insightdb.settings.model.Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from insightdb._redact import mask_uri, shorten
from insightdb.settings.base import FROZEN, MAX_DRIVER_MS, Ms, Seconds, Section

__all__ = [
    "DatabaseSettings",
    "DatabasesSettings",
    "DriverSettings",
    "EmbeddedSettings",
    "FeatureSettings",
    "MonitoringSettings",
    "PoolSettings",
    "ResilienceSettings",
    "StartupSettings",
    "TimeoutSettings",
]

_FORBIDDEN_DB_NAMES = frozenset({"admin", "config", "local"})
_DB_NAME_BAD_CHARS = frozenset('/\\. "$*<>:|?\x00')


class DatabaseSettings(Section):
    """Where one group's database lives.

    Attributes:
        uri: The cluster's connection string (``mongodb://`` or ``mongodb+srv://``).
            Empty means the embedded server in ``development`` and ``testing``.
        name: The database name inside that cluster.
        read_preference: The read preference of this group's database.
    """

    model_config = FROZEN

    uri: StrictStr = ""
    name: StrictStr
    read_preference: Literal[
        "primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"
    ] = "primary"

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        if value and not value.startswith(("mongodb://", "mongodb+srv://")):
            # The value itself may hold a password: never echo it.
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        if value.lower() in _FORBIDDEN_DB_NAMES:
            raise ValueError(
                f"{shorten(value, 60)!r} is reserved by MongoDB (admin, config and local are "
                "refused: they can't take part in transactions)"
            )
        if any(ch in _DB_NAME_BAD_CHARS for ch in value) or len(value.encode()) > 63:
            raise ValueError(
                f"{shorten(value, 60)!r} is not a valid database name"
                f' (at most 63 bytes, none of /\\. "$*<>:|?)'
            )
        return value

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, mask_uri(value) if key == "uri" and isinstance(value, str) else value


class PoolSettings(Section):
    """Connection-pool options passed through to PyMongo (one pool per cluster)."""

    model_config = FROZEN

    max_pool_size: StrictInt = Field(100, ge=1, le=10_000)
    min_pool_size: StrictInt = Field(0, ge=0, le=10_000)
    max_idle_time_ms: Ms | None = None
    wait_queue_timeout_ms: Ms | None = None
    max_connecting: StrictInt = Field(2, ge=1, le=1_000)


class TimeoutSettings(Section):
    """Timeouts, in milliseconds.

    The defaults favour fast failure detection: PyMongo's 20 s ``connectTimeoutMS``
    leaves a client stalled for about 20 s after a server hangs, so insightdb uses 2 s.
    ``operation_ms`` becomes the driver's ``timeoutMS``: a deadline for each operation,
    retries included. ``None`` leaves a value to the driver.
    """

    model_config = FROZEN

    connect_ms: Ms = 2_000
    server_selection_ms: Ms = 3_000
    socket_ms: Ms | None = None
    operation_ms: Ms | None = 5_000
    heartbeat_frequency_ms: Annotated[StrictInt, Field(ge=500, le=MAX_DRIVER_MS)] = 2_000


class DriverSettings(Section):
    """TLS, write concern, compression and other driver options (Atlas-ready).

    ``tz_aware`` (default true) makes the driver return timezone-aware UTC datetimes;
    false returns naive UTC datetimes, as a plain ``AsyncMongoClient`` and Beanie do.
    """

    model_config = FROZEN

    tls: StrictBool | None = None
    tls_ca_file: StrictStr | None = None
    tls_certificate_key_file: StrictStr | None = None
    tls_allow_invalid_certificates: StrictBool = False
    retry_writes: StrictBool = True
    retry_reads: StrictBool = True
    w: StrictInt | Literal["majority"] | None = None
    journal: StrictBool | None = None
    compressors: tuple[Literal["snappy", "zlib", "zstd"], ...] = ()
    appname: StrictStr = "insightdb"
    tz_aware: StrictBool = True

    @field_validator("w", mode="before")
    @classmethod
    def _check_w(cls, value: Any) -> Any:
        if value is None or value == "majority":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 50:
            # One message for both members of the union; 50 is a replica set's size.
            raise ValueError("must be an integer from 0 to 50, or 'majority'")
        return value

    @field_validator("appname")
    @classmethod
    def _check_appname(cls, value: str) -> str:
        if len(value.encode()) > 128:
            raise ValueError("must be at most 128 bytes (the driver's limit)")
        return value

    @field_validator("tls_ca_file", "tls_certificate_key_file")
    @classmethod
    def _check_file(cls, value: str | None) -> str | None:
        if value is not None and not (os.path.isfile(value) and os.access(value, os.R_OK)):
            raise ValueError("no readable file at that path")
        return value


class StartupSettings(Section):
    """Bounds of the initial connection attempts (exponential backoff with full jitter)."""

    model_config = FROZEN

    max_attempts: StrictInt = Field(5, ge=1, le=100)
    max_time_s: Seconds = 15.0
    initial_delay_s: StrictFloat = Field(0.2, gt=0, le=60)
    max_delay_s: StrictFloat = Field(2.0, gt=0, le=60)


class ResilienceSettings(Section):
    """The circuit breaker of each cluster and the bound of a graceful shutdown.

    The breaker opens after ``failure_threshold`` consecutive connectivity failures or
    timeouts (never application errors), rejects for ``reset_timeout_s``, then lets one
    probe through. ``probe_timeout_s`` frees the probe slot of a probe that never
    reports (default: the operation deadline plus one second). ``close()`` waits up to
    ``shutdown_timeout_s`` for operations in flight before closing the clients.
    """

    model_config = FROZEN

    failure_threshold: StrictInt = Field(3, ge=1, le=1_000)
    reset_timeout_s: Seconds = 0.5
    probe_timeout_s: Seconds | None = None
    shutdown_timeout_s: StrictFloat = Field(10.0, ge=0, le=600)


class MonitoringSettings(Section):
    """Thresholds and sampling of command, pool and process monitoring.

    Monitoring runs when ``features.metrics`` is on. A command slower than
    ``slow_query_ms`` is logged with the shape of its filter (``None`` turns that off).
    Every ``interval_s`` (at least one second) the process is sampled and the
    thresholds are checked over that window: mean command latency above
    ``latency_ms``, a checkout wait above ``pool_wait_ms``, or at least
    ``checkout_failures`` failed checkouts turn health ``degraded`` and log one warning
    (a health ping slower than ``latency_ms`` does too). ``max_series`` caps the
    distinct database/collection/command series; more are folded into ``_other``.
    """

    model_config = FROZEN

    slow_query_ms: StrictFloat | None = Field(100.0, gt=0, le=MAX_DRIVER_MS)
    latency_ms: StrictFloat = Field(250.0, gt=0, le=MAX_DRIVER_MS)
    pool_wait_ms: StrictFloat = Field(100.0, gt=0, le=MAX_DRIVER_MS)
    checkout_failures: StrictInt = Field(1, ge=1)
    interval_s: StrictFloat = Field(5.0, ge=1.0, le=3_600)
    process: StrictBool = True
    max_series: StrictInt = Field(500, ge=1, le=100_000)


class FeatureSettings(Section):
    """Switches honoured from the seed system's ``ENABLE_*`` variables."""

    model_config = FROZEN

    health_checks: StrictBool = True
    metrics: StrictBool = True
    audit_trail: StrictBool = False
    fast_documents: StrictBool = True


class EmbeddedSettings(Section):
    """The embedded development server used when a URI is empty (development, testing)."""

    model_config = FROZEN

    engine: Literal["memory", "sqlite"] = "memory"
    data_dir: StrictStr | None = None


class DatabasesSettings(Section):
    """The two groups' databases: ``databases.admin`` and ``databases.customer``."""

    model_config = FROZEN

    admin: DatabaseSettings = DatabaseSettings(name="insightserenity_admin")
    customer: DatabaseSettings = DatabaseSettings(name="insightserenity_customer")

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        defaults = {"admin": "insightserenity_admin", "customer": "insightserenity_customer"}
        return {
            group: {"name": defaults[group], **raw}
            if group in defaults and isinstance(raw, Mapping)
            else raw
            for group, raw in value.items()
        }
