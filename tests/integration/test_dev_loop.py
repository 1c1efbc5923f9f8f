"""The development loop a newcomer runs, as separate processes, with no URI anywhere.

From a fresh copy of the repository's example project (models, migrations, seeds,
settings.toml, examples/): ``insightdb migrate up``, ``insightdb seed run``, then
``uvicorn examples.fastapi_app:app`` on a free loopback port serves the seeded data, because
all three use the project's shared development server. Everything started here is stopped by
its own PID (the app) or by ``insightdb server stop`` (the server, by its recorded PID).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from insightdb.runtime.devserver import ProjectFiles, ServerRecord, stop_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 90.0
_PROJECT_PARTS = ("models", "migrations", "seeds", "examples", "settings.toml")
_SEED_VARIABLES = (
    "DATABASE_ADMIN_URI",
    "DATABASE_CUSTOMER_URI",
    "ENABLE_HEALTH_CHECKS",
    "ENABLE_METRICS",
    "ENABLE_AUDIT_TRAIL",
)
_UVICORN = (sys.executable, "-m", "uvicorn")
_USING = re.compile(r"using the shared development server at (\S+) \(pid (\d+), (started|reused)")


def _env() -> dict[str, str]:
    # No insightdb setting from the caller's shell: development, URIs empty.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SEED_VARIABLES
        and not (key.startswith("INSIGHTDB_") and key != "INSIGHTDB_EMBEDDED_PYTHON")
    }
    return env | {"PYTHONUNBUFFERED": "1"}


def _insightdb() -> str:
    found = shutil.which("insightdb", path=str(Path(sys.executable).parent))
    assert found is not None, "the insightdb console script is not installed next to python"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the example project; its shared server is stopped afterwards."""
    ignore = shutil.ignore_patterns("__pycache__", ".insightdb")
    for part in _PROJECT_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part, ignore=ignore)
        else:
            shutil.copy2(source, tmp_path / part)
    yield tmp_path
    stop_server(tmp_path, timeout=2)  # a backstop when the test failed before its own stop


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_insightdb(), *args],
        cwd=project,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _server_used(stderr: str) -> tuple[str, int, str]:
    """The one line saying which server the process used: (uri, pid, started|reused)."""
    found = _USING.findall(stderr)
    assert len(found) == 1, stderr
    uri, pid, how = found[0]
    return uri, int(pid), how


def _get(url: str, bound: float = 10.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=bound) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _wait_ready(base: str, app: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT  # a bound against hanging, not a timing assertion
    while True:
        assert app.poll() is None, log.read_text(encoding="utf-8", errors="replace")
        try:
            status, _ = _get(f"{base}/health/ready", bound=2)
            if status == 200:
                return
        except (OSError, ValueError):
            pass
        assert time.monotonic() < deadline, log.read_text(encoding="utf-8", errors="replace")
        time.sleep(0.1)


def _stop(app: subprocess.Popen[bytes]) -> int:
    """Stop the app by its own PID: SIGTERM, then SIGKILL after a bound."""
    app.terminate()
    try:
        return app.wait(timeout=20)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait(timeout=20)
        raise


def test_migrate_seed_then_serve_the_seeded_data(project: Path) -> None:
    migrated = _cli(project, "migrate", "up")
    assert migrated.returncode == 0, migrated.stderr
    assert "admin: applied 2 revision(s)" in migrated.stdout
    uri, server_pid, how = _server_used(migrated.stderr)
    assert how == "started"
    assert "throwaway" not in migrated.stderr

    seeded = _cli(project, "seed", "run")
    assert seeded.returncode == 0, seeded.stderr
    assert "demo_tenant: done" in seeded.stdout
    assert _server_used(seeded.stderr) == (uri, server_pid, "reused")

    status = _cli(project, "server", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["pid"] == server_pid

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = project / "uvicorn.log"
    with log.open("wb") as out:
        app = subprocess.Popen(
            [*_UVICORN, "examples.fastapi_app:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=project,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            # migrations="check" would refuse to start on an empty server: it found them applied.
            _wait_ready(base, app, log)
            status_code, clients = _get(f"{base}/tenants/acme/clients")
            assert status_code == 200
            assert sorted(c["name"] for c in clients) == [
                "Desert Anvils Ltd",
                "Road Runner Logistics",
                "Wile E. Coyote",
            ]
            status_code, user = _get(f"{base}/users/admin@example.com")
            assert status_code == 200
            assert user["role"] == "owner"
            assert "password" not in json.dumps(user)
        finally:
            code = _stop(app)
    output = log.read_text(encoding="utf-8", errors="replace")
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it: exit status -15 or 0.
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert _server_used(output) == (uri, server_pid, "reused")

    stopped = _cli(project, "server", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"pid {server_pid}" in stopped.stdout
    assert ServerRecord.read(ProjectFiles.of(project).state) is None
    with contextlib.suppress(psutil.NoSuchProcess):  # gone, or a zombie its parent will reap
        assert psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
    after = _cli(project, "server", "status")
    assert after.returncode == 1
    assert "no shared development server runs" in after.stdout
