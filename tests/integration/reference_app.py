"""The reference application (``examples/``) running live on loopback, for the end-to-end
and fuzz tests: a private embedded server (SQLite engine, so that it can be stopped and
started again on the same port with its data), migrated and seeded like ``make demo`` does,
then the admin server, two customer-services instances and the gateway as subprocesses.
Everything is stopped by its own PID at the end of the session.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from examples.common.config import ExampleConfig, JwtKey
from examples.launcher import Stack, free_port, prepare_database
from insightdb.testing import EmbeddedServer

REPO = Path(__file__).resolve().parents[2]
BOUND_S = 60.0  # bounds against hanging, never timing assertions
_SEED_VARIABLES = (
    "DATABASE_ADMIN_URI",
    "DATABASE_CUSTOMER_URI",
    "ENABLE_HEALTH_CHECKS",
    "ENABLE_METRICS",
    "ENABLE_AUDIT_TRAIL",
)


@dataclass
class Database:
    """The private embedded server; :meth:`stop` and :meth:`start` keep port and data."""

    port: int
    data_dir: Path
    server: EmbeddedServer | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> None:
        self.server = EmbeddedServer(engine="sqlite", data_dir=self.data_dir, port=self.port)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@dataclass
class ReferenceApp:
    """The running application and what the tests need to talk to it."""

    stack: Stack
    database: Database
    config: ExampleConfig
    password: str
    env: dict[str, str]
    old_key: JwtKey
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> str:
        return self.stack.gateway.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway, timeout=30.0)

    def token(self, email: str) -> str:
        """An access token of a demo account, signed in through the gateway (cached)."""
        if email not in self._tokens:
            with self.client() as http:
                answer = http.post(
                    "/admin/auth/token", data={"username": email, "password": self.password}
                )
            assert answer.status_code == 200, answer.text
            self._tokens[email] = answer.json()["access_token"]
        return self._tokens[email]

    def auth(self, email: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(email)}"}


def wait_for(condition: Callable[[], bool], what: str, bound_s: float = BOUND_S) -> None:
    """Poll ``condition`` until it holds; fail the test after ``bound_s``."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {bound_s:g} s: {what}")
        time.sleep(0.1)


def _clean_env() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key not in _SEED_VARIABLES
        and not key.startswith(("EXAMPLE_", "GATEWAY_"))
        and not (key.startswith("INSIGHTDB_") and key != "INSIGHTDB_EMBEDDED_PYTHON")
    }


@pytest.fixture(scope="session")
def reference_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceApp]:
    """The reference application, started once per test session."""
    root = tmp_path_factory.mktemp("reference-app")
    database = Database(port=free_port(), data_dir=root / "data")
    database.data_dir.mkdir()
    database.start()
    suffix = uuid.uuid4().hex[:8]
    new_key = JwtKey(f"new-{suffix}", secrets.token_urlsafe(32))
    old_key = JwtKey(f"old-{suffix}", secrets.token_urlsafe(32))
    password = secrets.token_urlsafe(18)
    env = _clean_env() | {
        # development: the demo seeders run, staff may use X-Tenant-ID (tested).
        "INSIGHTDB_ENV": "development",
        "INSIGHTDB_LOG_LEVEL": "INFO",
        "INSIGHTDB_DATABASES__ADMIN__URI": database.uri,
        "INSIGHTDB_DATABASES__CUSTOMER__URI": database.uri,
        "INSIGHTDB_DATABASES__ADMIN__NAME": f"ref_{suffix}_admin",
        "INSIGHTDB_DATABASES__CUSTOMER__NAME": f"ref_{suffix}_customer",
        # The new key signs, the old one still verifies: a rotation in progress.
        "EXAMPLE_JWT_KEYS": json.dumps(
            [{"kid": k.kid, "secret": k.secret} for k in (new_key, old_key)]
        ),
        "EXAMPLE_DEMO_PASSWORD": password,
        "GATEWAY_BREAKER_FAILURES": "2",
        "GATEWAY_BREAKER_RESET_S": "1",
        "GATEWAY_MAX_BODY_BYTES": "65536",
    }
    config = ExampleConfig(
        env="development",
        keys=(new_key, old_key),
        access_ttl_s=900,
        refresh_ttl_s=86400,
        issuer="insightdb-example",
    )
    try:
        prepare_database(REPO, env)
        stack = Stack(cwd=REPO, env=env, log_dir=root / "logs", customers=2)
        with stack:
            yield ReferenceApp(stack, database, config, password, env, old_key)
    finally:
        database.stop()
