"""Revision files on disk: finding, reading, checksumming, loading and writing them.

A chain lives in ``<migrations_dir>/<group>/`` (``migrations/admin``,
``migrations/customer``); every ``*.py`` file not starting with ``_`` is a revision.
The ids and links are read from the source with :mod:`ast` — ``revision = "..."`` and
``down_revision = None | "..." | ("...", "...")`` must be literals — so ``status`` and
``check`` never execute migration code; a file is imported only when it runs. A file's
checksum is the SHA-256 of its bytes.
"""

from __future__ import annotations

import ast
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from types import ModuleType

from insightdb._modules import load_file
from insightdb.exceptions import MigrationError
from insightdb.revisions.graph import Revision, RevisionGraph
from insightdb.revisions.templates import STYLES, render
from insightdb.settings import GROUPS, Settings

__all__ = ["Script", "ScriptDirectory", "checksum", "new_revision_id"]


def checksum(path: Path) -> str:
    """Return the SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def new_revision_id() -> str:
    """Return a fresh, random 12-hex-digit revision id."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Script:
    """One revision file.

    Attributes:
        revision: Its node in the graph.
        path: The file.
        checksum: SHA-256 of the file when it was read.
        group: The database group of its chain.
    """

    revision: Revision
    path: Path
    checksum: str
    group: str

    @property
    def id(self) -> str:
        """The revision id."""
        return self.revision.revision

    def load(self) -> ModuleType:
        """Import the file as a fresh module and return it.

        Raises:
            MigrationError: The file can't be imported, or defines neither
                ``upgrade``/``downgrade`` nor ``Forward``/``Backward``.
        """
        module = load_file(
            f"insightdb_revisions.{self.group}.r_{self.id}", self.path, error=MigrationError
        )
        has_functions = callable(getattr(module, "upgrade", None))
        has_classes = isinstance(getattr(module, "Forward", None), type)
        if not (has_functions or has_classes):
            raise MigrationError(
                f"{self.path}: defines neither `async def upgrade(ctx)` nor `class Forward`"
            )
        return module


class ScriptDirectory:
    """The revision files of one group.

    Args:
        path: The chain's folder, e.g. ``migrations/admin``.
        group: ``"admin"`` or ``"customer"``.
    """

    def __init__(self, path: Path, group: str) -> None:
        self.path = path
        self.group = group

    @classmethod
    def from_settings(cls, settings: Settings, group: str) -> ScriptDirectory:
        """Return the folder ``<settings.migrations_dir>/<group>`` (relative to the cwd)."""
        if group not in GROUPS:
            raise MigrationError(f"unknown database group {group!r}: use admin or customer")
        return cls(Path(settings.migrations_dir) / group, group)

    @property
    def label(self) -> str:
        """How messages name the chain, e.g. ``migrations/admin``."""
        return self.path.as_posix()

    @cached_property
    def scripts(self) -> dict[str, Script]:
        """Every revision file by revision id (read once)."""
        found: dict[str, Script] = {}
        if not self.path.is_dir():
            return found
        for file in sorted(self.path.glob("*.py")):
            if file.name.startswith("_"):
                continue
            script = self._read(file)
            if script.id in found:
                raise MigrationError(
                    f"{self.label}: revision {script.id!r} is defined twice "
                    f"({found[script.id].path.name} and {file.name}); give one a new id"
                )
            found[script.id] = script
        return found

    @cached_property
    def graph(self) -> RevisionGraph:
        """The validated revision graph of the files."""
        return RevisionGraph(
            (s.revision for s in self.scripts.values()), label=self.label, group=self.group
        )

    def get(self, revision: str) -> Script:
        """Return the file of a revision (the id must be in the graph)."""
        return self.scripts[self.graph.get(revision).revision]

    def write(
        self,
        message: str,
        *,
        down_revisions: tuple[str, ...],
        style: str = "function",
        revision: str | None = None,
        now: datetime | None = None,
    ) -> Path:
        """Write a new revision file and return its path.

        Args:
            message: A one-line description; its words also name the file.
            down_revisions: The revisions it revises.
            style: ``"function"`` (``upgrade``/``downgrade``) or ``"beanie"``
                (``Forward``/``Backward`` classes).
            revision: Its id; a random one by default.
            now: The creation time written in the docstring.

        Raises:
            MigrationError: Unknown style, empty message, or the file exists.
        """
        if style not in STYLES:
            raise MigrationError(f"unknown style {style!r}: use {' or '.join(STYLES)}")
        slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:48]
        if not slug:
            raise MigrationError("a revision needs a name made of letters or digits")
        rev = revision or new_revision_id()
        when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        text = render(
            style,
            message=message.replace("_", " ").strip(),
            revision=rev,
            down_revisions=down_revisions,
            date=when,
            group=self.group,
        )
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"{rev}_{slug}.py"
        if target.exists():
            raise MigrationError(f"{target} already exists")
        target.write_text(text, encoding="utf-8")
        self.__dict__.pop("scripts", None)  # cached_property: read the folder again
        self.__dict__.pop("graph", None)
        return target

    def _read(self, file: Path) -> Script:
        data = file.read_bytes()
        try:
            tree = ast.parse(data, filename=str(file))
        except SyntaxError as exc:
            raise MigrationError(f"{file}: syntax error on line {exc.lineno}: {exc.msg}") from exc
        values = _literal_assignments(tree, file, {"revision", "down_revision"})
        rev = values.get("revision")
        if not isinstance(rev, str) or not rev:
            raise MigrationError(f'{file}: needs a line `revision = "<id>"` (a string literal)')
        if "down_revision" not in values:
            raise MigrationError(f"{file}: needs a line `down_revision = ...` (None for the first)")
        down = values["down_revision"]
        if down is None:
            downs: tuple[str, ...] = ()
        elif isinstance(down, str):
            downs = (down,)
        elif isinstance(down, tuple | list) and down and all(isinstance(d, str) for d in down):
            downs = tuple(down)
        else:
            raise MigrationError(
                f"{file}: down_revision must be None, a revision id or a tuple of ids"
            )
        doc = ast.get_docstring(tree) or ""
        message = doc.strip().splitlines()[0] if doc.strip() else file.stem
        return Script(
            revision=Revision(rev, downs, message=message, source=file.name),
            path=file,
            checksum=hashlib.sha256(data).hexdigest(),
            group=self.group,
        )


def _literal_assignments(tree: ast.Module, file: Path, names: set[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                raise MigrationError(
                    f"{file}: `{target.id}` must be a literal (a string, None or a tuple)"
                ) from None
    return values
