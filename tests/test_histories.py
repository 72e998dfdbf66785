"""Real migration histories of public projects, replayed with PostgreSQL as the oracle (benchmarks/
replay_histories.py). Their files are never committed: set ERD_PREFLIGHT_HISTORIES to a folder with one folder
per project (a diesel, golang-migrate, Flyway, dbmate or numbered layout), e.g. from git snapshots of
rust-lang/crates.io and LemmyNet/lemmy. Skipped without it; ERD_PREFLIGHT_HISTORIES_LIMIT caps the files per
project for a quick run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from replay_histories import projects, replay  # noqa: E402

ROOT = os.environ.get("ERD_PREFLIGHT_HISTORIES")
pytestmark = pytest.mark.skipif(not ROOT, reason="ERD_PREFLIGHT_HISTORIES names no folder of migration histories")


def _projects() -> list[Path]:
    return list(projects(Path(ROOT))) if ROOT else []


@pytest.mark.parametrize("project", _projects(), ids=lambda p: p.name)
def test_a_replayed_history_is_judged_as_postgresql_judges_it(server_url, project):
    limit = int(os.environ.get("ERD_PREFLIGHT_HISTORIES_LIMIT", "0")) or None
    tally = replay(project, server_url.replace("+psycopg", ""), limit=limit, progress=False)
    assert tally.compared, "no migration file was compared"
    blocks, clears = tally.false("rehearsal")
    model_blocks, model_clears = tally.false("model")
    errors = [o for o in tally.outcomes if o.rehearsal.startswith("error")]
    assert not errors, errors[:3]
    # Derived from PostgreSQL's catalog, the checks are never worse than their own model, and block falsely
    # in fewer than 1.5 % of the files (the rest are data statements and volatile functions: issue 12).
    assert len(blocks) <= len(model_blocks) and len(clears) <= len(model_clears), (blocks, clears)
    assert len(blocks) <= 0.015 * tally.compared, [(o.file, o.rehearsal_finding) for o in blocks]
