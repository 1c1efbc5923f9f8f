"""``insightdb config show``: the typer sub-app printing the resolved settings.

The settings are printed masked, as JSON or as TOML. TOML is written here (the standard
library only reads it): nested tables become ``[a.b]`` headers and ``None`` values are left
out, since TOML has no null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

import typer

from insightdb._redact import mask_text
from insightdb.cli.state import get_state

__all__ = ["config_app"]


class OutputFormat(StrEnum):
    """The formats of ``config show``."""

    json = "json"
    toml = "toml"


def config_show(
    ctx: typer.Context,
    output: Annotated[
        OutputFormat, typer.Option("--format", case_sensitive=False, help="Output format.")
    ] = OutputFormat.json,
) -> None:
    """Print the resolved settings, secrets masked."""
    data = get_state(ctx).settings().masked()
    text = json.dumps(data, indent=2) if output is OutputFormat.json else _to_toml(data)
    typer.echo(mask_text(text.rstrip("\n")))


def _to_toml(data: Mapping[str, Any]) -> str:
    """Render nested settings data as TOML (``None`` values are left out: TOML has no null)."""
    lines: list[str] = []
    _toml_table(lines, (), data)
    return "\n".join(lines).strip() + "\n"


def _toml_table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping) and v is not None]
    if path and scalars:
        lines += ["", f"[{'.'.join(_toml_key(part) for part in path)}]"]
    lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in scalars]
    for key, value in table.items():
        if isinstance(value, Mapping):
            _toml_table(lines, (*path, key), value)


def _toml_key(key: str) -> str:
    bare = key and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in key)
    return key if bare else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    # JSON's string escapes are all valid in TOML basic strings.
    return json.dumps(str(value), ensure_ascii=False)


config_app = typer.Typer(name="config", no_args_is_help=True, help="Inspect settings.")
config_app.command("show")(config_show)
