"""Revision files without a server: reading, writing, checksums, templates, command help."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from insightdb.cli.migrate import command_help
from insightdb.exceptions import MigrationError, MultipleHeadsError
from insightdb.migrations import command
from insightdb.migrations.controllers import (
    FreeFallStep,
    IterativeStep,
    _deep_update,
    _Output,
    steps_of,
)
from insightdb.migrations.serverside import is_unsupported
from insightdb.revisions.scripts import ScriptDirectory, checksum
from insightdb.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def revision_file(rev: str, down: str | tuple[str, ...] | None, doc: str = "A change") -> str:
    return (
        f'"""{doc}\n\nRevision: {rev}\n"""\n\n'
        f"revision = {rev!r}\ndown_revision = {down!r}\n\n\n"
        "async def upgrade(ctx):\n    pass\n\n\nasync def downgrade(ctx):\n    pass\n"
    )


@pytest.fixture
def settings(tmp_path: Path, clean_env: Path) -> Settings:
    return get_settings(
        "testing", settings_files=[], overrides={"migrations_dir": str(tmp_path / "migrations")}
    )


def test_files_are_read_without_executing_them(tmp_path: Path) -> None:
    folder = tmp_path / "admin"
    # File names sort the other way round from the chain; the module would raise if run.
    write(folder, "a_second.py", revision_file("bbb", "aaa") + "raise RuntimeError('ran')\n")
    write(folder, "z_first.py", revision_file("aaa", None, doc="First change"))
    write(folder, "_helpers.py", "raise RuntimeError('never read')\n")
    write(folder, "notes.txt", "not python")
    scripts = ScriptDirectory(folder, "admin")
    assert [r.revision for r in scripts.graph.ordered()] == ["aaa", "bbb"]
    assert scripts.get("aaa").revision.message == "First change"
    assert scripts.get("bbb").revision.down_revisions == ("aaa",)


def test_merge_down_revision_tuple_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "customer"
    write(folder, "a.py", revision_file("aaa", None))
    write(folder, "b.py", revision_file("bbb", "aaa"))
    write(folder, "c.py", revision_file("ccc", "aaa"))
    write(folder, "m.py", revision_file("mmm", ("bbb", "ccc")))
    scripts = ScriptDirectory(folder, "customer")
    assert scripts.graph.head() == "mmm"
    assert scripts.get("mmm").revision.is_merge


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("down_revision = None\n", "needs a line `revision"),
        ("revision = 'x'\n", "needs a line `down_revision"),
        ("revision = 'x'\ndown_revision = 5\n", "down_revision must be None"),
        ("revision = make_id()\ndown_revision = None\n", "must be a literal"),
        ("revision = 'x'\ndown_revision = None\ndef broken(:\n", "syntax error on line 3"),
    ],
)
def test_malformed_files_are_one_line_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "admin", "bad.py", text)
    with pytest.raises(MigrationError) as info:
        _ = ScriptDirectory(tmp_path / "admin", "admin").scripts
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_duplicate_ids_across_files_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "admin", "one.py", revision_file("same", None))
    write(tmp_path / "admin", "two.py", revision_file("same", None))
    with pytest.raises(MigrationError, match=r"'same' is defined twice \(one.py and two.py\)"):
        _ = ScriptDirectory(tmp_path / "admin", "admin").graph


def test_missing_file_of_a_down_revision(tmp_path: Path) -> None:
    write(tmp_path / "admin", "b.py", revision_file("bbb", "deleted"))
    with pytest.raises(MigrationError, match="revises 'deleted', which has no file"):
        _ = ScriptDirectory(tmp_path / "admin", "admin").graph


def test_checksum_is_sha256_of_the_bytes_and_changes_with_them(tmp_path: Path) -> None:
    path = write(tmp_path / "admin", "a.py", revision_file("aaa", None))
    first = checksum(path)
    assert len(first) == 64
    assert ScriptDirectory(tmp_path / "admin", "admin").get("aaa").checksum == first
    path.write_text(path.read_text() + "# edited\n")
    assert checksum(path) != first


@pytest.mark.parametrize("style", ["function", "beanie"])
def test_new_writes_a_loadable_file_with_the_head_as_down_revision(
    settings: Settings, style: str
) -> None:
    first = command.new(settings, "create_things", group="admin", style=style)
    second = command.new(settings, "Backfill the things!", group="admin", style=style)
    assert first.parent == Path(settings.migrations_dir) / "admin"
    assert second.name.endswith("_backfill_the_things.py")
    scripts = ScriptDirectory.from_settings(settings, "admin")
    head = scripts.graph.head()
    assert head is not None
    assert scripts.get(head).path == second
    assert scripts.get(head).revision.down_revisions == (first.name.split("_", 1)[0],)
    assert scripts.get(first.name.split("_", 1)[0]).revision.is_base
    text = second.read_text()
    assert text.startswith('"""Backfill the things!\n\nRevision: ')
    assert "Revises: " in text
    assert "Date: " in text
    ast.parse(text)  # valid Python
    module = scripts.get(head).load()
    if style == "function":
        assert callable(module.upgrade)
        assert callable(module.downgrade)
    else:
        assert [name for name, _ in steps_of(module.Forward)] == ["convert", "finish"]
        assert isinstance(module.Forward.__dict__["convert"], IterativeStep)
        assert isinstance(module.Backward.__dict__["undo"], FreeFallStep)


