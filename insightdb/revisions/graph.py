"""The revision graph of one database's migrations: pure data, no I/O.

Each revision names the revision(s) it revises (``down_revision``: none for a base, one
for a step, several for a merge). The graph orders revisions from those links alone —
never from file names — finds the heads, and turns "what is applied" plus "where to go"
into an ordered plan. Structural problems (a revision defined twice, one that revises a
revision with no file, a cycle, more than one head) are one-line
:class:`~insightdb.exceptions.MigrationError` messages naming the revisions and the fix.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from insightdb.exceptions import MigrationError, MultipleHeadsError

__all__ = ["BASE", "HEAD", "Revision", "RevisionGraph"]

HEAD = "head"
"""Symbolic target: the single head of the chain."""
BASE = "base"
"""Symbolic target: before the first revision (nothing applied)."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One node of the graph.

    Attributes:
        revision: The revision id (``revision = "..."`` in the file).
        down_revisions: The revisions it revises; empty for a base, two or more for a merge.
        message: The first line of the file's docstring.
        source: Where it was defined (a file name), for messages.
    """

    revision: str
    down_revisions: tuple[str, ...] = ()
    message: str = ""
    source: str = ""

    @property
    def is_base(self) -> bool:
        """Whether it revises nothing."""
        return not self.down_revisions

    @property
    def is_merge(self) -> bool:
        """Whether it joins two or more branches."""
        return len(self.down_revisions) > 1

    def describe(self) -> str:
        """Return ``"<revision> (<message>)"`` for messages."""
        return f"{self.revision} ({self.message})" if self.message else self.revision


class RevisionGraph:
    """A validated directed acyclic graph of revisions.

    Args:
        revisions: Every revision of one chain.
        label: How messages name the chain, e.g. ``"migrations/admin"``.
        group: The database group, used in the hints of messages.

    Raises:
        MigrationError: A revision is defined twice, revises an unknown revision, or
            the revisions form a cycle.
    """

    def __init__(
        self, revisions: Iterable[Revision], *, label: str = "migrations", group: str = "admin"
    ) -> None:
        self.label = label
        self.group = group
        self._revisions: dict[str, Revision] = {}
        for rev in revisions:
            if rev.revision in self._revisions:
                first = self._revisions[rev.revision].source or "?"
                raise MigrationError(
                    f"{label}: revision {rev.revision!r} is defined twice "
                    f"({first} and {rev.source or '?'}); give one of them a new id"
                )
            self._revisions[rev.revision] = rev
        self._children: dict[str, list[str]] = {r: [] for r in self._revisions}
        for rev in self._revisions.values():
            for parent in rev.down_revisions:
                if parent not in self._revisions:
                    raise MigrationError(
                        f"{label}: revision {rev.revision!r} ({rev.source or '?'}) revises "
                        f"{parent!r}, which has no file; restore it or fix down_revision"
                    )
                self._children[parent].append(rev.revision)
        self._order = self._topological_order()

    def __len__(self) -> int:
        return len(self._revisions)

    def __contains__(self, revision: object) -> bool:
        return revision in self._revisions

    @property
    def revisions(self) -> Mapping[str, Revision]:
        """Every revision by id."""
        return self._revisions

    @property
    def heads(self) -> tuple[str, ...]:
        """Revisions nothing revises, in graph order."""
        return tuple(r for r in self._order if not self._children[r])

    @property
    def bases(self) -> tuple[str, ...]:
        """Revisions that revise nothing, in graph order."""
        return tuple(r for r in self._order if self._revisions[r].is_base)

    def head(self) -> str | None:
        """Return the single head, or ``None`` for an empty chain.

        Raises:
            MultipleHeadsError: There is more than one head; the message names them and
                the command that writes a merge revision.
        """
        heads = self.heads
        if len(heads) > 1:
            named = ", ".join(self._revisions[h].describe() for h in heads)
            raise MultipleHeadsError(
                f"{self.label} has {len(heads)} heads: {named}; merge them with "
                f"`insightdb migrate new merge_heads --db {self.group} --merge` "
                f"(a revision whose down_revision = {tuple(heads)!r})"
            )
        return heads[0] if heads else None

    def ordered(self) -> tuple[Revision, ...]:
        """Return every revision, each after all the revisions it revises."""
        return tuple(self._revisions[r] for r in self._order)

    def get(self, revision: str) -> Revision:
        """Return a revision by exact id.

        Raises:
            MigrationError: No revision has that id.
        """
        try:
            return self._revisions[revision]
        except KeyError:
            raise MigrationError(f"{self.label}: unknown revision {revision!r}") from None

    def resolve(self, spec: str) -> str | None:
        """Turn ``head``, ``base``, an id or a unique id prefix into a revision id.

        Returns:
            The revision id, or ``None`` for ``base`` (and ``head`` of an empty chain).

        Raises:
            MigrationError: The spec matches no revision, or several.
            MultipleHeadsError: ``head`` was asked of a chain with several heads.
        """
        if spec == HEAD:
            return self.head()
        if spec == BASE:
            return None
        if spec in self._revisions:
            return spec
        matches = sorted(r for r in self._revisions if r.startswith(spec))
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise MigrationError(
                f"{self.label}: revision prefix {spec!r} is ambiguous: {', '.join(matches)}"
            )
        raise MigrationError(f"{self.label}: unknown revision {spec!r}")

    def ancestors(self, revision: str) -> frozenset[str]:
        """Return ``revision`` and every revision it depends on, transitively."""
        seen: set[str] = set()
        stack = [self.get(revision).revision]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._revisions[current].down_revisions)
        return frozenset(seen)

    def check_applied(self, applied: Iterable[str], *, database: str = "the database") -> None:
        """Fail when the database records revisions that have no file.

        Raises:
            MigrationError: Naming the first unknown revision.
        """
        unknown = sorted(set(applied) - set(self._revisions))
        if unknown:
            raise MigrationError(
                f"{database} records revision {unknown[0]!r} as applied, but {self.label} has "
                f"no file for it; restore the file, or `insightdb migrate stamp` the database"
            )

    def current(self, applied: Iterable[str]) -> tuple[str, ...]:
        """Return the applied revisions that no other applied revision revises."""
        done = set(applied) & set(self._revisions)
        return tuple(
            r for r in self._order if r in done and not any(c in done for c in self._children[r])
        )

    def upgrade_plan(self, applied: Iterable[str], target: str | None = None) -> list[Revision]:
        """Return the revisions to apply to reach ``target`` (default: the head), in order.

        Args:
            applied: The revisions the database records as applied.
            target: A revision id; ``None`` means the single head.

        Raises:
            MultipleHeadsError: ``target`` is ``None`` and there are several heads.
            MigrationError: ``target`` is unknown.
        """
        goal = self.head() if target is None else self.get(target).revision
        if goal is None:
            return []
        wanted = self.ancestors(goal) - set(applied)
        return [self._revisions[r] for r in self._order if r in wanted]

    def downgrade_plan(
        self, applied: Iterable[str], *, steps: int | None = None, target: str | None = None
    ) -> list[Revision]:
        """Return the revisions to undo, newest first.

        Give either ``steps`` (undo that many revisions) or ``target`` (undo everything
        that is not ``target`` or one of its ancestors; ``None`` with no steps means all).

        Raises:
            MigrationError: Both or neither bound is usable, or ``target`` is unknown.
        """
        if steps is not None and target is not None:
            raise MigrationError("downgrade takes --steps or --to, not both")
        if steps is not None and steps < 1:
            raise MigrationError(f"--steps must be at least 1, got {steps}")
        done = set(applied) & set(self._revisions)
        newest_first = [r for r in reversed(self._order) if r in done]
        if steps is not None:
            chosen = newest_first[:steps]
        else:
            keep = self.ancestors(target) if target is not None else frozenset()
            chosen = [r for r in newest_first if r not in keep]
        return [self._revisions[r] for r in chosen]

    def _topological_order(self) -> list[str]:
        # Kahn's algorithm; ties broken by revision id so the order is deterministic.
        pending = {r: len(rev.down_revisions) for r, rev in self._revisions.items()}
        ready = [r for r, n in pending.items() if n == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            current = heapq.heappop(ready)
            order.append(current)
            for child in self._children[current]:
                pending[child] -= 1
                if pending[child] == 0:
                    heapq.heappush(ready, child)
        if len(order) != len(self._revisions):
            cycle = self._find_cycle({r for r, n in pending.items() if n > 0})
            raise MigrationError(f"{self.label}: revisions form a cycle: {' -> '.join(cycle)}")
        return order

    def _find_cycle(self, stuck: set[str]) -> list[str]:
        # Every stuck revision has a stuck parent, so walking parents must revisit one.
        start = min(stuck)
        path: list[str] = []
        position: dict[str, int] = {}
        current = start
        while current not in position:
            position[current] = len(path)
            path.append(current)
            current = min(p for p in self._revisions[current].down_revisions if p in stuck)
        loop = path[position[current] :]
        loop.reverse()  # parent -> child reads like the migrations run
        return [*loop, loop[0]]
