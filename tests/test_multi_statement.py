"""Migrations of several statements, where a later step acts on what an earlier one made: a renamed table, a
column added inside a DO block, an index dropped and built again, a table dropped and created again. Preflight
judges each step on the catalog PostgreSQL had when the rehearsal ran it, so its verdict must be the oracle's:
PostgreSQL applying the same statements to the same rows, in a transaction that is rolled back. Each case runs
on rows that break the later step and on rows that do not. Both servers in CI."""

from __future__ import annotations


import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import erd_preflight as ep

from test_rehearsal import oracle_fails
from oracle import examples

# name: (setup without rows, rows that make the migration fail, rows that let it pass, migration)
CASES: dict[str, tuple[str, str, str, str]] = {
    # the relation's query reads the UPDATE's rows as the plan leaves them (it used to be left for a person)
    "a relation made from a query over rows an earlier step changed, then SET NOT NULL": (
        "CREATE TABLE t (id int, a int); CREATE TABLE s (id int)",
        "INSERT INTO t VALUES (1, NULL); INSERT INTO s VALUES (1)",
        "INSERT INTO t VALUES (1, 1); INSERT INTO s VALUES (1)",
        "UPDATE t SET a = a + 0 WHERE id IN (SELECT id FROM s);\nCREATE TABLE t2 AS SELECT id, a FROM t;\n"
        "ALTER TABLE t2 ALTER COLUMN a SET NOT NULL;"),
    "a renamed table, then SET NOT NULL on its new name": (
        "CREATE TABLE person (id int, email text)",
        "INSERT INTO person VALUES (1, NULL), (2, 'b')",
        "INSERT INTO person VALUES (1, 'a'), (2, 'b')",
        "ALTER TABLE person RENAME TO people;\nALTER TABLE people ALTER COLUMN email SET NOT NULL;"),
    "a renamed column, then UNIQUE on its new name": (
        "CREATE TABLE t (id int, a text)",
        "INSERT INTO t VALUES (1, 'x'), (2, 'x')",
        "INSERT INTO t VALUES (1, 'x'), (2, 'y')",
        "ALTER TABLE t RENAME COLUMN a TO code;\nALTER TABLE t ADD CONSTRAINT t_code_key UNIQUE (code);"),
    "two columns swap names, then SET NOT NULL": (
        "CREATE TABLE t (a int, b int)",
        "INSERT INTO t VALUES (1, NULL)",
        "INSERT INTO t VALUES (NULL, 1)",
        "ALTER TABLE t RENAME COLUMN a TO tmp;\nALTER TABLE t RENAME COLUMN b TO a;\n"
        "ALTER TABLE t RENAME COLUMN tmp TO b;\nALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
    "a renamed parent, then a foreign key to it": (
        "CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int, pid int)",
        "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1), (2, 7)",
        "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1), (2, NULL)",
        "ALTER TABLE parent RENAME TO account;\n"
        "ALTER TABLE child ADD CONSTRAINT child_pid_fkey FOREIGN KEY (pid) REFERENCES account (id);"),
    "columns added in one ALTER of several commands, then SET NOT NULL": (
        "CREATE TABLE t (id int)",
        "INSERT INTO t VALUES (1)",
        "",
        "ALTER TABLE t ADD COLUMN x int, ADD COLUMN y int DEFAULT 5;\nALTER TABLE t ALTER COLUMN x SET NOT NULL;"),
    "a column with a DEFAULT added in one ALTER of several commands, then SET NOT NULL": (
        "CREATE TABLE t (id int)",
        "INSERT INTO t VALUES (1)",  # y = 5 on every row: never fails, whatever the rows
        "INSERT INTO t VALUES (1), (2)",
        "ALTER TABLE t ADD COLUMN x int, ADD COLUMN y int DEFAULT 5;\nALTER TABLE t ALTER COLUMN y SET NOT NULL;"),
    "a serial column added with another, then UNIQUE on it": (
        "CREATE TABLE t (id int)",
        "INSERT INTO t VALUES (1), (1)",
        "INSERT INTO t VALUES (1), (2)",
        "ALTER TABLE t ADD COLUMN n serial, ADD COLUMN note text;\nALTER TABLE t ADD CONSTRAINT t_n_key UNIQUE (n);"),
    "a column added inside a DO block, then SET NOT NULL": (
        "CREATE TABLE t (id int)",
        "INSERT INTO t VALUES (1)",
        "",
        "DO $$ BEGIN ALTER TABLE t ADD COLUMN c int; END $$;\nALTER TABLE t ALTER COLUMN c SET NOT NULL;"),
    "an index dropped inside a DO block, then built again under its name": (
        "CREATE TABLE t (id int, a int); CREATE INDEX t_a_idx ON t (a)",
        "INSERT INTO t VALUES (1, 1), (2, 1)",
        "INSERT INTO t VALUES (1, 1), (2, 2)",
        "DO $$ BEGIN EXECUTE 'DROP INDEX t_a_idx'; END $$;\nCREATE UNIQUE INDEX t_a_idx ON t (a);"),
    "a table dropped and created again under its name, then SET NOT NULL": (
        "CREATE TABLE t (id int, a int)",
        "",  # the new table is empty: nothing can fail
        "INSERT INTO t VALUES (1, NULL)",
        "DROP TABLE t;\nCREATE TABLE t (id int, a int);\nALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
    "a view dropped, its column's type changed, the view made again": (
        "CREATE TABLE t (id int, a int); CREATE VIEW v AS SELECT a FROM t",
        "",
        "INSERT INTO t VALUES (1, 1)",
        "DROP VIEW v;\nALTER TABLE t ALTER COLUMN a TYPE bigint;\nCREATE VIEW v AS SELECT a FROM t;"),
    "a trigger function and its trigger, then SET NOT NULL": (
        "CREATE TABLE t (id int, a int)",
        "INSERT INTO t VALUES (1, NULL)",
        "INSERT INTO t VALUES (1, 1)",
        "CREATE FUNCTION t_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n"
        "CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION t_touch();\n"
        "ALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
    "a partitioned table with a partition, then SET NOT NULL on the parent": (
        "CREATE TABLE m (id int, region text, a int) PARTITION BY LIST (region); "
        "CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu')",
        "INSERT INTO m VALUES (1, 'eu', NULL)",
        "INSERT INTO m VALUES (1, 'eu', 1)",
        "CREATE TABLE m_us PARTITION OF m FOR VALUES IN ('us');\nALTER TABLE m ALTER COLUMN a SET NOT NULL;"),
    "a unique index on a materialized view the database has": (
        "CREATE TABLE t (id int, a int); CREATE MATERIALIZED VIEW mv AS SELECT a FROM t WITH NO DATA",
        "INSERT INTO t VALUES (1, 1), (2, 1); REFRESH MATERIALIZED VIEW mv",
        "INSERT INTO t VALUES (1, 1), (2, 2); REFRESH MATERIALIZED VIEW mv",
        "CREATE UNIQUE INDEX mv_a ON mv (a);"),
    "a row whose parent only the real rows have is inserted, then later steps": (
        "CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int, pid int REFERENCES parent)",
        "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (2, NULL)",
        "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (2, 1)",
        "INSERT INTO child VALUES (10, 1);\nALTER TABLE child RENAME COLUMN pid TO parent_id;\n"
        "ALTER TABLE child ALTER COLUMN parent_id SET NOT NULL;"),
    "a foreign key (apply's phase C) written before a SET NOT NULL (phase A) of the same table": (
        # apply runs the SET NOT NULL first: its check must not see the table as the later step leaves it
        "CREATE TABLE p (x int, y int, PRIMARY KEY (x, y)); CREATE TABLE c (a int, b int)",
        "INSERT INTO c VALUES (NULL, NULL)",
        "INSERT INTO p VALUES (1, 1); INSERT INTO c VALUES (1, 1)",
        "ALTER TABLE c ADD FOREIGN KEY (a, b) REFERENCES p (x, y);\nALTER TABLE c ALTER COLUMN a SET NOT NULL;"),
    "a materialized view with data, then a unique index on it": (
        "CREATE TABLE t (id int, a int)",
        "INSERT INTO t VALUES (1, 1), (2, 1)",
        "INSERT INTO t VALUES (1, 1), (2, 2)",
        "CREATE MATERIALIZED VIEW mv AS SELECT a FROM t;\nCREATE UNIQUE INDEX mv_a ON mv (a);"),
    "CREATE TABLE AS, then SET NOT NULL": (
        "CREATE TABLE t (id int, a int)",
        "INSERT INTO t VALUES (1, NULL)",
        "INSERT INTO t VALUES (1, 1)",
        "CREATE TABLE t2 AS SELECT id, a FROM t;\nALTER TABLE t2 ALTER COLUMN a SET NOT NULL;"),
    "an UPDATE ... FROM, then SET NOT NULL": (
        "CREATE TABLE t (id int, a int); CREATE TABLE s (id int, a int)",
        "INSERT INTO t VALUES (1, NULL); INSERT INTO s VALUES (2, 5)",
        "INSERT INTO t VALUES (1, NULL); INSERT INTO s VALUES (1, 5)",
        "UPDATE t SET a = s.a FROM s WHERE s.id = t.id;\nALTER TABLE t ALTER COLUMN a SET NOT NULL;"),
    "a materialized view made without data, then a unique index on it": (
        "CREATE TABLE t (id int, a int)",
        "",
        "INSERT INTO t VALUES (1, 1), (2, 1)",
        "CREATE MATERIALIZED VIEW mv AS SELECT a FROM t WITH NO DATA;\nCREATE UNIQUE INDEX mv_a ON mv (a);"),
}

# Rows made by a query of the plan exist only once the statement ran; a check that needs a type the plan creates
# cannot run on the database as it is. Preflight says it cannot verify the later step (a warning naming the step
# and why), never "clear" in silence, and never blocks.
UNVERIFIABLE: dict[str, tuple[str, str, str, str, str]] = {
    "a relation made from a query over rows an unsimulated step changed, then SET NOT NULL": (
        "CREATE TABLE t (id int, a int); CREATE TABLE s (id int)",
        "INSERT INTO t VALUES (1, NULL); INSERT INTO s VALUES (1)",
        "INSERT INTO t VALUES (1, 1); INSERT INTO s VALUES (1)",
        "UPDATE t SET a = a + 0 WHERE id IN (WITH RECURSIVE r(x) AS (SELECT id FROM s) SELECT x FROM r);\n"
        "CREATE TABLE t2 AS SELECT id, a FROM t;\nALTER TABLE t2 ALTER COLUMN a SET NOT NULL;", "from a query"),
    "a type made by the plan, then a column changed to it": (
        "CREATE TABLE t (id int, m text)",
        "INSERT INTO t VALUES (1, 'happy'), (2, 'grumpy')",
        "INSERT INTO t VALUES (1, 'happy')",
        "CREATE TYPE mood AS ENUM ('happy', 'sad');\nALTER TABLE t ALTER COLUMN m TYPE mood USING m::mood;",
        "what an earlier step of the plan makes"),
}


def _setup(run_sql, setup: str, rows: str) -> None:
    run_sql(setup)
    if rows:
        run_sql(rows)


@pytest.mark.parametrize("rows", ["failing rows", "passing rows"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_later_step_is_judged_on_what_the_earlier_ones_made_as_the_oracle_does(db, run_sql, conninfo, case,
                                                                                rows):
    setup, failing, passing, text = CASES[case]
    _setup(run_sql, setup, failing if rows == "failing rows" else passing)
    oracle = oracle_fails(conninfo, text)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked == (oracle is not None), (oracle, report.results)
    assert not any(r.check_id.startswith("REHEARSAL") for r in report.results), report.results
    if report.blocked:
        assert report.blockers[0].sample_rows or report.blockers[0].stats, report.blockers


@pytest.mark.parametrize("rows", ["failing rows", "passing rows"])
@pytest.mark.parametrize("case", sorted(UNVERIFIABLE))
def test_a_step_on_rows_a_query_of_the_plan_makes_is_named_as_unverified_never_cleared_in_silence(
        db, run_sql, conninfo, case, rows):
    setup, failing, passing, text, why = UNVERIFIABLE[case]
    _setup(run_sql, setup, failing if rows == "failing rows" else passing)
    oracle = oracle_fails(conninfo, text)
    assert (oracle is not None) == (rows == "failing rows"), "the case is wrong"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert not report.blocked, report.results
    assert any("cannot verify step" in r.message and why in r.message and r.severity == "warning"
               for r in report.results), report.results


def test_an_extension_the_target_has_and_the_shadow_lacks_is_no_verdict(db, run_sql, conninfo, server_url):
    """The embedded PostgreSQL has no pgcrypto. Where the target has it (PostgreSQL 15 here), the rehearsal skips
    its CREATE EXTENSION and stops, with a warning naming it, at the first statement that needs it; where the
    target lacks it too, the target's own catalog says so, in the step's check. Either way, the oracle's."""
    run_sql("CREATE TABLE t (id int)")
    text = ("CREATE EXTENSION IF NOT EXISTS pgcrypto;\n"
            "CREATE TABLE token (id int, secret bytea DEFAULT gen_random_bytes(8));")
    with psycopg.connect(server_url) as conn:
        has = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone()[0]
        installed = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'").fetchone()[0]
    if installed:
        pytest.skip("pgcrypto is installed in the test database already")
    oracle = oracle_fails(conninfo, text)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked == (oracle is not None), (oracle, report.results)
    if has:
        note = next(r for r in report.results if r.check_id == "REHEARSAL_UNAVAILABLE_WARNING")
        assert "pgcrypto" in note.message and "stopped" in note.message
    else:
        assert report.blockers[0].check_id == "OBJECT_PRECHECK"
        assert 'extension "pgcrypto" is not available on the target server' in report.blockers[0].message


def test_the_rehearsal_follows_a_rename_by_oid(db, run_sql, conninfo):
    """The catalog read after each step (after the last one only when it adds a column): the renamed table is
    the same relation, with its rows."""
    from erd_preflight.catalog import Catalog
    from erd_preflight.rehearse.rehearsal import rehearse

    run_sql("CREATE TABLE person (id int, email text)")
    with psycopg.connect(conninfo) as conn:
        rehearsal = rehearse(conn, [(1, "ALTER TABLE person RENAME TO people"),
                                    (2, "ALTER TABLE people RENAME COLUMN email TO mail"),
                                    (3, "ALTER TABLE people ADD COLUMN note text")])
        schema = Catalog(conn).table(None, "person").schema  # type: ignore[union-attr]
    first = rehearsal.start.resolve(schema, "person")
    last = rehearsal.after[2].resolve(schema, "people")
    assert first is not None and last is not None and first.oid == last.oid
    assert [c.name for c in last.columns] == ["id", "mail"]
    assert rehearsal.after[2].resolve(schema, "person") is None
    assert [c.name for c in rehearsal.after[3].resolve(schema, "people").columns] == ["id", "mail", "note"]


def test_with_an_extension_the_shadow_lacks_a_missing_table_is_still_postgresqls_verdict(db, run_sql, conninfo,
                                                                                       schema, server_url):
    """The shadow lacks pgcrypto, the target has it installed: only a missing object pgcrypto brings stops the
    rehearsal; a table that exists nowhere is PostgreSQL's refusal, as the oracle says."""
    with psycopg.connect(server_url) as conn:
        has = conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone()[0]
        installed = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'").fetchone()[0]
    if not has or installed:
        pytest.skip("needs a server with pgcrypto available and not installed (PostgreSQL 15 here)")
    run_sql(f'CREATE EXTENSION pgcrypto SCHEMA "{schema}"')
    run_sql("CREATE TABLE t (id int, b bytea)")
    needs = "ALTER TABLE t ALTER COLUMN b SET DEFAULT gen_random_bytes(4);\nCOMMENT ON TABLE t IS 'x';"
    missing = "COMMENT ON TABLE t IS 'x';\nCOMMENT ON TABLE no_such_table IS 'x';"
    assert oracle_fails(conninfo, needs) is None and oracle_fails(conninfo, missing) == "42P01"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(needs), db)
    assert not report.blocked
    assert "pgcrypto" in next(r for r in report.results if r.check_id == "REHEARSAL_UNAVAILABLE_WARNING").message
    report = ep.run_preflight(ep.MigrationPlan.from_sql(missing), db)
    assert report.blocked and report.blockers[0].check_id == "REHEARSAL_PRECHECK", report.results
    assert "no_such_table" in report.blockers[0].message


@pytest.mark.parametrize("within", ["digests", "rows this transaction wrote"])
def test_a_snapshot_read_again_after_each_statement_equals_a_whole_read(conninfo, run_sql, within):
    """The rehearsal reads the catalog again only where a relation changed (each statement in a subtransaction of
    its own, as the rehearsal runs it), found by its digest, or by the catalog rows the transaction wrote while it
    deleted none: after every kind of change, that equals reading it all."""
    from erd_preflight.rehearse.shadow_catalog import read_snapshot

    run_sql("CREATE TABLE t (id int PRIMARY KEY, a int, b text); CREATE TABLE u (id int)")
    statements = [
        "ALTER TABLE t RENAME COLUMN a TO tmp", "ALTER TABLE t RENAME COLUMN b TO a", "ALTER TABLE t RENAME COLUMN tmp TO b",
        "ALTER TABLE t ADD COLUMN c int DEFAULT 1", "ALTER TABLE t ALTER COLUMN c SET DEFAULT 2",
        "ALTER TABLE t ALTER COLUMN c DROP DEFAULT", "ALTER TABLE t ALTER COLUMN c TYPE bigint",
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL", "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
        "ALTER TABLE t ADD CONSTRAINT t_c CHECK (c > 0) NOT VALID", "ALTER TABLE t VALIDATE CONSTRAINT t_c",
        "ALTER TABLE t DROP CONSTRAINT t_c", "CREATE UNIQUE INDEX t_c_key ON t (c)", "DROP INDEX t_c_key",
        "CREATE UNIQUE INDEX t_c_key ON t (c)", "ALTER TABLE t DROP COLUMN c", "ALTER TABLE u RENAME TO v",
        "CREATE TABLE w (id int)", "DROP TABLE w", "ALTER TABLE v ADD CONSTRAINT v_t FOREIGN KEY (id) REFERENCES t",
        "ALTER TABLE t RENAME CONSTRAINT t_pkey TO t_key", "CREATE MATERIALIZED VIEW m AS SELECT id FROM t",
        "ALTER INDEX t_key RENAME TO t_id_key", "CREATE SCHEMA erd_s2", "CREATE TABLE erd_s2.x (id int)",
        "ALTER SCHEMA erd_s2 RENAME TO erd_s3", "ALTER TABLE t ALTER COLUMN a SET DEFAULT 'x'",
        "DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD COLUMN d int GENERATED ALWAYS AS IDENTITY'; END $$",
        "ALTER TABLE v DROP CONSTRAINT v_t", "ALTER TABLE t ALTER COLUMN a DROP DEFAULT",
        "ALTER TABLE erd_s3.x SET SCHEMA public", "DROP SCHEMA erd_s3",
    ]
    with psycopg.connect(conninfo) as conn:
        latest = read_snapshot(conn)
        for statement in statements:
            conn.execute("SAVEPOINT s")
            conn.execute(statement)
            conn.execute("RELEASE SAVEPOINT s")
            latest = read_snapshot(conn, latest, **({"deleted": latest.deleted} if within != "digests" else {}))
            assert latest.relations == read_snapshot(conn).relations, statement
        conn.rollback()


@pytest.mark.parametrize("rows", ["a NULL there now", "no NULL there now"])
def test_rows_an_insert_adds_keep_a_block_exact_and_turn_a_pass_into_cannot_verify(db, run_sql, conninfo, rows):
    """An INSERT preflight does not simulate (a query's rows ON CONFLICT DO NOTHING on a unique key: which of
    them are skipped depends on their order) only adds rows: a NULL among the rows there now still fails the later
    SET NOT NULL (a block, as the oracle says); with none there, the inserted rows decide, so the step is named as
    unverified. A plain INSERT ... SELECT is simulated: its rows are read, and both block."""
    run_sql("CREATE TABLE t (id int UNIQUE, a int); CREATE TABLE s (id int, a int); INSERT INTO s VALUES (1, NULL)")
    run_sql("INSERT INTO t VALUES (1, NULL)" if rows == "a NULL there now" else "INSERT INTO t VALUES (1, 1)")
    text = ("INSERT INTO t SELECT id + 10, a FROM s ON CONFLICT DO NOTHING;\n"
            "ALTER TABLE t ALTER COLUMN a SET NOT NULL;")
    assert oracle_fails(conninfo, text) == "23502"  # the inserted row has a NULL: it fails either way
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    if rows == "a NULL there now":
        assert report.blocked and report.blockers[0].check_id == "NOT_NULL_PRECHECK"
    else:
        assert not report.blocked
        warning = next(r for r in report.results if r.check_id == "NOT_NULL_PRECHECK")
        assert warning.severity == "warning" and "step 1 inserts rows" in warning.message
    simulated = text.replace(" ON CONFLICT DO NOTHING", "")
    report = ep.run_preflight(ep.MigrationPlan.from_sql(simulated), db)
    assert report.blocked and report.blockers[0].check_id == "NOT_NULL_PRECHECK"
    assert next(c for c in report.checks if c.outcome == "blocking").step == 2


# Steps that change the catalog under the later ones (renames, swaps, several commands in one ALTER, a DO block,
# a dropped column) mixed with steps that read rows. Hypothesis draws the plan and the rows.
CATALOG_STEPS = [
    "ALTER TABLE c RENAME COLUMN a TO z", "ALTER TABLE c RENAME COLUMN b TO a", "ALTER TABLE c RENAME COLUMN z TO b",
    "ALTER TABLE c RENAME TO c2", "ALTER TABLE c2 RENAME TO c",
    "ALTER TABLE c ADD COLUMN n int DEFAULT 1, ADD COLUMN m int",
    "DO $$ BEGIN ALTER TABLE c ADD COLUMN q int DEFAULT 0; END $$", "ALTER TABLE c DROP COLUMN IF EXISTS m",
    "ALTER TABLE c ALTER COLUMN a SET NOT NULL", "ALTER TABLE c ALTER COLUMN b SET NOT NULL",
    "ALTER TABLE c ALTER COLUMN n SET NOT NULL", "ALTER TABLE c ALTER COLUMN m SET NOT NULL",
    "ALTER TABLE c ALTER COLUMN q SET NOT NULL", "ALTER TABLE c ADD UNIQUE (a)", "ALTER TABLE c ADD UNIQUE (b)",
    "ALTER TABLE c ADD CHECK (a > b)", "UPDATE c SET a = 0 WHERE a IS NULL", "INSERT INTO c (a, b) VALUES (1, NULL)",
]
_cell = st.none() | st.integers(min_value=-2, max_value=2)


@settings(max_examples=examples(2), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_cell, _cell), max_size=8),
       steps=st.lists(st.sampled_from(CATALOG_STEPS), min_size=1, max_size=4))
def test_no_false_verdict_when_earlier_steps_change_the_catalog(db, run_sql, conninfo, rows, steps):
    """A block is PostgreSQL's refusal, a clear is PostgreSQL's acceptance; 'cannot verify' names what preflight
    does not know and may go either way, but never stands in for a verdict it could give."""
    run_sql("CREATE TABLE IF NOT EXISTS c (a int, b int)")  # the same table every time: the shadow stays cached
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE c")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO c VALUES (%s, %s)", rows)
    text = ";\n".join(steps) + ";"
    oracle = oracle_fails(conninfo, text)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    unverified = any("cannot verify" in r.message or r.check_id == "REHEARSAL_UNAVAILABLE_WARNING"
                     for r in report.results)
    if report.blocked:
        assert oracle is not None, ("false block", steps, rows, report.blockers[0].message)
    elif not unverified:
        assert oracle is None, ("false clear", steps, rows, oracle, [r.message for r in report.results])
