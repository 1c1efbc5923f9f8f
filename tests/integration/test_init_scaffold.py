"""``insightdb init``: a new project passes its own tests on the first run.

Run exactly as a user would: ``insightdb init DIR`` as a subprocess, then ``pytest`` in DIR as
another (the insightdb pytest plugin serves its databases). The generated Python is also
clean under ruff's default rules, and a second ``init`` refuses to overwrite anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from insightdb.scaffold import FILES, project_name

pytestmark = pytest.mark.integration

TIMEOUT = 300.0


def _env() -> dict[str, str]:
    # The caller's insightdb settings must not leak into the new project; the test server's
    # address (INSIGHTDB_TEST_*) and the embedded interpreter may.
    kept = ("INSIGHTDB_TEST_", "INSIGHTDB_EMBEDDED_PYTHON")
    env = {
        key: value
        for key, value in os.environ.items()
        if not (key.startswith("INSIGHTDB_") and not key.startswith(kept))
        and not key.startswith(("PYTEST_", "DATABASE_", "ENABLE_"))
    }
    return env | {"PYTHONUNBUFFERED": "1"}


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found is not None, f"{name} is not installed next to python"
    return found


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_new_project_passes_its_own_tests(tmp_path: Path) -> None:
    created = _run(_tool("insightdb"), "init", "my-shop", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    project = tmp_path / "my-shop"
    for relative in FILES:
        assert (project / relative).is_file(), relative
    assert "next: cd my-shop && pytest" in created.stdout
    assert 'name = "my_shop_admin"' in (project / "settings.toml").read_text(encoding="utf-8")

    tested = _run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", cwd=project)

    assert tested.returncode == 0, tested.stdout + tested.stderr
    summary = tested.stdout.strip().splitlines()[-1]
    assert "2 passed" in summary, tested.stdout
    assert "warning" not in summary, tested.stdout  # a clean first run: no loop-scope warning
    assert not (project / ".insightdb").exists()  # tests never touch the development server


def test_generated_python_is_ruff_clean(tmp_path: Path) -> None:
    assert _run(_tool("insightdb"), "init", cwd=tmp_path).returncode == 0

    lint = _run(_tool("ruff"), "check", "--isolated", ".", cwd=tmp_path)
    fmt = _run(_tool("ruff"), "format", "--isolated", "--check", ".", cwd=tmp_path)

    assert lint.returncode == 0, lint.stdout
    assert fmt.returncode == 0, fmt.stdout


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("# mine\n", encoding="utf-8")

    result = _run(_tool("insightdb"), "init", str(tmp_path), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "settings.toml already" in result.stderr
    assert (tmp_path / "settings.toml").read_text(encoding="utf-8") == "# mine\n"
    assert not (tmp_path / "app.py").exists()


@pytest.mark.parametrize(
    ("folder", "expected"),
    [("my-shop", "my_shop"), ("Shop 2", "shop_2"), ("2fast", "fast"), ("---", "app")],
)
def test_project_name_is_a_database_name_prefix(tmp_path: Path, folder: str, expected: str) -> None:
    assert project_name(tmp_path / folder) == expected
