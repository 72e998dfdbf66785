"""The rehearsal: PostgreSQL itself runs the plan on an empty copy of the schema (the shadow, in the embedded
server) and says which statement it refuses. PostgreSQL is the oracle: the same statements applied for real,
in a transaction rolled back, fail the same way. Both servers in CI (the shadow is always PostgreSQL 18)."""

from __future__ import annotations


import os

import psycopg
import pytest

import erd_preflight as ep
from erd_preflight.rehearse import rehearsal as rehearsing
from erd_preflight.rehearse.shadow import REHEARSAL_ROLE


def oracle_fails(conninfo: str, text: str) -> str | None:
    """PostgreSQL's own error for the plan's statements on the real tables (rolled back), or None."""
    with psycopg.connect(conninfo) as conn:
        try:
            for statement in ep.MigrationPlan.from_sql(text).steps:
                conn.execute(statement.sql().replace("CONCURRENTLY ", ""))
        except psycopg.Error as exc:
            return exc.sqlstate
        finally:
            conn.rollback()
    return None


STRUCTURAL = {
    "type change under a view": (
        "CREATE TABLE t (id int, a int); CREATE VIEW v AS SELECT a FROM t; INSERT INTO t VALUES (1, 1)",
        "ALTER TABLE t ALTER COLUMN a TYPE bigint;", 1),
    "unique on a partitioned table without its key": (
        "CREATE TABLE p (id int, region text) PARTITION BY LIST (region); "
        "CREATE TABLE p_eu PARTITION OF p FOR VALUES IN ('eu'); INSERT INTO p VALUES (1, 'eu')",
        "ALTER TABLE p ADD CONSTRAINT p_id_key UNIQUE (id);", 1),
    "subquery in a check": (
        "CREATE TABLE t (id int, a int); INSERT INTO t VALUES (1, 1)",
        "ALTER TABLE t ADD COLUMN b int;\nALTER TABLE t ADD CONSTRAINT t_a CHECK (a IN (SELECT 1));", 2),
    "the 1,601st column": (
        "CREATE TABLE t (" + ", ".join(f"c{i} int" for i in range(1600)) + "); INSERT INTO t (c0) VALUES (1)",
        "ALTER TABLE t ADD COLUMN one_too_many int;", 1),
    "a USING result that cannot be cast": (
        "CREATE TABLE t (id int, a text); INSERT INTO t VALUES (1, 'x')",
        "ALTER TABLE t ALTER COLUMN a TYPE int USING a::boolean;", 1),
}


@pytest.mark.parametrize("case", sorted(STRUCTURAL))
def test_a_structural_failure_blocks_with_postgresqls_own_error_as_the_oracle_does(db, run_sql, conninfo, case):
    setup, text, step = STRUCTURAL[case]
    run_sql(setup)
    state = oracle_fails(conninfo, text)
    assert state is not None, "the oracle applies it: the case is wrong"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked, report.checks
    blocker = report.blockers[0]
    assert report.checks[[c.finding for c in report.checks].index(0)].step == step
    if blocker.check_id == "REHEARSAL_PRECHECK":
        assert f"SQLSTATE {state}" in blocker.message and f"refuses step {step}" in blocker.message


def test_a_plan_postgresql_accepts_passes_the_rehearsal_and_leaves_the_shadow_untouched(db, run_sql, conninfo):
    run_sql("CREATE TABLE t (id int PRIMARY KEY, a text); INSERT INTO t VALUES (1, 'x')")
    text = ("CREATE TABLE audit (id int); ALTER TABLE t ADD COLUMN b int DEFAULT 0;\n"
            "CREATE INDEX CONCURRENTLY t_b ON t (b);\nCREATE VIEW tv AS SELECT id, b FROM t;")
    assert oracle_fails(conninfo, text) is None  # PostgreSQL applies it
    for _ in range(2):  # the second run rehearses on the same (cached) shadow: it must be as pristine as before
        rehearsing._rehearsals.clear()  # rehearse again, not the answer kept from the first run
        report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
        assert not any(r.check_id.startswith("REHEARSAL") for r in report.results), report.results
        assert report.status == "clear"


