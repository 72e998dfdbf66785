"""Exact by construction: a statement whose every input the plan itself makes (tables it creates, literals,
VALUES, its own sequences and functions) is decided by the rehearsal, with no person asked. PostgreSQL is the
oracle: the same statements on the target, in a transaction rolled back. Where an input is not the plan's (a
foreign key to an old table, an old table read), the step stays a person's call or is checked on the real rows,
never a guess. Found by replaying lemmy's history (``2019-02-26-002946_create_user``: CREATE TABLE, then INSERT
its admin row, left for a person)."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import erd_preflight as ep
from tests.oracle import REFUSED, assert_agrees, examples, postgres_accepts, verdict

SETUP = "CREATE TABLE old (id int PRIMARY KEY, a int); INSERT INTO old VALUES (1, 1), (2, 2)"

# (plan, exact): exact cases are decided without a person, either way; the others never clear silently
CASES = {
    "seed rows into a new table": (
        "CREATE TABLE u (id serial PRIMARY KEY, name text UNIQUE NOT NULL); "
        "INSERT INTO u (name) VALUES ('admin'), ('guest')", True),
    "seed rows that collide on the new table's key": (
        "CREATE TABLE u (id serial PRIMARY KEY, name text UNIQUE); INSERT INTO u (name) VALUES ('a'), ('a')", True),
    "a NULL seeded, then NOT NULL": (
        "CREATE TABLE u (id int, name text); INSERT INTO u VALUES (1, NULL); "
        "ALTER TABLE u ALTER COLUMN name SET NOT NULL", True),
    "seeded, then a check that holds": (
        "CREATE TABLE u (id int, n int); INSERT INTO u VALUES (1, 5); ALTER TABLE u ADD CHECK (n > 0)", True),
    "INSERT ... SELECT between new tables, then a unique index": (
        "CREATE TABLE u (id int); INSERT INTO u VALUES (1), (1); CREATE TABLE w (id int); "
        "INSERT INTO w SELECT id FROM u; CREATE UNIQUE INDEX w_id ON w (id)", True),
    "an UPDATE of a new table": (
        "CREATE TABLE u (id int PRIMARY KEY); INSERT INTO u VALUES (1), (2); UPDATE u SET id = id + 1", True),
    "an UPDATE of a new table that breaks its key": (
        "CREATE TABLE u (id int PRIMARY KEY, g int); INSERT INTO u VALUES (1, 0), (2, 0); UPDATE u SET id = g", True),
    "a DELETE of a new table with a foreign key to another new one": (
        "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (pid int REFERENCES p); INSERT INTO p VALUES (1); "
        "INSERT INTO c VALUES (1); DELETE FROM p", True),
    "a foreign key between new tables": (
        "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (pid int); INSERT INTO p VALUES (1); "
        "INSERT INTO c VALUES (2); ALTER TABLE c ADD FOREIGN KEY (pid) REFERENCES p", True),
    "a DO block that fills a new table": (
        "CREATE TABLE u (id int); DO $$ BEGIN INSERT INTO u SELECT generate_series(1, 3); END $$; "
        "ALTER TABLE u ADD PRIMARY KEY (id)", True),
    "a function the plan makes, in a default": (
        "CREATE FUNCTION two() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 2 $$; "
        "CREATE TABLE u (id int DEFAULT two() CHECK (id < 2)); INSERT INTO u DEFAULT VALUES", True),
    # not exact: the old table's rows decide
    "a foreign key from a new table to an old one": (
        "CREATE TABLE u (id int, old_id int REFERENCES old); INSERT INTO u VALUES (1, 3)", False),
    "a new table filled from an old one": (
        "CREATE TABLE u (id int); INSERT INTO u SELECT a FROM old; ALTER TABLE u ADD PRIMARY KEY (id)", False),
    "a trigger of the plan's that reads an old table": (
        "CREATE TABLE u (id int); CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NOT EXISTS (SELECT FROM old WHERE id = NEW.id) THEN RAISE 'no'; END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER t BEFORE INSERT ON u FOR EACH ROW EXECUTE FUNCTION f(); INSERT INTO u VALUES (2)", False),
    "a new table filled inside a block from an old one": (
        "CREATE TABLE u (id int); DO $$ BEGIN INSERT INTO u SELECT id FROM old; END $$; "
        "ALTER TABLE u ADD CHECK (id > 1)", False),
    "a new table's rows compared with the session's role": (
        "CREATE TABLE u (who text); INSERT INTO u VALUES (current_user); ALTER TABLE u ADD CHECK (who = 'x')", False),
}


def _statements(text: str) -> list[str]:
    return [step.sql() for step in ep.MigrationPlan.from_sql(text).steps]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_statement_whose_every_input_the_plan_makes_is_decided_by_the_rehearsal(db, run_sql, conninfo, case):
    text, exact = CASES[case]
    run_sql(SETUP)
    accepted = postgres_accepts(conninfo, _statements(text))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    found = assert_agrees(report, accepted, case)
    if exact:
        assert found == ("clear" if accepted else "blocked"), (case, REFUSED, report.summary())
    else:
        assert found != "clear" or accepted, case


def test_rows_the_plan_makes_are_kept_for_the_later_steps_that_read_them(db, run_sql, conninfo):
    """The rehearsal keeps the rows an exact statement writes: a later step meets them, as at apply."""
    run_sql(SETUP)
    text = ("CREATE TABLE u (id int); INSERT INTO u VALUES (1); INSERT INTO u VALUES (1); "
            "ALTER TABLE u ADD CONSTRAINT u_id UNIQUE (id)")
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked and "step 4" in report.blockers[0].message and "Key (id)=(1)" in report.blockers[0].message
    assert not postgres_accepts(conninfo, _statements(text))


def test_rows_an_inexact_statement_may_change_are_never_read_as_the_ones_apply_meets(db, run_sql, conninfo):
    """A DELETE that reads an old table removes, at apply, rows the rehearsal kept: the unique index after it is
    not blocked on the kept duplicates (a false block), and not cleared either."""
    run_sql(SETUP)
    text = ("CREATE TABLE u (id int); INSERT INTO u VALUES (1), (1); DELETE FROM u WHERE id IN (SELECT id FROM old); "
            "CREATE UNIQUE INDEX u_id ON u (id)")
    accepted = postgres_accepts(conninfo, _statements(text))
    assert accepted
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert verdict(report) == "unverified", report.summary()


values = st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=0, max_size=4)
AFTER = [
    "ALTER TABLE n ADD CONSTRAINT n_a UNIQUE (a)",
    "ALTER TABLE n ALTER COLUMN b SET NOT NULL",
    "ALTER TABLE n ADD CHECK (a >= b)",
    "CREATE UNIQUE INDEX n_ab ON n (a, b)",
    "ALTER TABLE n ADD PRIMARY KEY (a)",
    "UPDATE n SET a = a + 1 WHERE b = 2",
    "DELETE FROM n WHERE a = 1",
    "ALTER TABLE m ADD FOREIGN KEY (a) REFERENCES n (a)",
    "INSERT INTO m SELECT a FROM n WHERE b IS NOT NULL",
    "ALTER TABLE n ALTER COLUMN a TYPE smallint USING a * 20000",
    "UPDATE m SET a = (SELECT max(a) FROM n)",
]


@settings(max_examples=examples(2), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 3)), st.one_of(st.none(), st.integers(0, 3))),
                     max_size=4), m_rows=values, after=st.lists(st.sampled_from(AFTER), min_size=1, max_size=3))
def test_plans_on_tables_the_plan_makes_agree_with_postgresql_and_ask_nobody(db, run_sql, conninfo, rows, m_rows,
                                                                             after):
    run_sql("DROP TABLE IF EXISTS m, n CASCADE")
    statements = ["CREATE TABLE n (a int UNIQUE, b int)", "CREATE TABLE m (a int)"]
    if rows:
        statements.append("INSERT INTO n VALUES " + ", ".join(
            f"({'NULL' if a is None else a}, {'NULL' if b is None else b})" for a, b in rows))
    if m_rows:
        statements.append("INSERT INTO m VALUES " + ", ".join(f"({'NULL' if v is None else v})" for v in m_rows))
    statements += after
    accepted = postgres_accepts(conninfo, statements)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(";\n".join(statements)), db)
    found = assert_agrees(report, accepted, statements)
    assert found == ("clear" if accepted else "blocked"), (statements, report.summary())


@pytest.mark.parametrize("fill", [
    "DO $$ BEGIN INSERT INTO u SELECT id FROM old; END $$",
    "MERGE INTO u USING old ON u.id = old.id WHEN NOT MATCHED THEN INSERT VALUES (old.id)",
])
def test_a_new_table_a_block_or_a_merge_fills_is_never_said_to_be_empty(db, run_sql, conninfo, fill):
    """Found reading the code: a DO block or a MERGE that fills a table the plan made left it "empty here" for the
    checks after it, which then passed a CHECK that PostgreSQL refuses at apply. Those checks now say who filled it."""
    run_sql(SETUP)
    text = f"CREATE TABLE u (id int); {fill}; ALTER TABLE u ADD CHECK (id > 1)"
    assert not postgres_accepts(conninfo, _statements(text))
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    on_check = [r for r in report.checks if r.step == 3]
    assert on_check and all(r.outcome != "pass" for r in on_check), report.summary()
    assert "filled by step 2" in " ".join(r.message for r in on_check)
