"""Every benchmark command the README and docs/ show runs (with small sizes here; the figures come from full runs), and
the history replay judges a small history written for it as PostgreSQL does."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"--rows": "2000", "--tables": "3", "--schemas": "2", "--statements": "200", "--changed": "20"}


def _readme_benchmarks() -> list[list[str]]:
    guide = "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    commands = re.findall(r"`python (benchmarks/\S+\.py[^`]*)`", guide)
    return [command.split() for command in commands]


def _history(folder: Path) -> Path:
    """A diesel-style history: a table, rows of its own, a rename, then a step on the new name."""
    project = folder / "shop"
    files = {
        "2024-01-01-000000_create_person/up.sql": "CREATE TABLE person (id serial PRIMARY KEY, email text);",
        "2024-01-02-000000_admin/up.sql": "INSERT INTO person (email) VALUES ('admin@example.com');",
        "2024-01-03-000000_rename/up.sql": "ALTER TABLE person RENAME TO people;\n"
                                           "ALTER TABLE people ADD COLUMN active boolean DEFAULT true;",
        "2024-01-04-000000_not_null/up.sql": "ALTER TABLE people ALTER COLUMN active SET NOT NULL;\n"
                                             "ALTER TABLE people ALTER COLUMN email SET NOT NULL;",
    }
    for name, text in files.items():
        path = project / "migrations" / name
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
    return folder


def test_the_readme_shows_every_benchmark():
    shown = {Path(c[0]).name for c in _readme_benchmarks()}
    assert shown == {p.name for p in (ROOT / "benchmarks").glob("*.py")}


@pytest.mark.parametrize("command", _readme_benchmarks(), ids=lambda c: Path(c[0]).stem)
def test_a_readme_benchmark_command_runs(command, tmp_path, server_url):
    args = [SMALL.get(previous, arg) for previous, arg in zip(["", *command], command)]
    if "--squawk" in args:  # the squawk-cli the test extra installs, next to this Python
        squawk = shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")
        assert squawk, "squawk-cli is a test dependency: pip install -e '.[test]'"
        args[args.index("--squawk") + 1] = squawk
    if "--root" in args:
        args[args.index("--root") + 1] = str(_history(tmp_path))
        args += ["--url", server_url.replace("+psycopg", ""), "--json", str(tmp_path / "outcomes.json")]
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), result.stderr[-2000:]
    if "--squawk" in args:
        assert "squawk lock hazards" in result.stdout, result.stdout
    if "--root" in args:
        # the email column has a NULL in some seeds and not others; whatever the rows, no verdict may be false
        assert "rehearsal: 4 compared; false blocks 0 (0.0%), false clears 0 (0.0%)" in result.stdout, result.stdout
