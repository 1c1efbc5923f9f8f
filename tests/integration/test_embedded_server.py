"""EmbeddedServer against the real child process: start, serve, persist, fail and stop.

Also the shared development server (:mod:`insightdb.runtime.devserver`): one per project directory,
reused across processes, safe against concurrent starts and stale records; each test uses
its own temporary project and stops its server by the recorded PID.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pymongo
import pytest

import insightdb
from insightdb.exceptions import ConfigurationError, DatabaseUnavailable
from insightdb.runtime.devserver import (
    ProjectFiles,
    ServerRecord,
    SharedDevServer,
    server_status,
    stop_server,
)
from insightdb.testing.server import (
    PYTHON_ENV_VAR,
    EmbeddedServer,
    find_embedded_python,
    serve_forever,
)

pytestmark = pytest.mark.integration


def _bounded(uri: str) -> str:
    # Bounds every client call, so a broken server fails a test instead of hanging it.
    return f"{uri}&serverSelectionTimeoutMS=5000&timeoutMS=10000"


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def _exits_within(proc: psutil.Process, seconds: float) -> bool:
    # Not our child, so we can't reap it; a zombie (its new parent has not reaped it yet) counts.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_memory_server_serves_then_is_gone() -> None:
    with EmbeddedServer() as server:
        assert server.running
        pid, port = server.pid, server.port
        assert server.uri == f"mongodb://127.0.0.1:{port}/?directConnection=true"
        assert "not MongoDB" in server.log_tail()
        log_dir = server.log_path.parent if server.log_path else None
        with pymongo.MongoClient[dict[str, Any]](_bounded(server.uri)) as client:
            assert client.admin.command("ping")["ok"] == 1
            client.app.items.insert_one({"_id": 1, "name": "a"})
            assert client.app.items.find_one({"_id": 1}) == {"_id": 1, "name": "a"}

    assert not server.running
    assert not psutil.pid_exists(pid)
    assert _refuses(port)
    assert log_dir is not None
    assert not log_dir.exists()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.uri


async def test_async_context_manager() -> None:
    async with EmbeddedServer() as server:
        pid = server.pid
        async with pymongo.AsyncMongoClient[dict[str, Any]](_bounded(server.uri)) as client:
            assert (await client.admin.command("ping"))["ok"] == 1
            await client.app.items.insert_one({"_id": "x"})
            assert await client.app.items.count_documents({}) == 1
    assert not psutil.pid_exists(pid)


async def test_server_info_works_although_the_emulator_knows_only_buildInfo() -> None:
    # PyMongo's server_info() sends the lowercase "buildinfo" (MongoDB takes both).
    async with (
        EmbeddedServer() as server,
        pymongo.AsyncMongoClient[dict[str, Any]](_bounded(server.uri)) as client,
    ):
        info = await client.server_info()
        assert isinstance(info.get("version"), str)
        assert (await client.admin.command("buildInfo"))["version"] == info["version"]


def test_sqlite_data_survives_a_restart(tmp_path: Path) -> None:
    with (
        EmbeddedServer(engine="sqlite", data_dir=tmp_path / "data") as server,
        pymongo.MongoClient[dict[str, Any]](_bounded(server.uri)) as client,
    ):
        client.app.items.insert_one({"_id": 1, "kept": True})
    assert (tmp_path / "data" / "insightdb.sqlite").exists()

    with (
        EmbeddedServer(engine="sqlite", data_dir=tmp_path / "data") as server,
        pymongo.MongoClient[dict[str, Any]](_bounded(server.uri)) as client,
    ):
        assert client.app.items.find_one({"_id": 1}) == {"_id": 1, "kept": True}


def test_two_servers_get_different_ports() -> None:
    with EmbeddedServer() as first, EmbeddedServer() as second:
        assert first.port != second.port
        assert first.pid != second.pid


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"engine": "postgres"}, "memory, sqlite"),
        ({"engine": "sqlite"}, "data_dir"),
        ({"host": "0.0.0.0"}, "loopback"),
        ({"host": "db.example.com"}, "loopback"),
        ({"port": 70000}, "port"),
    ],
)
def test_invalid_options_are_configuration_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        EmbeddedServer(**options)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_localhost_binds_ipv4_loopback() -> None:
    with EmbeddedServer(host="localhost") as server:
        assert server.uri.startswith("mongodb://127.0.0.1:")


def test_child_that_exits_is_database_unavailable_with_log_kept() -> None:
    server = EmbeddedServer(python="/bin/false", startup_timeout=10)
    with pytest.raises(DatabaseUnavailable, match="exited with code 1") as info:
        server.start()
    try:
        message = str(info.value)
        assert "\n" not in message
        assert server.log_path is not None
        assert server.log_path.exists()
        assert str(server.log_path) in message
        assert not server.running
    finally:
        if server.log_path is not None:
            shutil.rmtree(server.log_path.parent)


def test_port_in_use_is_database_unavailable() -> None:
    with EmbeddedServer() as first:
        second = EmbeddedServer(port=first.port)
        with pytest.raises(DatabaseUnavailable, match="address") as info:
            second.start()
        assert "\n" not in str(info.value)
        assert second.log_path is not None
        shutil.rmtree(second.log_path.parent)


def test_missing_interpreter_is_configuration_error(tmp_path: Path) -> None:
    server = EmbeddedServer(python=str(tmp_path / "no-such-python"))
    with pytest.raises(ConfigurationError, match="no-such-python"):
        server.start()
    assert server.log_path is None


def test_stop_is_idempotent() -> None:
    server = EmbeddedServer()
    server.stop()
    server.start()
    pid = server.pid
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    server.stop()
    server.stop()
    assert not psutil.pid_exists(pid)
    assert repr(server) == "EmbeddedServer(engine='memory', stopped)"


def test_restart_gets_a_new_process() -> None:
    server = EmbeddedServer()
    with server:
        first = server.pid
    with server:
        assert server.pid != first
        assert "127.0.0.1" in repr(server)


def test_forgotten_server_is_stopped_when_collected() -> None:
    server = EmbeddedServer()
    server.start()
    pid = server.pid
    del server
    gc.collect()
    assert not psutil.pid_exists(pid)


def test_find_embedded_python_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PYTHON_ENV_VAR, "/opt/py313/bin/python")
    assert find_embedded_python("/explicit/python") == "/explicit/python"
    assert find_embedded_python() == "/opt/py313/bin/python"
    monkeypatch.delenv(PYTHON_ENV_VAR)
    assert find_embedded_python() == sys.executable


def test_serve_forever_returns_the_exit_code() -> None:
    assert (
        serve_forever(engine="memory", data_dir=None, host="127.0.0.1", port=0, python="/bin/false")
        == 1
    )
    with pytest.raises(ConfigurationError, match="loopback"):
        serve_forever(engine="memory", data_dir=None, host="10.0.0.1", port=0)


def test_child_ignoring_sigterm_is_killed_and_its_server_exits(tmp_path: Path) -> None:
    # A wrapper that ignores SIGTERM stands in for a server stuck in a long write; once it is
    # SIGKILLed, the real server (its child) sees it was orphaned and exits by itself.
    wrapper = tmp_path / "stubborn-python"
    wrapper.write_text(f"#!/bin/sh\ntrap '' TERM\n'{sys.executable}' \"$@\"\n")
    wrapper.chmod(0o755)
    server = EmbeddedServer(python=str(wrapper), stop_timeout=0.5)
    with server:
        (inner,) = psutil.Process(server.pid).children()
        port = server.port
    assert _exits_within(inner, seconds=5)
    assert _refuses(port)


def test_no_suitable_python_is_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PYTHON_ENV_VAR, raising=False)
    monkeypatch.setattr(sys, "version_info", (3, 12, 0))
    with pytest.raises(ConfigurationError, match=PYTHON_ENV_VAR) as info:
        EmbeddedServer()
    assert "\n" not in str(info.value)


# --- the shared development server (insightdb.runtime.devserver) ---------------------------


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """An empty project directory whose shared server, if any, is stopped afterwards."""
    yield tmp_path
    stop_server(tmp_path, timeout=2)


def _record(project: Path) -> ServerRecord:
    record = ServerRecord.read(ProjectFiles.of(project).state)
    assert record is not None
    return record


def test_shared_server_is_started_once_and_reused(project: Path) -> None:
    first = SharedDevServer(project)
    with first:
        assert first.started_here
        pid, uri = first.pid, first.uri
        with pymongo.MongoClient[dict[str, Any]](_bounded(uri)) as client:
            client.app.items.insert_one({"_id": 1})
    # Leaving the block only lets go of it: the server and its data stay for the next process.
    assert psutil.pid_exists(pid)
    assert _record(project).pid == pid
    second = SharedDevServer(project)
    with second, pymongo.MongoClient[dict[str, Any]](_bounded(second.uri)) as client:
        assert not second.started_here
        assert second.pid == pid
        assert client.app.items.find_one({"_id": 1}) == {"_id": 1}
        assert "reused" in second.describe()
    assert (project / ".insightdb" / ".gitignore").read_text(encoding="utf-8").endswith("*\n")

    stopped = stop_server(project)

    assert stopped is not None
    assert stopped.pid == pid
    assert _exits_within(psutil.Process(pid), seconds=5)
    assert not ProjectFiles.of(project).state.exists()
    assert server_status(project) is None
    assert stop_server(project) is None


def test_concurrent_starts_share_one_server(project: Path) -> None:
    code = (
        "import sys; from insightdb.runtime.devserver import SharedDevServer\n"
        "s = SharedDevServer(sys.argv[1]); s.start(); print(s.pid)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(project)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]

    assert [proc.returncode for proc in procs] == [0] * 4, outputs
    pids = {int(out) for out, _ in outputs}
    assert pids == {_record(project).pid}
    (pid,) = pids
    # One server process for this project, whatever the number of starters.
    serving = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(ProjectFiles.of(project).state) in (p.info["cmdline"] or [])
    ]
    assert [p.pid for p in serving] == [pid]


def test_record_of_a_killed_server_is_replaced(project: Path) -> None:
    with SharedDevServer(project) as server:
        dead, dead_port = server.pid, server.port
    os.kill(dead, signal.SIGKILL)  # the server we started, by its recorded PID
    assert _exits_within(psutil.Process(dead), seconds=10)
    assert _record(project).pid == dead  # it had no chance to remove its record

    with SharedDevServer(project) as server:
        assert server.started_here
        assert server.pid != dead
        assert _record(project).pid == server.pid
    assert _refuses(dead_port) or _record(project).port != dead_port


def test_record_naming_another_process_and_port_is_not_trusted(project: Path) -> None:
    # A stale record whose PID now belongs to an unrelated process (this test's), and whose
    # port something else listens on: neither is taken for the server, nor signalled.
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        files = ProjectFiles.of(project)
        files.prepare()
        files.state.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "port": taken,
                    "uri": f"mongodb://127.0.0.1:{taken}/?directConnection=true",
                    "engine": "memory",
                    "data_dir": None,
                    "started_at": 0.0,
                }
            ),
            encoding="utf-8",
        )
        assert stop_server(project) is None  # and this process is still here to say so
        files.state.write_text(json.dumps({"pid": os.getpid(), "port": taken}), encoding="utf-8")
        with SharedDevServer(project) as server:
            assert server.started_here
            assert server.port != taken
            assert server.pid != os.getpid()


def test_sqlite_shared_server_keeps_data_across_stops(project: Path) -> None:
    with SharedDevServer(project, engine="sqlite", data_dir=".insightdb/data") as server:
        assert "sqlite engine, data in .insightdb/data" in server.describe()
        with pymongo.MongoClient[dict[str, Any]](_bounded(server.uri)) as client:
            client.app.items.insert_one({"_id": "kept"})
    assert stop_server(project) is not None

    with (
        SharedDevServer(project, engine="sqlite", data_dir=".insightdb/data") as server,
        pymongo.MongoClient[dict[str, Any]](_bounded(server.uri)) as client,
    ):
        assert server.started_here
        assert client.app.items.find_one({"_id": "kept"}) == {"_id": "kept"}
    assert (project / ".insightdb" / "data" / "insightdb.sqlite").exists()


def test_shared_server_that_cannot_start_is_one_line(project: Path) -> None:
    server = SharedDevServer(project, python="/bin/false")
    with pytest.raises(DatabaseUnavailable, match="could not start") as info:
        server.start()
    assert "\n" not in str(info.value)
    assert server_status(project) is None


async def test_testing_environment_never_uses_the_shared_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with insightdb.connect(insightdb.Settings(env="testing"), models=[]) as db:
        assert db.uses_embedded_server()
    assert not (tmp_path / ".insightdb").exists()


async def test_development_runtime_uses_the_shared_server(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    async with insightdb.connect(insightdb.Settings(), models=[]) as db:
        assert db.uses_embedded_server()
        assert (await db.health()).ready
        pid = _record(project).pid
    # close() let go of it; it keeps serving the project's other processes.
    assert server_status(project) is not None
    assert _record(project).pid == pid