def test_a_rehearsal_is_kept_for_its_catalog_and_a_changed_catalog_is_rehearsed_again(db, run_sql, conninfo,
                                                                                     monkeypatch):
    run_sql("CREATE TABLE t (id int, a int); INSERT INTO t VALUES (1, 1)")
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a TYPE bigint;")
    assert oracle_fails(conninfo, "ALTER TABLE t ALTER COLUMN a TYPE bigint;") is None  # PostgreSQL applies it
    runs: list[int] = []
    rehearse_on = rehearsing._rehearse_on
    monkeypatch.setattr(rehearsing, "_rehearse_on", lambda *a: runs.append(1) or rehearse_on(*a))
    assert ep.run_preflight(plan, db).status == "clear"
    assert ep.run_preflight(plan, db).status == "clear"
    assert len(runs) == 1  # the same statements on the same catalog: PostgreSQL's answer is kept
    run_sql("CREATE VIEW v AS SELECT a FROM t")  # the catalog changes: only PostgreSQL's answer says it blocks now
    assert oracle_fails(conninfo, "ALTER TABLE t ALTER COLUMN a TYPE bigint;") is not None  # and it refuses it
    report = ep.run_preflight(plan, db)
    assert len(runs) == 2
    assert [b.check_id for b in report.blockers] == ["REHEARSAL_PRECHECK"], report.blockers
    # data statements and procedural code may read the clock or chance: rehearsed every time
    for text in ("INSERT INTO t (id, a) VALUES (2, 2);", "DO $$ BEGIN PERFORM 1; END $$;",
                 "CREATE TABLE t_copy AS SELECT * FROM t;"):
        before = len(runs)
        for _ in range(2):
            ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
        assert len(runs) == before + 2, text


def test_the_rehearsal_never_runs_as_a_superuser(db, run_sql, tmp_path):
    marker = tmp_path / "written_by_rehearsal"
    run_sql("CREATE TABLE t (id int)")
    plan = ep.MigrationPlan.from_sql(f"COPY (SELECT 1) TO PROGRAM 'touch {marker}';")
    report = ep.run_preflight(plan, db)
    assert not marker.exists()
    warning = next(r for r in report.results if r.check_id == "REHEARSAL_UNAVAILABLE_WARNING")
    assert "rights the rehearsal does not take" in warning.message
    with psycopg.connect(_embedded()) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (REHEARSAL_ROLE,)).fetchone() == (
            False,)


def test_a_shadow_that_cannot_be_built_asks_a_person_never_blocks_never_clears(db, run_sql, server_url, schema):
    run_sql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    role = f"nodump_{schema}"
    run_sql(f'CREATE ROLE "{role}" LOGIN; GRANT USAGE ON SCHEMA "{schema}" TO "{role}"; '
            f'GRANT SELECT (id) ON t TO "{role}"; CREATE TABLE hidden (x int)')
    from sqlalchemy.engine import make_url

    url = make_url(server_url).set(username=role).render_as_string(hide_password=False)
    limited = ep.connect(url, connect_args={"options": f"-c search_path={schema}"})
    try:
        report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ADD COLUMN b int;"), limited)
        assert report.status == "clear"
        assert [r.check_id for r in report.results] == ["REHEARSAL_UNAVAILABLE_WARNING"]
        assert "pg_dump" in report.results[0].message
        assert (report.results[0].stats or {}).get("acknowledgeStep") == 1  # a person's call, not a silent clear
    finally:
        limited.engine.dispose()
        run_sql(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


def _embedded() -> str:
    from erd_preflight.db import embedded_url

    return embedded_url()


def test_rehearse_false_skips_it(db, run_sql):
    run_sql("CREATE TABLE t (id int, a int); CREATE VIEW v AS SELECT a FROM t")
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a TYPE bigint;")
    assert ep.run_preflight(plan, db, rehearse=False).status == "clear"  # what the model alone says
    assert ep.run_preflight(plan, db).status == "blocked"


def test_a_failure_that_depends_on_rows_is_not_judged_on_the_empty_copy(db, run_sql, conninfo):
    # On the empty copy the DO block raises (no rows), and the INSERT ... SELECT writes NULL: on the real rows
    # neither fails, as the oracle shows. The rehearsal stops with a warning rather than block.
    run_sql("CREATE TABLE t (id int, a int); INSERT INTO t VALUES (1, 5); CREATE TABLE totals (n int NOT NULL)")
    for text in ("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM t) THEN RAISE EXCEPTION 'no rows'; END IF; END $$;",
                 "INSERT INTO totals SELECT max(a) FROM t;"):
        assert oracle_fails(conninfo, text) is None
        report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
        assert not report.blocked, report.blockers
        assert "depends on them" in next(r.message for r in report.results
                                         if r.check_id == "REHEARSAL_UNAVAILABLE_WARNING")


def test_constants_that_break_a_constraint_are_judged(db, run_sql, conninfo):
    run_sql("CREATE TABLE t (id int, a int NOT NULL)")
    text = "INSERT INTO t VALUES (1, NULL);"
    assert oracle_fails(conninfo, text) == "23502"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked and report.blockers[0].check_id == "REHEARSAL_PRECHECK"
    assert "SQLSTATE 23502" in report.blockers[0].message


def test_a_refused_step_closes_the_gate_and_its_remediation_is_to_change_the_step(db, run_sql, store):
    run_sql("CREATE TABLE t (id int, a int); CREATE VIEW v AS SELECT a FROM t")
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a TYPE bigint;"), db,
                                store_schema=store)
    assert run.preflight().blocked
    decision = run.gate()
    assert not decision.can_apply and decision.reasons[0].code == "BLOCKED"
    assert "REHEARSAL_PRECHECK" in decision.reasons[0].message
    assert [r.kind for r in decision.remediations] == ["edit_plan"]


