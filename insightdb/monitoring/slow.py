"""Slow commands: what a slow-query line says, and the shape of a filter without its values.

An operation slower than the threshold reaches the monitoring hub as a
:class:`SlowCommand`; its line shows the *shape* of the command's filter
(:func:`filter_shape`): its keys and operators with every value replaced by ``?``, so a
line never carries a document value, a tenant's data or a secret. The shape is
computed only for a slow command, when its line is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SlowCommand", "command_filter", "filter_shape", "source_command"]

# Where each command keeps its filter; the value of a key is a path into the command.
_FILTER_PATHS: dict[str, tuple[str | int, ...]] = {
    "find": ("filter",),
    "count": ("query",),
    "distinct": ("query",),
    "findAndModify": ("query",),
    "update": ("updates", 0, "q"),
    "delete": ("deletes", 0, "q"),
    "aggregate": ("pipeline",),
}
_MAX_DEPTH = 6
_MAX_SHAPE_CHARS = 400
_PLACEHOLDER = "?"


def command_filter(command_name: str, command: Mapping[str, Any]) -> Any:
    """Return the part of ``command`` that selects documents (a filter or a pipeline).

    Returns ``None`` for commands without one (``insert``, ``ping``...).
    """
    path = _FILTER_PATHS.get(command_name)
    if path is None:
        return None
    node: Any = command
    for step in path:
        if isinstance(step, int):
            if not isinstance(node, Sequence) or isinstance(node, str) or len(node) <= step:
                return None
            node = node[step]
        elif isinstance(node, Mapping):
            node = node.get(step)
        else:
            return None
    return node


def _shape(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        return {str(key): _shape(item, depth + 1) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        shaped = [_shape(item, depth + 1) for item in value if isinstance(item, Mapping)]
        # A list of values ($in: [...]) says nothing about the shape but its length
        # could: show it as one placeholder. Lists of sub-filters ($or) keep each shape.
        return shaped if shaped else _PLACEHOLDER
    return _PLACEHOLDER


def _pipeline_shape(pipeline: Sequence[Any]) -> list[Any]:
    stages: list[Any] = []
    for stage in pipeline:
        if isinstance(stage, Mapping) and len(stage) == 1:
            ((name, body),) = stage.items()
            stages.append({name: _shape(body, 1)} if name == "$match" else name)
        else:
            stages.append(_PLACEHOLDER)
    return stages


def filter_shape(command_name: str, command: Mapping[str, Any]) -> str | None:
    """Describe the filter of ``command`` by its keys and operators, never its values.

    ``{"age": {"$gt": 30}, "tenant_id": "acme"}`` becomes
    ``{"age":{"$gt":"?"},"tenant_id":"?"}``; an aggregation shows its stage names and the
    shape of each ``$match``. The result is at most 400 characters.

    Args:
        command_name: The command's name (``find``, ``update``...).
        command: The command document as the driver sent it.

    Returns:
        The shape as compact JSON, or ``None`` when the command has no filter.
    """
    selected = command_filter(command_name, command)
    if selected is None:
        return None
    if command_name == "aggregate" and isinstance(selected, Sequence):
        shaped: Any = _pipeline_shape(selected)
    else:
        shaped = _shape(selected, 0)
    text = json.dumps(shaped, separators=(",", ":"), ensure_ascii=False)
    if len(text) > _MAX_SHAPE_CHARS:
        text = text[: _MAX_SHAPE_CHARS - 1] + "…"
    return text


@dataclass(frozen=True, slots=True)
class SlowCommand:
    """A command that took longer than the slow-query threshold.

    Attributes:
        database: Its database.
        collection: Its collection (``""`` when none).
        command: Its name.
        duration_ms: How long it took, as the driver measured it.
        server: ``host:port`` of the server that ran it.
        failed: Whether it failed.
        source: The command document (only to compute :meth:`shape`; never log it).
    """

    database: str
    collection: str
    command: str
    duration_ms: float
    server: str
    failed: bool
    source: Mapping[str, Any] | None

    def shape(self) -> str | None:
        """The shape of the command's filter (see :func:`filter_shape`)."""
        if self.source is None:
            return None
        return filter_shape(self.command, self.source)


# Where a command keeps what selects documents, to rebuild a command document for
# filter_shape() — only ever for a slow command.
_SOURCE_KEYS: dict[str, str] = {
    "find": "filter",
    "count": "query",
    "distinct": "query",
    "findAndModify": "query",
    "aggregate": "pipeline",
}


def source_command(command: str, selected: Any) -> Mapping[str, Any] | None:
    if selected is None:
        return None
    if command in ("update", "delete"):
        return {f"{command}s": [{"q": selected}]}
    key = _SOURCE_KEYS.get(command)
    return None if key is None else {key: selected}
