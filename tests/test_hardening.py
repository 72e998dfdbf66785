"""Preflight cannot be turned against the database: hostile input is parsed or refused, expressions that act
are never evaluated, hidden rows and missing privileges block, failures are classified, bounds hold, secrets
stay hidden, and an empty plan is never a clear. Every database test runs on a real server (both in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pglast
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import erd_preflight as ep
from erd_preflight import sqlparse
from erd_preflight.plan import PlanStep
from erd_preflight.sqlparse import walk_ast

HOSTILE = [
    "CHECK (true)); DROP TABLE victim; --",
    "x); DROP TABLE victim; --",
    "1; DROP TABLE victim",
    "'a''; DROP TABLE victim; --",
    "true\x00; DROP TABLE victim",
    "%(value)s",
]

# One valid example of every step kind: a new kind without one fails test_every_step_kind_has_a_hostile_field_audit.
SAMPLES: dict[str, dict[str, Any]] = {
    "create_table": {"table": "t", "columns": [{"name": "a", "type": "int", "default": "1",
                                                 "constraints": ["CHECK (a > 0)"]}],
                     "constraints": ["UNIQUE (a)"]},
    "add_column": {"table": "t", "column": "c", "type": "int", "default": "0"},
    "set_not_null": {"table": "t", "column": "c"},
    "drop_not_null": {"table": "t", "column": "c"},
    "alter_column_type": {"table": "t", "column": "c", "type": "bigint", "using": "c + 1"},
    "add_unique": {"table": "t", "columns": ["c"], "name": "u"},
    "add_unique_using_index": {"table": "t", "index": "i", "name": "u"},
    "create_index": {"table": "t", "columns": ["c"], "name": "i", "where": "c > 0", "method": "btree"},
    "add_foreign_key": {"table": "t", "columns": ["c"], "ref_table": "p", "ref_columns": ["id"], "name": "f"},
    "add_check": {"table": "t", "expression": "c > 0", "name": "k"},
    "add_exclude": {"table": "t", "elements": [{"column": "c", "operator": "&&"}], "name": "x", "where": "c > 0"},
    "validate_constraint": {"table": "t", "name": "k"},
    "drop_column": {"table": "t", "column": "c"},
    "drop_table": {"table": "t"},
    "drop_constraint": {"table": "t", "name": "k"},
    "drop_index": {"name": "i"},
    "raw": {"statement": "UPDATE t SET c = 1"},
}


def _step_classes() -> dict[str, type]:
    union = typing.get_args(typing.get_args(PlanStep)[0])
    return {cls.model_fields["kind"].default: cls for cls in union}


def _string_fields(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every string a user could put in a step's JSON."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _string_fields(v, path + (k,))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _string_fields(v, path + (i,))]
    return []


def _with(value: Any, path: tuple[Any, ...], new: str) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _with(copy[path[0]], path[1:], new)
    return copy


def test_every_step_kind_has_a_hostile_field_audit():
    assert set(SAMPLES) == set(_step_classes()), "add a sample of the new step kind to SAMPLES"


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_free_text_field_of_every_step_is_one_node_or_a_plan_error(kind):
    """Each string field of each step, given each hostile text: either a PlanError naming the field, or a
    step whose SQL PostgreSQL's parser reads as exactly one statement with no DROP TABLE victim in it."""
    cls = _step_classes()[kind]
    sample = {"kind": kind, **SAMPLES[kind]}
    expected = type(pglast.parse_sql(cls(**SAMPLES[kind]).sql())[0].stmt)  # the sample itself is valid
    for path in _string_fields(sample):
        if path == ("kind",):
            continue
        for text in HOSTILE:
            try:
                step = cls(**{k: v for k, v in _with(sample, path, text).items() if k != "kind"})
            except ep.PlanError as exc:
                assert str(path[0]).rstrip("_") in str(exc), f"the error must name the field: {exc}"
                continue
            statements = pglast.parse_sql(step.sql())
            assert len(statements) == 1, f"{kind}.{path}: {step.sql()!r}"
            assert isinstance(statements[0].stmt, expected) or kind == "raw", step.sql()
            drops = [n for n in walk_ast(statements[0].stmt) if isinstance(n, pglast.ast.DropStmt)]
            assert len(drops) <= (1 if expected is pglast.ast.DropStmt else 0), step.sql()