def test_a_database_whose_public_schema_was_made_again_is_still_rehearsed(server_url):
    """pg_dump writes CREATE SCHEMA public for a public schema that was dropped and created again; the shadow
    database has one already, so the restore must not stop there."""
    from sqlalchemy.engine import make_url

    name = f"erd_public_again_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public; "
                         "CREATE TABLE public.t (id int, a int); CREATE VIEW public.v AS SELECT a FROM public.t")
        db = ep.connect(url)
        try:
            report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a TYPE bigint;"), db)
        finally:
            db.engine.dispose()
        assert not any(r.check_id == "REHEARSAL_UNAVAILABLE_WARNING" for r in report.results), report.results
        assert report.blockers[0].check_id == "REHEARSAL_PRECHECK"  # the view: PostgreSQL's own refusal
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


NEWER = {
    "a virtual generated column (18)": "ALTER TABLE t ADD COLUMN b int GENERATED ALWAYS AS (a * 2);",
    "a built-in function of 18": "ALTER TABLE t ADD COLUMN u uuid DEFAULT uuidv7();",
    "a subquery in FROM without an alias (16)": "CREATE VIEW v AS SELECT * FROM (SELECT id FROM t);",
    "NULLS NOT DISTINCT (15)": "CREATE UNIQUE INDEX t_a_key ON t (a) NULLS NOT DISTINCT;",
    "a function of the plan named like a newer built-in": (
        "CREATE FUNCTION uuidv7() RETURNS uuid LANGUAGE sql AS $$ SELECT gen_random_uuid() $$;\n"
        "ALTER TABLE t ADD COLUMN u uuid DEFAULT uuidv7();"),
}


@pytest.mark.parametrize("case", sorted(NEWER))
def test_a_statement_only_a_newer_postgresql_accepts_blocks_on_an_older_target_as_the_oracle_does(
        db, run_sql, conninfo, server_version, case):
    """The shadow is PostgreSQL 18: on an older target, what only 18 (or 16, 17) accepts must still block, and
    what the target accepts must not. On PostgreSQL 18 every case applies."""
    run_sql("CREATE TABLE t (id int, a int); INSERT INTO t VALUES (1, 1)")
    text = NEWER[case]
    oracle = oracle_fails(conninfo, text)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked == (oracle is not None), (server_version, oracle, report.results)
    if report.blocked:
        assert report.blockers[0].check_id == "REHEARSAL_PRECHECK"
        assert f"the target runs PostgreSQL {server_version // 10000}" in report.blockers[0].message
