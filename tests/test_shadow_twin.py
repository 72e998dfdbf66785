"""The shadow is the target's twin: every schema of the database (what a statement names, and what depends on it
from other schemas), the role's search_path, publications, collations the shadow's server lacks standing in, and
a step PostgreSQL skips needing no check. PostgreSQL is the oracle: the same statements on the real database, in a
transaction rolled back. Both servers in CI (the shadow is always the embedded PostgreSQL 18)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import erd_preflight as ep
from erd_preflight.rehearse import shadow
from oracle import assert_agrees, postgres_accepts, verdict


@pytest.fixture
def spaces(server_url: str, schema: str) -> Iterator[dict[str, str]]:
    """Three schemas off the search_path (app, stage, ref), as a data team keeps them; dropped afterwards."""
    names = {kind: f"{schema}_{kind}" for kind in ("app", "stage", "ref")}
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield names
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _plain(text: str) -> list[str]:
    """The plan's statements as the oracle runs them, in a transaction (CONCURRENTLY has no meaning there)."""
    return [step.sql().replace("CONCURRENTLY ", "") for step in ep.MigrationPlan.from_sql(text).steps]


_SETUP = """
CREATE TABLE {app}.customer (id int PRIMARY KEY, n int, country text);
INSERT INTO {app}.customer VALUES (1, 10, 'fr'), (2, 20, 'de');
CREATE SEQUENCE {app}.s;
CREATE FUNCTION {app}.f(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x + 1';
CREATE TYPE {ref}.status AS ENUM ('a', 'b');
CREATE DOMAIN {ref}.pos AS int CHECK (VALUE > 0);
CREATE TABLE {ref}.country (code text PRIMARY KEY);
INSERT INTO {ref}.country VALUES ('fr'), ('de');
CREATE VIEW {stage}.v AS SELECT id FROM {app}.customer;
"""


def _setup(run_sql, spaces: dict[str, str], text: str = _SETUP) -> None:
    run_sql(text.format(**{k: sql.Identifier(v).as_string() for k, v in spaces.items()}))


# Objects named by a qualified name other than a table reference, in schemas off the search_path: PostgreSQL
# applies each one; the shadow must hold the schema they name.
NAMED_OFF_THE_PATH = [
    "COMMENT ON TABLE {app}.customer IS 'customers';",
    "COMMENT ON COLUMN {app}.customer.n IS 'a number';",
    "COMMENT ON FUNCTION {app}.f(int) IS 'adds one';",
    "ALTER TYPE {ref}.status ADD VALUE 'c';",
    "ALTER FUNCTION {app}.f(int) RENAME TO g;",
    "ALTER DOMAIN {ref}.pos SET DEFAULT 1;",
    "DROP VIEW {stage}.v;",
    "DROP SEQUENCE {app}.s;",
    "ALTER SEQUENCE {app}.s RESTART WITH 5;",
    "CREATE INDEX customer_n_idx ON {app}.customer (n);",
    "ALTER TABLE {app}.customer ADD COLUMN st {ref}.status;",
    "ALTER TABLE {app}.customer ADD COLUMN p {ref}.pos;",
    "CREATE VIEW {stage}.w AS SELECT {app}.f(n) FROM {app}.customer;",
    "DO $$ BEGIN PERFORM 1 FROM {app}.customer; END $$;",
]


@pytest.mark.parametrize("text", NAMED_OFF_THE_PATH)
def test_a_statement_on_objects_in_a_schema_off_the_search_path_is_not_falsely_blocked(db, run_sql, conninfo,
                                                                                        spaces, text):
    _setup(run_sql, spaces)
    statement = text.format(**{k: sql.Identifier(v).as_string() for k, v in spaces.items()})
    assert postgres_accepts(conninfo, _plain(statement)), "the oracle refuses it: the case is wrong"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db)
    found = assert_agrees(report, True, statement)
    assert not any("does not exist" in r.message for r in report.results), report.summary()
    if not statement.startswith("DO"):
        assert found == "clear", report.summary()