def test_the_reproduced_injections_are_refused_with_the_field_named(db, run_sql):
    run_sql("CREATE TABLE victim (a int)")
    with pytest.raises(ep.PlanError, match=r"CreateTable\.constraints"):
        ep.CreateTable(table="t", columns=[ep.ColumnDefinition(name="a", type="int")],
                       constraints=["CHECK (true)); DROP TABLE victim; --"])
    with pytest.raises(ep.PlanError, match=r"ColumnDefinition\.constraints"):
        ep.ColumnDefinition(name="a", type="int", constraints=["CHECK (true)); DROP TABLE victim; --"])
    with pytest.raises(ep.PlanError, match=r"RawSQL\.statement.*exactly one statement"):
        ep.RawSQL(statement="SELECT 1; DROP TABLE victim")
    with pytest.raises(ep.PlanError, match=r"steps\[0\]"):
        ep.MigrationPlan(steps=[{"kind": "add_check", "table": "t", "expression": "true) ; DROP TABLE victim; --"}])
    assert run_sql("SELECT to_regclass('victim') IS NOT NULL") == [(True,)]


def test_a_backslash_literal_cannot_end_early_even_where_the_server_has_standard_strings_off(db, run_sql, store):
    # With standard_conforming_strings off, 'a\'' ends after a\' and the rest would run as SQL; apply turns it on.
    run_sql("CREATE TABLE victim (a int); CREATE TABLE t (id int, c text)")
    run_sql(sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} SET standard_conforming_strings = off").format(
        sql.Identifier(run_sql("SELECT current_database()")[0][0])))
    try:
        plan = ep.MigrationPlan.from_sql(r"ALTER TABLE t ADD COLUMN d text DEFAULT 'a\''; DROP TABLE victim; --';")
        assert len(plan.steps) == 1
        run = ep.MigrationRun.start(plan, db, store_schema=store)  # a store of its own, dropped afterwards
        run.preflight()
        run.apply()
        assert run_sql("SELECT to_regclass('victim') IS NOT NULL") == [(True,)]
        default = run_sql("SELECT column_default FROM information_schema.columns WHERE table_name = 't' "
                          "AND column_name = 'd' AND table_schema = current_schema()")[0][0]
        assert "DROP TABLE victim" in default  # all of it stayed inside the literal
    finally:
        run_sql(sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} RESET standard_conforming_strings").format(
            sql.Identifier(run_sql("SELECT current_database()")[0][0])))


# --- remediation --------------------------------------------------------------------------------------


def test_remediation_sql_is_built_from_sql_objects_so_a_column_named_like_a_placeholder_is_inert(db, run_sql, store):
    run_sql('CREATE TABLE victim (a int); CREATE TABLE t (id int, "%(value)s" text, "$1" text); '
            "INSERT INTO t VALUES (1, NULL, NULL), (2, 'x', NULL)")
    plan = ep.MigrationPlan(steps=[ep.SetNotNull(table="t", column="%(value)s")])
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    assert run.preflight().blocked
    backfill = next(r for r in run.remediations() if r.kind == "backfill")
    assert "$1" in backfill.sql and "%(value)s\" = $1" in backfill.sql
    hostile = "x'; DROP TABLE victim; --"
    assert run.remediate(backfill, value=hostile) == 1
    assert run_sql('SELECT "%(value)s" FROM t WHERE id = 1') == [(hostile,)]
    run_sql('UPDATE t SET "%(value)s" = NULL WHERE id = 1')
    run.preflight()
    backfill = next(r for r in run.remediations() if r.kind == "backfill")
    assert run.remediate(backfill, expression="'a\" ; DROP TABLE victim; --'") == 1
    assert run_sql('SELECT "%(value)s" FROM t WHERE id = 1') == [('a" ; DROP TABLE victim; --',)]
    with pytest.raises(ep.PlanError):
        run.remediate(backfill, expression="1); DROP TABLE victim; --")
    assert run_sql("SELECT to_regclass('victim') IS NOT NULL") == [(True,)]
    stored = run.refresh().applied_sql
    assert stored[0].params == {"$1": hostile}  # type: ignore[attr-defined]


