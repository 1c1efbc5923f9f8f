"""EmbeddedServer against the real child process: start, serve, persist, fail and stop."""

from __future__ import annotations

import gc
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pymongo
import pytest

from insightdb.exceptions import ConfigurationError, DatabaseUnavailable
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
