"""A table the plan creates and fills from the target's tables is decided on the real rows, read-only: the INSERT
that fills it and the steps after it that read it (a constraint, an index, a DELETE of the table it references).
Found by replaying real histories: ``CREATE TABLE new (...); INSERT INTO new SELECT ... FROM old`` was the most
common statement left for a person. PostgreSQL is the oracle, on both servers: the same statements on the same
rows, in a transaction rolled back. What preflight cannot read on the target (a type or function only the plan
makes, a table written before the INSERT) stays a person's call."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import erd_preflight as ep
from tests.oracle import REFUSED, assert_agrees, examples, postgres_accepts, verdict

SETUP = """
DROP TABLE IF EXISTS nt, old, kind CASCADE;
CREATE TABLE kind (id int PRIMARY KEY);
INSERT INTO kind VALUES (1), (2);
CREATE TABLE old (id int PRIMARY KEY, v int, k int, name text);
"""

# A new table of every constraint kind an INSERT checks; the INSERT fills it from ``old``.
NEW_TABLES = [
    "CREATE TABLE nt (id serial PRIMARY KEY, v int NOT NULL, k int REFERENCES kind, name varchar(3) UNIQUE)",
    "CREATE TABLE nt (id int PRIMARY KEY, v int CHECK (v > 0), k int, name text NOT NULL DEFAULT 'x')",
    "CREATE TABLE nt (id bigint GENERATED ALWAYS AS IDENTITY (START WITH 5), v smallint, k int REFERENCES kind "
    "ON DELETE CASCADE, name text, UNIQUE (v, k))",
]
FILLS = [
    "INSERT INTO nt (v, k, name) SELECT v, k, name FROM old",
    "INSERT INTO nt (v, k, name) SELECT v * 1000, k, name FROM old WHERE id > 2",
    "INSERT INTO nt (v, k, name) SELECT DISTINCT ON (k) v, k, name FROM old ORDER BY k, id",
]
AFTER = [
    "ALTER TABLE nt ADD CONSTRAINT nt_v CHECK (v < 4)",
    "ALTER TABLE nt ALTER COLUMN k SET NOT NULL",
    "CREATE UNIQUE INDEX nt_k ON nt (k)",
    "DELETE FROM kind WHERE id = 2",
    "UPDATE nt SET v = v + 1",
    "INSERT INTO nt (v, k, name) SELECT v, k, name FROM old WHERE k = 1",
]

rows = st.lists(st.tuples(st.none() | st.integers(-1, 3), st.none() | st.integers(1, 3),
                          st.none() | st.sampled_from(["a", "b", "long"])), max_size=5)


def _statements(text: str) -> list[str]:
    return [step.sql() for step in ep.MigrationPlan.from_sql(text).steps]


def _load(run_sql, setup: str, **tables: list[tuple]) -> None:
    """``setup``, then each table's rows, numbered from 1 in its first column."""
    run_sql(setup)
    for table, table_rows in tables.items():
        for i, values in enumerate(table_rows, start=1):
            run_sql(f"INSERT INTO {table} VALUES (%s{', %s' * len(values)})", (i, *values))


@settings(max_examples=examples(3), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old_rows=rows, table=st.sampled_from(NEW_TABLES), fill=st.sampled_from(FILLS),
       after=st.lists(st.sampled_from(AFTER), max_size=2))
def test_a_new_table_filled_from_old_ones_agrees_with_postgresql_and_asks_nobody(
        db, run_sql, conninfo, old_rows, table, fill, after):
    _load(run_sql, SETUP, old=old_rows)
    text = ";\n".join([table, fill, *after])
    accepted = postgres_accepts(conninfo, _statements(text))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    found = assert_agrees(report, accepted, text, REFUSED)
    assert found != "unverified", (text, report.summary())


def test_the_insert_that_fills_a_new_table_blocks_on_the_rows_postgresql_refuses(db, run_sql, conninfo):
    _load(run_sql, SETUP, old=[(1, 1, "a"), (-1, 2, "b")])
    text = f"{NEW_TABLES[1]}; INSERT INTO nt SELECT id, v, k, name FROM old"
    assert not postgres_accepts(conninfo, _statements(text))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked and "step 2" in report.blockers[0].message and "v > 0" in report.blockers[0].message
    assert "1 of the 2 rows" in report.blockers[0].message


@pytest.mark.parametrize("plan", [
    # the plan makes the column's type: the target has no such type to read the rows as
    "CREATE TYPE mood AS ENUM ('a', 'b'); CREATE TABLE nt (m mood); INSERT INTO nt SELECT name::mood FROM old",
    # the plan makes the function a CHECK calls
    "CREATE FUNCTION ok(t text) RETURNS bool LANGUAGE sql IMMUTABLE AS $$ SELECT t <> 'b' $$; "
    "CREATE TABLE nt (name text CHECK (ok(name))); INSERT INTO nt SELECT name FROM old",
    # a statement between may have written the table
    "CREATE TABLE nt (id int PRIMARY KEY); DO $$ BEGIN INSERT INTO nt VALUES (1); END $$; "
    "INSERT INTO nt SELECT id FROM old",
])
def test_what_the_target_cannot_show_stays_a_persons_call(db, run_sql, conninfo, plan):
    _load(run_sql, SETUP, old=[(1, 1, "a"), (2, 2, "b")])
    accepted = postgres_accepts(conninfo, _statements(plan))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(plan), db)
    assert assert_agrees(report, accepted, plan) != "clear" or accepted
    assert verdict(report) != "clear", report.summary()


