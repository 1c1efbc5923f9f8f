"""The public names of ``insightdb``: pinned, importable, and inert at import time."""

from __future__ import annotations

import subprocess
import sys

import insightdb

EXPECTED = {
    "AdminDocument",
    "CustomerDocument",
    "ModelRegistry",
    "Route",
    "TenantScoped",
    "current_tenant",
    "tenant_context",
    "unscoped",
    "Timestamped",
    "SoftDeletable",
    "Audited",
    "CrossRef",
    "actor_context",
    "InsightDB",
    "close",
    "connect",
    "current",
    "init",
    "transaction",
    "Settings",
    "get_settings",
    "GroupHealth",
    "HealthReport",
    "CircuitOpenError",
    "ConfigurationError",
    "DanglingReferenceError",
    "DatabaseUnavailable",
    "InsightDBError",
    "MigrationError",
    "MigrationLockError",
    "MultipleHeadsError",
    "RoutingError",
    "SeedError",
    "TenantContextError",
    "TenantIsolationError",
    "TransactionError",
    "__version__",
}


def test_all_is_pinned_and_every_name_exists() -> None:
    exported = set(insightdb.__all__)
    assert exported >= EXPECTED, f"missing: {sorted(EXPECTED - exported)}"
    for name in insightdb.__all__:
        assert hasattr(insightdb, name), name
    assert len(insightdb.__all__) == len(exported), "duplicate names in __all__"


def test_errors_share_one_root() -> None:
    for name in insightdb.__all__:
        value = getattr(insightdb, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, insightdb.InsightDBError), name
    assert issubclass(insightdb.CircuitOpenError, insightdb.DatabaseUnavailable)
    assert issubclass(insightdb.MigrationLockError, insightdb.MigrationError)
    assert issubclass(insightdb.MultipleHeadsError, insightdb.MigrationError)


def test_importing_opens_no_connection_and_configures_nothing() -> None:
    script = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('network used at import time')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import insightdb, insightdb.fastapi, insightdb.cli, insightdb.testing\n"
        "from loguru import logger\n"
        "assert insightdb.__version__\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no log output either: loguru stays disabled for insightdb
