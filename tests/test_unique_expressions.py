"""The unique indexes a data statement must keep are the ones PostgreSQL's catalog has at its step: the target's,
and the plan's own (raw SQL too), an expression or partial one computed on the new rows by its own definition.
An UPDATE that does not touch an index's columns leaves it alone. PostgreSQL is the oracle, on both servers."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import erd_preflight as ep
from tests.oracle import REFUSED, assert_agrees, examples, postgres_accepts, verdict

SETUP = """
DROP TABLE IF EXISTS p CASCADE;
CREATE TABLE p (id int PRIMARY KEY, name text, flag int, n int);
"""

INDEXES = [
    "",
    "CREATE UNIQUE INDEX p_lower ON p (lower(name))",
    "CREATE UNIQUE INDEX p_flagged ON p (name) WHERE flag > 0",
    "CREATE UNIQUE INDEX p_pair ON p ((n % 3), lower(name)) NULLS NOT DISTINCT",
]
STATEMENTS = [
    "UPDATE p SET name = upper(name) WHERE id % 2 = 0",
    "UPDATE p SET flag = 1",
    "UPDATE p SET n = n + 1",
    "UPDATE p SET name = 'same' WHERE flag = 0",
    "INSERT INTO p SELECT id + 10, upper(name), flag, n FROM p WHERE id = 1",
    "INSERT INTO p VALUES (50, 'A', 1, 0)",
    "DELETE FROM p WHERE flag = 1",
]

rows = st.lists(st.tuples(st.none() | st.sampled_from(["a", "A", "b", "same"]), st.integers(0, 1), st.integers(0, 4)),
                max_size=4)


@settings(max_examples=examples(2), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=rows, existing=st.sampled_from(INDEXES), made=st.sampled_from(INDEXES),
       statements=st.lists(st.sampled_from(STATEMENTS), min_size=1, max_size=3, unique=True))
def test_the_unique_indexes_at_a_step_are_kept_as_postgresql_keeps_them_asking_nobody(
        db, run_sql, conninfo, p, existing, made, statements):
    run_sql(SETUP)
    for i, (name, flag, n) in enumerate(p, start=1):
        run_sql("INSERT INTO p VALUES (%s, %s, %s, %s)", (i, name, flag, n))
    if existing:
        try:
            run_sql(existing)
        except Exception:  # noqa: BLE001 (the rows break it: the target starts without it)
            pass
    plan = [made.replace("p_", "made_"), *statements] if made and made != existing else statements
    accepted = postgres_accepts(conninfo, plan)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(";\n".join(plan)), db)
    found = assert_agrees(report, accepted, plan, REFUSED)
    # Asking nobody, but for the one thing no reading of the rows decides: PostgreSQL checks a unique key row by row,
    # so a row that takes a key another changed row still has fails or not by the order the UPDATE visits the rows.
    asked = [r for r in report.results if (r.stats or {}).get("acknowledgeStep") is not None]
    assert found != "unverified" or all(ORDER in r.message for r in asked), (plan, report.summary())


ORDER = "PostgreSQL checks the key row by row, so the UPDATE fails or not depending on the order it visits the rows in"


@pytest.mark.parametrize("first", ["n = 2", "n = 0"])
def test_an_update_whose_expression_unique_key_takes_another_rows_old_key_is_a_persons_call(
        db, run_sql, conninfo, first):
    """Found by hypothesis on both servers: names NULL, n 2 and 0, unique ((n % 3), lower(name)) NULLS NOT DISTINCT,
    SET n = n + 1. The first row's new key (0, NULL) is the second row's old key. The end state is unique, and
    PostgreSQL fails or not by the order it visits the rows in (stored n = 2 first: 23505; n = 0 first: accepted).
    Preflight judged the end state only and said clear. Now it names the rows for a person either way."""
    rows = [(1, 2), (2, 0)] if first == "n = 2" else [(1, 0), (2, 2)]
    run_sql(SETUP + "CREATE UNIQUE INDEX p_pair ON p ((n % 3), lower(name)) NULLS NOT DISTINCT")
    for i, n in rows:
        run_sql("INSERT INTO p VALUES (%s, NULL, 0, %s)", (i, n))
    statements = ["UPDATE p SET n = n + 1"]
    assert postgres_accepts(conninfo, statements) == (first == "n = 0"), REFUSED  # the order decides
    report = ep.run_preflight(ep.MigrationPlan.from_sql(statements[0]), db)
    asked = [r for r in report.results if (r.stats or {}).get("acknowledgeStep") == 1]
    assert not report.blocked and asked and ORDER in asked[0].message, report.summary()
    assert "unique index p_pair" in asked[0].message and "1 row it changes takes" in asked[0].message


def test_an_update_of_a_deferrable_unique_key_is_not_asked_about_row_order(db, run_sql, conninfo):
    """PostgreSQL checks a DEFERRABLE unique constraint when the statement ends, not row by row, so SET id = id + 1
    is decided by the rows: preflight used to ask a person about the order anyway, after advising DEFERRABLE."""
    run_sql("DROP TABLE IF EXISTS d; CREATE TABLE d (id int, CONSTRAINT d_id UNIQUE (id) DEFERRABLE); "
            "INSERT INTO d VALUES (1), (2), (3)")
    statements = ["UPDATE d SET id = id + 1"]
    assert postgres_accepts(conninfo, statements)
    for rehearse in (False, True):
        report = ep.run_preflight(ep.MigrationPlan.from_sql(statements[0]), db, rehearse=rehearse)
        assert verdict(report) == "clear", report.summary()


def test_a_unique_expression_index_the_plan_makes_in_raw_sql_guards_the_update_after_it(db, run_sql, conninfo):
    """Found reading the code: the unique indexes were the target's and the plan's modelled ones, so an UPDATE after
    a raw CREATE UNIQUE INDEX on lower(name) that made two names equal was cleared, and PostgreSQL refused it."""
    run_sql(SETUP + "INSERT INTO p VALUES (1, 'a', 0, 0), (2, 'b', 0, 0)")
    text = "CREATE UNIQUE INDEX p_lower ON p (lower(name)); UPDATE p SET name = 'A' WHERE id = 2"
    assert not postgres_accepts(conninfo, [s.strip() for s in text.split(";")])
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked and "step 2" in report.blockers[0].message, report.summary()


def test_an_update_of_other_columns_leaves_an_expression_unique_index_alone(db, run_sql):
    """It used to name every expression unique index of the table for a person, whatever columns the UPDATE set."""
    run_sql(SETUP + "CREATE UNIQUE INDEX p_lower ON p (lower(name)); INSERT INTO p VALUES (1, 'a', 0, 0)")
    report = ep.run_preflight(ep.MigrationPlan.from_sql("UPDATE p SET n = n + 1"), db)
    assert not report.results, report.summary()
