"""The shadow behaves like the target wherever no row of a table decides: a materialized view populated on the
target is populated in the shadow, a sequence stands where the target's does. PostgreSQL is the oracle: the same
statements on the target, in a transaction rolled back. Found by replaying lemmy's history (a REFRESH ...
CONCURRENTLY the rehearsal refused)."""

from __future__ import annotations

import psycopg
import pytest

import erd_preflight as ep
from erd_preflight.rehearse import rehearsal as rehearsing


def oracle_fails(conninfo: str, text: str) -> str | None:
    with psycopg.connect(conninfo) as conn:
        try:
            conn.execute(text)
        except psycopg.Error as exc:
            return exc.sqlstate
        finally:
            conn.rollback()
    return None


def test_refresh_concurrently_of_a_populated_view_is_not_refused_for_the_shadows_empty_restore(db, run_sql, conninfo):
    run_sql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2); "
            "CREATE MATERIALIZED VIEW mv AS SELECT id FROM t; CREATE UNIQUE INDEX mv_id ON mv (id)")
    text = "REFRESH MATERIALIZED VIEW CONCURRENTLY mv;"
    assert oracle_fails(conninfo, text) is None
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert not report.blocked, report.blockers


def test_refresh_concurrently_of_a_view_the_target_never_populated_blocks_as_postgresql_does(db, run_sql, conninfo):
    run_sql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); "
            "CREATE MATERIALIZED VIEW mv AS SELECT id FROM t WITH NO DATA; CREATE UNIQUE INDEX mv_id ON mv (id)")
    text = "REFRESH MATERIALIZED VIEW CONCURRENTLY mv;"
    assert oracle_fails(conninfo, text) == "0A000"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked and "populated" in report.blockers[0].message


def test_a_view_built_on_another_view_is_populated_too(db, run_sql, conninfo):
    run_sql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); "
            "CREATE MATERIALIZED VIEW a AS SELECT id FROM t; CREATE MATERIALIZED VIEW b AS SELECT id FROM a; "
            "CREATE UNIQUE INDEX b_id ON b (id)")
    text = "REFRESH MATERIALIZED VIEW CONCURRENTLY b;"
    assert oracle_fails(conninfo, text) is None
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert not report.blocked, report.blockers


@pytest.mark.parametrize(("position", "fails"), [(40000, True), (100, False)])
def test_a_sequence_narrowed_below_the_targets_position_blocks_as_postgresql_does(db, run_sql, conninfo, position,
                                                                                   fails):
    run_sql(f"CREATE SEQUENCE s; SELECT setval('s', {position})")
    text = "ALTER SEQUENCE s AS smallint;"
    refused = oracle_fails(conninfo, text)
    assert (refused is not None) == fails
    rehearsing._rehearsals.clear()
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked == fails, report.checks
    if fails:
        assert f"SQLSTATE {refused}" in report.blockers[0].message


def test_a_sequences_new_maximum_is_checked_against_where_the_target_stands_now(db, run_sql, conninfo):
    run_sql("CREATE SEQUENCE s; SELECT setval('s', 10)")
    text = "ALTER SEQUENCE s MAXVALUE 50;"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert not report.blocked
    run_sql("SELECT setval('s', 60)")  # the target moved on: the same plan now fails there, and in the rehearsal
    assert oracle_fails(conninfo, text) is not None
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked, report.checks
