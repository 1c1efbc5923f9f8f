"""Typed, frozen, validated settings loaded through dynaconf.

This is the one module that imports dynaconf or reads ``os.environ``. It layers, from
lowest to highest precedence:

1. the defaults declared on the models below,
2. ``[default]`` then ``[<env>]`` of ``settings.toml``,
3. ``[default]`` then ``[<env>]`` of ``.secrets.toml`` (git-ignored),
4. the seed system's variable names (``DATABASE_ADMIN_URI``, ``DATABASE_CUSTOMER_URI``,
   ``ENABLE_HEALTH_CHECKS``, ``ENABLE_METRICS``, ``ENABLE_AUDIT_TRAIL``),
5. ``INSIGHTDB_<KEY>`` variables, ``__`` separating nested keys
   (``INSIGHTDB_DATABASES__ADMIN__URI``),
6. the ``overrides`` mapping passed to :func:`get_settings` (tests, tools).

The environment is ``env=`` if given, else ``INSIGHTDB_ENV``, else ``development``.
The result is a frozen :class:`Settings`; any invalid value is a one-line
:class:`~insightdb.exceptions.ConfigurationError` naming the key, and credentials are
masked in every ``repr``.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from insightdb._redact import is_secret_key, mask_mapping, mask_uri
from insightdb.exceptions import ConfigurationError

__all__ = [
    "ENVIRONMENTS",
    "GROUPS",
    "DatabaseSettings",
    "DatabasesSettings",
    "DriverSettings",
    "EmbeddedSettings",
    "FeatureSettings",
    "MonitoringSettings",
    "PoolSettings",
    "ResilienceSettings",
    "Settings",
    "StartupSettings",
    "TimeoutSettings",
    "get_settings",
]

ENVIRONMENTS = ("development", "testing", "staging", "production")
GROUPS = ("admin", "customer")
_FORBIDDEN_DB_NAMES = frozenset({"admin", "config", "local"})
_DB_NAME_BAD_CHARS = frozenset('/\\. "$*<>:|?\x00')
_SEED_VARIABLES: dict[str, tuple[str, ...]] = {
    "DATABASE_ADMIN_URI": ("databases", "admin", "uri"),
    "DATABASE_CUSTOMER_URI": ("databases", "customer", "uri"),
    "ENABLE_HEALTH_CHECKS": ("features", "health_checks"),
    "ENABLE_METRICS": ("features", "metrics"),
    "ENABLE_AUDIT_TRAIL": ("features", "audit_trail"),
}
_TOP_LEVEL_KEYS = frozenset(
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
# INSIGHTDB_ variables that are not settings: the environment switch, the embedded
# server's interpreter and the Makefile's interpreter choice.
_NOT_SETTINGS = frozenset({"INSIGHTDB_ENV", "INSIGHTDB_EMBEDDED_PYTHON", "INSIGHTDB_PYTHON"})
_NULLS = frozenset({"", "none", "null"})
_Frozen = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class _Section(BaseModel):
    """A settings section: frozen, unknown keys refused, "" or "none" meaning unset."""

    model_config = _Frozen

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # TOML has no null and environment variables are strings: let "" or "none"
        # reset an optional value to "leave it to the driver".
        if not isinstance(value, Mapping):
            return value
        result = dict(value)
        for key, item in value.items():
            field = cls.model_fields.get(str(key))
            if (
                field is not None
                and type(None) in typing.get_args(field.annotation)
                and isinstance(item, str)
                and item.strip().lower() in _NULLS
            ):
                result[key] = None
        return result


class DatabaseSettings(_Section):
    """Where one group's database lives.

    Attributes:
        uri: The cluster's connection string (``mongodb://`` or ``mongodb+srv://``).
            Empty means the embedded server in ``development`` and ``testing``.
        name: The database name inside that cluster.
        read_preference: The read preference of this group's database.
    """

    model_config = _Frozen

    uri: str = ""
    name: str
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
                f"{value!r} is reserved by MongoDB (admin, config and local are refused: "
                "they can't take part in transactions)"
            )
        if any(ch in _DB_NAME_BAD_CHARS for ch in value) or len(value.encode()) > 63:
            raise ValueError(
                f'{value!r} is not a valid database name (at most 63 bytes, none of /\\. "$*<>:|?)'
            )
        return value

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, mask_uri(value) if key == "uri" and isinstance(value, str) else value


class PoolSettings(_Section):
    """Connection-pool options passed through to PyMongo (one pool per cluster)."""

    model_config = _Frozen

    max_pool_size: int = Field(100, ge=1, le=10_000)
    min_pool_size: int = Field(0, ge=0, le=10_000)
    max_idle_time_ms: int | None = Field(None, ge=0)
    wait_queue_timeout_ms: int | None = Field(None, ge=1)
    max_connecting: int = Field(2, ge=1, le=1_000)


class TimeoutSettings(_Section):
    """Timeouts, in milliseconds.

    The defaults favour fast failure detection: PyMongo's 20 s ``connectTimeoutMS``
    leaves a client stalled for about 20 s after a server hangs, so insightdb uses 2 s.
    ``operation_ms`` becomes the driver's ``timeoutMS``: a deadline for each operation,
    retries included. ``None`` leaves a value to the driver.
    """

    model_config = _Frozen

    connect_ms: int = Field(2_000, ge=1)
    server_selection_ms: int = Field(3_000, ge=1)
    socket_ms: int | None = Field(None, ge=1)
    operation_ms: int | None = Field(5_000, ge=1)
    heartbeat_frequency_ms: int = Field(2_000, ge=500)


class DriverSettings(_Section):
    """TLS, write concern, compression and other driver options (Atlas-ready)."""

    model_config = _Frozen

    tls: bool | None = None
    tls_ca_file: str | None = None
    tls_certificate_key_file: str | None = None
    tls_allow_invalid_certificates: bool = False
    retry_writes: bool = True
    retry_reads: bool = True
    w: int | Literal["majority"] | None = None
    journal: bool | None = None
    compressors: tuple[Literal["snappy", "zlib", "zstd"], ...] = ()
    appname: str = "insightdb"


class StartupSettings(_Section):
    """Bounds of the initial connection attempts (exponential backoff with full jitter)."""

    model_config = _Frozen

    max_attempts: int = Field(5, ge=1, le=100)
    max_time_s: float = Field(15.0, gt=0, le=600)
    initial_delay_s: float = Field(0.2, gt=0, le=60)
    max_delay_s: float = Field(2.0, gt=0, le=60)


class ResilienceSettings(_Section):
    """The circuit breaker of each cluster and the bound of a graceful shutdown.

    The breaker opens after ``failure_threshold`` consecutive connectivity failures or
    timeouts (never application errors), rejects for ``reset_timeout_s``, then lets one
    probe through. ``probe_timeout_s`` frees the probe slot of a probe that never
    reports (default: the operation deadline plus one second). ``close()`` waits up to
    ``shutdown_timeout_s`` for operations in flight before closing the clients.
    """

    model_config = _Frozen

    failure_threshold: int = Field(3, ge=1, le=1_000)
    reset_timeout_s: float = Field(0.5, gt=0, le=600)
    probe_timeout_s: float | None = Field(None, gt=0, le=600)
    shutdown_timeout_s: float = Field(10.0, ge=0, le=600)


class MonitoringSettings(_Section):
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

    model_config = _Frozen

    slow_query_ms: float | None = Field(100.0, gt=0)
    latency_ms: float = Field(250.0, gt=0)
    pool_wait_ms: float = Field(100.0, gt=0)
    checkout_failures: int = Field(1, ge=1)
    interval_s: float = Field(5.0, ge=1.0, le=3_600)
    process: bool = True
    max_series: int = Field(500, ge=1, le=100_000)


class FeatureSettings(_Section):
    """Switches honoured from the seed system's ``ENABLE_*`` variables."""

    model_config = _Frozen

    health_checks: bool = True
    metrics: bool = True
    audit_trail: bool = False


