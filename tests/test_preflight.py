import json

import psycopg
import pytest
from psycopg import sql

import erd_preflight as ep

SHOP = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text, country text);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, amount numeric(12,2), note text);
INSERT INTO customers SELECT g, CASE WHEN g % 10 = 0 THEN NULL WHEN g % 7 = 0 THEN 'dup@x' ELSE 'c' || g END, 'DE'
  FROM generate_series(1, 100) g;                        -- 10 NULL emails; 12 rows share 'dup@x' (7,14,...,98 minus 70)
INSERT INTO orders SELECT g, CASE WHEN g % 20 = 0 THEN 1000 + g WHEN g % 33 = 0 THEN NULL ELSE 1 + g % 100 END,
  g - 5, CASE WHEN g % 2 = 0 THEN g::text ELSE 'n' || g END
  FROM generate_series(1, 200) g;                        -- 10 orphans, 6 NULL keys, 4 negative amounts
"""

PLAN = """
ALTER TABLE customers ALTER COLUMN email SET NOT NULL;
ALTER TABLE customers ADD CONSTRAINT customers_email_key UNIQUE (email);
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id);
"""


@pytest.fixture
def shop(run_sql):
    run_sql(SHOP)


def test_blocked_at_first_violating_step_with_exact_counts_and_capped_samples(db, shop):
    report = ep.run_preflight(ep.MigrationPlan.from_sql(PLAN), db, sample_cap=5)
    assert report.status == "blocked"
    assert [r.check_id for r in report.results] == ["NOT_NULL_PRECHECK"]
    finding = report.results[0]
    assert finding.stats["violations"] == 10 and finding.stats["totalRows"] == 100
    assert len(finding.sample_rows) == 5 and all(row["email"] is None for row in finding.sample_rows)
    assert [c.outcome for c in report.checks] == ["blocking", "skipped", "skipped"]


def test_explore_mode_reports_all_three_with_exact_counts(db, shop):
    report = ep.run_preflight(ep.MigrationPlan.from_sql(PLAN), db, explore=True)
    by_id = {r.check_id: r for r in report.results}
    assert set(by_id) == {"NOT_NULL_PRECHECK", "UNIQUE_PRECHECK", "FK_VIOLATIONS_PRECHECK"}
    assert by_id["UNIQUE_PRECHECK"].stats == {"violations": 13, "duplicateGroups": 1, "totalRows": 100}
    assert by_id["UNIQUE_PRECHECK"].sample_rows == [{"email": "dup@x", "duplicate_rows": 13}]
    fk = by_id["FK_VIOLATIONS_PRECHECK"]
    assert fk.stats == {"violations": 10, "totalRows": 200}  # NULL keys are not orphans (MATCH SIMPLE)
    assert sorted(r["customer_id"] for r in fk.sample_rows) == [1000 + g for g in range(20, 201, 20)]
    assert len(by_id["NOT_NULL_PRECHECK"].sample_rows) == 10


def test_default_sample_cap_is_50(db, run_sql):
    run_sql("CREATE TABLE t (a int); INSERT INTO t SELECT NULL FROM generate_series(1, 120)")
    report = ep.run_preflight(ep.MigrationPlan(steps=[ep.SetNotNull(table="t", column="a")]), db)
    assert report.results[0].stats["violations"] == 120 and len(report.results[0].sample_rows) == 50


def test_clean_data_passes_every_check_and_the_checklist_lists_passes(db, run_sql):
    run_sql(SHOP + "UPDATE customers SET email = 'e' || id; DELETE FROM orders WHERE customer_id > 100;")
    report = ep.run_preflight(ep.MigrationPlan.from_sql(PLAN), db)
    assert report.status == "clear" and report.results == []
    frame = report.checklist_frame()
    assert list(frame["outcome"]) == ["pass", "pass", "pass"]
    assert list(frame["totalRows"]) == [100, 100, 190]


def test_unique_ignores_nulls_unless_nulls_not_distinct(db, run_sql):
    run_sql("CREATE TABLE t (a int, b int); INSERT INTO t VALUES (1, NULL), (1, NULL), (2, 2), (NULL, NULL)")
    distinct = ep.run_preflight(ep.MigrationPlan(steps=[ep.AddUnique(table="t", columns=("a", "b"))]), db)
    assert distinct.status == "clear"
    nnd = ep.run_preflight(
        ep.MigrationPlan(steps=[ep.AddUnique(table="t", columns=("a", "b"), nulls_not_distinct=True)]), db)
    assert nnd.results[0].stats == {"violations": 2, "duplicateGroups": 1, "totalRows": 4}


def test_match_simple_ignores_partly_null_keys_and_match_full_does_not(db, run_sql):
    run_sql("""CREATE TABLE p (x int, y int, PRIMARY KEY (x, y)); INSERT INTO p VALUES (1, 1);
               CREATE TABLE c (a int, b int); INSERT INTO c VALUES (1, 1), (1, NULL), (NULL, NULL), (2, 2)""")
    simple = ep.AddForeignKey(table="c", columns=("a", "b"), ref_table="p", ref_columns=("x", "y"))
    report = ep.run_preflight(ep.MigrationPlan(steps=[simple]), db)
    assert report.results[0].stats == {"violations": 1, "totalRows": 4}
    full = simple.model_copy(update={"match_full": True})
    report = ep.run_preflight(ep.MigrationPlan(steps=[full]), db)
    assert report.results[0].stats == {"violations": 2, "totalRows": 4}


def test_fk_to_columns_without_unique_constraint_is_blocked(db, run_sql):
    run_sql("CREATE TABLE p (x int); CREATE TABLE c (a int)")
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE c ADD FOREIGN KEY (a) REFERENCES p (x)"), db)
    assert report.status == "blocked" and "no primary key or unique constraint" in report.results[0].message


def test_a_catalog_change_between_two_preflights_is_read_by_the_second(db, run_sql):
    """The catalog is read once per catalog fingerprint and kept; a change to it (here a unique key the foreign
    key needs, then a row estimate from ANALYZE, which changes no fingerprint) is what the next preflight reads."""
    run_sql("CREATE TABLE p (x int); CREATE TABLE c (a int)")
    plan = ep.MigrationPlan.from_sql("ALTER TABLE c ADD FOREIGN KEY (a) REFERENCES p (x)")
    assert ep.run_preflight(plan, db).status == "blocked"
    assert ep.run_preflight(plan, db).status == "blocked"  # from the kept catalog: the same answer
    run_sql("ALTER TABLE p ADD UNIQUE (x)")
    assert ep.run_preflight(plan, db).status == "clear"
    run_sql("ALTER TABLE p DROP CONSTRAINT p_x_key")
    assert ep.run_preflight(plan, db).status == "blocked"
    sized = ep.MigrationPlan.from_sql("CREATE INDEX c_a ON c (a)")
    assert ep.run_preflight(sized, db, large_table_rows=1000).status == "clear"
    assert not ep.run_preflight(sized, db, large_table_rows=1000).results
    run_sql("INSERT INTO c SELECT g FROM generate_series(1, 5000) g; ANALYZE c")
    assert [r.check_id for r in ep.run_preflight(sized, db, large_table_rows=1000).results][:1] == \
        ["LARGE_TABLE_WARNING"]


def test_checks_on_one_table_share_its_counts_and_each_still_counts_what_postgresql_counts(db, run_sql):
    """NOT NULL's scan also counts a later unique key's keyed rows and wide keys, and the table's rows for a
    foreign key, which then counts only its orphans: the stats are the ones each would count alone."""
    run_sql("CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p SELECT g FROM generate_series(1, 50) g; "
            "CREATE TABLE t (a int, b text, c int); INSERT INTO t SELECT g, CASE WHEN g % 7 = 0 THEN NULL "
            "WHEN g % 11 = 0 THEN 'dup' ELSE 'b' || g END, CASE WHEN g % 13 = 0 THEN 999 ELSE g % 50 + 1 END "
            "FROM generate_series(1, 500) g")
    statements = ["ALTER TABLE t ALTER COLUMN a SET NOT NULL", "ALTER TABLE t ADD UNIQUE (b)",
                  "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a)", "ALTER TABLE t ADD FOREIGN KEY (c) REFERENCES p"]
    report = ep.run_preflight(ep.MigrationPlan.from_sql(";\n".join(statements)), db, explore=True)
    shared = {r.step: r.stats for r in report.checks}
    alone = {step: ep.run_preflight(ep.MigrationPlan.from_sql(statements[step - 1]), db).checks[0].stats
             for step in (2, 3, 4)}
    assert shared[2] == alone[2] == {"violations": run_sql("SELECT count(*) FROM t WHERE b = 'dup'")[0][0],
                                     "duplicateGroups": 1, "totalRows": 500}
    assert shared[3] == alone[3] == {"violations": 0, "duplicateGroups": 0, "totalRows": 500}
    assert shared[4] == alone[4] == {"violations": run_sql("SELECT count(*) FROM t WHERE c = 999")[0][0],
                                     "totalRows": 500}


def test_cast_precheck_counts_failing_rows_and_keeps_samples(db, run_sql):
    run_sql("CREATE TABLE t (id int, v text); INSERT INTO t VALUES (1, '10'), (2, 'ten'), (3, NULL), (4, '1e3')")
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN v TYPE integer USING v::integer")
    report = ep.run_preflight(plan, db)
    finding = report.results[0]
    assert finding.check_id == "CAST_PRECHECK" and finding.stats == {"violations": 2, "totalRows": 4}
    assert sorted(r["id"] for r in finding.sample_rows) == [2, 4]
    assert "invalid input syntax" in finding.message


def test_cast_precheck_counts_every_kind_of_data_exception_not_only_bad_text(db, run_sql):
    # 22008 (date out of range), 22007 (bad datetime format), 22003 (numeric overflow): all SQLSTATE class 22
    run_sql("CREATE TABLE t (id int, d text, n text); INSERT INTO t VALUES "
            "(1, '2025-02-30', '1'), (2, 'unknown', '2'), (3, '2024-01-01', '99999999999'), (4, '2024-01-02', '3')")
    for statement, bad in (("ALTER TABLE t ALTER COLUMN d TYPE date USING d::date", [1, 2]),
                           ("ALTER TABLE t ALTER COLUMN n TYPE integer USING n::integer", [3])):
        finding = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db).results[0]
        assert finding.check_id == "CAST_PRECHECK" and finding.stats == {"violations": len(bad), "totalRows": 4}
        assert sorted(r["id"] for r in finding.sample_rows) == bad


def test_cast_to_shorter_varchar_counts_values_that_would_not_fit(db, run_sql):
    run_sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('abc'), ('abcdef'), ('abc   ')")
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN v TYPE varchar(4)"), db)
    assert report.results[0].stats == {"violations": 1, "totalRows": 3}


def test_type_change_without_using_and_without_assignment_cast_is_blocked(db, run_sql):
    run_sql("CREATE TABLE t (v text)")
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN v TYPE integer"), db)
    assert report.status == "blocked" and "USING" in report.results[0].message


def test_check_constraint_precheck_treats_null_as_passing(db, run_sql):
    run_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (-1), (NULL), (-5)")
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ADD CONSTRAINT pos CHECK (a > 0)"), db)
    assert report.results[0].stats == {"violations": 2, "totalRows": 4}
    not_valid = ep.MigrationPlan.from_sql("ALTER TABLE t ADD CONSTRAINT pos CHECK (a > 0) NOT VALID")
    assert ep.run_preflight(not_valid, db).status == "clear"


def test_validate_constraint_checks_the_existing_not_valid_constraint(db, run_sql):
    run_sql("""CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (p_id int); INSERT INTO c VALUES (7);
               ALTER TABLE c ADD CONSTRAINT c_fk FOREIGN KEY (p_id) REFERENCES p (id) NOT VALID;
               ALTER TABLE c ADD CONSTRAINT c_ck CHECK (p_id < 5) NOT VALID""")
    fk = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE c VALIDATE CONSTRAINT c_fk"), db)
    assert fk.results[0].check_id == "FK_VIOLATIONS_PRECHECK" and fk.results[0].stats["violations"] == 1
    ck = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE c VALIDATE CONSTRAINT c_ck"), db)
    assert ck.results[0].check_id == "CHECK_CONSTRAINT_PRECHECK" and ck.results[0].stats["violations"] == 1


def test_add_not_null_column_without_default_on_non_empty_table_blocks(db, run_sql):
    run_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2); CREATE TABLE empty (a int)")
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ADD COLUMN b int NOT NULL"), db)
    assert report.results[0].check_id == "NOT_NULL_PRECHECK" and report.results[0].stats["violations"] == 2
    assert ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE empty ADD COLUMN b int NOT NULL"), db).status == "clear"
    assert ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ADD COLUMN b int NOT NULL DEFAULT 0"), db).status == "clear"


def test_checks_know_what_earlier_steps_of_the_plan_do(db, run_sql):
    run_sql("CREATE TABLE t (id int, a int); INSERT INTO t VALUES (1, NULL), (2, 5), (3, NULL)")
    plan = ep.MigrationPlan.from_sql("""
        CREATE TABLE fresh (x int);
        ALTER TABLE fresh ALTER COLUMN x SET NOT NULL;
        ALTER TABLE t ADD COLUMN b int DEFAULT 1;
        ALTER TABLE t ALTER COLUMN b SET NOT NULL;
        UPDATE t SET a = 0 WHERE a IS NULL;
        ALTER TABLE t ALTER COLUMN a SET NOT NULL;
        ALTER TABLE t ADD COLUMN c int;
        ALTER TABLE t ALTER COLUMN c SET NOT NULL;
    """)
    report = ep.run_preflight(plan, db, explore=True)
    runs = {run.step: run for run in report.checks if run.check_id == "NOT_NULL_PRECHECK"}
    assert runs[2].outcome == "pass" and "created by step 1" in runs[2].message
    assert runs[4].outcome == "pass" and "DEFAULT 1" in runs[4].message
    assert runs[6].outcome == "pass" and "UPDATE of step 5" in runs[6].message  # the backfill is simulated
    assert runs[8].outcome == "blocking" and runs[8].stats["violations"] == 3  # a new nullable column is all NULL
    assert run_sql("SELECT count(*) FROM t WHERE a IS NULL") == [(2,)]  # and nothing was written


def test_a_delete_is_simulated_so_the_later_check_reads_the_rows_it_keeps(db, run_sql, conninfo):
    """It used to read the rows as they are now and block: PostgreSQL applies it (the DELETE removes the NULL)."""
    run_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (NULL), (1)")
    text = "DELETE FROM t WHERE a IS NULL; ALTER TABLE t ALTER COLUMN a SET NOT NULL;"
    with psycopg.connect(conninfo) as conn:  # the oracle
        for statement in text.split(";")[:2]:
            conn.execute(statement)
        conn.rollback()
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.status == "clear" and report.results == [], report.results
    [check] = [c for c in report.checks if c.step == 2]
    assert check.outcome == "pass" and check.stats["totalRows"] == 1
    assert "as the DELETE of step 1 leaves them" in check.message


def test_a_delete_preflight_does_not_simulate_makes_the_later_check_cannot_verify_not_a_guess(db, run_sql):
    run_sql("CREATE TABLE t (a int); CREATE TABLE s (a int); INSERT INTO t VALUES (NULL)")
    # a RECURSIVE WITH: not simulated (a plain one is read as a subquery now)
    text = ("WITH RECURSIVE x AS (SELECT a FROM s) DELETE FROM t USING x WHERE t.a IS NOT DISTINCT FROM x.a;"
            "ALTER TABLE t ALTER COLUMN a SET NOT NULL;")
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert [r.check_id for r in report.results] == ["UNMODELLED_SQL_WARNING", "NOT_NULL_PRECHECK"]
    assert not report.blocked and report.results[1].severity == "warning"
    assert "cannot verify step 2" in report.results[1].message and "step 1 deletes rows of" in report.results[1].message
    # without the WITH, the DELETE ... USING is simulated: s is empty, no row goes, and the NULL stays
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text.replace("WITH RECURSIVE x AS (SELECT a FROM s) ", "")
                                                        .replace("USING x", "USING s").replace("x.a", "s.a")), db)
    assert report.blocked and report.blockers[0].check_id == "NOT_NULL_PRECHECK"


def test_missing_table_and_column_are_blocking_results_not_crashes(db, run_sql):
    run_sql("CREATE TABLE t (a int)")
    report = ep.run_preflight(ep.MigrationPlan.from_sql(
        "ALTER TABLE nope ALTER COLUMN a SET NOT NULL; ALTER TABLE t ALTER COLUMN zz SET NOT NULL"), db, explore=True)
    assert [r.severity for r in report.results] == ["blocking", "blocking"]
    assert "nope does not exist" in report.results[0].message
    assert "column zz does not exist" in report.results[1].message


def test_a_check_that_hits_its_timeout_blocks_and_names_the_setting(db, run_sql):
    run_sql("CREATE TABLE t (a int); INSERT INTO t SELECT 1 FROM generate_series(1, 3)")
    plan = ep.MigrationPlan(steps=[ep.AddCheck(table="t", expression="pg_sleep(0.4) IS NOT NULL")])
    report = ep.run_preflight(plan, db, check_timeout=0.2)
    finding = report.results[0]
    assert finding.severity == "blocking" and finding.stats["timedOut"] == 1
    assert "check_timeout" in finding.message


def test_large_table_warnings_use_the_catalog_estimate_and_do_not_block(db, run_sql):
    run_sql("CREATE TABLE t (a int); INSERT INTO t SELECT g FROM generate_series(1, 5000) g; ANALYZE t")
    plan = ep.MigrationPlan.from_sql("CREATE INDEX t_a ON t (a); CREATE INDEX CONCURRENTLY t_a2 ON t (a);")
    report = ep.run_preflight(plan, db, large_table_rows=1000)
    assert report.status == "clear"
    assert [(r.check_id, r.stats["estimatedRows"]) for r in report.results] == [
        ("LARGE_TABLE_WARNING", 5000), ("NON_CONCURRENT_INDEX_WARNING", 5000), ("LARGE_TABLE_WARNING", 5000)]
    assert "confirmation" in report.results[1].message and "SHARE" in report.results[0].message


def test_drops_are_destructive_change_warnings(db, run_sql):
    run_sql("CREATE TABLE t (a int, b int)")
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t DROP COLUMN b; DROP TABLE t"), db)
    assert [r.check_id for r in report.results] == ["DESTRUCTIVE_CHANGE_WARNING"] * 2
    assert report.status == "clear"


def test_scan_checks_on_one_table_share_one_scan_and_still_report_in_order(db, run_sql):
    run_sql("CREATE TABLE t (a int, b int, c int); INSERT INTO t VALUES (1, NULL, 1), (2, 2, -1)")
    plan = ep.MigrationPlan.from_sql("""ALTER TABLE t ALTER COLUMN a SET NOT NULL;
        ALTER TABLE t ALTER COLUMN b SET NOT NULL; ALTER TABLE t ADD CHECK (c > 0);""")
    report = ep.run_preflight(plan, db, explore=True)
    assert [c.stats.get("sharedScanChecks") for c in report.checks] == [3, 3, 3]
    assert [c.stats["violations"] for c in report.checks] == [0, 1, 1]
    stopped = ep.run_preflight(plan, db)
    assert [c.outcome for c in stopped.checks] == ["pass", "blocking", "skipped"]


def test_same_plan_gives_identical_checks_and_fingerprint(db, shop):
    from erd_preflight.catalog import Catalog
    from erd_preflight.read.preflight import read_only

    plan = ep.MigrationPlan.from_sql(PLAN)
    with db.connection() as conn, read_only(conn, 5):
        first = ep.derive_checks(plan, Catalog(conn))
        second = ep.derive_checks(ep.MigrationPlan.from_sql(PLAN), Catalog(conn))
    assert [c.describe() for c in first] == [c.describe() for c in second]
    assert plan.fingerprint == ep.MigrationPlan.from_sql(PLAN).fingerprint
    a, b = (ep.run_preflight(plan, db, explore=True) for _ in range(2))
    assert [r.model_dump(exclude={"created_at"}) for r in a.results] == [r.model_dump() for r in b.results]


HOSTILE = ['Order Items', 'we"ird', "it's", 'select', 'ünïcødé_表', 'x' * 63, 'semi;colon --']


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_identifiers_as_table_and_column_names(db, run_sql, name):
    parent_name = ("p" + name).encode()[:63].decode(errors="ignore")
    table, column, parent = sql.Identifier(name), sql.Identifier(name[::-1][:63]), sql.Identifier(parent_name)
    run_sql(sql.SQL("CREATE TABLE {p} ({c} int PRIMARY KEY); INSERT INTO {p} VALUES (1);"
                    "CREATE TABLE {t} ({c} int); INSERT INTO {t} VALUES (1), (1), (NULL), (2)").format(
        t=table, c=column, p=parent))
    col = name[::-1][:63]
    plan = ep.MigrationPlan(steps=[
        ep.SetNotNull(table=name, column=col),
        ep.AddUnique(table=name, columns=(col,)),
        ep.AddForeignKey(table=name, columns=(col,), ref_table=parent_name, ref_columns=(col,)),
        ep.AddCheck(table=name, expression=sql.SQL("{} > 0").format(column).as_string()),
    ])
    report = ep.run_preflight(ep.MigrationPlan.from_sql(plan.sql()), db, explore=True)
    assert [r.stats["violations"] for r in report.results] == [1, 2, 1]
    assert report.checks[-1].outcome == "pass"
    assert report.samples("UNIQUE_PRECHECK").columns[0] == col


def test_preflight_runs_with_a_role_that_can_only_select(server_url, schema, run_sql):
    run_sql(SHOP)
    role = f"ro_{schema}"
    run_sql(sql.SQL("CREATE ROLE {r} LOGIN; GRANT USAGE ON SCHEMA {s} TO {r}; "
                    "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}").format(
        r=sql.Identifier(role), s=sql.Identifier(schema)))
    try:
        from sqlalchemy.engine import make_url

        url = make_url(server_url).set(username=role).render_as_string(hide_password=False)
        ro_db = ep.connect(url, connect_args={"options": f"-c search_path={schema}"})
        report = ep.run_preflight(ep.MigrationPlan.from_sql(PLAN), ro_db, explore=True)
        # (other schemas of the database, which this role may not read, are named in a warning of their own)
        assert [r.stats["violations"] for r in report.results
                if r.check_id != "REHEARSAL_UNAVAILABLE_WARNING"] == [10, 13, 10]
        ro_db.engine.dispose()
    finally:
        run_sql(sql.SQL("DROP OWNED BY {r}; DROP ROLE {r}").format(r=sql.Identifier(role)))


def test_a_write_inside_a_preflight_transaction_fails(db, run_sql):
    from erd_preflight.read.preflight import read_only

    run_sql("CREATE TABLE t (a int)")
    with db.connection() as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            with read_only(conn, 5):
                conn.execute("INSERT INTO t VALUES (1)")
    # A CHECK expression that calls a writing (volatile) function is not even run: named, for a person to acknowledge.
    run_sql("CREATE FUNCTION sneaky() RETURNS boolean LANGUAGE sql AS 'INSERT INTO t VALUES (2) RETURNING true'")
    run_sql("INSERT INTO t VALUES (3)")
    report = ep.run_preflight(ep.MigrationPlan(steps=[ep.AddCheck(table="t", expression="sneaky()")]), db)
    assert "sneaky()" in report.results[0].message and report.results[0].stats["acknowledgeStep"] == 1
    assert run_sql("SELECT a FROM t") == [(3,)]


def test_samples_frame_has_real_column_names_and_dtypes(db, run_sql):
    run_sql("""CREATE TABLE t (id bigint, price numeric(8,2), at timestamptz, ok boolean, name text, n int);
               INSERT INTO t VALUES (1, 9.50, '2026-01-02 03:04:05+00', true, 'x', NULL)""")
    report = ep.run_preflight(ep.MigrationPlan(steps=[ep.SetNotNull(table="t", column="n")]), db)
    frame = report.samples("NOT_NULL_PRECHECK")
    assert list(frame.columns) == ["id", "price", "at", "ok", "name", "n"]
    assert str(frame["id"].dtype) == "Int64" and str(frame["ok"].dtype) == "boolean"
    assert str(frame["at"].dtype).startswith("datetime64") and str(frame["name"].dtype) == "string"
    assert str(frame.loc[0, "price"]) == "9.50"
    findings = report.findings_frame()
    assert list(findings.columns[:4]) == ["step", "checkId", "severity", "target"]
    json.loads(report.contract_json())


def test_progress_callback_is_called_once_per_check(db, shop):
    seen = []
    ep.run_preflight(ep.MigrationPlan.from_sql(PLAN), db, explore=True,
                     progress=lambda run, done, total: seen.append((run.check_id, done, total)))
    assert seen == [("NOT_NULL_PRECHECK", 1, 3), ("UNIQUE_PRECHECK", 2, 3), ("FK_VIOLATIONS_PRECHECK", 3, 3)]


def test_a_backfill_update_written_after_a_foreign_key_is_judged_in_apply_order(db, run_sql, conninfo):
    """Apply adds the foreign key in phase C, after the UPDATE of phase A: the key is validated on the rows the
    UPDATE leaves (the 0 it writes has no parent), as PostgreSQL applying the phases does."""
    run_sql("""CREATE TABLE p (x int PRIMARY KEY); INSERT INTO p VALUES (1);
               CREATE TABLE c (a int); INSERT INTO c VALUES (1), (NULL)""")
    plan = ep.MigrationPlan.from_sql("ALTER TABLE c ADD FOREIGN KEY (a) REFERENCES p (x);"
                                     "UPDATE c SET a = 0 WHERE a IS NULL")
    report = ep.run_preflight(plan, db)
    assert report.status == "blocked"
    [finding] = report.blockers
    assert finding.check_id == "FK_VIOLATIONS_PRECHECK" and finding.stats["violations"] == 1
    assert finding.sample_rows == [{"a": 0}]
    with psycopg.connect(conninfo) as conn:  # the oracle, in apply's order
        conn.execute("UPDATE c SET a = 0 WHERE a IS NULL")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("ALTER TABLE c ADD FOREIGN KEY (a) REFERENCES p (x)")


def test_an_update_after_a_check_the_plan_adds_is_checked_against_it(db, run_sql):
    run_sql("CREATE TABLE c (a int); INSERT INTO c VALUES (1), (NULL)")
    plan = ep.MigrationPlan.from_sql("ALTER TABLE c ADD CONSTRAINT positive CHECK (a > 0);"
                                     "UPDATE c SET a = -1 WHERE a IS NULL")
    report = ep.run_preflight(plan, db)
    [finding] = report.blockers
    assert finding.check_id == "CHECK_CONSTRAINT_PRECHECK" and report.checks[-1].step == 2
    assert finding.stats["violations"] == 1 and "positive" in finding.message