# What depends on the changed object lives in another schema: PostgreSQL refuses each statement because of it.
DEPENDED_ON_ACROSS_SCHEMAS = {
    "a view in another schema under a type change": (
        "", "ALTER TABLE {app}.customer ALTER COLUMN id TYPE bigint;"),
    "a foreign key from another schema under a DROP TABLE": (
        "ALTER TABLE {app}.customer ADD FOREIGN KEY (country) REFERENCES {ref}.country (code);",
        "DROP TABLE {ref}.country;"),
    "a function a CHECK in another schema calls": (
        "ALTER TABLE {app}.customer ADD CONSTRAINT plus CHECK ({ref}.plus(n) > 0);",
        "DROP FUNCTION {ref}.plus(int);"),
    "a domain a column in another schema uses": (
        "ALTER TABLE {app}.customer ADD COLUMN p {ref}.pos;", "DROP DOMAIN {ref}.pos;"),
    "an enum a column in another schema uses": (
        "ALTER TABLE {app}.customer ADD COLUMN st {ref}.status;", "DROP TYPE {ref}.status;"),
    "a trigger calling a function in another schema": (
        "CREATE TRIGGER touch BEFORE UPDATE ON {app}.customer FOR EACH ROW EXECUTE FUNCTION {stage}.touch();",
        "DROP FUNCTION {stage}.touch();"),
    "a materialized view in another schema under a DROP COLUMN": (
        "CREATE MATERIALIZED VIEW {stage}.m AS SELECT n FROM {app}.customer;",
        "ALTER TABLE {app}.customer DROP COLUMN n;"),
    "a row security policy calling a function in another schema": (
        "ALTER TABLE {app}.customer ENABLE ROW LEVEL SECURITY; "
        "CREATE POLICY positive ON {app}.customer USING ({ref}.plus(n) > 0);",
        "DROP FUNCTION {ref}.plus(int);"),
    "a row security policy under a DROP COLUMN": (
        "CREATE POLICY own_country ON {app}.customer USING (country = 'fr');",
        "ALTER TABLE {app}.customer DROP COLUMN country;"),
    "a rule writing to another schema under a type change": (
        "CREATE TABLE {stage}.log (n int); "
        "CREATE RULE log_n AS ON UPDATE TO {app}.customer DO ALSO INSERT INTO {stage}.log VALUES (NEW.n);",
        "ALTER TABLE {app}.customer ALTER COLUMN n TYPE bigint;"),
}

_FUNCTIONS = """
CREATE FUNCTION {ref}.plus(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT abs(x) + 1';
CREATE FUNCTION {stage}.touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
"""


@pytest.mark.parametrize("case", sorted(DEPENDED_ON_ACROSS_SCHEMAS))
def test_ddl_refused_because_of_an_object_in_another_schema_is_blocked(db, run_sql, conninfo, spaces, case):
    extra, text = DEPENDED_ON_ACROSS_SCHEMAS[case]
    _setup(run_sql, spaces, _SETUP + _FUNCTIONS + extra)
    statement = text.format(**{k: sql.Identifier(v).as_string() for k, v in spaces.items()})
    assert not postgres_accepts(conninfo, _plain(statement)), "the oracle applies it: the case is wrong"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db)
    assert verdict(report) == "blocked", (case, report.summary())
    assert report.blockers[0].check_id == "REHEARSAL_PRECHECK", report.blockers
    assert not any(r.check_id == "REHEARSAL_UNAVAILABLE_WARNING" for r in report.results), report.summary()


