"""CREATE EXTENSION is judged by the target's own catalog, in both modes: the rehearsal runs it on the shadow's
server, whose extensions are its own, and without a rehearsal nothing else looks. PostgreSQL is the oracle."""

from __future__ import annotations

import psycopg
import pytest

import erd_preflight as ep
from erd_preflight.db import embedded_url
from erd_preflight.sqlparse import split_statements

from oracle import assert_agrees, postgres_accepts

CASES = [
    # (name, plan, what PostgreSQL says when the database has none of these extensions; None: no expectation)
    ("not_on_the_server", "CREATE EXTENSION erd_preflight_no_such_extension", "blocked"),
    ("not_on_the_server_if_not_exists", "CREATE EXTENSION IF NOT EXISTS erd_preflight_no_such_extension", "blocked"),
    ("version_it_has_not", "CREATE EXTENSION pg_trgm VERSION '9.9'", "blocked"),
    ("version_reached_by_an_update_script", "CREATE EXTENSION pg_trgm VERSION '1.4'", None),
    ("already_created", "CREATE EXTENSION plpgsql", "blocked"),
    ("already_created_if_not_exists", "CREATE EXTENSION IF NOT EXISTS plpgsql", None),
    ("requires_one_not_created", "CREATE EXTENSION earthdistance", "blocked"),
    ("requires_one_cascade", "CREATE EXTENSION earthdistance CASCADE", None),
    ("requires_one_created_before", "CREATE EXTENSION cube; CREATE EXTENSION earthdistance", None),
    ("created_twice", "CREATE EXTENSION cube; CREATE EXTENSION cube", "blocked"),
    ("dropped_then_created", "DROP EXTENSION plpgsql; CREATE EXTENSION plpgsql", None),
    ("dropped_when_missing", "DROP EXTENSION erd_preflight_no_such_extension", "blocked"),
    ("dropped_when_missing_if_exists", "DROP EXTENSION IF EXISTS erd_preflight_no_such_extension", None),
]


def _installed(conninfo: str, names: list[str]) -> bool:
    with psycopg.connect(conninfo) as conn:
        return bool(conn.execute("SELECT count(*) FROM pg_extension WHERE extname = ANY(%s)", (names,)).fetchone()[0])


@pytest.mark.parametrize("rehearse", [True, False], ids=["rehearsal", "model"])
@pytest.mark.parametrize("name, plan, expected", CASES, ids=[c[0] for c in CASES])
def test_create_extension_agrees_with_postgresql(db, conninfo, name, plan, expected, rehearse):
    report = ep.run_preflight(ep.MigrationPlan.from_sql(plan), db, rehearse=rehearse)
    accepted = postgres_accepts(conninfo, [s.text for s in split_statements(plan)])
    found = assert_agrees(report, accepted, name, plan)
    if expected is not None and not _installed(conninfo, ["pg_trgm", "cube", "earthdistance"]):
        assert found == expected, (name, report.summary())
    if name == "created_twice":
        assert "an earlier step creates it" in report.blockers[0].message


@pytest.mark.parametrize("rehearse", [True, False], ids=["rehearsal", "model"])
def test_dropping_an_extension_a_function_depends_on_blocks_in_both_modes(db, conninfo, rehearse):
    """The false clear this closes (found on PostgreSQL 15, where other tests' plpgsql functions were in the
    database): without a rehearsal, DROP EXTENSION plpgsql was "catalog only" while a function in the database
    depends on the language, so PostgreSQL refuses it (2BP01)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION answer() RETURNS int LANGUAGE plpgsql AS 'BEGIN RETURN 42; END'")
    plan = "DROP EXTENSION plpgsql"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(plan), db, rehearse=rehearse)
    accepted = postgres_accepts(conninfo, [plan])
    assert not accepted
    assert assert_agrees(report, accepted, plan) == "blocked", report.summary()
    if not rehearse:
        assert "function answer()" in report.blockers[0].message and "2BP01" in report.blockers[0].message


def test_an_extension_the_shadow_has_and_the_target_lacks_blocks(db, conninfo):
    """The false clear this closes: the rehearsal runs CREATE EXTENSION on the shadow's server, which has the
    extension, while the target's server does not. Runs where the two servers' extensions differ that way (the
    embedded PostgreSQL 18 has pgvector; a Debian PostgreSQL 15 does not)."""
    with psycopg.connect(conninfo) as conn:
        there = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
    with psycopg.connect(embedded_url()) as conn:
        here = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
    missing = sorted(here - there)
    if not missing:
        pytest.skip("the target's server has every extension the shadow's server has")
    plan = f'CREATE EXTENSION "{missing[0]}"'
    accepted = postgres_accepts(conninfo, [plan])
    for rehearse in (True, False):
        report = ep.run_preflight(ep.MigrationPlan.from_sql(plan), db, rehearse=rehearse)
        assert assert_agrees(report, accepted, plan) == "blocked"
        assert "is not available on the target server" in report.results[0].message