class EmbeddedSettings(_Section):
    """The embedded development server used when a URI is empty (development, testing)."""

    model_config = _Frozen

    engine: Literal["memory", "sqlite"] = "memory"
    data_dir: str | None = None


class DatabasesSettings(_Section):
    """The two groups' databases: ``databases.admin`` and ``databases.customer``."""

    model_config = _Frozen

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


class Settings(BaseModel):
    """All of insightdb's settings, frozen and validated.

    Build with :func:`get_settings`; never mutate (use ``model_copy(update=...)``).
    """

    model_config = _Frozen

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
    models: tuple[str, ...] = ("models",)
    migrations_dir: str = "migrations"
    seeds_dir: str = "seeds"
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    admin_password: SecretStr | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

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


def get_settings(
    env: str | None = None,
    settings_files: Sequence[str | os.PathLike[str]] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load, merge and validate settings.

    Args:
        env: The environment (``development``, ``testing``, ``staging``,
            ``production``); defaults to ``INSIGHTDB_ENV``, then ``development``.
        settings_files: TOML files to layer; defaults to ``settings.toml`` and
            ``.secrets.toml`` in the working directory (missing files are skipped).
        overrides: Nested values applied last, e.g.
            ``{"databases": {"admin": {"name": "t1_admin"}}}``.

    Returns:
        The frozen settings.

    Raises:
        ConfigurationError: A value is invalid or a required one is missing; the
            message is one line naming the key.
    """
    source = "env" if env else "INSIGHTDB_ENV"
    chosen = (env or os.environ.get("INSIGHTDB_ENV") or "development").strip().lower()
    if chosen not in ENVIRONMENTS:
        raise ConfigurationError(
            f"{source}: {chosen!r} is not an environment; expected one of {', '.join(ENVIRONMENTS)}"
        )
    raw = _load_layers(chosen, settings_files)
    _apply_seed_variables(raw)
    _apply_prefixed_variables(raw)
    if overrides:
        _deep_merge(raw, _lower_keys(overrides))
    raw["env"] = chosen
    settings = _validate(raw)
    _check_required(settings)
    return settings


def _load_layers(
    env: str, settings_files: Sequence[str | os.PathLike[str]] | None
) -> dict[str, Any]:
    from dynaconf import Dynaconf  # only here: dynaconf stays at the boundary

    if settings_files is None:
        cwd = Path.cwd()
        files = [cwd / "settings.toml", cwd / ".secrets.toml"]
    else:
        files = [Path(f) for f in settings_files]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ConfigurationError(f"settings file not found: {', '.join(missing)}")
    existing = [str(f.resolve()) for f in files if f.is_file()]
    try:
        loaded = Dynaconf(
            settings_files=existing,
            environments=True,
            env=env,
            # insightdb chooses the environment itself (argument, then INSIGHTDB_ENV);
            # point dynaconf's own switch at a name nobody sets.
            env_switcher="INSIGHTDB_DYNACONF_ENV_SWITCH",
            envvar_prefix=False,  # INSIGHTDB_ variables are applied by this module
            load_dotenv=False,
            merge_enabled=True,
        )
        data = loaded.to_dict()
    except ConfigurationError:
        raise
    except Exception as exc:  # dynaconf raises many types; the user needs one line
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(f"settings files could not be read: {first_line}") from exc
    result = {
        key: value
        for key, value in _lower_keys(data).items()
        if key in _TOP_LEVEL_KEYS | {"admin_password"}
    }
    return result


def _apply_seed_variables(raw: dict[str, Any]) -> None:
    for variable, path in _SEED_VARIABLES.items():
        value = os.environ.get(variable)
        if value is not None:
            _set_path(raw, path, _parse_env_value(value))


def _apply_prefixed_variables(raw: dict[str, Any]) -> None:
    prefix = "INSIGHTDB_"
    for variable in sorted(os.environ):
        if not variable.startswith(prefix) or variable in _NOT_SETTINGS:
            continue
        if variable.startswith("INSIGHTDB_TEST_"):
            continue  # read by the test plugin, not settings
        path = tuple(part.lower() for part in variable[len(prefix) :].split("__"))
        if path[0] not in _TOP_LEVEL_KEYS | {"admin_password"}:
            raise ConfigurationError(
                f"{variable}: unknown setting {path[0]!r}; expected one of "
                f"{', '.join(sorted(_TOP_LEVEL_KEYS))}"
            )
        _set_path(raw, path, _parse_env_value(os.environ[variable]))


def _parse_env_value(text: str) -> Any:
    """Parse an environment value as a TOML value, falling back to the plain string."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        lowered = text.strip().lower()
        if lowered in {"true", "yes", "on"}:
            return True
        if lowered in {"false", "no", "off"}:
            return False
        return text


def _set_path(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _lower_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(k).lower(): _lower_keys(v) if isinstance(v, Mapping) else v for k, v in data.items()
    }


def _deep_merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


def _validate(raw: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        shown = ""
        if not is_secret_key(key) and not key.endswith("uri") and "input" in error:
            value = error["input"]
            if not isinstance(value, Mapping | list):
                shown = f" (got {value!r})"
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigurationError(f"{key}: {message}{shown}{more}") from None


def _check_required(settings: Settings) -> None:
    if settings.env in {"development", "testing"}:
        return
    for group in GROUPS:
        if not settings.database(group).uri:
            variable = f"INSIGHTDB_DATABASES__{group.upper()}__URI"
            raise ConfigurationError(
                f"databases.{group}.uri: required in {settings.env} (set it in .secrets.toml, "
                f"{variable} or DATABASE_{group.upper()}_URI); the embedded server is for "
                "development and testing only"
            )