def test_update_and_delete_of_a_published_table_without_a_replica_identity_are_blocked(db, run_sql, conninfo,
                                                                                        spaces, server_url):
    app = sql.Identifier(spaces["app"]).as_string()
    publication = f"pub_{uuid.uuid4().hex[:10]}"
    run_sql(f"CREATE TABLE {app}.events (a int, b text); INSERT INTO {app}.events VALUES (1, 'x'); "
            f"CREATE TABLE {app}.keyed (id int PRIMARY KEY, a int); INSERT INTO {app}.keyed VALUES (1, 1)")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}.events, {}.keyed").format(
            sql.Identifier(publication), sql.Identifier(spaces["app"]), sql.Identifier(spaces["app"])))
    try:
        for text, accepted in ((f"UPDATE {app}.events SET b = 'y' WHERE a = 1;", False),
                               (f"DELETE FROM {app}.events WHERE a = 1;", False),
                               (f"INSERT INTO {app}.events VALUES (2, 'z');", True),
                               (f"UPDATE {app}.keyed SET a = 2 WHERE id = 1;", True)):
            assert postgres_accepts(conninfo, [text]) is accepted, text
            report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
            found = assert_agrees(report, accepted, text)
            if not accepted:
                assert "55000" in report.blockers[0].message, report.blockers
            else:
                assert found == "clear", report.summary()
        # The identity the table gets first makes the same UPDATE apply, in the shadow as on the target.
        text = f"ALTER TABLE {app}.events REPLICA IDENTITY FULL;\nUPDATE {app}.events SET b = 'y' WHERE a = 1;"
        assert postgres_accepts(conninfo, _plain(text))
        assert verdict(ep.run_preflight(ep.MigrationPlan.from_sql(text), db)) == "clear"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication)))


# (setup, statement): each IF [NOT] EXISTS form on an object that exists and on one that does not. The rows of x
# hold a duplicate, so a unique index that PostgreSQL builds fails, and one it skips does not.
IF_EXISTS_FORMS = [
    ("CREATE INDEX t_x_idx ON t (x)", "CREATE UNIQUE INDEX IF NOT EXISTS t_x_idx ON t (x);"),
    ("", "CREATE UNIQUE INDEX IF NOT EXISTS t_x_idx ON t (x);"),
    ("CREATE INDEX t_x_idx ON t (x)", "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_x_idx ON t (x);"),
    ("", "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_x_idx ON t (x);"),
    ("", "ALTER TABLE t ADD COLUMN IF NOT EXISTS x int UNIQUE;"),
    ("", "ALTER TABLE t ADD COLUMN IF NOT EXISTS x int PRIMARY KEY;"),
    ("", "ALTER TABLE t ADD COLUMN IF NOT EXISTS y int UNIQUE;"),
    ("", "ALTER TABLE t ADD COLUMN IF NOT EXISTS x int NOT NULL;"),
    ("", "ALTER TABLE t ADD COLUMN IF NOT EXISTS y int NOT NULL;"),
    ("", "ALTER TABLE IF EXISTS gone ADD COLUMN z int NOT NULL;"),
    ("", "ALTER TABLE IF EXISTS t ADD CONSTRAINT t_x_key UNIQUE (x);"),
    ("", "CREATE TABLE IF NOT EXISTS t (id int);"),
    ("", "DROP TABLE IF EXISTS gone;"),
    ("", "DROP INDEX IF EXISTS gone_idx;"),
    ("CREATE INDEX t_x_idx ON t (x)", "DROP INDEX IF EXISTS t_x_idx;"),
    ("", "ALTER TABLE t DROP COLUMN IF EXISTS gone;"),
    ("", "ALTER TABLE t DROP CONSTRAINT IF EXISTS gone;"),
    ("", "ALTER TABLE t ADD COLUMN IF NOT EXISTS x int CHECK (x > 100);"),
    ("", "ALTER TABLE t ADD COLUMN IF NOT EXISTS z int CHECK (z > 100);"),
    ("CREATE INDEX t_x_idx ON t (x)", "CREATE INDEX IF NOT EXISTS t_x_idx ON t ((1 / (x - 7)));"),
    ("", "CREATE INDEX IF NOT EXISTS t_x_idx ON t ((1 / (x - 7)));"),
    ("", "CREATE TABLE IF NOT EXISTS t2 (id int PRIMARY KEY);"),
    ("CREATE SEQUENCE s", "CREATE SEQUENCE IF NOT EXISTS s;"),
    ("", "CREATE SEQUENCE IF NOT EXISTS s;"),
    ("CREATE UNIQUE INDEX t_id_uq ON t (id)", "DROP INDEX IF EXISTS t_id_uq;"),
]


