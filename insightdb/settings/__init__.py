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
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from insightdb._redact import is_secret_key, mask_mapping, mask_text, mask_uri, shorten
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
_SECRETS = frozenset({"admin_password"})
_NULLS = frozenset({"none", "null"})
_Frozen = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)
# The driver refuses durations of a billion milliseconds or more (and the server's
# maxTimeMS is a 32-bit integer): every duration passed to it stays below.
MAX_DRIVER_MS = 999_999_999

# Strict scalars: a boolean is not an integer (``operation_ms = true`` is refused, not a
# 1 ms deadline), a number is not a string, and a string is not a number.
Ms = Annotated[StrictInt, Field(ge=1, le=MAX_DRIVER_MS)]
Seconds = Annotated[StrictFloat, Field(gt=0, le=600)]
Str = Annotated[StrictStr, Field(min_length=1)]


def _union_args(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(a for arg in typing.get_args(annotation) for a in _union_args(arg))
    if origin is Annotated:
        return _union_args(typing.get_args(annotation)[0])
    return (annotation,)


def _is_optional(annotation: Any) -> bool:
    return type(None) in _union_args(annotation)


def _accepts_bool(annotation: Any) -> bool:
    return bool in _union_args(annotation)


def _accepts_only_text(annotation: Any) -> bool:
    members = [a for a in _union_args(annotation) if a is not type(None)]

    def is_text(member: Any) -> bool:
        if typing.get_origin(member) is Literal:
            return all(isinstance(v, str) for v in typing.get_args(member))
        return member in (str, SecretStr)

    return bool(members) and all(is_text(m) for m in members)


class _Section(BaseModel):
    """A settings section: frozen, unknown keys refused, "" or "none" meaning unset."""

    model_config = _Frozen

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # TOML has no null and environment variables are strings: "none" (or "null")
        # resets an optional value to "leave it to the driver" — explicitly, never by
        # accident. An empty string does so only for optional text (a file path).
        if not isinstance(value, Mapping):
            return value
        result = dict(value)
        for key, item in value.items():
            field = cls.model_fields.get(str(key))
            if field is None or not isinstance(item, str) or not _is_optional(field.annotation):
                continue
            blank_ok = not item.strip() and _accepts_only_text(field.annotation)
            if item.strip().lower() in _NULLS or blank_ok:
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


class PoolSettings(_Section):
    """Connection-pool options passed through to PyMongo (one pool per cluster)."""

    model_config = _Frozen

    max_pool_size: StrictInt = Field(100, ge=1, le=10_000)
    min_pool_size: StrictInt = Field(0, ge=0, le=10_000)
    max_idle_time_ms: Ms | None = None
    wait_queue_timeout_ms: Ms | None = None
    max_connecting: StrictInt = Field(2, ge=1, le=1_000)


class TimeoutSettings(_Section):
    """Timeouts, in milliseconds.

    The defaults favour fast failure detection: PyMongo's 20 s ``connectTimeoutMS``
    leaves a client stalled for about 20 s after a server hangs, so insightdb uses 2 s.
    ``operation_ms`` becomes the driver's ``timeoutMS``: a deadline for each operation,
    retries included. ``None`` leaves a value to the driver.
    """

    model_config = _Frozen

    connect_ms: Ms = 2_000
    server_selection_ms: Ms = 3_000
    socket_ms: Ms | None = None
    operation_ms: Ms | None = 5_000
    heartbeat_frequency_ms: Annotated[StrictInt, Field(ge=500, le=MAX_DRIVER_MS)] = 2_000


class DriverSettings(_Section):
    """TLS, write concern, compression and other driver options (Atlas-ready).

    ``tz_aware`` (default true) makes the driver return timezone-aware UTC datetimes;
    false returns naive UTC datetimes, as a plain ``AsyncMongoClient`` and Beanie do.
    """

    model_config = _Frozen

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


class StartupSettings(_Section):
    """Bounds of the initial connection attempts (exponential backoff with full jitter)."""

    model_config = _Frozen

    max_attempts: StrictInt = Field(5, ge=1, le=100)
    max_time_s: Seconds = 15.0
    initial_delay_s: StrictFloat = Field(0.2, gt=0, le=60)
    max_delay_s: StrictFloat = Field(2.0, gt=0, le=60)


class ResilienceSettings(_Section):
    """The circuit breaker of each cluster and the bound of a graceful shutdown.

    The breaker opens after ``failure_threshold`` consecutive connectivity failures or
    timeouts (never application errors), rejects for ``reset_timeout_s``, then lets one
    probe through. ``probe_timeout_s`` frees the probe slot of a probe that never
    reports (default: the operation deadline plus one second). ``close()`` waits up to
    ``shutdown_timeout_s`` for operations in flight before closing the clients.
    """

    model_config = _Frozen

    failure_threshold: StrictInt = Field(3, ge=1, le=1_000)
    reset_timeout_s: Seconds = 0.5
    probe_timeout_s: Seconds | None = None
    shutdown_timeout_s: StrictFloat = Field(10.0, ge=0, le=600)


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

    slow_query_ms: StrictFloat | None = Field(100.0, gt=0, le=MAX_DRIVER_MS)
    latency_ms: StrictFloat = Field(250.0, gt=0, le=MAX_DRIVER_MS)
    pool_wait_ms: StrictFloat = Field(100.0, gt=0, le=MAX_DRIVER_MS)
    checkout_failures: StrictInt = Field(1, ge=1)
    interval_s: StrictFloat = Field(5.0, ge=1.0, le=3_600)
    process: StrictBool = True
    max_series: StrictInt = Field(500, ge=1, le=100_000)


class FeatureSettings(_Section):
    """Switches honoured from the seed system's ``ENABLE_*`` variables."""

    model_config = _Frozen

    health_checks: StrictBool = True
    metrics: StrictBool = True
    audit_trail: StrictBool = False
    fast_documents: StrictBool = True


class EmbeddedSettings(_Section):
    """The embedded development server used when a URI is empty (development, testing)."""

    model_config = _Frozen

    engine: Literal["memory", "sqlite"] = "memory"
    data_dir: StrictStr | None = None


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
        ConfigurationError: A value is invalid, unknown or missing, or the driver would
            refuse it; the message is one line naming the key (or the file, or the
            variable) and never shows a secret.
    """
    source = "env" if env else "INSIGHTDB_ENV"
    chosen = (env or os.environ.get("INSIGHTDB_ENV") or "development").strip().lower()
    if chosen not in ENVIRONMENTS:
        raise ConfigurationError(
            f"{source}: {shorten(chosen, 40)!r} is not an environment; expected one of "
            f"{', '.join(ENVIRONMENTS)}"
        )
    raw = _load_layers(chosen, settings_files)
    _apply_seed_variables(raw)
    _apply_prefixed_variables(raw)
    if overrides:
        _deep_merge(raw, _lower_keys(overrides))
    raw["env"] = chosen
    settings = _validate(raw)
    _check_required(settings)
    _check_consistency(settings)
    # The driver's own parser and option validators are the reference: what it would
    # refuse at init() is refused here (imported late: connections builds on settings).
    from insightdb.runtime.connections import check_connections

    check_connections(settings)
    return settings


# --- files -----------------------------------------------------------------------------


def _load_layers(
    env: str, settings_files: Sequence[str | os.PathLike[str]] | None
) -> dict[str, Any]:
    from dynaconf import Dynaconf  # only here: dynaconf stays at the boundary

    if settings_files is None:
        cwd = Path.cwd()
        files = [cwd / "settings.toml", cwd / ".secrets.toml"]
        names = {str(f): f.name for f in files}
    else:
        files = [Path(f) for f in settings_files]
        names = {str(f): str(f) for f in files}
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ConfigurationError(f"settings file not found: {', '.join(missing)}")
    existing = [f for f in files if f.is_file()]
    for path in existing:
        _check_file(path, names[str(path)])
    try:
        loaded = Dynaconf(
            settings_files=[str(f.resolve()) for f in existing],
            environments=True,
            env=env,
            # insightdb chooses the environment itself (argument, then INSIGHTDB_ENV);
            # point dynaconf's own switch at a name nobody sets.
            env_switcher="INSIGHTDB_DYNACONF_ENV_SWITCH",
            envvar_prefix=False,  # INSIGHTDB_ variables are applied by this module
            load_dotenv=False,
            merge_enabled=True,
            # Values are data: "@int", "@format", "@read_file" and the like in a value
            # (a password may start with "@") are not dynaconf instructions.
            auto_cast=False,
        )
        data = loaded.to_dict()
    except ConfigurationError:
        raise
    except Exception as exc:  # dynaconf raises many types; the user needs one line
        raise ConfigurationError(
            f"settings files could not be read: {type(exc).__name__}: "
            f"{shorten(mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else ''))}"
        ) from None
    lowered = _lower_keys(data)
    return {key: value for key, value in lowered.items() if key in _TOP_LEVEL_KEYS | _SECRETS}


def _check_file(path: Path, name: str) -> None:
    """Refuse a file that is not TOML, or holds a section or key insightdb doesn't know.

    Every level is checked, in every environment's section (not only the chosen one),
    so a typo fails on the laptop rather than in production. Values are never shown.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{name}: not valid TOML: {str(exc).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{name}: could not be read: {type(exc).__name__}") from None
    sections = ("default", *ENVIRONMENTS)
    for key, value in data.items():
        if key.lower() not in sections:
            kind = "section" if isinstance(value, dict) else "setting outside any section"
            raise ConfigurationError(
                f"{shorten(key, 60)}: unknown {kind} in {name}; the top level holds only "
                f"the sections {', '.join(f'[{s}]' for s in sections)}"
            )
        if not isinstance(value, dict):
            raise ConfigurationError(f"{key}: must be a section ([{key}]) in {name}")
        _check_keys(value, Settings, key.lower(), name)


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], prefix: str, name: str) -> None:
    for key, value in data.items():
        path = f"{prefix}.{shorten(key, 60)}"
        field = model.model_fields.get(key.lower())
        if field is None or (model is Settings and key.lower() == "env"):
            raise ConfigurationError(f"{path}: unknown setting in {name}")
        section = _section_model(field.annotation)
        if section is not None:
            if not isinstance(value, dict):
                raise ConfigurationError(f"{path}: must be a section ([{path}]) in {name}")
            _check_keys(value, section, path, name)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


