"""Settings: layering, precedence, validation messages and masking (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from insightdb import ConfigurationError, get_settings

SECRET = "s3cr3t-pw"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file(clean_env: Path) -> None:
    settings = get_settings()
    assert settings.env == "development"
    assert settings.databases.admin.name == "insightserenity_admin"
    assert settings.databases.customer.name == "insightserenity_customer"
    assert settings.databases.admin.uri == ""
    assert settings.timeouts.connect_ms == 2_000
    assert settings.timeouts.operation_ms == 5_000
    assert settings.models == ("models",)


def test_precedence_of_every_layer(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One test pins the whole order: defaults < [default] < [env] < secrets < seed names
    < INSIGHTDB_ variables < overrides."""
    _write(
        clean_env / "settings.toml",
        """
[default]
log_level = "WARNING"
pool.max_pool_size = 11
pool.min_pool_size = 1
pool.max_connecting = 3
timeouts.connect_ms = 1111
databases.admin.name = "from_default"

[testing]
pool.max_pool_size = 22
pool.min_pool_size = 2
timeouts.connect_ms = 2222
databases.admin.name = "from_testing"
""",
    )
    _write(
        clean_env / ".secrets.toml",
        """
[default]
databases.admin.uri = "mongodb://secrets-host/"
pool.min_pool_size = 3

[testing]
databases.customer.uri = "mongodb://secrets-customer/"
""",
    )
    monkeypatch.setenv("DATABASE_ADMIN_URI", "mongodb://seed-host/")
    monkeypatch.setenv("DATABASE_CUSTOMER_URI", "mongodb://seed-customer/")
    monkeypatch.setenv("INSIGHTDB_DATABASES__CUSTOMER__URI", "mongodb://prefixed-customer/")
    monkeypatch.setenv("INSIGHTDB_POOL__MAX_CONNECTING", "4")
    monkeypatch.setenv("INSIGHTDB_TIMEOUTS__CONNECT_MS", "3333")

    settings = get_settings("testing", overrides={"timeouts": {"connect_ms": 4444}})

    assert settings.log_level == "WARNING"  # [default] over the built-in INFO
    assert settings.databases.admin.name == "from_testing"  # [testing] over [default]
    assert settings.pool.max_pool_size == 22  # [testing] over [default]
    assert settings.pool.min_pool_size == 3  # .secrets.toml over settings.toml
    assert settings.databases.admin.uri == "mongodb://seed-host/"  # seed name over secrets
    assert settings.databases.customer.uri == "mongodb://prefixed-customer/"  # INSIGHTDB_ wins
    assert settings.pool.max_connecting == 4  # INSIGHTDB_ over [default]
    assert settings.timeouts.connect_ms == 4444  # overrides over everything
    assert settings.databases.customer.name == "insightserenity_customer"  # built-in default


