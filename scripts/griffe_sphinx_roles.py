"""A griffe extension for the API reference: Sphinx roles in docstrings become links.

insightdb's docstrings cross-reference with Sphinx roles (``:class:`~insightdb.Settings```,
``:func:`init```), which Markdown would show as they are written. Before mkdocstrings renders
a docstring, this extension turns each role into an *optional* autorefs link: a link to the
object's entry where the reference documents it, plain code text where it does not (an
internal module), never a broken link. A relative name (``:meth:`start```) is resolved from
the object's class, then its module. An RST literal-block marker (``text::``) becomes a colon.

mkdocs.yml loads it: ``extensions: [scripts/griffe_sphinx_roles.py]``.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")
_LITERAL_MARKER = re.compile(r"(?<=\S)::(?=\n\s*\n)")


def _resolve(obj: griffe.Object, target: str) -> str:
    """Return the full path that ``target`` names as seen from ``obj``."""
    if target.startswith("insightdb."):
        return target
    head = target.split(".", 1)[0]
    scope: griffe.Object | None = obj
    while scope is not None:
        if head in scope.members:
            return f"{scope.path}.{target}"
        scope = scope.parent
    return target


def _rewrite(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match[str]) -> str:
        target = match["target"].strip().removesuffix("()")
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        identifier = html.escape(_resolve(obj, target), quote=True)
        code = f"<code>{html.escape(shown)}</code>"
        return f'<autoref identifier="{identifier}" optional>{code}</autoref>'

    return _LITERAL_MARKER.sub(":", _ROLE.sub(link, text))


class SphinxRoles(griffe.Extension):
    """Rewrite the docstrings of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)  # type: ignore[misc]