# --- environment variables -------------------------------------------------------------


def _apply_seed_variables(raw: dict[str, Any]) -> None:
    for variable, path in _SEED_VARIABLES.items():
        value = os.environ.get(variable)
        if value is not None:
            _set_path(raw, path, _parse_env_value(variable, value, _field_at(path)))


def _apply_prefixed_variables(raw: dict[str, Any]) -> None:
    prefix = "INSIGHTDB_"
    for variable in sorted(os.environ):
        if not variable.startswith(prefix) or variable in _NOT_SETTINGS:
            continue
        if variable.startswith("INSIGHTDB_TEST_"):
            continue  # read by the test plugin, not settings
        path = tuple(part.lower() for part in variable[len(prefix) :].split("__"))
        if path[0] not in _TOP_LEVEL_KEYS | _SECRETS:
            raise ConfigurationError(
                f"{variable}: unknown setting {shorten(path[0], 40)!r}; expected one of "
                f"{', '.join(sorted(_TOP_LEVEL_KEYS))}"
            )
        field = _field_at(path)
        if field is None:
            raise ConfigurationError(
                f"{variable}: unknown setting {shorten('.'.join(path), 60)!r}"
                + (
                    " (a section: set one of its keys, with __ before it)"
                    if _is_section(path)
                    else ""
                )
            )
        _set_path(raw, path, _parse_env_value(variable, os.environ[variable], field))


