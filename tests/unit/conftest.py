"""Unit tests need no server: they get a clean environment and a scratch directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_SEED_NAMES = (
    "DATABASE_ADMIN_URI",
    "DATABASE_CUSTOMER_URI",
    "ENABLE_HEALTH_CHECKS",
    "ENABLE_METRICS",
    "ENABLE_AUDIT_TRAIL",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Remove every variable settings would read and run in an empty directory."""
    for name in list(os.environ):
        if name.startswith("INSIGHTDB_") or name in _SEED_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path
