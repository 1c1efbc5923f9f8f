"""Configuration fuzz: every bad value is one line naming its key, fast, and secret-free.

Each row puts one bad value where a user would (a settings file, an environment
variable) and expects :func:`get_settings` to refuse it with a ``ConfigurationError``
whose message starts with the key (or the file, or the variable), fits on one line,
quotes no secret and no unknown key's value, and comes back at once. Every value here
is one the driver would refuse at ``init()`` or one that would silently misconfigure it
(a boolean read as a 1 ms deadline, an empty variable switching deadlines off, a typo
dropping a section).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from insightdb import ConfigurationError, get_settings

SECRET = "hunter2-Xq9"
BOUND_S = 2.0  # "no hang": a generous bound, far above the few ms a check takes


def _check(message: str, prefix: str) -> None:
    assert message.startswith(prefix), message
    assert "\n" not in message
    assert SECRET not in message
    assert "Traceback" not in message
    assert len(message) < 400, message


# (settings.toml text, expected start of the message)
FILE_CASES: list[tuple[str, str]] = [
    # booleans and integers are strict
    ("[default]\ntimeouts.operation_ms = true", "timeouts.operation_ms: "),
    ("[default]\ntimeouts.connect_ms = 1.5", "timeouts.connect_ms: "),
    ('[default]\npool.max_pool_size = "5"', "pool.max_pool_size: "),
    ("[default]\npool.max_pool_size = 5.0", "pool.max_pool_size: "),
    ('[default]\ndriver.retry_writes = "yes"', "driver.retry_writes: "),
    ("[default]\ndriver.retry_writes = 1", "driver.retry_writes: "),
    ("[default]\nmonitoring.process = 0", "monitoring.process: "),
    ("[default]\nstartup.max_attempts = true", "startup.max_attempts: "),
    ("[default]\nresilience.reset_timeout_s = true", "resilience.reset_timeout_s: "),
    ("[default]\nlog_level = 3", "log_level: "),
    ("[default]\ndatabases.admin.name = 12", "databases.admin.name: "),
    ('[default]\ntimeouts.operation_ms = ""', "timeouts.operation_ms: "),
    # durations the driver refuses (it caps them below one billion ms)
    ("[default]\ntimeouts.operation_ms = 2147483648", "timeouts.operation_ms: "),
    ("[default]\ntimeouts.operation_ms = 1000000000", "timeouts.operation_ms: "),
    ("[default]\ntimeouts.server_selection_ms = 4294967296", "timeouts.server_selection_ms: "),
    ("[default]\ntimeouts.socket_ms = 99999999999999", "timeouts.socket_ms: "),
    ("[default]\npool.max_idle_time_ms = 2147483648", "pool.max_idle_time_ms: "),
    ("[default]\ntimeouts.heartbeat_frequency_ms = 499", "timeouts.heartbeat_frequency_ms: "),
    ("[default]\ntimeouts.connect_ms = 0", "timeouts.connect_ms: "),
    ("[default]\nresilience.reset_timeout_s = nan", "resilience.reset_timeout_s: "),
    ("[default]\nmonitoring.latency_ms = inf", "monitoring.latency_ms: "),
    # values that are fine alone but not together, or that the driver caps
    ("[default]\npool.min_pool_size = 10\npool.max_pool_size = 5", "pool.min_pool_size: "),
    (f'[default]\ndriver.appname = "{"a" * 129}"', "driver.appname: "),
    (f'[default]\ndriver.appname = "{"é" * 65}"', "driver.appname: "),  # 130 bytes
    ("[default]\ndriver.w = -1", "driver.w: "),
    ("[default]\ndriver.w = true", "driver.w: "),
    ('[default]\ndriver.w = "all"', "driver.w: "),
    ("[default]\ndriver.w = 0\ndriver.journal = true", "driver.journal: "),
    ('[default]\ndriver.tls_ca_file = "/nonexistent/ca.pem"', "driver.tls_ca_file: "),
    (
        '[default]\ndriver.tls_certificate_key_file = "/no/c.pem"',
        "driver.tls_certificate_key_file: ",
    ),
    ('[default]\ndriver.compressors = ["lz4"]', "driver.compressors.0: "),
    ('[default]\nembedded.engine = "sqlite"', "embedded.data_dir: "),
    ('[default]\nmodels = [""]', "models.0: "),
    ('[default]\nmodels = ["my models"]', "models: "),
    ('[default]\nmodels = "models"', "models: "),
    # URIs: what the driver's parser refuses, named by key, the password never shown
    (
        '[default]\ndatabases.admin.uri = "mongodb+srv://c.example.net:27017/"',
        "databases.admin.uri: ",
    ),
    (
        '[default]\ndatabases.admin.uri = "mongodb+srv://a.example.net,b.example.net/"',
        "databases.admin.uri: ",
    ),
    (
        f'[default]\ndatabases.admin.uri = "mongodb://bob:{SECRET}@h/?bogusOption=1"',
        "databases.admin.uri: ",
    ),
    (
        f'[default]\ndatabases.admin.uri = "mongodb://bob:{SECRET}@h/?maxPoolSize=abc"',
        "databases.admin.uri: ",
    ),
    (f'[default]\ndatabases.admin.uri = "mongodb://bob:{SECRET}@h/?w=-1"', "databases.admin.uri: "),
    (
        f'[default]\ndatabases.admin.uri = "mongodb://bob:{SECRET}@h:99999/"',
        "databases.admin.uri: ",
    ),
    (f'[default]\ndatabases.admin.uri = "mongodb://bob:{SECRET}/x@h/"', "databases.admin.uri: "),
    (f'[default]\ndatabases.admin.uri = "mongodb://bob:{SECRET}:x@h/"', "databases.admin.uri: "),
    (f'[default]\ndatabases.admin.uri = "mongodb://bob:{SECRET}%zz@h/"', "databases.admin.uri: "),
    (
        f'[default]\ndatabases.admin.uri = "mongodb://bob:{SECRET}@h/?tls=true&tlsCAFile=/no.pem"',
        "databases.admin.uri: ",
    ),
    (
        '[default]\ndatabases.admin.uri = "mongodb://h1,h2/?directConnection=true"',
        "databases.admin.uri: ",
    ),
    (f'[default]\ndatabases.admin.uri = "http://bob:{SECRET}@h/"', "databases.admin.uri: "),
    (f"[default]\ndatabases.admin.uri = {'[1, 2]'}", "databases.admin.uri: "),
    # both groups on one database of one cluster (issue 9): embedded, and a real cluster
    ('[default]\ndatabases.customer.name = "insightserenity_admin"', "databases.customer.name: "),
    (
        f'[default]\ndatabases.admin.uri = "mongodb://a:{SECRET}@h1,h2/"\n'
        'databases.admin.name = "app"\n'
        f'databases.customer.uri = "mongodb://b:{SECRET}@h2:27017,h3/?w=1"\n'
        'databases.customer.name = "APP"',
        "databases.customer.name: ",
    ),
    # unknown keys, at every level, values never shown
    ("[timeout]\nconnect_ms = 5", "timeout: unknown section in settings.toml"),
    ("[developmnet]\nlog_level = 'INFO'", "developmnet: unknown section"),
    ('model = ["models"]', "model: unknown setting outside any section"),
    ("[default.resilence]\nfailure_threshold = 2", "default.resilence: unknown setting"),
    (f'[default]\npasword = "{SECRET}"', "default.pasword: unknown setting"),
    (f'[default.databases.admin]\npasword = "{SECRET}"', "default.databases.admin.pasword: "),
    ("[production.pool]\nmax_poolsize = 1", "production.pool.max_poolsize: unknown setting"),
    ("[default.databases.billing]\nname = 'x'", "default.databases.billing: unknown setting"),
    ("[default]\nenv = 'production'", "default.env: unknown setting"),
    ("[default]\npool = 5", "default.pool: must be a section"),
    ("[default]\ndynaconf_merge = true", "default.dynaconf_merge: unknown setting"),
    # syntax errors name the file
    (f'[default]\nadmin_password = "{SECRET}', "settings.toml: not valid TOML"),
    ("[default\n", "settings.toml: not valid TOML"),
]


@pytest.mark.parametrize(("text", "prefix"), FILE_CASES)
def test_bad_value_in_a_file(clean_env: Path, text: str, prefix: str) -> None:
    (clean_env / "settings.toml").write_text(text + "\n", encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        get_settings()
    assert time.monotonic() - started < BOUND_S
    _check(str(info.value), prefix)
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, ConfigurationError)


# (variable, value, expected start of the message)
ENV_CASES: list[tuple[str, str, str]] = [
    ("INSIGHTDB_TIMEOUTS__OPERATION_MS", "", "INSIGHTDB_TIMEOUTS__OPERATION_MS: empty value"),
    ("INSIGHTDB_TIMEOUTS__OPERATION_MS", "  ", "INSIGHTDB_TIMEOUTS__OPERATION_MS: empty value"),
    ("INSIGHTDB_DATABASES__ADMIN__URI", "", "INSIGHTDB_DATABASES__ADMIN__URI: empty value"),
    ("DATABASE_ADMIN_URI", "", "DATABASE_ADMIN_URI: empty value"),
    ("INSIGHTDB_TIMEOUTS__OPERATION_MS", "true", "timeouts.operation_ms: "),
    ("INSIGHTDB_TIMEOUTS__OPERATION_MS", "2147483648", "timeouts.operation_ms: "),
    ("INSIGHTDB_POOL__MAX_POOL_SIZE", "1.0", "pool.max_pool_size: "),
    ("INSIGHTDB_FEATURES__METRICS", "2", "features.metrics: "),
    ("INSIGHTDB_POOL__MAX_POOLSIZE", "5", "INSIGHTDB_POOL__MAX_POOLSIZE: unknown setting"),
    ("INSIGHTDB_POOL", "5", "INSIGHTDB_POOL: unknown setting"),
    ("INSIGHTDB_POOL__MAX_POOL_SIZE__X", "5", "INSIGHTDB_POOL__MAX_POOL_SIZE__X: unknown"),
    ("INSIGHTDB_DATABASES__ADMIN__PASWORD", SECRET, "INSIGHTDB_DATABASES__ADMIN__PASWORD: "),
    ("INSIGHTDB_PASWORD", SECRET, "INSIGHTDB_PASWORD: unknown setting"),
    ("INSIGHTDB_ENV", "qa", "INSIGHTDB_ENV: "),
    ("DATABASE_ADMIN_URI", f"mongodb://bob:{SECRET}@h/?bogus=1", "databases.admin.uri: "),
    ("DATABASE_ADMIN_URI", f"mongodb://bob:{SECRET} x@h/db/x@y", "databases.admin.uri: "),
    (
        "INSIGHTDB_DATABASES__ADMIN__URI",
        f"mongodb://bob:{SECRET}@h/?appname=" + "x" * 100_000,
        "databases.admin.uri: ",
    ),
    (
        "INSIGHTDB_DATABASES__ADMIN__URI",
        f"mongodb://bob:{SECRET}" + "@/" * 50_000 + "@h/",
        "databases.admin.uri: ",
    ),
    ("INSIGHTDB_DATABASES__ADMIN__NAME", "n" * 100_000, "databases.admin.name: "),
    ("INSIGHTDB_LOG_LEVEL", "L" * 100_000, "log_level: "),
]


@pytest.mark.parametrize(("variable", "value", "prefix"), ENV_CASES)
def test_bad_value_in_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, prefix: str
) -> None:
    monkeypatch.setenv(variable, value)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        get_settings()
    assert time.monotonic() - started < BOUND_S
    _check(str(info.value), prefix)


def test_unknown_key_in_secrets_file_names_that_file(clean_env: Path) -> None:
    (clean_env / ".secrets.toml").write_text(f'[default]\nadmin_pasword = "{SECRET}"\n')
    with pytest.raises(ConfigurationError) as info:
        get_settings()
    _check(str(info.value), "default.admin_pasword: unknown setting in .secrets.toml")


def test_unknown_override_never_echoes_its_value(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        get_settings(overrides={"databases": {"admin": {"pasword": SECRET}}})
    _check(str(info.value), "databases.admin.pasword: unknown setting")


def test_a_section_replaced_by_a_value_never_echoes_it(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        get_settings(overrides={"databases": {"admin": f"mongodb://bob:{SECRET}@h/"}})
    _check(str(info.value), "databases.admin: ")


@pytest.mark.skipif(
    importlib.util.find_spec("snappy") is not None, reason="python-snappy is installed"
)
def test_compressor_the_driver_cannot_load(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        get_settings(overrides={"driver": {"compressors": ["snappy"]}})
    _check(str(info.value), "driver.compressors: refused by the driver")


def test_same_database_name_on_different_clusters_is_fine(clean_env: Path) -> None:
    settings = get_settings(
        overrides={
            "databases": {
                "admin": {"uri": "mongodb://h1/", "name": "app"},
                "customer": {"uri": "mongodb://h2/", "name": "app"},
            }
        }
    )
    assert settings.databases.customer.name == "app"


def test_good_values_at_the_bounds_are_accepted_by_the_driver(clean_env: Path) -> None:
    """The bounds are the driver's: its largest values pass (and so build a client)."""
    from pymongo import MongoClient

    from insightdb.runtime.connections import client_options

    settings = get_settings(
        overrides={
            "timeouts": {
                "operation_ms": 999_999_999,
                "connect_ms": 999_999_999,
                "server_selection_ms": 1,
                "socket_ms": 999_999_999,
                "heartbeat_frequency_ms": 500,
            },
            "pool": {"min_pool_size": 7, "max_pool_size": 7, "max_idle_time_ms": 1},
            "driver": {"appname": "é" * 64, "w": 0, "compressors": ["zlib"]},
            "databases": {"admin": {"uri": "mongodb+srv://app:p%40ss@cluster0.example.net/"}},
        }
    )
    MongoClient(settings.databases.admin.uri, connect=False, **client_options(settings)).close()


def test_environment_text_settings_stay_text(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSIGHTDB_ADMIN_PASSWORD", "12345")
    monkeypatch.setenv("INSIGHTDB_DATABASES__ADMIN__NAME", "2024")
    monkeypatch.setenv("INSIGHTDB_FEATURES__METRICS", "0")
    monkeypatch.setenv("INSIGHTDB_TIMEOUTS__SOCKET_MS", "none")
    settings = get_settings()
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == "12345"
    assert settings.databases.admin.name == "2024"
    assert settings.features.metrics is False
    assert settings.timeouts.socket_ms is None


def test_dynaconf_tokens_are_plain_values(clean_env: Path) -> None:
    (clean_env / ".secrets.toml").write_text('[default]\nadmin_password = "@int 12"\n')
    settings = get_settings()
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == "@int 12"
