"""A plan read from a tool's folder keeps each migration's own transaction, as its tool does: migration by
migration (its phase A, then its B and C) before the next one. One transaction for every pending migration only
when the user asks for all-or-nothing. Both servers."""

from __future__ import annotations

from pathlib import Path

import pytest

import erd_preflight as ep

# the enum exists before the plan (a value added to an enum created in the same transaction is usable at once)
SETUP = "CREATE TYPE status AS ENUM ('new'); CREATE TABLE item (id int, s status)"
MIGRATIONS = {
    "000001_note.up.sql": "ALTER TABLE item ADD COLUMN note text;\nCOMMENT ON TABLE item IS 'items';",
    "000002_more.up.sql": "ALTER TYPE status ADD VALUE 'done';",
    "000003_use.up.sql": "INSERT INTO item VALUES (1, 'done');\nCREATE INDEX CONCURRENTLY item_s ON item (s);",
}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name, text in MIGRATIONS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_each_migration_runs_in_its_own_transaction_with_its_phases_before_the_next(tmp_path):
    plan = ep.MigrationPlan.from_dir(_folder(tmp_path))
    phases = ep.compile_phases(plan)
    assert [(s.phase, s.unit, s.step) for s in phases.statements] == [
        ("A", 1, 1), ("A", 1, 2), ("A", 2, 3), ("A", 3, 4), ("B", 1, 5)]
    together = ep.compile_phases(plan, all_or_nothing=True)
    assert {(s.phase, s.unit) for s in together.statements if s.phase == "A"} == {("A", 1)}


def test_an_enum_value_one_migration_adds_is_usable_in_the_next_as_with_its_tool(db, run_sql, store, tmp_path):
    run_sql(SETUP)
    plan = ep.MigrationPlan.from_dir(_folder(tmp_path))
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    report = run.preflight()
    assert not report.blocked, report.summary()  # PostgreSQL's 55P04 is a one-transaction matter
    for ask in run.gate().acknowledgements_needed:
        run.acknowledge(ask.step)
    run.apply()
    assert run_sql("SELECT id, s::text FROM item") == [(1, "done")]


def test_all_or_nothing_runs_every_migration_in_one_transaction_where_postgresql_refuses_it(db, run_sql, store,
                                                                                             tmp_path):
    run_sql(SETUP)
    plan = ep.MigrationPlan.from_dir(_folder(tmp_path))
    run = ep.MigrationRun.start(plan, db, store_schema=store, options=ep.ApplyOptions(all_or_nothing=True))
    run.preflight()
    for ask in run.gate().acknowledgements_needed:
        run.acknowledge(ask.step)
    with pytest.raises(ep.ApplyFailed, match="unsafe use of new value"):
        run.apply()
    assert run_sql("SELECT count(*) FROM pg_attribute WHERE attrelid = 'item'::regclass AND attname = 'note'") \
        == [(0,)]  # nothing of it was applied


def test_a_prisma_folder_keeps_each_migrations_transaction_though_every_file_is_called_migration_sql(tmp_path):
    folder = tmp_path / "migrations"
    for name, text in [("20240101000000_more", "ALTER TYPE status ADD VALUE 'done';"),
                       ("20240102000000_use", "INSERT INTO item VALUES (1, 'done');")]:
        (folder / name).mkdir(parents=True)
        (folder / name / "migration.sql").write_text(text, encoding="utf-8")
    (folder / "migration_lock.toml").write_text('provider = "postgresql"\n', encoding="utf-8")
    plan = ep.MigrationPlan.from_dir(folder)
    assert plan.origins == ("20240101000000_more/migration.sql", "20240102000000_use/migration.sql")
    assert [(s.phase, s.unit) for s in ep.compile_phases(plan).statements] == [("A", 1), ("A", 2)]