def test_a_remediation_whose_text_was_changed_is_refused_not_run(db, run_sql, store):
    run_sql("CREATE TABLE victim (a int); CREATE TABLE t (id int, e text); INSERT INTO t VALUES (1, 'a'), (2, 'a')")
    run = ep.MigrationRun.start(ep.MigrationPlan(steps=[ep.AddUnique(table="t", columns=("e",))]), db,
                                store_schema=store)
    run.preflight()
    dedupe = next(r for r in run.remediations() if r.kind == "dedupe")
    forged = dedupe.model_copy(update={"sql": "DROP TABLE victim"})
    with pytest.raises(ValueError, match="not one of this run's current remediations"):
        run.remediate(forged)
    assert run_sql("SELECT to_regclass('victim') IS NOT NULL") == [(True,)]
    assert run.remediate(dedupe) == 1


# --- NUL, encodings, size ------------------------------------------------------------------------------


def test_a_nul_byte_is_refused_with_its_line_and_column_everywhere(tmp_path, url, run_sql):
    text = "ALTER TABLE t ALTER COLUMN a SET NOT NULL;\n  \x00 DROP TABLE victim;"
    with pytest.raises(ep.PlanError, match=r"NUL byte.*line 2, column 3"):
        ep.MigrationPlan.from_sql(text)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "V1__a.sql").write_text(text)
    with pytest.raises(ep.PlanError, match=r"V1__a.sql contains a NUL byte.*line 2, column 3"):
        ep.MigrationPlan.from_dir(folder)
    run_sql("CREATE TABLE t (a int); CREATE TABLE victim (a int)")
    result = _cli("check", str(folder / "V1__a.sql"), "--db", url)
    assert result.returncode == 2 and "NUL byte" in result.stderr and "line 2" in result.stderr
    assert run_sql("SELECT to_regclass('victim') IS NOT NULL") == [(True,)]


def test_invalid_utf8_is_refused_naming_the_file_and_position(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "V1__a.sql").write_bytes(b"ALTER TABLE t\n ADD COLUMN \xff int;")
    with pytest.raises(ep.PlanError, match=r"V1__a.sql is not UTF-8 text: byte 0xff at line 2, column 13"):
        ep.MigrationPlan.from_dir(folder)
    result = _cli("check", str(folder / "V1__a.sql"), "--db", "postgresql://nobody@127.0.0.1:1/x")
    assert result.returncode == 2 and "not UTF-8" in result.stderr