def _field_at(path: tuple[str, ...]) -> Any:
    """Return the annotation of the leaf setting at ``path``, or None if there is none."""
    model: type[BaseModel] = Settings
    for index, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None or (model is Settings and part == "env"):
            return None
        section = _section_model(field.annotation)
        if section is None:
            return field.annotation if index == len(path) - 1 else None
        model = section
    return None


def _is_section(path: tuple[str, ...]) -> bool:
    model: type[BaseModel] = Settings
    for part in path:
        field = model.model_fields.get(part)
        section = None if field is None else _section_model(field.annotation)
        if section is None:
            return False
        model = section
    return True


def _parse_env_value(variable: str, text: str, annotation: Any) -> Any:
    """Parse an environment value for the setting of type ``annotation``.

    Text settings take the text as it is (a password ``12345`` stays a string); other
    settings take it as a TOML value (``50``, ``2.5``, ``true``, ``["zstd"]``), with
    ``yes``/``no``/``on``/``off``/``1``/``0`` for booleans. An empty value is refused:
    it would otherwise silently reset the setting (an empty ``..._OPERATION_MS`` would
    switch deadlines off); write ``none`` to leave an optional value to the driver.
    """
    if not text.strip():
        hint = "; write none to leave it to the driver" if _is_optional(annotation) else ""
        raise ConfigurationError(
            f"{variable}: empty value; unset the variable to keep the files' value{hint}"
        )
    try:
        parsed: Any = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = None
    if _accepts_only_text(annotation):
        return parsed if isinstance(parsed, str) else text
    if _accepts_bool(annotation):
        lowered = text.strip().lower()
        if lowered in {"true", "yes", "on", "1"}:
            return True
        if lowered in {"false", "no", "off", "0"}:
            return False
    return text if parsed is None else parsed