def test_new_refuses_multiple_heads_and_merges_them(settings: Settings) -> None:
    folder = Path(settings.migrations_dir) / "customer"
    write(folder, "a.py", revision_file("aaa", None))
    write(folder, "b.py", revision_file("bbb", "aaa"))
    write(folder, "c.py", revision_file("ccc", "aaa"))
    with pytest.raises(MultipleHeadsError, match="--merge"):
        command.new(settings, "more", group="customer")
    merged = command.new(settings, "merge heads", group="customer", merge=True)
    scripts = ScriptDirectory.from_settings(settings, "customer")
    assert scripts.graph.head() == merged.name.split("_", 1)[0]
    assert set(scripts.get(scripts.graph.head() or "").revision.down_revisions) == {"bbb", "ccc"}
    with pytest.raises(MigrationError, match="nothing to merge"):
        command.new(settings, "again", group="customer", merge=True)


def test_new_validates_its_arguments(settings: Settings) -> None:
    with pytest.raises(MigrationError, match="unknown style"):
        command.new(settings, "x", group="admin", style="yaml")
    with pytest.raises(MigrationError, match="letters or digits"):
        command.new(settings, "!!!", group="admin")
    with pytest.raises(MigrationError, match="--db must be"):
        command.new(settings, "x", group="billing")


def test_load_reports_import_errors_and_missing_entry_points(tmp_path: Path) -> None:
    folder = tmp_path / "admin"
    write(folder, "a.py", "revision = 'aaa'\ndown_revision = None\nimport not_a_module_xyz\n")
    write(folder, "b.py", "revision = 'bbb'\ndown_revision = 'aaa'\n")
    scripts = ScriptDirectory(folder, "admin")
    with pytest.raises(MigrationError, match="can't be imported: ModuleNotFoundError"):
        scripts.get("aaa").load()
    with pytest.raises(MigrationError, match="defines neither"):
        scripts.get("bbb").load()


def test_history_lists_newest_first(settings: Settings) -> None:
    folder = Path(settings.migrations_dir) / "admin"
    write(folder, "a.py", revision_file("aaa", None))
    write(folder, "b.py", revision_file("bbb", "aaa"))
    result = command.history(settings, group="admin")
    assert [r.revision for r in result["admin"]] == ["bbb", "aaa"]
    assert command.history(settings, group="customer") == {"customer": []}


def test_repository_example_chains_are_valid() -> None:
    for group in ("admin", "customer"):
        scripts = ScriptDirectory(REPO / "migrations" / group, group)
        assert len(scripts.graph) >= 2
        assert scripts.graph.head() is not None
        for script in scripts.scripts.values():
            script.load()


def test_command_help_is_the_docstring_without_its_sections() -> None:
    text = command_help(command.up)
    assert text.startswith("Apply pending revisions")
    assert "Returns:" not in text
    assert "Args:" not in text


def test_output_recorder_and_deep_update() -> None:
    output = _Output()
    output.name = "new"
    output.address.city = "Paris"
    assert output.as_dict() == {"name": "new", "address": {"city": "Paris"}}
    merged = _deep_update(
        {"name": "old", "address": {"city": "Lyon", "zip": "1"}}, output.as_dict()
    )
    assert merged == {"name": "new", "address": {"city": "Paris", "zip": "1"}}


def test_iterative_needs_document_annotations() -> None:
    from insightdb.migrations import iterative

    with pytest.raises(MigrationError, match="annotate input_document"):

        @iterative()
        async def bad(self: object, input_document: int, output_document: int) -> None: ...


def test_unsupported_server_errors_are_recognised() -> None:
    from pymongo.errors import OperationFailure

    assert is_unsupported(OperationFailure("Unrecognized pipeline stage name: '$merge'", 40324))
    assert is_unsupported(OperationFailure("x", 9, {"errmsg": "Unsupported aggregation stage"}))
    assert not is_unsupported(OperationFailure("E11000 duplicate key error", 11000))