def test_a_50_mb_file_parses(tmp_path):
    comment = "-- " + "é" * 1000 + "\n"
    text = comment * (50 * 1024 * 1024 // len(comment.encode()) + 1) + "ALTER TABLE t ALTER COLUMN a SET NOT NULL;"
    assert len(text.encode()) > 50 * 1024 * 1024
    plan = ep.MigrationPlan.from_sql(text)
    assert len(plan.steps) == 1 and plan.steps[0].kind == "set_not_null"


def test_from_sql_parses_each_statement_on_its_own_so_its_cost_is_linear(monkeypatch):
    # pglast converts offsets once per statement over the text before it (quadratic on non-ASCII text):
    # from_sql never hands PostgreSQL's parser more than one statement of a file at a time.
    seen: list[int] = []
    real = pglast.parse_sql
    monkeypatch.setattr(sqlparse.pglast, "parse_sql", lambda text: seen.append(len(text)) or real(text))
    statements = [f"UPDATE t SET c = 'é{i}' WHERE id = {i}" for i in range(2000)]
    plan = ep.MigrationPlan.from_sql(";\n".join(statements) + ";")
    assert len(plan.steps) == 2000
    assert max(seen) < 100, "a parse call saw more than one statement"


# --- expressions that act ----------------------------------------------------------------------------


def test_a_volatile_function_in_a_check_is_never_evaluated_and_is_named(db, run_sql, store):
    run_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2)")
    plan = ep.MigrationPlan(steps=[ep.AddCheck(table="t", expression="pg_advisory_lock(1162021968, 1) IS NOT NULL")])
    report = ep.run_preflight(plan, db)
    # not run, so not verified: named, and a person must acknowledge the step before Apply
    assert not report.blocked and "pg_advisory_lock()" in report.results[0].message
    assert report.results[0].severity == "warning" and report.results[0].stats["acknowledgeStep"] == 1
    assert run_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
    # The apply lock (the same keys) is free: another plan applies, from this process and from another one.
    other = ep.MigrationPlan(steps=[ep.AddColumn(table="t", column="b", type="int")])
    run = ep.MigrationRun.start(other, db, store_schema=store)
    run.preflight()
    assert run.apply().status == "applied"


@pytest.mark.parametrize("where", ["check", "using", "default", "index_where", "update"])
def test_volatile_calls_anywhere_preflight_evaluates_are_not_run_and_need_an_acknowledgement(db, run_sql, where):
    run_sql("CREATE TABLE t (id int, a int); INSERT INTO t VALUES (1, 1); "
            "CREATE FUNCTION act() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1'")
    steps = {
        "check": [ep.AddCheck(table="t", expression="act() > 0")],
        "using": [ep.AlterColumnType(table="t", column="a", type="bigint", using="a + act()")],
        "default": [ep.AddColumn(table="t", column="b", type="int", default="act()", not_null=True)],
        "index_where": [ep.CreateIndex(table="t", columns=("a",), unique=True, where="a > act()")],
        "update": [ep.RawSQL(statement="UPDATE t SET a = act()"), ep.SetNotNull(table="t", column="a")],
    }[where]
    report = ep.run_preflight(ep.MigrationPlan(steps=steps), db)
    named = report.results[-1]
    assert not report.blocked and "act()" in named.message and named.severity == "warning", report.results
    assert named.stats["acknowledgeStep"] == len(steps)


def test_harmless_volatile_and_stable_functions_still_run(db, run_sql):
    run_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
    plan = ep.MigrationPlan(steps=[
        ep.AddColumn(table="t", column="u", type="uuid", default="gen_random_uuid()", not_null=True),
        ep.AddCheck(table="t", expression="a < 10 + random() AND now() > '2000-01-01'"),
    ])
    assert ep.run_preflight(plan, db).status == "clear"


def test_a_preflight_session_is_reset_so_no_session_state_outlives_it(server_url, schema, run_sql, url, tmp_path):
    # A function that lies about its volatility (STABLE) still runs; whatever it leaves in the session (here:
    # the apply lock's own keys, and a setting) is reset when the preflight ends, on a connection preflight
    # never returns to the pool. So an apply from another process is not fooled into ConcurrentApply.
    run_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1); CREATE FUNCTION sticky() RETURNS boolean "
            "LANGUAGE plpgsql STABLE AS $$ BEGIN PERFORM pg_advisory_lock(1162021968, 1); "
            "PERFORM set_config('erd.leak', 'yes', false); RETURN true; END $$")
    db = ep.connect(server_url, connect_args={"options": f"-c search_path={schema}"}, pool_size=1, max_overflow=0)
    try:
        assert ep.run_preflight(ep.MigrationPlan(steps=[ep.AddCheck(table="t", expression="sticky()")]), db).status \
            == "clear"
        assert run_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
        with db.connection() as conn:
            assert conn.execute("SELECT current_setting('erd.leak', true)").fetchone()[0] in (None, "")
        with db.session() as conn:  # the preflight's own session, kept warm for the next preflight: reset
            assert conn.execute("SELECT current_setting('erd.leak', true)").fetchone()[0] in (None, "")
        plan = tmp_path / "p.sql"
        plan.write_text("ALTER TABLE t ADD COLUMN b int;")
        store = f"s_{schema}"
        result = _cli("apply", str(plan), "--db", url, "--store-schema", store)
        run_sql(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(store)))
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        db.close()