# --- merging and validation ------------------------------------------------------------


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


def _error_key(loc: tuple[int | str, ...]) -> tuple[str, Any]:
    """Return the settings key of an error location and the annotation of its leaf.

    Union members and type tags that Pydantic appends (``w.int``) are dropped; list
    indexes stay (``driver.compressors.0``). The annotation is None for a section or an
    unknown key.
    """
    model: type[BaseModel] | None = Settings
    parts: list[str] = []
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            if annotation is not None and not parts[-1].isdigit():
                parts.append(str(part))
            continue
        if model is None:
            break  # past the leaf: a union member's name
        field = model.model_fields.get(part)
        parts.append(shorten(str(part), 60))
        if field is None:
            annotation = None
            break
        annotation = field.annotation
        model = _section_model(annotation)
        if model is not None:
            annotation = None
    return ".".join(parts), annotation


def _shown(key: str, annotation: Any, error: Mapping[str, Any]) -> str:
    """Return `` (got ...)`` for a value safe to show, else ""."""
    if annotation is None or "input" not in error:
        return ""  # a section, or an unknown key: its value may be anything, never echo
    leaf = key.rsplit(".", 1)[-1]
    if (
        is_secret_key(key)
        or leaf == "uri"
        or leaf.endswith("_uri")
        or SecretStr in _union_args(annotation)
    ):
        return ""
    value = error["input"]
    if not isinstance(value, str | int | float | bool) or value is None:
        return ""
    return f" (got {mask_text(shorten(repr(value), 60))})"


def _validate(raw: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        error = errors[0]
        key, annotation = _error_key(tuple(error["loc"]))
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
            annotation = None
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        others = {_error_key(tuple(e["loc"]))[0] for e in errors[1:]} - {key}
        more = f" (and {len(others)} more)" if others else ""
        text = f"{key}: {mask_text(shorten(message, 200))}{_shown(key, annotation, error)}{more}"
        raise ConfigurationError(text) from None


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


def _check_consistency(settings: Settings) -> None:
    """Refuse combinations of values that are each valid alone."""
    pool, driver = settings.pool, settings.driver
    if pool.min_pool_size > pool.max_pool_size:
        raise ConfigurationError(
            f"pool.min_pool_size: {pool.min_pool_size} is more than pool.max_pool_size "
            f"({pool.max_pool_size})"
        )
    if driver.w == 0 and driver.journal:
        raise ConfigurationError(
            "driver.journal: true needs acknowledged writes, but driver.w is 0"
        )
    if driver.tls is False:
        for key in ("tls_ca_file", "tls_certificate_key_file"):
            if getattr(driver, key) is not None:
                raise ConfigurationError(f"driver.{key}: set, but driver.tls is false")
    if settings.embedded.engine == "sqlite" and settings.embedded.data_dir is None:
        raise ConfigurationError('embedded.data_dir: required with embedded.engine = "sqlite"')
