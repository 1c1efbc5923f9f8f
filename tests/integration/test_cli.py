"""The ``insightdb`` command line, run as a real subprocess from a prepared working directory.

Every call is bounded by a timeout; the environment is the parent's minus any insightdb
setting, so a developer's own variables can't change what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pymongo
import pytest

import insightdb
from insightdb.testing.plugin import ResolvedServer, unique_database_names

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0
_SEED_VARIABLES = (
    "DATABASE_ADMIN_URI",
    "DATABASE_CUSTOMER_URI",
    "ENABLE_HEALTH_CHECKS",
    "ENABLE_METRICS",
    "ENABLE_AUDIT_TRAIL",
)
_MODULE = [sys.executable, "-m", "insightdb.cli"]


def _script() -> list[str]:
    found = shutil.which("insightdb", path=str(Path(sys.executable).parent))
    assert found is not None, "the insightdb console script is not installed next to python"
    return [found]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SEED_VARIABLES
        and not (
            key.startswith("INSIGHTDB_")
            and not key.startswith(("INSIGHTDB_TEST_", "INSIGHTDB_EMBEDDED_PYTHON"))
        )
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env | (extra or {})


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    launcher: Sequence[str] = _MODULE,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; a hang fails the test with TimeoutExpired."""
    return subprocess.run(
        [*launcher, *args],
        cwd=cwd,
        env=_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with one admin and one customer model, names unlike the repo's."""
    _write(
        tmp_path,
        {
            "models/__init__.py": "",
            "models/admin/__init__.py": "",
            "models/admin/account.py": """
                from insightdb import AdminDocument


                class Account(AdminDocument):
                    email: str

                    class Settings:
                        name = "accounts"
            """,
            "models/customer/__init__.py": "",
            "models/customer/invoice.py": """
                from insightdb import CustomerDocument


                class Invoice(CustomerDocument):
                    total: int = 0
            """,
        },
    )
    return tmp_path


@pytest.fixture
def server_env(insightdb_server: ResolvedServer) -> Iterator[dict[str, str]]:
    """Settings variables pointing both groups at the session server, unique databases."""
    names = unique_database_names("cli")
    yield {
        "INSIGHTDB_DATABASES__ADMIN__URI": insightdb_server.uri,
        "INSIGHTDB_DATABASES__CUSTOMER__URI": insightdb_server.uri,
        "INSIGHTDB_DATABASES__ADMIN__NAME": names["admin"],
        "INSIGHTDB_DATABASES__CUSTOMER__NAME": names["customer"],
    }
    with pymongo.MongoClient[dict[str, Any]](
        insightdb_server.uri, serverSelectionTimeoutMS=5000
    ) as client:
        for name in names.values():
            client.drop_database(name)


@pytest.mark.parametrize("launcher", ["module", "script"])
def test_version(tmp_path: Path, launcher: str) -> None:
    result = run_cli(
        "--version", cwd=tmp_path, launcher=_MODULE if launcher == "module" else _script()
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"insightdb {insightdb.__version__}\n"


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    for command in ("config", "models", "health", "server", "migrate", "seed", "init"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "command",
    [(), ("models",), ("migrate", "up"), ("migrate", "down"), ("seed", "run"), ("server",)],
)
def test_help_shows_no_type_for_flags(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "<bool>" not in result.stdout
    assert "-h" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("no-such-command",), "No such command 'no-such-command'"),
        (("models", "--no-such-option"), "No such option: --no-such-option"),
        (("migrate", "up", "--db", "billing"), "'billing' is not one of 'admin'"),
        (("migrate", "new", "x"), "Missing option '--db'"),
        (("migrate", "down"), "needs exactly one of --steps N or --to REV"),
        (("migrate", "up", "--to", "abc"), "--to names a revision of one chain"),
        (("health", "--timeout", "zero"), "--timeout"),
        (("--env", "prod", "models"), "'prod' is not one of"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    result = run_cli(*args, cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    line = _one_line(result.stderr)
    assert line.startswith("error: ")
    assert expected in line
    assert "Value error" not in line
    assert line.endswith("-h')")


def test_bare_command_prints_the_help(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Usage: insightdb" in result.stdout


def test_customer_revision_template_uses_a_customer_collection(tmp_path: Path) -> None:
    created = {}
    for group in ("admin", "customer"):
        result = run_cli("migrate", "new", "first change", "--db", group, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        (path,) = (tmp_path / "migrations" / group).glob("*.py")
        created[group] = path.read_text(encoding="utf-8")
        compile(created[group], str(path), "exec")

    assert '"users"' in created["admin"]
    assert '"users"' not in created["customer"]
    assert '"clients"' in created["customer"]
    assert "tenant_id" in created["customer"]


@pytest.mark.parametrize("output", ["json", "toml"])
def test_config_show_masks_secrets(tmp_path: Path, output: str) -> None:
    env = {
        "DATABASE_ADMIN_URI": "mongodb://bob:s3cr3tpw@127.0.0.1:1/x",
        "INSIGHTDB_ADMIN_PASSWORD": "hunter2-admin-pw",
    }

    result = run_cli("config", "show", "--format", output, cwd=tmp_path, env=env)

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout) if output == "json" else tomllib.loads(result.stdout)
    assert data["databases"]["admin"]["uri"] == "mongodb://bob:****@127.0.0.1:1/x"
    assert data["admin_password"] == "****"
    assert data["databases"]["customer"]["name"] == "insightserenity_customer"
    for secret in ("s3cr3tpw", "hunter2-admin-pw"):
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_config_show_reads_settings_files_and_env(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "conf/base.toml": """
                [default]
                log_level = "WARNING"
                [staging.databases.admin]
                uri = "mongodb://ann:filepw123@db.example:27017"
                [staging.databases.customer]
                uri = "mongodb://db.example:27018"
            """,
        },
    )

    result = run_cli(
        "--env", "staging", "--settings", "conf/base.toml", "config", "show", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["env"] == "staging"
    assert data["log_level"] == "WARNING"
    assert data["databases"]["admin"]["uri"] == "mongodb://ann:****@db.example:27017"
    assert "filepw123" not in result.stdout


def test_invalid_setting_is_one_line_with_exit_2(tmp_path: Path) -> None:
    result = run_cli("config", "show", cwd=tmp_path, env={"INSIGHTDB_POOL__MAX_POOL_SIZE": "abc"})

    assert result.returncode == 2
    assert _one_line(result.stderr).startswith("error: pool.max_pool_size")
    assert result.stdout == ""


def test_traceback_option_prints_the_traceback(tmp_path: Path) -> None:
    result = run_cli(
        "--traceback",
        "config",
        "show",
        cwd=tmp_path,
        env={"INSIGHTDB_POOL__MAX_POOL_SIZE": "abc"},
    )

    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "ConfigurationError: pool.max_pool_size" in result.stderr


def test_missing_settings_file_is_a_configuration_error(tmp_path: Path) -> None:
    result = run_cli("--settings", "nope.toml", "config", "show", cwd=tmp_path)

    assert result.returncode == 2
    assert "nope.toml" in _one_line(result.stderr)


def test_production_without_uris_names_the_key(tmp_path: Path) -> None:
    result = run_cli("--env", "production", "config", "show", cwd=tmp_path)

    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line.startswith("error: ")
    assert "databases.admin.uri" in line


def _line_with(output: str, *parts: str) -> str:
    for line in output.splitlines():
        if all(part in line for part in parts):
            return line
    raise AssertionError(f"no line with {parts} in:\n{output}")


def test_models_lists_the_repository_routes_without_a_database() -> None:
    # No URI anywhere and an unreachable one for admin: nothing may connect.
    env = {"DATABASE_ADMIN_URI": "mongodb://127.0.0.1:1/?directConnection=true"}

    result = run_cli("models", cwd=REPO, env=env)

    assert result.returncode == 0, result.stderr
    _line_with(result.stdout, "User", "admin", "insightserenity_admin.users")
    _line_with(result.stdout, "Client", "customer", "insightserenity_customer.clients")


def test_models_json() -> None:
    result = run_cli("models", "--json", cwd=REPO)

    assert result.returncode == 0, result.stderr
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert rows["User"] == {
        "model": "User",
        "module": "models.admin.user",
        "group": "admin",
        "database": "insightserenity_admin",
        "collection": "users",
    }
    assert rows["Client"]["database"] == "insightserenity_customer"
    assert rows["Client"]["collection"] == "clients"


@pytest.mark.parametrize("launcher", ["module", "script"])
def test_models_imports_the_working_directory_project(project: Path, launcher: str) -> None:
    result = run_cli("models", cwd=project, launcher=_MODULE if launcher == "module" else _script())

    assert result.returncode == 0, result.stderr
    _line_with(result.stdout, "Account", "admin", "insightserenity_admin.accounts")
    _line_with(result.stdout, "Invoice", "customer", "insightserenity_customer.Invoice")
    assert "User" not in result.stdout


def test_models_misrouted_model_is_one_line_with_exit_2(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "models/__init__.py": "",
            "models/admin/__init__.py": "",
            "models/admin/bad.py": """
                from insightdb import CustomerDocument


                class Bad(CustomerDocument):
                    pass
            """,
        },
    )

    result = run_cli("models", cwd=tmp_path)

    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line.startswith("error: Bad ")
    assert "models.admin.bad" in line


def test_health_ok_against_the_session_server(project: Path, server_env: dict[str, str]) -> None:
    result = run_cli("--env", "testing", "health", cwd=project, env=server_env)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "ok"
    assert report["ready"] is True
    assert set(report["groups"]) == {"admin", "customer"}
    admin = report["groups"]["admin"]
    assert admin["status"] == "ok"
    assert admin["database"] == server_env["INSIGHTDB_DATABASES__ADMIN__NAME"]
    # The stderr sink runs at the settings' level (INFO by default).
    assert "insightdb: started (testing)" in result.stderr


def test_log_level_option_filters_stderr(project: Path, server_env: dict[str, str]) -> None:
    result = run_cli(
        "--env", "testing", "--log-level", "error", "health", cwd=project, env=server_env
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "ok"
    assert result.stderr == ""


def test_health_down_when_nothing_listens(project: Path) -> None:
    uri = f"mongodb://127.0.0.1:{_free_port()}/?directConnection=true"
    env = {
        "INSIGHTDB_DATABASES__ADMIN__URI": uri,
        "INSIGHTDB_DATABASES__CUSTOMER__URI": uri,
        "INSIGHTDB_STARTUP__MAX_ATTEMPTS": "2",
        "INSIGHTDB_STARTUP__MAX_TIME_S": "2",
        "INSIGHTDB_TIMEOUTS__SERVER_SELECTION_MS": "300",
    }

    # The timeout is the bound: start-up gives up after about 2 s.
    result = run_cli("--env", "testing", "health", cwd=project, env=env, timeout=15)

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["status"] == "down"
    assert report["ready"] is False
    assert "not reachable" in report["error"]
    assert "Traceback" not in result.stderr


def test_health_down_when_the_credentials_are_refused(
    project: Path, server_env: dict[str, str]
) -> None:
    password = "n0t-the/p@ss"
    scheme, _, rest = server_env["INSIGHTDB_DATABASES__ADMIN__URI"].partition("://")
    uri = f"{scheme}://nobody:{quote_plus(password)}@{rest.rpartition('@')[2]}"
    env = {
        **server_env,
        "INSIGHTDB_DATABASES__ADMIN__URI": uri,
        "INSIGHTDB_DATABASES__CUSTOMER__URI": uri,
    }

    result = run_cli("--env", "testing", "health", cwd=project, env=env, timeout=30)

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "down"
    assert report["ready"] is False
    assert "authentication failed" in report["error"]
    assert "\n" not in report["error"]
    for shown in (result.stdout, result.stderr):
        assert password not in shown
        assert quote_plus(password) not in shown
    assert "Traceback" not in result.stderr


def test_server_serves_until_terminated(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_MODULE, "server", "--port", str(port)],
            cwd=tmp_path,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
            with pymongo.MongoClient[dict[str, Any]](
                uri, serverSelectionTimeoutMS=20_000, timeoutMS=30_000
            ) as client:
                assert client.admin.command("ping")["ok"] == 1
            proc.terminate()
            code = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)

    assert code == 0, log.read_text(encoding="utf-8", errors="replace")
    assert "not MongoDB" in log.read_text(encoding="utf-8", errors="replace")
    # The CLI stopped its child on SIGTERM: the port is free again.
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            break
        assert time.monotonic() < deadline, "the embedded server outlived the CLI"
        time.sleep(0.05)