@pytest.mark.parametrize("setup,text", IF_EXISTS_FORMS)
def test_an_if_not_exists_form_is_judged_by_what_postgresql_does(db, run_sql, conninfo, setup, text):
    run_sql("CREATE TABLE t (id int, x int); INSERT INTO t VALUES (1, 7), (2, 7), (3, NULL)")
    if setup:
        run_sql(setup)
    accepted = postgres_accepts(conninfo, _plain(text))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    found = assert_agrees(report, accepted, text)
    assert found != "unverified", (text, report.summary())  # PostgreSQL decides each of these exactly


def test_a_skipped_step_says_postgresql_skips_it(db, run_sql):
    run_sql("CREATE TABLE t (id int, x int); INSERT INTO t VALUES (1, 7), (2, 7); CREATE INDEX t_x_idx ON t (x)")
    report = ep.run_preflight(ep.MigrationPlan.from_sql("CREATE UNIQUE INDEX IF NOT EXISTS t_x_idx ON t (x);"), db)
    assert report.status == "clear"
    (check,) = report.checks
    assert "PostgreSQL skips step 1" in check.message and "already exists" in check.message, check.message


def test_a_shadow_that_cannot_be_built_asks_a_person_for_each_step_never_a_clear(db, run_sql, conninfo,
                                                                                  monkeypatch):
    run_sql("CREATE TABLE t (id int, a int); CREATE VIEW v AS SELECT a FROM t; INSERT INTO t VALUES (1, 1)")
    text = "ALTER TABLE t ALTER COLUMN a TYPE bigint;\nALTER TABLE t ADD COLUMN b int;"
    assert not postgres_accepts(conninfo, _plain(text))
    monkeypatch.setenv("ERD_PREFLIGHT_SHADOW_URL", "postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=2")
    monkeypatch.setattr(shadow, "_cache", type(shadow._cache)())  # no shadow kept from before
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert verdict(report) == "unverified", report.summary()
    asked = [r for r in report.results if r.check_id == "REHEARSAL_UNAVAILABLE_WARNING"]
    assert sorted((r.stats or {}).get("acknowledgeStep") for r in asked) == [1, 2]
    assert "ERD_PREFLIGHT_SHADOW_URL" in asked[0].message and "shadow's server" in asked[0].message
    # Turned off explicitly, the model alone judges (and says clear here: what the rehearsal is for).
    assert ep.run_preflight(ep.MigrationPlan.from_sql(text), db, rehearse=False).status == "clear"


def _login(server_url: str, role: str, **kwargs) -> ep.Database:
    url = make_url(server_url).set(username=role).render_as_string(hide_password=False)
    return ep.connect(url, poolclass=NullPool, **kwargs)


def test_unqualified_names_resolve_on_the_applying_roles_search_path(server_url, run_sql, conninfo, spaces):
    """A role whose search_path is set by ALTER ROLE, and one that finds its own schema through "$user": the
    rehearsal resolves the plan's unqualified names where apply will."""
    app = spaces["app"]
    _setup(run_sql, spaces)
    user_role = app  # "$user" finds the schema named after the role
    set_role = f"{app}_r"
    admin = psycopg.connect(server_url, autocommit=True)
    try:
        for role in (user_role, set_role):
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(role)))
        admin.execute(sql.SQL("ALTER ROLE {} SET search_path = {}").format(sql.Identifier(set_role),
                                                                            sql.Identifier(app)))
        for role in (user_role, set_role):
            text = "COMMENT ON TABLE customer IS 'found';\nALTER TABLE customer ADD COLUMN z int;"
            oracle = psycopg.conninfo.make_conninfo(server_url, user=role)
            assert postgres_accepts(oracle, _plain(text)), role
            db = _login(server_url, role)
            try:
                report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
            finally:
                db.engine.dispose()
            assert verdict(report) == "clear", (role, report.summary())
    finally:
        for role in (user_role, set_role):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


