"""``insightdb migrate`` as real processes: the commands, exit codes and the lock across processes.

Each test works in a scratch project folder (``migrations/`` relative to it) with its own
databases on the session's server. Every process is bounded by a timeout and stopped by
its own PID if a test fails early.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from insightdb.revisions.lock import LOCK_COLLECTION
from insightdb.revisions.log import LOG_COLLECTION
from insightdb.testing.plugin import ResolvedServer, unique_database_names

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "insightdb.cli"]
TIMEOUT = 60.0
_KEPT = ("INSIGHTDB_TEST_", "INSIGHTDB_EMBEDDED_PYTHON")


class Project:
    """A scratch project: its folder, environment, databases and a sync client."""

    def __init__(self, root: Path, server: ResolvedServer) -> None:
        self.root = root
        self.names = unique_database_names("mig")
        self.client: MongoClient[dict[str, Any]] = MongoClient(server.uri)
        env = {
            k: v
            for k, v in os.environ.items()
            if not (k.startswith("INSIGHTDB_") and not k.startswith(_KEPT))
            and not k.startswith(("DATABASE_", "ENABLE_"))
        }
        env |= {"PYTHONUNBUFFERED": "1", "INSIGHTDB_ENV": "testing"}
        for group, name in self.names.items():
            env[f"INSIGHTDB_DATABASES__{group.upper()}__URI"] = server.uri
            env[f"INSIGHTDB_DATABASES__{group.upper()}__NAME"] = name
        self.env = env
        self.children: list[subprocess.Popen[str]] = []

    def db(self, group: str) -> Any:
        return self.client[self.names[group]]

    def run(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def start(self, *args: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [*CLI, *args], cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.children.append(child)
        return child

    def revision(self, group: str, rev: str, down: str | None, body: str) -> Path:
        folder = self.root / "migrations" / group
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{rev}.py"
        path.write_text(
            f'"""Revision {rev}"""\n\nimport asyncio\n\n'
            f"revision = {rev!r}\ndown_revision = {down!r}\n\n\n"
            f"async def upgrade(ctx):\n{textwrap.indent(textwrap.dedent(body), '    ')}\n\n\n"
            "async def downgrade(ctx):\n    pass\n",
            encoding="utf-8",
        )
        return path

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=TIMEOUT)
        for name in self.names.values():
            self.client.drop_database(name)
        self.client.close()


@pytest.fixture
def project(tmp_path: Path, insightdb_server: ResolvedServer) -> Iterator[Project]:
    opened = Project(tmp_path, insightdb_server)
    try:
        yield opened
    finally:
        opened.close()


def finish(child: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = child.communicate(timeout=TIMEOUT)
    return child.returncode, out, err


def wait_for(predicate: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


COUNT = """
await ctx.database["marks"].update_one({"_id": ctx.revision}, {"$inc": {"runs": 1}}, upsert=True)
"""


def test_commands_and_exit_codes(project: Project) -> None:
    created = project.run("migrate", "new", "add_things", "--db", "admin")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created migrations/admin/")
    beanie = project.run("migrate", "new", "first", "--db", "customer", "--style", "beanie")
    assert beanie.returncode == 0, beanie.stderr

    pending = project.run("migrate", "status")
    assert pending.returncode == 1
    assert "admin (" in pending.stdout
    assert "1 pending" in pending.stdout
    check = project.run("migrate", "check")
    assert check.returncode == 1
    assert "admin: 1 pending" in check.stdout

    dry = project.run("migrate", "up", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "admin: would apply 1 revision(s):" in dry.stdout
    assert "dry run: nothing was written" in dry.stdout
    assert LOG_COLLECTION not in project.db("admin").list_collection_names()

    up = project.run("migrate", "up")
    assert up.returncode == 0, up.stderr
    assert "admin: applied 1 revision(s)" in up.stdout
    assert "customer: applied 1 revision(s)" in up.stdout
    status = project.run("migrate", "status", "--json")
    assert status.returncode == 0
    assert [g["up_to_date"] for g in json.loads(status.stdout)] == [True, True]
    assert project.run("migrate", "check").returncode == 0

    history = project.run("migrate", "history", "--db", "admin")
    assert history.returncode == 0
    assert "<base> -> " in history.stdout
    assert "add things" in history.stdout

    down = project.run("migrate", "down", "--steps", "1", "--db", "customer")
    assert down.returncode == 0, down.stderr
    assert "customer: undid 1 revision(s)" in down.stdout
    stamp = project.run("migrate", "stamp", "head", "--db", "customer")
    assert stamp.returncode == 0, stamp.stderr
    assert project.run("migrate", "check").returncode == 0

    bad = project.run("migrate", "down")
    assert bad.returncode == 2  # usage, as docs/cli.md says
    assert bad.stderr.startswith("error: migrate down needs exactly one of --steps N or --to REV")
    unknown = project.run("migrate", "up", "--db", "admin", "--to", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: migrations/admin: unknown revision 'nope'"
    assert project.run("migrate", "new", "x", "--db", "billing").returncode == 2  # usage


def test_two_processes_started_together_apply_each_revision_once(project: Project) -> None:
    for group, prefix in (("admin", "a"), ("customer", "c")):
        project.revision(group, f"{prefix}1", None, COUNT + "await asyncio.sleep(1.0)\n")
        project.revision(group, f"{prefix}2", f"{prefix}1", COUNT + "await asyncio.sleep(0.5)\n")
    first = project.start("migrate", "up", "--wait", "60")
    second = project.start("migrate", "up", "--wait", "60")
    outcomes = [finish(first), finish(second)]
    assert [code for code, _, _ in outcomes] == [0, 0], [err for _, _, err in outcomes]
    for group in ("admin", "customer"):
        marks = list(project.db(group)["marks"].find({}, sort=[("_id", 1)]))
        assert [m["runs"] for m in marks] == [1, 1], marks
        assert project.db(group)[LOCK_COLLECTION].count_documents({"owner": {"$ne": None}}) == 0
    applied = [line for _, out, _ in outcomes for line in out.splitlines() if "applied" in line]
    assert sum(int(line.split("applied ")[1].split(" ")[0]) for line in applied) == 4


def test_second_process_without_wait_exits_with_a_clear_message(project: Project) -> None:
    project.revision("admin", "slow", None, COUNT + "await asyncio.sleep(4)\n")
    first = project.start("migrate", "up", "--db", "admin")
    wait_for(
        lambda: project.db("admin")[LOCK_COLLECTION].count_documents({"owner": {"$ne": None}}) == 1
    )
    second = project.run("migrate", "up", "--db", "admin")
    assert second.returncode == 1
    message = second.stderr.strip()
    assert message.startswith("error: admin: another migration is running (held by ")
    assert message.endswith("retry later or pass --wait SECONDS")
    code, _, err = finish(first)
    assert code == 0, err
    assert project.db("admin")["marks"].find_one({"_id": "slow"}) == {"_id": "slow", "runs": 1}


def test_crashed_run_lock_expires_and_the_next_run_resumes(project: Project) -> None:
    body = """
    async def bump(doc):
        if doc["_id"] >= 200:
            await asyncio.sleep(30)  # killed here
        return {"$inc": {"writes": 1}}

    await ctx.for_each("items", bump, batch_size=50)
    """
    path = project.revision("admin", "crash", None, body)
    project.db("admin")["items"].insert_many([{"_id": i} for i in range(300)])
    first = project.start("migrate", "up", "--db", "admin", "--lock-ttl", "2")
    log = project.db("admin")[LOG_COLLECTION]
    wait_for(lambda: (log.find_one({"_id": "crash"}) or {}).get("documents") == 200)
    first.kill()  # no finally runs: the lock and the "running" entry stay behind
    finish(first)
    status = project.run("migrate", "status", "--db", "admin")
    assert "crash" in status.stdout
    path.write_text(path.read_text().replace("await asyncio.sleep(30)", "pass"))
    resumed = project.run("migrate", "up", "--db", "admin", "--wait", "20")
    assert resumed.returncode == 0, resumed.stderr
    assert "took over the migration lock" in resumed.stderr
    assert project.db("admin")["items"].count_documents({"writes": 1}) == 300
    after = project.run("migrate", "status", "--db", "admin")
    assert after.returncode == 0
    assert "interrupted" not in after.stdout