def test_environment_choice(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHTDB_ENV", "testing")
    assert get_settings().env == "testing"
    assert get_settings("development").env == "development"  # the argument wins
    monkeypatch.setenv("INSIGHTDB_ENV", "qa")
    with pytest.raises(ConfigurationError, match=r"^INSIGHTDB_ENV: 'qa' is not an environment"):
        get_settings()


def test_seed_feature_switches(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_HEALTH_CHECKS", "false")
    monkeypatch.setenv("ENABLE_METRICS", "0")
    monkeypatch.setenv("ENABLE_AUDIT_TRAIL", "true")
    features = get_settings().features
    assert (features.health_checks, features.metrics, features.audit_trail) == (
        False,
        False,
        True,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"pool": {"max_pool_size": "many"}},
            r"^pool\.max_pool_size: Input should be a valid integer",
        ),
        ({"pool": {"max_pool_size": 0}}, r"^pool\.max_pool_size: .*greater than or equal to 1"),
        ({"pool": {"min_pool_size": -1}}, r"^pool\.min_pool_size: "),
        ({"pool": {"max_poolsize": 5}}, r"^pool\.max_poolsize: unknown setting"),
        ({"timeouts": {"heartbeat_frequency_ms": 100}}, r"^timeouts\.heartbeat_frequency_ms: "),
        (
            {"databases": {"admin": {"name": "admin"}}},
            r"^databases\.admin\.name: 'admin' is reserved",
        ),
        ({"databases": {"customer": {"name": "config"}}}, r"^databases\.customer\.name: 'config'"),
        ({"databases": {"admin": {"name": "local"}}}, r"^databases\.admin\.name: 'local'"),
        (
            {"databases": {"admin": {"name": "a.b"}}},
            r"^databases\.admin\.name: 'a\.b' is not a valid",
        ),
        ({"databases": {"billing": {"name": "x"}}}, r"^databases\.billing: unknown setting"),
        (
            {"databases": {"admin": {"read_preference": "fastest"}}},
            r"^databases\.admin\.read_preference: ",
        ),
        ({"driver": {"compressors": ["lz4"]}}, r"^driver\.compressors\.0: "),
        ({"log_level": "LOUD"}, r"^log_level: "),
    ],
)
def test_invalid_values_are_one_line_naming_the_key(
    clean_env: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        get_settings(overrides=overrides)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is None or not isinstance(info.value.__cause__, ValidationError)


def test_wrong_type_from_environment_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSIGHTDB_POOL__MAX_POOL_SIZE", "abc")
    with pytest.raises(ConfigurationError, match=r"^pool\.max_pool_size: .*\(got 'abc'\)$"):
        get_settings()


def test_unknown_prefixed_variable(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHTDB_DATABSES__ADMIN__URI", "mongodb://x/")
    with pytest.raises(ConfigurationError, match=r"^INSIGHTDB_DATABSES__ADMIN__URI: unknown"):
        get_settings()


@pytest.mark.parametrize("env", ["production", "staging"])
def test_missing_uri_outside_development(clean_env: Path, env: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^databases\.admin\.uri: required in {env}"):
        get_settings(env)


def test_empty_uri_allowed_in_development_and_testing(clean_env: Path) -> None:
    assert get_settings("development").databases.admin.uri == ""
    assert get_settings("testing").databases.customer.uri == ""


def test_bad_uri_scheme_never_echoes_the_value(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        get_settings(overrides={"databases": {"admin": {"uri": f"http://bob:{SECRET}@h/"}}})
    assert str(info.value) == "databases.admin.uri: must start with mongodb:// or mongodb+srv://"
    assert SECRET not in repr(info.value)


def test_toml_syntax_error_names_the_file(clean_env: Path) -> None:
    _write(clean_env / "settings.toml", "[default\nbroken = ")
    with pytest.raises(
        ConfigurationError, match=r"^settings\.toml: not valid TOML: .*line 1"
    ) as info:
        get_settings()
    assert "\n" not in str(info.value)
    _write(clean_env / "settings.toml", "[default]\n")
    _write(clean_env / ".secrets.toml", f'[default]\nadmin_password = "{SECRET}\n')
    with pytest.raises(ConfigurationError, match=r"^\.secrets\.toml: not valid TOML") as info:
        get_settings()
    assert SECRET not in str(info.value)


def test_explicit_missing_settings_file(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^settings file not found: "):
        get_settings(settings_files=[clean_env / "nope.toml"])


def test_credentials_masked_in_repr_and_masked_view(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_ADMIN_URI", f"mongodb://bob:{SECRET}@db1:27017/app")
    monkeypatch.setenv("INSIGHTDB_ADMIN_PASSWORD", "another-" + SECRET)
    settings = get_settings(
        "production",
        overrides={
            "databases": {"customer": {"uri": f"mongodb+srv://amy:{SECRET}@cluster0.example.net/"}}
        },
    )
    for text in (repr(settings), str(settings), repr(settings.databases), str(settings.masked())):
        assert SECRET not in text
    masked = settings.masked()
    assert masked["databases"]["admin"]["uri"] == "mongodb://bob:****@db1:27017/app"
    assert masked["databases"]["customer"]["uri"] == "mongodb+srv://amy:****@cluster0.example.net/"
    assert masked["admin_password"] == "****"
    # The real values stay available to the code that needs them.
    assert settings.databases.admin.uri.endswith(f"{SECRET}@db1:27017/app")
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == "another-" + SECRET


def test_settings_are_frozen(clean_env: Path) -> None:
    settings = get_settings()
    with pytest.raises(ValidationError):
        settings.env = "production"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.databases.admin.name = "other"  # type: ignore[misc]


def test_unknown_group_lookup(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^unknown database group 'billing'"):
        get_settings().database("billing")


def test_none_resets_an_optional_value(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIGHTDB_TIMEOUTS__OPERATION_MS", "none")
    _write(clean_env / "settings.toml", '[default]\ndriver.w = "none"\ndriver.tls_ca_file = ""\n')
    settings = get_settings()
    assert settings.timeouts.operation_ms is None  # left to the driver, explicitly
    assert settings.driver.w is None
    assert settings.driver.tls_ca_file is None  # "" unsets optional text only


def test_empty_environment_value_is_refused(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty variable must not silently switch deadlines off."""
    monkeypatch.setenv("INSIGHTDB_TIMEOUTS__OPERATION_MS", "")
    with pytest.raises(
        ConfigurationError, match=r"^INSIGHTDB_TIMEOUTS__OPERATION_MS: empty value; .*none"
    ):
        get_settings()


def test_empty_string_does_not_unset_a_number_in_a_file(clean_env: Path) -> None:
    _write(clean_env / "settings.toml", '[default]\ntimeouts.operation_ms = ""\n')
    with pytest.raises(ConfigurationError, match=r"^timeouts\.operation_ms: "):
        get_settings()


def test_interpreter_variables_are_not_settings(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSIGHTDB_PYTHON", "/usr/bin/python3.13")
    monkeypatch.setenv("INSIGHTDB_EMBEDDED_PYTHON", "/usr/bin/python3.13")
    monkeypatch.setenv("INSIGHTDB_TEST_MONGODB_URI", "mongodb://x/")
    assert get_settings().env == "development"


def test_bad_environment_argument_names_the_argument(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^env: 'qa' is not an environment"):
        get_settings("qa")