def _has_icu(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'").fetchone())


def test_an_icu_collation_the_shadow_lacks_stands_in_and_the_report_says_so(db, run_sql, conninfo, spaces, server_url):
    if not _has_icu(server_url):
        pytest.skip("the target server has no ICU collations to make")
    if _has_icu(shadow.shadow_server()):
        pytest.skip("the shadow's server has ICU: nothing to stand in")
    app = sql.Identifier(spaces["app"]).as_string()
    run_sql(f"CREATE COLLATION {app}.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false); "
            f"CREATE TABLE {app}.tag (id int, name text COLLATE {app}.ci, label text COLLATE \"und-x-icu\"); "
            f"CREATE VIEW {app}.tags AS SELECT id, name, label FROM {app}.tag; INSERT INTO {app}.tag VALUES (1, 'a', 'b')")
    text = f"ALTER TABLE {app}.tag ALTER COLUMN id TYPE bigint;"
    assert not postgres_accepts(conninfo, [text])
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert verdict(report) == "blocked" and report.blockers[0].check_id == "REHEARSAL_PRECHECK", report.summary()
    note = next(r for r in report.results if r.check_id == "REHEARSAL_UNAVAILABLE_WARNING")
    assert "ci (ICU, nondeterministic)" in note.message and "und-x-icu" in note.message, note.message
    # A plan PostgreSQL applies: the nondeterministic stand-in asks a person, never a silent clear.
    text = f"ALTER TABLE {app}.tag ADD COLUMN extra int;"
    assert postgres_accepts(conninfo, [text])
    assert verdict(ep.run_preflight(ep.MigrationPlan.from_sql(text), db)) == "unverified"


def test_an_event_trigger_of_the_target_runs_in_the_rehearsal(db, run_sql, conninfo, server_url, schema):
    """A guard against DROP TABLE, as teams keep on production: PostgreSQL refuses the drop, and preflight never
    says clear (the trigger's code may also write rows, so its error is a person's call, not a block)."""
    name = f"guard_{uuid.uuid4().hex[:10]}"
    run_sql("CREATE TABLE t (id int); CREATE FUNCTION guard() RETURNS event_trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'no drops here'; END $$")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE EVENT TRIGGER {} ON sql_drop EXECUTE FUNCTION {}.guard()").format(
            sql.Identifier(name), sql.Identifier(schema)))
    try:
        text = "DROP TABLE t;"
        assert not postgres_accepts(conninfo, [text])
        report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
        assert verdict(report) != "clear", report.summary()
        assert "event trigger" in " ".join(r.message for r in report.results), report.summary()
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(name)))


def test_extensions_only_a_superuser_may_create_and_foreign_tables_are_in_the_shadow(db, run_sql, conninfo,
                                                                                     server_url, schema):
    """pg_stat_statements and postgres_fdw are on most production databases, and the rehearsal role may not create
    them: the shadow has them all the same (made by its server's own user), so a plan is still rehearsed."""
    server = f"fdw_{uuid.uuid4().hex[:10]}"
    here = sql.Identifier(schema).as_string()
    run_sql(f"CREATE EXTENSION pg_stat_statements WITH SCHEMA {here}; CREATE EXTENSION postgres_fdw WITH SCHEMA {here}; "
            f"CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'elsewhere'); "
            f"CREATE USER MAPPING FOR CURRENT_USER SERVER {server} OPTIONS (user 'nobody'); "
            f"CREATE FOREIGN TABLE remote (id int) SERVER {server}; "
            "CREATE TABLE t (id int, a int); CREATE VIEW v AS SELECT a FROM t; INSERT INTO t VALUES (1, 1)")
    try:
        for text, accepted in (("ALTER TABLE t ADD COLUMN b int;", True),
                               ("CREATE VIEW remote_ids AS SELECT id FROM remote;", True),
                               ("ALTER TABLE t ALTER COLUMN a TYPE bigint;", False)):
            assert postgres_accepts(conninfo, [text]) is accepted, text
            report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
            assert verdict(report) == ("clear" if accepted else "blocked"), (text, report.summary())
    finally:
        run_sql(f"DROP SERVER IF EXISTS {server} CASCADE")


