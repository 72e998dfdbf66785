"""Apply runs a step that would scan a large table under a write-blocking lock in its online form, and ends where
the plan as written ends: PostgreSQL is the oracle (the same plan applied as written to a twin table). A rerun
after a kill adopts what the online form left (a NOT VALID helper check, a finished index). Both servers."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

import erd_preflight as ep
from erd_preflight.plan import phases
from erd_preflight.catalog import Catalog

PLAN = """
ALTER TABLE {t} ALTER COLUMN a SET NOT NULL;
ALTER TABLE {t} ADD CONSTRAINT {t}_b_key UNIQUE (b);
ALTER TABLE {t} ADD CONSTRAINT {t}_c_check CHECK (c >= 0);
ALTER TABLE {t} ADD PRIMARY KEY (id);
ALTER TABLE {t} ADD CHECK (c < 10000000);
ALTER TABLE {t} ADD UNIQUE (a, b);
ALTER TABLE {t} ADD CONSTRAINT {t}_ref_fkey FOREIGN KEY (ref) REFERENCES p (id);
"""


@pytest.fixture
def online_everywhere(monkeypatch):
    monkeypatch.setattr(phases, "ONLINE_MIN_BYTES", 0)  # the test tables are small: take the online form anyway


def _setup(run_sql) -> None:
    run_sql("CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p SELECT generate_series(1, 10)")
    for table in ("t", "w"):
        run_sql(sql.SQL("CREATE TABLE {} (id int, a int, b int, c int, ref int); "
                        "INSERT INTO {} SELECT i, i, i, i, 1 + i % 10 FROM generate_series(1, 1000) i").format(
            sql.Identifier(table), sql.Identifier(table)))


def _shape(run_sql, table: str) -> dict[str, object]:
    """What a constraint step leaves: constraints (name with the table's own name taken out, kind, validity,
    definition), indexes (definition, validity), NOT NULL columns."""
    constraints = run_sql("SELECT regexp_replace(conname, '^' || %s, 'T'), contype, convalidated, pg_get_constraintdef(oid) "
                          "FROM pg_constraint WHERE conrelid = %s::regclass ORDER BY 1", (table, table))
    indexes = run_sql("SELECT regexp_replace(c.relname, '^' || %s, 'T'), i.indisunique, i.indisprimary, i.indisvalid, "
                      "i.indkey::text, i.indpred IS NULL FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                      "WHERE i.indrelid = %s::regclass ORDER BY 1", (table, table))
    not_null = run_sql("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND attnotnull "
                       "ORDER BY 1", (table,))
    return {"constraints": constraints, "indexes": indexes, "not_null": not_null}


def test_the_online_apply_ends_where_the_plan_as_written_ends(db, run_sql, store, online_everywhere):
    _setup(run_sql)
    run_sql(PLAN.format(t="w"))  # the oracle: PostgreSQL runs the plan as written
    plan = ep.MigrationPlan.from_sql(PLAN.format(t="t"))
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    compiled = run.phases()
    assert compiled.online_steps == (1, 2, 3, 4, 5, 6)
    assert "CONCURRENTLY" in compiled.script() and "NOT VALID" in compiled.script()
    report = run.preflight()
    assert report.status == "clear", report.summary()
    run.apply()
    assert _shape(run_sql, "t") == _shape(run_sql, "w")
    assert not run_sql("SELECT 1 FROM pg_constraint WHERE conname LIKE '%online_not_null'")


def test_online_off_runs_every_step_as_written(db, run_sql, store, online_everywhere):
    _setup(run_sql)
    plan = ep.MigrationPlan.from_sql(PLAN.format(t="t"))
    run = ep.MigrationRun.start(plan, db, store_schema=store, options=ep.ApplyOptions(online=False))
    assert run.phases().online_steps == ()
    assert [s.phase for s in run.phases().statements][:6] == ["A"] * 6


def test_a_small_table_keeps_the_plan_as_written(db, run_sql, store):
    _setup(run_sql)
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql(PLAN.format(t="t")), db, store_schema=store)
    assert run.phases().online_steps == ()  # 1,000 rows: its scan under the lock is brief


def test_a_rerun_adopts_what_an_interrupted_online_apply_left(db, run_sql, conninfo, online_everywhere):
    _setup(run_sql)
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL;\n"
                                     "ALTER TABLE t ADD CONSTRAINT t_b_key UNIQUE (b);\n"
                                     "ALTER TABLE t ADD CONSTRAINT t_c_check CHECK (c >= 0)")
    # what a kill leaves: the NOT NULL (18) or its helper check (before) added NOT VALID, the unique index built,
    # the CHECK added NOT VALID
    eighteen = int(run_sql("SHOW server_version_num")[0][0]) >= 180000
    run_sql(("ALTER TABLE t ADD CONSTRAINT t_a_not_null NOT NULL a NOT VALID; " if eighteen else
             "ALTER TABLE t ADD CONSTRAINT t_a_online_not_null CHECK (a IS NOT NULL) NOT VALID; ")
            + "CREATE UNIQUE INDEX t_b_key ON t (b); ALTER TABLE t ADD CONSTRAINT t_c_check CHECK (c >= 0) NOT VALID")
    with psycopg.connect(conninfo) as conn:
        compiled = phases.compile_phases(plan, Catalog(conn))
    texts = [s.sql for s in compiled.statements]
    assert not any("ADD CONSTRAINT" in t and "NOT VALID" in t for t in texts), texts  # nothing added twice
    assert not any("CREATE UNIQUE INDEX" in t for t in texts), texts  # the finished index adopted
    run_sql("; ".join(f"{t}" for t in texts))  # the rest, run as apply would (each alone here)
    assert run_sql("SELECT attnotnull FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'a'") == [(True,)]
    assert run_sql("SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 't'::regclass ORDER BY 1") \
        == sorted([("t_b_key", True), ("t_c_check", True)] + ([("t_a_not_null", True)] if eighteen else []))


def test_an_invalid_index_an_online_apply_left_is_dropped_and_built_again(db, run_sql, conninfo, online_everywhere):
    _setup(run_sql)
    run_sql("INSERT INTO t VALUES (1, 1, 1, 1, 1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        run_sql("CREATE UNIQUE INDEX CONCURRENTLY t_b_key ON t (b)")  # leaves it INVALID
    run_sql("DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t WHERE b = 1)")
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ADD CONSTRAINT t_b_key UNIQUE (b)")
    with psycopg.connect(conninfo) as conn:
        compiled = phases.compile_phases(plan, Catalog(conn))
    assert [s.sql.split(" ON ")[0] for s in compiled.phase("B")] == [
        'DROP INDEX CONCURRENTLY IF EXISTS "{}"."t_b_key"'.format(run_sql("SELECT current_schema()")[0][0]),
        'CREATE UNIQUE INDEX CONCURRENTLY "t_b_key"']
