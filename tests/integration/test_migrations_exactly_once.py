"""Exactly-once migrations under faults: blocked event loops, SIGKILLs, stale lock holders.

Every run is a real ``insightdb migrate up`` process against the session's server, with
its own databases. A revision increments a counter per document (``$inc``, not
idempotent), so any batch applied twice shows up as a count of 2. Processes are killed
only by their own PID (``Popen.kill``).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from insightdb.migrations.batching import MARKER_FIELD
from insightdb.revisions.lock import LOCK_COLLECTION
from insightdb.revisions.log import LOG_COLLECTION
from insightdb.testing.plugin import ResolvedServer, unique_database_names

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "insightdb.cli"]
TIMEOUT = 120.0
DOCS = 1200
_KEPT = ("INSIGHTDB_TEST_", "INSIGHTDB_EMBEDDED_PYTHON")


class Project:
    """A scratch project folder with its own databases on the session's server."""

    def __init__(self, root: Path, server: ResolvedServer) -> None:
        self.root = root
        self.names = unique_database_names("once")
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

    @property
    def admin(self) -> Any:
        return self.client[self.names["admin"]]

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [*CLI, "migrate", "up", "--db", "admin", "--progress", "off", *args],
            cwd=self.root, env=self.env | extra_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.children.append(child)
        return child

    def revision(self, body: str, header: str = "") -> Path:
        folder = self.root / "migrations" / "admin"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "inc1.py"
        path.write_text(
            f'"""Increment every item"""\n\nimport os\nimport time\n{header}\n'
            "revision = 'inc1'\ndown_revision = None\n\n\n"
            f"async def upgrade(ctx):\n{textwrap.indent(textwrap.dedent(body), '    ')}\n",
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


def header_for(transactions: bool) -> str:
    return "use_transaction = True\n" if transactions else "use_transaction = False\n"


def assert_each_document_once(project: Project, count: int) -> None:
    items = project.admin["items"]
    assert items.count_documents({"n": 1}) == count, sorted(
        (d["n"], d["_id"]) for d in items.find({"n": {"$ne": 1}}).limit(10)
    )
    assert items.count_documents({"n": {"$gt": 1}}) == 0
    assert items.count_documents({MARKER_FIELD: {"$exists": True}}) == 0
    log = project.admin[LOG_COLLECTION].find_one({"_id": "inc1"})
    assert log is not None
    assert log["status"] == "applied"
    assert project.admin[LOCK_COLLECTION].count_documents({"owner": {"$ne": None}}) == 0


# A transform that blocks the event loop (time.sleep) at the start of every other batch,
# longer than the lock's TTL (1 s): the lease expires while the runner can't renew it.
BLOCKING = """
async def bump(doc):
    if doc["_id"] % 100 == 0:
        time.sleep(2.5)  # blocks the event loop past the lock TTL
    return {"$inc": {"n": 1}}

await ctx.for_each("items", bump, batch_size=50)
"""


@pytest.mark.parametrize("transactions", [True, False], ids=["transactions", "markers"])
def test_concurrent_runners_with_a_loop_blocking_step_migrate_each_document_once(
    project: Project, transactions: bool
) -> None:
    count = 400
    project.admin["items"].insert_many([{"_id": i} for i in range(count)])
    project.revision(BLOCKING, header_for(transactions))
    runners = [project.start("--lock-ttl", "1", "--wait", "90") for _ in range(2)]
    outcomes = [finish(r) for r in runners]
    errors = "\n".join(err for _, _, err in outcomes)
    # Whoever lost the lock stopped before its next write, with a clear message; the
    # other finished. Leftovers (both stopped) are finished by a last run.
    for code, _, err in outcomes:
        assert code == 0 or "was taken over" in err, err
    if all(code != 0 for code, _, _ in outcomes):
        code, _, err = finish(project.start("--wait", "30"))
        assert code == 0, err
    assert "took over the migration lock" in errors
    assert_each_document_once(project, count)


# The revision kills its own process right before the checkpoint of its Nth batch: after
# the batch's bulk write (markers), or before the batch's commit (transactions).
KILL_BEFORE_CHECKPOINT = """
from insightdb.revisions.log import MigrationLog

kill_at = int(os.environ.get("KILL_AT_CHECKPOINT", "0"))
original = MigrationLog.checkpoint
seen = []

async def checkpoint(self, *args, **kwargs):
    seen.append(1)
    if len(seen) == kill_at:
        os.kill(os.getpid(), 9)
    return await original(self, *args, **kwargs)

MigrationLog.checkpoint = checkpoint
try:
    await ctx.for_each("items", lambda doc: {"$inc": {"n": 1}}, batch_size=100)
finally:
    MigrationLog.checkpoint = original
"""


@pytest.mark.parametrize("transactions", [True, False], ids=["transactions", "markers"])
def test_sigkill_between_batch_and_checkpoint_and_at_random_resumes_exactly_once(
    project: Project, transactions: bool
) -> None:
    project.admin["items"].insert_many([{"_id": i} for i in range(DOCS)])
    project.revision(KILL_BEFORE_CHECKPOINT, header_for(transactions))
    log = project.admin[LOG_COLLECTION]

    # 1. Deterministic: killed between the 3rd batch's write and its checkpoint.
    first = project.start("--lock-ttl", "1", KILL_AT_CHECKPOINT="3")
    code, _, err = finish(first)
    assert code == -9, err
    entry = log.find_one({"_id": "inc1"})
    assert entry is not None
    assert entry["status"] == "running"
    assert entry["documents"] == 200  # two batches checkpointed
    written = project.admin["items"].count_documents({"n": 1})
    assert written == (200 if transactions else 300)  # the third: committed or not

    # 2. Random: SIGKILLs at random moments while batches run.
    rng = random.Random(1234)
    for _ in range(3):
        before = (log.find_one({"_id": "inc1"}) or {}).get("documents", 0)
        runner = project.start("--lock-ttl", "1", "--wait", "30")
        deadline = time.monotonic() + 60
        while (log.find_one({"_id": "inc1"}) or {}).get("documents", 0) == before:
            if runner.poll() is not None:
                break  # nothing was left to write (killed after the last checkpoint)
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if runner.poll() is not None:
            code, _, err = finish(runner)
            assert code == 0, err
            break  # it finished first
        runner.kill()
        finish(runner)
    assert project.admin["items"].count_documents({"n": {"$gt": 1}}) == 0

    # 3. Resume to the end.
    code, _, err = finish(project.start("--wait", "30"))
    assert code == 0, err
    assert_each_document_once(project, DOCS)