def test_a_schema_the_role_may_not_read_is_named_and_its_dependents_are_a_persons_call(server_url, run_sql, conninfo,
                                                                                       spaces, schema):
    """The preflight's role reads app, not stage, where a view depends on app.customer: the shadow goes without
    stage (pg_dump could not read it), says so, and the type change PostgreSQL refuses is never clear."""
    _setup(run_sql, spaces)
    role = f"{spaces['app']}_ro"
    app = sql.Identifier(spaces["app"])
    admin = psycopg.connect(server_url, autocommit=True)
    try:
        admin.execute(sql.SQL("CREATE ROLE {r} LOGIN; GRANT USAGE ON SCHEMA {s} TO {r}; "
                              "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}; "
                              "GRANT USAGE ON SCHEMA {ref}, {here} TO {r}; "
                              "GRANT SELECT ON ALL TABLES IN SCHEMA {ref}, {here} TO {r}").format(
            r=sql.Identifier(role), s=app, ref=sql.Identifier(spaces["ref"]), here=sql.Identifier(schema)))
        text = f"ALTER TABLE {app.as_string()}.customer ALTER COLUMN id TYPE bigint;"
        assert not postgres_accepts(conninfo, [text])
        db = _login(server_url, role)
        try:
            report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
        finally:
            db.engine.dispose()
        assert verdict(report) != "clear", report.summary()
        note = next(r for r in report.results if r.check_id == "REHEARSAL_UNAVAILABLE_WARNING")
        assert spaces["stage"] in note.message and "may not read" in note.message, note.message
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {r}; DROP ROLE IF EXISTS {r}").format(r=sql.Identifier(role)))
        admin.close()


def test_a_function_body_naming_its_type_unqualified_still_restores(db, run_sql, conninfo):
    """Found replaying crates.io: a generated column calls a SQL function whose body names its type without a
    schema; pg_restore's empty search_path made the shadow fail to restore, so every step went to a person."""
    run_sql("CREATE TYPE triple AS (a int, b int); "
            "CREATE FUNCTION to_triple(text) RETURNS triple IMMUTABLE LANGUAGE sql AS "
            "$$ SELECT (length($1), 0)::triple $$; "
            "CREATE TABLE g (s text, t triple GENERATED ALWAYS AS (to_triple(s)) STORED); "
            "CREATE VIEW gv AS SELECT s FROM g; INSERT INTO g (s) VALUES ('x')")
    for text, accepted in (("ALTER TABLE g ADD COLUMN n int;", True), ("ALTER TABLE g ALTER COLUMN s TYPE varchar(5);", False)):
        assert postgres_accepts(conninfo, [text]) is accepted, text
        report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
        assert verdict(report) == ("clear" if accepted else "blocked"), (text, report.summary())


def test_a_shadow_built_for_a_role_that_may_not_read_a_schema_is_not_reused_for_one_that_may(
        server_url, run_sql, spaces, db):
    """The shadow is kept per catalog; what it holds also depends on the role reading it. Found on a shared test
    database: the owner's preflight got the limited role's shadow, and its warning about schemas it could read."""
    _setup(run_sql, spaces)
    role = f"{spaces['app']}_lim"
    admin = psycopg.connect(server_url, autocommit=True)
    try:
        admin.execute(sql.SQL("CREATE ROLE {r} LOGIN; GRANT USAGE ON SCHEMA {s} TO {r}; "
                              "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}").format(
            r=sql.Identifier(role), s=sql.Identifier(spaces["app"])))
        plan = ep.MigrationPlan.from_sql(f"ALTER TABLE {sql.Identifier(spaces['app']).as_string()}.customer "
                                         "ADD COLUMN z int;")
        limited = _login(server_url, role)
        try:
            assert verdict(ep.run_preflight(plan, limited)) == "unverified"  # stage and ref are not seen
        finally:
            limited.engine.dispose()
        assert verdict(ep.run_preflight(plan, db)) == "clear"  # the same catalog, a role that reads everything
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {r}; DROP ROLE IF EXISTS {r}").format(r=sql.Identifier(role)))
        admin.close()