def test_a_foreign_key_of_a_new_table_guards_a_delete_of_the_old_table_it_references(db, run_sql, conninfo):
    """The target's catalog does not know the new table's foreign key; the rehearsal's does."""
    _load(run_sql, SETUP, old=[(1, 1, "a"), (2, 2, "b")])
    text = "CREATE TABLE nt (k int REFERENCES kind); INSERT INTO nt SELECT k FROM old; DELETE FROM kind WHERE id = 2"
    assert not postgres_accepts(conninfo, _statements(text))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked and "step 3" in report.blockers[0].message, report.summary()


def test_a_delete_that_cascades_is_read_as_the_cascade_leaves_the_referencing_rows(db, run_sql, conninfo):
    """Found by the test above: a DELETE whose foreign keys cascade changed the referencing table's rows, and a
    unique index after it was checked on the rows as they are now, a false block. The cascade is a DELETE of the
    referencing table now (tests/test_cascades.py); SET NULL is still a person's call, never read as now."""
    run_sql("DROP TABLE IF EXISTS ch, kind CASCADE; CREATE TABLE kind (id int PRIMARY KEY); "
            "INSERT INTO kind VALUES (1), (2); CREATE TABLE ch (k int REFERENCES kind ON DELETE CASCADE); "
            "INSERT INTO ch VALUES (2), (2), (1)")
    text = "DELETE FROM kind WHERE id = 2; CREATE UNIQUE INDEX ch_k ON ch (k)"
    assert postgres_accepts(conninfo, _statements(text))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert verdict(report) == "clear", report.summary()
    run_sql("ALTER TABLE ch DROP CONSTRAINT ch_k_fkey, ADD FOREIGN KEY (k) REFERENCES kind ON DELETE SET NULL")
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert verdict(report) == "unverified", report.summary()
    assert "ON DELETE SET NULL" in " ".join(r.message for r in report.results)


VIEW_SETUP = """
DROP TABLE IF EXISTS post, ban, t CASCADE;
DROP MATERIALIZED VIEW IF EXISTS pm;
CREATE TABLE post (id int PRIMARY KEY, creator int);
CREATE TABLE ban (id int, user_id int);
CREATE VIEW pv AS SELECT p.* FROM post p;
"""
# lemmy's way: a view made again, a materialized view filled from it, then a unique index for REFRESH CONCURRENTLY
REMADE = [
    "DROP VIEW pv; CREATE VIEW pv AS SELECT p.*, (SELECT b.id FROM ban b WHERE b.user_id = p.creator) AS banned "
    "FROM post p",
    "DROP VIEW pv; CREATE VIEW pv AS SELECT p.*, p.id / p.creator AS ratio FROM post p",
    "CREATE OR REPLACE VIEW pv AS SELECT p.*, p.creator % 2 AS parity FROM post p",
]
FILLED = [
    "CREATE MATERIALIZED VIEW pm AS SELECT * FROM pv",
    "CREATE TABLE pm AS SELECT v.id, v.creator FROM pv v JOIN post USING (id)",
]
INDEXED = ["CREATE UNIQUE INDEX pm_id ON pm (id)", "CREATE UNIQUE INDEX pm_creator ON pm (creator)"]


@settings(max_examples=examples(3), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(posts=st.lists(st.integers(0, 3), max_size=4), bans=st.lists(st.integers(0, 3), max_size=3),
       remade=st.sampled_from(REMADE), filled=st.sampled_from(FILLED), indexed=st.lists(st.sampled_from(INDEXED),
                                                                                          max_size=1))
def test_a_relation_filled_through_a_view_the_plan_remakes_agrees_with_postgresql_and_asks_nobody(
        db, run_sql, conninfo, posts, bans, remade, filled, indexed):
    _load(run_sql, VIEW_SETUP, post=[(c,) for c in posts], ban=[(u,) for u in bans])
    text = ";\n".join([remade, filled, *indexed])
    accepted = postgres_accepts(conninfo, _statements(text))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    found = assert_agrees(report, accepted, text, REFUSED)
    assert found != "unverified", (text, report.summary())


def test_a_view_over_a_table_the_plan_changed_is_not_read_as_it_is_now(db, run_sql, conninfo):
    """Read through the view, the query meets the table the UPDATE changed: a person's call, never the rows now."""
    run_sql(VIEW_SETUP + "INSERT INTO post VALUES (1, 1), (2, 2)")
    text = "UPDATE post SET creator = 1; CREATE TABLE t AS SELECT * FROM pv; CREATE UNIQUE INDEX t_c ON t (creator)"
    assert not postgres_accepts(conninfo, _statements(text))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert verdict(report) != "clear", report.summary()
