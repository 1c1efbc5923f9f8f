"""The documentation's code snippets, executed: docs that don't run fail this test.

Convention for everyone writing in ``docs/`` (every ``*.md`` file, subfolders included):

- A block fenced ```` ```python ```` is executed. Fence illustrative code (output, code that
  needs a file layout or a production cluster, pytest test functions) as ```` ```py ````;
  shell sessions as ```` ```console ```` (or ``bash``). Those are not run.
- Each block runs on its own, in a fresh namespace: import what it uses. It may use top-level
  ``await`` (it is compiled with ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT`` and awaited in an event
  loop), so ``await insightdb.init()`` works as written.
- It runs with the repository root as working directory (so ``settings.toml`` and the example
  ``models`` package are found), ``INSIGHTDB_ENV=testing``, and both groups' URIs
  (``INSIGHTDB_DATABASES__ADMIN__URI``, ``INSIGHTDB_DATABASES__CUSTOMER__URI``) pointing at the
  test session's server, with fresh database names (``INSIGHTDB_DATABASES__*__NAME``) that are
  dropped afterwards. Other ``INSIGHTDB_*`` variables of the calling shell are removed.
- ``await insightdb.close()`` runs after each block, and environment changes a block makes are
  undone. Warnings are errors, as in the rest of the suite.
- Keep blocks short and deterministic; they are examples first. Assert what the prose claims
  (``assert report.ready``) rather than printing it where that reads naturally.

Tests are named ``file.md:N`` (the N-th executed block of that file, from 1), and a traceback
points at the block's line in the Markdown file.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

import insightdb
from insightdb.testing.plugin import ResolvedServer, unique_database_names

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXECUTED = frozenset({"python", "python3"})
# Variables a snippet may inherit from the shell; any other INSIGHTDB_* could change settings.
_KEPT_PREFIXES = ("INSIGHTDB_TEST_", "INSIGHTDB_EMBEDDED_PYTHON")
_SEED_VARIABLES = (
    "DATABASE_ADMIN_URI",
    "DATABASE_CUSTOMER_URI",
    "ENABLE_HEALTH_CHECKS",
    "ENABLE_METRICS",
    "ENABLE_AUDIT_TRAIL",
)
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Snippet:
    """One executable block of a Markdown file."""

    path: Path
    index: int  # 1-based among the file's executed blocks
    line: int  # line of the first line of code in the file
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(DOCS).as_posix()}:{self.index}"


def collect_snippets(root: Path = DOCS) -> list[Snippet]:
    """Return every executed block under ``root``, in file then document order."""
    snippets: list[Snippet] = []
    for path in sorted(root.rglob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        index = 0
        i = 0
        while i < len(lines):
            opening = _FENCE.match(lines[i])
            if opening is None:
                i += 1
                continue
            fence, indent = opening["fence"], opening["indent"]
            language = (opening["info"].split() or [""])[0].lower()
            body_start = i + 1
            j = body_start
            while j < len(lines):
                closing = _FENCE.match(lines[j])
                if (
                    closing is not None
                    and closing["fence"][0] == fence[0]
                    and len(closing["fence"]) >= len(fence)
                    and not closing["info"].strip()
                ):
                    break
                j += 1
            if language in EXECUTED:
                index += 1
                body = [line.removeprefix(indent) for line in lines[body_start:j]]
                code = textwrap.dedent("\n".join(body))
                snippets.append(Snippet(path, index, body_start + 1, code))
            i = j + 1
    return snippets


SNIPPETS = collect_snippets()


def _isolate_environment(
    monkeypatch: pytest.MonkeyPatch, server: ResolvedServer, names: dict[str, str]
) -> None:
    for variable in list(os.environ):
        if variable in _SEED_VARIABLES or (
            variable.startswith("INSIGHTDB_") and not variable.startswith(_KEPT_PREFIXES)
        ):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("INSIGHTDB_ENV", "testing")
    for group, name in names.items():
        monkeypatch.setenv(f"INSIGHTDB_DATABASES__{group.upper()}__URI", server.uri)
        monkeypatch.setenv(f"INSIGHTDB_DATABASES__{group.upper()}__NAME", name)
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))  # the example `models` package, as from the root


async def _run(snippet: Snippet, monkeypatch: pytest.MonkeyPatch) -> None:
    # Padding with blank lines makes tracebacks name the line in the Markdown file.
    source = "\n" * (snippet.line - 1) + snippet.code
    code = compile(source, str(snippet.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    # A real (registered) module, as a user's file would be: Pydantic resolves a model's
    # annotations (Beanie's Link, Indexed) through sys.modules[model.__module__].
    name = re.sub(r"\W", "_", f"docs_{snippet.path.stem}_{snippet.index}")
    module = types.ModuleType(name)
    module.__file__ = str(snippet.path)
    monkeypatch.setitem(sys.modules, name, module)
    result = eval(code, module.__dict__)  # a coroutine when the block uses top-level await
    if inspect.iscoroutine(result):
        await result


@pytest.mark.integration
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
async def test_docs_snippet(
    snippet: Snippet, insightdb_server: ResolvedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = unique_database_names("docs")
    _isolate_environment(monkeypatch, insightdb_server, names)
    saved_environment = dict(os.environ)
    try:
        await _run(snippet, monkeypatch)
    finally:
        try:
            await insightdb.close()
        finally:
            os.environ.clear()
            os.environ.update(saved_environment)
            async with AsyncMongoClient[dict[str, Any]](
                insightdb_server.uri, serverSelectionTimeoutMS=5000
            ) as client:
                for name in names.values():
                    await client.drop_database(name)


def test_docs_have_snippets() -> None:
    assert SNIPPETS, f"no ```python blocks found under {DOCS}"


def test_collector_reads_fences(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text(
        "# Title\n"
        "```python\nx = 1\n```\n"
        "```py\nnot run\n```\n"
        "- item\n\n  ```python\n  if True:\n      y = 2\n  ```\n"
        "````markdown\n```python\nnested, not run\n```\n````\n"
        "~~~python\nz = 3\n~~~\n",
        encoding="utf-8",
    )
    found = collect_snippets(tmp_path)
    assert [(s.index, s.line, s.code) for s in found] == [
        (1, 3, "x = 1"),
        (2, 11, "if True:\n    y = 2"),
        (3, 20, "z = 3"),
    ]
