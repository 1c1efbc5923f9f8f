"""Seeders against the resolved server: the repository's examples, idempotence, refusals.

The repository's ``seeds/`` run against each test's own databases with the example
models; a scratch folder holds the seeders written to test refusals and failures.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from pydantic import SecretStr

import insightdb
from insightdb import tenant_context, unscoped
from insightdb.exceptions import SeedError
from insightdb.seeding import discover_seeds, run_seeds
from insightdb.settings import Settings
from insightdb.testing.plugin import ResolvedServer, unique_database_names
from models.admin.user import User
from models.customer.client import Client

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "seeds"
SECRET = "correct-horse-battery-staple"
TIMEOUT = 60.0
_KEPT = ("INSIGHTDB_TEST_", "INSIGHTDB_EMBEDDED_PYTHON")


@pytest.fixture
def seeded_settings(insightdb_settings: Settings) -> Settings:
    return insightdb_settings.model_copy(
        update={"seeds_dir": str(SEEDS), "admin_password": SecretStr(SECRET)}
    )


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    logger.enable("insightdb")
    try:
        yield lines
    finally:
        logger.remove(sink)
        logger.disable("insightdb")


async def snapshot(db: insightdb.InsightDB) -> dict[str, list[dict[str, Any]]]:
    result = {}
    with unscoped("test: compare every tenant's documents"):
        for group, collection in (("admin", "users"), ("customer", "clients")):
            cursor = db.database(group)[collection].find({}, sort=[("_id", 1)])
            result[collection] = await cursor.to_list()
    return result


async def test_example_seeds_are_idempotent(
    seeded_settings: Settings, log_lines: list[str]
) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with insightdb.connect(seeded_settings, models=[User, Client]) as db:
            first = await run_seeds(db)
            assert [(o.name, o.status) for o in first] == [
                ("admin_user", "ran"),
                ("demo_tenant", "ran"),
                ("demo_accounts", "skipped"),  # the reference application's: development only
            ]
            state = await snapshot(db)
            second = await run_seeds(db)
            assert [o.status for o in second] == ["ran", "ran", "skipped"]
            assert await snapshot(db) == state

            assert len(state["users"]) == 1
            admin = await User.find_one(User.email == "admin@example.com")
            assert admin is not None
            assert admin.role == "owner"
            assert admin.verify_password(SECRET)
            with tenant_context("acme"):
                names = sorted([c.name async for c in Client.find_all()])
            assert names == ["Desert Anvils Ltd", "Road Runner Logistics", "Wile E. Coyote"]
    assert not any(SECRET in line for line in log_lines)


async def test_missing_admin_password_generates_one_and_never_shows_it(
    insightdb_settings: Settings, log_lines: list[str]
) -> None:
    settings = insightdb_settings.model_copy(update={"seeds_dir": str(SEEDS)})
    async with asyncio.timeout(TIMEOUT):
        async with insightdb.connect(settings, models=[User, Client]) as db:
            await run_seeds(db, ["admin_user"])
            admin = await User.find_one(User.email == "admin@example.com")
            assert admin is not None
            assert admin.password_hash
    generated = [line for line in log_lines if "generated a random password" in line]
    assert len(generated) == 1
    assert "(not shown)" in generated[0]


async def test_production_needs_force(insightdb_settings: Settings) -> None:
    production = insightdb_settings.model_copy(
        update={"env": "production", "seeds_dir": str(SEEDS)}
    )
    async with asyncio.timeout(TIMEOUT):
        async with insightdb.connect(production, models=[User, Client]) as db:
            with pytest.raises(SeedError, match="production needs --force"):
                await run_seeds(db)
            # Forced: the admin seeder applies to production and needs the secret there.
            with pytest.raises(SeedError, match="set the admin_password secret for production"):
                await run_seeds(db, force=True)


def write_seed(folder: Path, name: str, body: str, environments: str = '("testing",)') -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(
        f'"""Seeder {name}."""\n\nenvironments = {environments}\n\n\n'
        f"async def run(ctx):\n    {body}\n",
        encoding="utf-8",
    )


async def test_selection_refusals_and_failures(
    insightdb_settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "seeds"
    write_seed(folder, "alpha", 'await ctx.database("admin")["notes"].update_one('
               '{"_id": 1}, {"$set": {"v": 1}}, upsert=True)')  # fmt: skip
    write_seed(folder, "dev_only", "pass", environments='("development",)')
    write_seed(folder, "broken", "raise ValueError('no good')")
    settings = insightdb_settings.model_copy(update={"seeds_dir": str(folder)})
    assert [s.name for s in discover_seeds(folder)] == ["alpha", "broken", "dev_only"]
    async with asyncio.timeout(TIMEOUT):
        async with insightdb.connect(settings, models=[]) as db:
            outcomes = await run_seeds(db, ["alpha"])
            assert [(o.name, o.status) for o in outcomes] == [("alpha", "ran")]
            with pytest.raises(SeedError, match=r"seeder 'broken' failed: ValueError: no good"):
                await run_seeds(db)
            with pytest.raises(SeedError, match="unknown seeder 'nope'; available: alpha"):
                await run_seeds(db, ["nope"])
            with pytest.raises(SeedError, match="is for development, not testing"):
                await run_seeds(db, ["dev_only"])
            forced = await run_seeds(db, ["dev_only"], force=True)
            assert [o.status for o in forced] == ["ran"]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("INSIGHTDB_") and not k.startswith(_KEPT))
        and not k.startswith(("DATABASE_", "ENABLE_"))
    }
    return env | {"PYTHONUNBUFFERED": "1"} | extra


def test_seed_cli_runs_twice_and_lists(insightdb_server: ResolvedServer) -> None:
    names = unique_database_names("seedcli")
    env = _env(
        {
            "INSIGHTDB_ENV": "testing",
            "INSIGHTDB_ADMIN_PASSWORD": SECRET,
            **{f"INSIGHTDB_DATABASES__{g.upper()}__URI": insightdb_server.uri for g in names},
            **{f"INSIGHTDB_DATABASES__{g.upper()}__NAME": n for g, n in names.items()},
        }
    )
    script = [sys.executable, "-m", "insightdb.cli"]
    try:
        for _ in range(2):
            done = subprocess.run(
                [*script, "seed", "run"], cwd=REPO, env=env, capture_output=True, text=True,
                timeout=TIMEOUT, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert "admin_user: done" in done.stdout
            assert "demo_tenant: done" in done.stdout
            assert SECRET not in done.stdout + done.stderr
        listed = subprocess.run(
            [*script, "seed", "list"], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert "* admin_user" in listed.stdout
        assert "* demo_tenant" in listed.stdout
        refused = subprocess.run(
            [*script, "--env", "production", "seed", "run"], cwd=REPO, env=env,
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        assert refused.stderr.strip() == "error: seeding in production needs --force (force=True)"
    finally:
        from pymongo import MongoClient

        with MongoClient(insightdb_server.uri) as client:
            for name in names.values():
                client.drop_database(name)