# --- row security and privileges ---------------------------------------------------------------------


def _role_db(server_url: str, schema: str, run_sql: Callable[..., Any], role: str, grants: str) -> ep.Database:
    run_sql(sql.SQL("CREATE ROLE {r} LOGIN; GRANT USAGE ON SCHEMA {s} TO {r}; " + grants).format(
        r=sql.Identifier(role), s=sql.Identifier(schema)))
    url = make_url(server_url).set(username=role).render_as_string(hide_password=False)
    return ep.connect(url, connect_args={"options": f"-c search_path={schema}"})


def test_row_level_security_that_hides_rows_blocks_and_says_what_lifts_it(server_url, schema, run_sql, conninfo):
    run_sql("CREATE TABLE t (id int, e text); INSERT INTO t VALUES (1, 'a'), (2, NULL), (3, 'a'); "
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY")
    role = f"rls_{schema}"
    run_sql(sql.SQL("CREATE POLICY only_one ON t FOR SELECT USING (id = 1)"))
    db = _role_db(server_url, schema, run_sql, role, "GRANT SELECT ON t TO {r}")
    try:
        for step in (ep.SetNotNull(table="t", column="e"), ep.AddUnique(table="t", columns=("e",))):
            report = ep.run_preflight(ep.MigrationPlan(steps=[step]), db)
            # (other schemas of the database, which this role may not read, are named in a warning of their own)
            message = report.blockers[0].message
            assert report.blocked and "row-level security" in message and "BYPASSRLS" in message, message
        # PostgreSQL (the oracle, rolled back) refuses the step: a clear seen through the policy would be false.
        with psycopg.connect(conninfo) as owner_conn:
            with pytest.raises(psycopg.errors.NotNullViolation):
                owner_conn.execute("ALTER TABLE t ALTER COLUMN e SET NOT NULL")
            owner_conn.rollback()
        # The owner (no FORCE) sees every row: the same checks find the NULL and the duplicate.
        owner = ep.connect(server_url, connect_args={"options": f"-c search_path={schema}"})
        report = ep.run_preflight(ep.MigrationPlan(steps=[ep.SetNotNull(table="t", column="e")]), owner)
        assert report.blockers[0].stats["violations"] == 1, report.summary()
        owner.engine.dispose()
    finally:
        db.engine.dispose()
        run_sql(sql.SQL("DROP OWNED BY {r}; DROP ROLE {r}").format(r=sql.Identifier(role)))


def test_a_missing_select_privilege_blocks_with_the_grant(server_url, schema, run_sql):
    run_sql("CREATE TABLE t (id int, e text); INSERT INTO t VALUES (1, NULL)")
    role = f"nopriv_{schema}"
    db = _role_db(server_url, schema, run_sql, role, "GRANT SELECT (id) ON t TO {r}")
    try:
        report = ep.run_preflight(ep.MigrationPlan(steps=[ep.SetNotNull(table="t", column="e")]), db)
        message = report.results[0].message
        assert report.blocked and "GRANT SELECT ON" in message and role in message, message
    finally:
        db.engine.dispose()
        run_sql(sql.SQL("DROP OWNED BY {r}; DROP ROLE {r}").format(r=sql.Identifier(role)))


# --- failures that are not about data --------------------------------------------------------------------


def test_a_backend_terminated_mid_preflight_is_connection_failed_not_a_finding(db, run_sql):
    run_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
    plan = ep.MigrationPlan(steps=[ep.AddCheck(table="t", expression="pg_sleep(30) IS NOT NULL")])

    def terminate() -> None:
        for _ in range(200):
            # the check's backend: on the target database (the rehearsal runs the same text on its shadow)
            rows = run_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
                           "AND pid <> pg_backend_pid() AND state = 'active' AND datname = current_database() "
                           "AND query LIKE 'SELECT%'")
            if rows:
                return
            time.sleep(0.05)

    killer = threading.Thread(target=terminate)
    killer.start()
    with pytest.raises(ep.ConnectionFailed, match="connection to PostgreSQL was lost while running"):
        ep.run_preflight(plan, db)
    killer.join()


def test_a_catalog_read_that_waits_too_long_is_a_clear_timeout_error(db, conninfo, run_sql):
    run_sql("CREATE TABLE t (a int)")
    with psycopg.connect(conninfo) as holder:
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(ep.CheckTimeout, match="reading the catalog took longer than check_timeout 0.3 s"):
            ep.run_preflight(ep.MigrationPlan(steps=[ep.SetNotNull(table="t", column="a")]), db, check_timeout=0.3)
        holder.rollback()


# --- bounds --------------------------------------------------------------------------------------------


def test_timeouts_below_a_millisecond_or_infinite_are_refused():
    for bad in (0, 0.0004, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            ep.ApplyOptions(lock_timeout=bad)
    with pytest.raises(ValueError, match="no limit"):
        ep.ApplyOptions(statement_timeout=0.0002)
    assert ep.ApplyOptions(lock_timeout=0.001, statement_timeout=0).statement_timeout == 0


def test_cli_bounds_are_usage_errors_before_anything_changes(tmp_path):
    plan = tmp_path / "p.sql"
    plan.write_text("ALTER TABLE t ADD COLUMN b int;")
    for args in (("apply", str(plan), "--lock-timeout", "inf"), ("apply", str(plan), "--lock-timeout", "0"),
                 ("runs", "--limit", "-1")):
        result = _cli(*args, "--db", "postgresql://nobody@127.0.0.1:1/x")
        assert result.returncode == 2 and "must be" in result.stderr, (args, result.stderr)
        assert "cannot connect" not in result.stderr  # refused before any connection


def test_a_thousand_steps_on_one_table_preflight_without_recursion_error(db, run_sql):
    run_sql("CREATE TABLE deep (id int, v int); INSERT INTO deep SELECT g, g FROM generate_series(1, 50) g")
    steps: list[Any] = []
    live: list[str] = []
    for i in range(1000):
        if i % 100 == 50:
            steps.append(ep.AlterColumnType(table="deep", column="v", type="bigint" if i % 200 else "integer",
                                            using="v + 1"))
        elif i % 3 == 0 and live:
            steps.append(ep.SetNotNull(table="deep", column=live[-1]))
        elif i % 7 == 0 and len(live) > 2:
            steps.append(ep.DropColumn(table="deep", column=live.pop(0)))
        else:
            live.append(f"c{i}")
            steps.append(ep.AddColumn(table="deep", column=f"c{i}", type="int", default=str(i)))
    plan = ep.MigrationPlan(steps=steps)
    # The derived relations of the checks are what nests per step; the rehearsal (a flat list) is left out.
    report = ep.run_preflight(plan, db, rehearse=False)
    assert len(plan.steps) == 1000 and report.status == "clear", report.blockers


# --- secrets -----------------------------------------------------------------------------------------


def test_a_password_never_appears_in_a_repr_an_error_or_the_cli(tmp_path):
    url = "postgresql://someone:Pw-s3cret@127.0.0.1:1/db?password=Qs-s3cret&sslpassword=Ks-s3cret"
    db = ep.connect(url)
    shown = [repr(db), db.url]
    with pytest.raises(ep.ConnectionFailed) as caught:
        db.server_version()
    shown.append(str(caught.value))
    plan = tmp_path / "p.sql"
    plan.write_text("ALTER TABLE t ADD COLUMN b int;")
    for args in (("check", str(plan)), ("runs",), ("apply", str(plan))):
        result = _cli(*args, "--db", url)
        assert result.returncode == 2
        shown += [result.stdout, result.stderr]
    with pytest.raises(ep.ConnectionFailed) as bad:
        ep.connect("mysql+nope://u:Pw-s3cret@@host/db?password=Qs-s3cret")
    shown.append(str(bad.value))
    for text in shown:
        assert "s3cret" not in text, text


# --- listing runs never writes ----------------------------------------------------------------------


def test_listing_runs_on_a_database_without_a_store_says_so_and_creates_nothing(server_url, schema, run_sql, store):
    role = f"lister_{schema}"
    db = _role_db(server_url, schema, run_sql, role, "SELECT 1")
    try:
        frame = ep.runs(db, store_schema=store)
        assert frame.empty and "no record yet" in frame.attrs["note"]
        result = _cli("runs", "--store-schema", store, "--db",
                      make_url(server_url).set(username=role).render_as_string(hide_password=False))
        assert result.returncode == 0 and "no record yet" in result.stdout, result.stderr
        assert run_sql("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (store,)) == [(0,)]
    finally:
        db.engine.dispose()
        run_sql(sql.SQL("DROP OWNED BY {r}; DROP ROLE {r}").format(r=sql.Identifier(role)))


# --- an empty plan is not a clear ----------------------------------------------------------------------


def test_a_folder_in_an_unknown_layout_is_an_error_not_a_clear(tmp_path, url):
    # a layout no reader knows (each change a folder holding change.sql): refused, never an empty clear
    unknown = tmp_path / "changes"
    (unknown / "20240101_init").mkdir(parents=True)
    (unknown / "20240101_init" / "change.sql").write_text("CREATE TABLE a (id int);")
    with pytest.raises(ep.PlanError, match="holds no migration this reader knows"):
        ep.MigrationPlan.from_dir(unknown)
    result = _cli("check", str(unknown), "--db", url)
    assert result.returncode == 2 and "no migration this reader knows" in result.stderr
    empty = tmp_path / "empty.sql"
    empty.write_text("-- nothing here\n")
    assert _cli("check", str(empty), "--db", url).returncode == 2
    with pytest.raises(ep.PlanError, match="no steps"):
        ep.run_preflight(ep.MigrationPlan(steps=()), ep.connect(url))


def test_a_folder_whose_history_lists_every_file_is_nothing_pending(tmp_path, url, run_sql):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_a.up.sql").write_text("CREATE TABLE a (id int);")
    run_sql("CREATE TABLE schema_migrations (version bigint, dirty boolean); INSERT INTO schema_migrations "
            "VALUES (1, false)")
    plan = ep.MigrationPlan.from_dir(folder, db=url)
    assert plan.nothing_pending and not plan.steps
    assert ep.run_preflight(plan, ep.connect(url)).status == "clear"
    result = _cli("check", str(folder), "--db", url)
    assert result.returncode == 0 and "nothing pending" in result.stdout, result.stdout + result.stderr


@pytest.fixture
def url(server_url: str, schema: str) -> str:
    """A URL (what the CLI takes) whose search_path is the test schema."""
    from urllib.parse import quote

    return f"{server_url}{'&' if '?' in server_url else '?'}options={quote(f'-c search_path={schema}')}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).parent / "erd-preflight"
    environment = {k: v for k, v in os.environ.items() if k not in ("ERD_PREFLIGHT_URL", "DATABASE_URL")}
    return subprocess.run([str(command), *args], capture_output=True, text=True, timeout=180, env=environment)


def test_a_hostile_store_schema_and_confirmation_name_are_only_ever_names(db, run_sql, url):
    run_sql("CREATE TABLE victim (a int); CREATE TABLE t (a int)")
    store = 'runs"; DROP TABLE victim; --'
    try:
        run = ep.MigrationRun.start(ep.MigrationPlan.from_sql("ALTER TABLE t ADD COLUMN b int"), db,
                                    store_schema=store)
        run.preflight()
        with pytest.raises(ValueError, match="does not name a table that needs a confirmation"):
            run.confirm_large_non_concurrent("t'; DROP TABLE victim; --")
        assert run.apply().status == "applied"
        assert len(ep.runs(db, store_schema=store)) == 1
        result = _cli("runs", "--store-schema", store, "--db", url)
        assert result.returncode == 0 and "applied" in result.stdout, result.stderr
        assert run_sql("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (store,)) == [(1,)]
        assert run_sql("SELECT to_regclass('victim') IS NOT NULL") == [(True,)]
    finally:
        run_sql(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(store)))


def test_hostile_cli_arguments_are_paths_and_names_never_sql(tmp_path, url, run_sql):
    run_sql("CREATE TABLE victim (a int); CREATE TABLE t (a int)")
    odd = tmp_path / "x'; DROP TABLE victim; --.sql"
    odd.write_text("ALTER TABLE t ADD COLUMN b int;")
    result = _cli("check", str(odd), "--db", url)
    assert result.returncode == 0, result.stderr
    result = _cli("apply", str(odd), "--confirm-large", "victim; DROP TABLE victim", "--db", url,
                  "--store-schema", f"s_{os.getpid()}")
    assert result.returncode == 2 and "does not name a table that needs a confirmation" in result.stderr
    assert run_sql("SELECT to_regclass('victim') IS NOT NULL") == [(True,)]
    run_sql(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(f"s_{os.getpid()}")))


def test_a_function_of_yours_named_like_a_harmless_one_is_judged_as_what_it_is(db, run_sql, schema):
    run_sql(f'CREATE FUNCTION "{schema}".random() RETURNS double precision LANGUAGE sql VOLATILE AS '
            "'SELECT 0.5::float8'; CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
    plan = ep.MigrationPlan(steps=[ep.AddCheck(table="t", expression=f'"{schema}".random() < 1')])
    report = ep.run_preflight(plan, db)
    assert not report.blocked and "random()" in report.results[0].message
    assert report.results[0].stats["acknowledgeStep"] == 1
    assert ep.run_preflight(ep.MigrationPlan(steps=[ep.AddCheck(table="t", expression="pg_catalog.random() < 1")]),
                            db).status == "clear"


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_step_kind_has_a_lock_and_a_phase_of_its_own(kind):
    """No silent fallback: the lock a step takes (and its CONCURRENTLY or NOT VALID form) is written down for
    every step kind, and its phase is one of apply's."""
    from erd_preflight.checks import lock_of
    from erd_preflight.plan.phases import phase_of

    step = _step_classes()[kind](**SAMPLES[kind])
    variants = [step]
    for flag in ("concurrently", "not_valid"):
        if flag in type(step).model_fields:
            variants.append(step.model_copy(update={flag: True}))
    for variant in variants:
        lock, work = lock_of(variant)
        assert lock and work, variant
        assert phase_of(variant) in ("A", "B", "C")


def test_every_step_kind_is_registered_for_its_data_checks():
    """One registry of each step kind's data checks: a kind added to the step union and not registered (even as
    None, 'reads no rows') fails here, not silently in a preflight that checks nothing."""
    from erd_preflight.checks import DATA_CHECKS

    assert set(DATA_CHECKS) == set(_step_classes())
