"""Data statements (UPDATE, DELETE) and type changes of the plan against every constraint the table already has, with PostgreSQL as
the oracle: a plan preflight clears (no step left for a person to acknowledge) applies, and a plan it blocks
fails."""

from __future__ import annotations

import collections

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import erd_preflight as ep

from oracle import assert_agrees, examples, postgres_accepts

SCHEMA = """
DROP TABLE IF EXISTS k, h, g, c, p CASCADE;
CREATE TABLE p (x int PRIMARY KEY);
CREATE TABLE c (id int PRIMARY KEY, a int NOT NULL CHECK (a >= 0), b int UNIQUE REFERENCES p (x), code varchar(2));
CREATE TABLE g (id int, cb int REFERENCES c (b));
CREATE TABLE h (id int, cid int REFERENCES c (id) ON UPDATE RESTRICT);
CREATE TABLE k (id int, cid int NOT NULL REFERENCES c (id) ON DELETE SET NULL);
"""

UPDATES = [
    "UPDATE c SET a = a - 1",
    "UPDATE c SET a = NULL WHERE id > 4",
    "UPDATE c SET b = b + 1",
    "UPDATE c SET b = NULL WHERE a = 0",
    "UPDATE c SET b = 5 WHERE id = 2",
    "UPDATE c SET b = b - 1 WHERE b > 2",
    "UPDATE c SET code = repeat('x', a)",
    "UPDATE c SET code = 'ab' || a WHERE a > 1",
    "UPDATE c SET id = id + 10 WHERE a = 1",
    "UPDATE c SET id = id + 1",
    "UPDATE c AS k SET a = k.a + 1 WHERE k.b IS NOT NULL",
    "UPDATE c SET a = 3 - a, code = NULL",
    "ALTER TABLE c ADD CHECK (a < 3)",
    "DELETE FROM c WHERE a = 0",
    "DELETE FROM p WHERE x > 3",
    "DELETE FROM c AS q WHERE q.id > 4",
    "DELETE FROM c WHERE b IS NULL",
    "ALTER TABLE c ALTER COLUMN b SET NOT NULL",
    "ALTER TABLE c ALTER COLUMN a TYPE bigint USING a / 2",
    "ALTER TABLE c ALTER COLUMN a TYPE numeric USING a - 2",
    "ALTER TABLE c ALTER COLUMN b TYPE bigint USING b / 2",
    "ALTER TABLE c ALTER COLUMN b TYPE int USING b + 1",
    "ALTER TABLE c ALTER COLUMN id TYPE bigint USING id % 3",
    "ALTER TABLE c ALTER COLUMN code SET NOT NULL",
    # subqueries and USING that read tables as they are now
    "DELETE FROM c USING p WHERE c.b = p.x AND p.x > 2",
    "UPDATE c SET a = (SELECT count(*) FROM p WHERE p.x <= c.id)",
    "DELETE FROM p WHERE x IN (SELECT b FROM c WHERE a = 0)",
    "UPDATE c SET b = (SELECT max(x) FROM p) WHERE id = 1",
    "UPDATE c SET code = (SELECT 'z' || count(*) FROM g WHERE g.cb = c.b)",
    "UPDATE c SET a = c.a + p.x - 2 FROM p WHERE p.x = c.b",
    "UPDATE c SET b = h.id FROM h WHERE h.cid = c.id",
]

# a read-only WITH: its queries read as subqueries, as PostgreSQL reads them
WITHS = [
    "WITH z AS (SELECT x FROM p WHERE x > 2) DELETE FROM c USING z WHERE c.b = z.x",
    "WITH m AS (SELECT max(x) AS top FROM p) UPDATE c SET b = m.top FROM m WHERE c.id = 1",
    "WITH s AS (SELECT id, a FROM c), t(i, v) AS (SELECT id, a - 1 FROM s) UPDATE c SET a = t.v FROM t WHERE t.i = c.id",
    "WITH n(v) AS (VALUES (20), (21)) INSERT INTO c (id, a) SELECT v, 0 FROM n",
    "WITH gone AS (SELECT b FROM c WHERE a = 0) DELETE FROM p WHERE x IN (SELECT b FROM gone)",
]
WITHS_FOR_A_PERSON = [
    "WITH RECURSIVE r(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM r WHERE v < 3) INSERT INTO p SELECT v + 40 FROM r",
]
UPDATES += WITHS + WITHS_FOR_A_PERSON

rows = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 3), st.none() | st.integers(0, 5),
                          st.none() | st.sampled_from(["", "x", "ab"])), max_size=8)
refs = st.lists(st.integers(0, 6), max_size=4)
few = st.lists(st.integers(5, 6), max_size=1)


_TALLY: collections.Counter = collections.Counter()


def _load(conninfo: str, parents: set[int], children: list, g: list, h: list, k: list) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SCHEMA)
        for x in sorted(parents):
            conn.execute("INSERT INTO p VALUES (%s)", (x,))
        for row in children:  # rows the constraints refuse are left out: the table starts valid
            try:
                conn.execute("INSERT INTO c VALUES (%s, %s, %s, %s)", row)
            except psycopg.errors.IntegrityError:
                pass
        for i, v in enumerate(g):
            conn.execute("INSERT INTO g SELECT %s, b FROM c WHERE b = %s", (i, v))
        for i, v in enumerate(h):
            conn.execute("INSERT INTO h SELECT %s, id FROM c WHERE id = %s", (i, v))
        for i, v in enumerate(k):
            conn.execute("INSERT INTO k SELECT %s, id FROM c WHERE id = %s", (i, v))


@settings(max_examples=examples(), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parents=st.sets(st.integers(0, 5)), children=rows, g=refs, h=refs, k=few,
       statements=st.lists(st.sampled_from(UPDATES), min_size=1, max_size=2))
def test_a_data_statement_or_a_type_change_is_judged_against_every_constraint_the_table_has(
        db, conninfo, parents, children, g, h, k, statements):
    _load(conninfo, parents, children, g, h, k)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(";\n".join(statements)), db)
    accepted = postgres_accepts(conninfo, statements)
    _TALLY[(assert_agrees(report, accepted, statements), accepted)] += 1  # what the examples were, for a look


def test_an_update_that_calls_a_function_the_plan_creates_is_unverified_not_blocked(db, run_sql, conninfo):
    """Replayed history (lemmy 2020-07-18): the function does not exist in the database yet, so the check cannot
    run; PostgreSQL applies the plan."""
    run_sql("CREATE TABLE u (id int, actor text NOT NULL); INSERT INTO u VALUES (1, 'changeme'), (2, 'x')")
    statements = ["CREATE FUNCTION gen() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'g' $$",
                  "UPDATE u SET actor = gen() WHERE actor = 'changeme'"]
    report = ep.run_preflight(ep.MigrationPlan.from_sql(";\n".join(statements)), db)
    assert assert_agrees(report, postgres_accepts(conninfo, statements), statements) == "unverified"
    assert report.results[0].stats["acknowledgeStep"] == 2 and "gen()" in report.results[0].message


def test_an_enum_the_plan_makes_again_under_its_name_is_unverified_not_blocked(db, run_sql, conninfo):
    """Replayed history (lemmy 2025-08-01): on the database, the name still means the old type, without the new
    value; PostgreSQL applies the plan."""
    run_sql("CREATE TYPE vis AS ENUM ('Public'); CREATE TABLE com (id int, v vis NOT NULL);"
            "INSERT INTO com VALUES (1, 'Public'), (2, 'Public')")
    statements = ["ALTER TYPE vis RENAME TO vis__", "CREATE TYPE vis AS ENUM ('Public', 'Unlisted')",
                  "ALTER TABLE com ALTER COLUMN v TYPE vis USING v::text::vis",
                  "UPDATE com SET v = 'Unlisted' WHERE id = 2"]
    report = ep.run_preflight(ep.MigrationPlan.from_sql(";\n".join(statements)), db)
    assert assert_agrees(report, postgres_accepts(conninfo, statements), statements) == "unverified"
    # with no enum made by the plan, a value the type lacks is the rows' verdict: a block
    report = ep.run_preflight(ep.MigrationPlan.from_sql("UPDATE com SET v = 'Nope' WHERE id = 2"), db)
    assert report.blocked and "Nope" in report.blockers[0].message


def test_a_type_change_under_a_partial_unique_index_the_plan_builds_is_checked_on_the_converted_values(
        db, run_sql, conninfo):
    """The partial unique index of an earlier step is computed again on the converted values, over the rows its
    WHERE covers (it used to be passed over, a false clear here: 2 / 2 and 3 / 2 are both 1; then it was named for
    a person)."""
    run_sql("CREATE TABLE w (a int, b int); INSERT INTO w VALUES (1, 2), (1, 3)")
    statements = ["CREATE UNIQUE INDEX w_b ON w (b) WHERE a > 0", "ALTER TABLE w ALTER COLUMN b TYPE int USING b / 2"]
    report = ep.run_preflight(ep.MigrationPlan.from_sql(";\n".join(statements)), db)
    assert not postgres_accepts(conninfo, statements)
    assert assert_agrees(report, False, statements) == "blocked"
    assert report.blockers[0].target_ref.name == "w_b" and "type change" in report.blockers[0].message


INSERTS = [
    "INSERT INTO c VALUES (7, 0, NULL, 'x')",
    "INSERT INTO c (id, a) VALUES (8, 1), (9, 2)",
    "INSERT INTO c (id, a) VALUES (1, 0)",
    "INSERT INTO c VALUES (10, -1, NULL, NULL)",
    "INSERT INTO c VALUES (11, 0, 5, 'abc')",
    "INSERT INTO c VALUES (12, 0, 9, NULL)",
    "INSERT INTO c SELECT id + 20, a, NULL, code FROM c",
    "INSERT INTO c SELECT id + 20, a, b, code FROM c",
    "INSERT INTO c (id, a, b) SELECT x + 30, 0, x FROM p",
    "INSERT INTO p SELECT x + 10 FROM p",
    "INSERT INTO p VALUES (0)",
    "INSERT INTO h (id) VALUES (1)",
    "INSERT INTO k (id, cid) VALUES (1, 99)",
]

# ON CONFLICT DO NOTHING: CHECK and NOT NULL on every proposed row, the skipped rows dropped before the foreign keys
# and the other unique keys see them (the arbiter: the target's key, or the table's only one)
SKIPS = [
    "INSERT INTO c VALUES (1, -1, NULL, NULL) ON CONFLICT (id) DO NOTHING",
    "INSERT INTO c (id, a, b) VALUES (2, 0, 9) ON CONFLICT (id) DO NOTHING",
    "INSERT INTO c (id, a, b) VALUES (14, 0, 3), (15, 0, 3) ON CONFLICT (id) DO NOTHING",
    "INSERT INTO c (id, a, b) VALUES (3, 0, 4) ON CONFLICT ON CONSTRAINT c_pkey DO NOTHING",
    "INSERT INTO c (id, a) VALUES (4, 1), (4, 2) ON CONFLICT (id) DO NOTHING",
    "INSERT INTO c (id, a, b, code) VALUES (5, 1, NULL, 'abc') ON CONFLICT (id) DO NOTHING",
    "INSERT INTO p VALUES (0), (1), (1), (7) ON CONFLICT DO NOTHING",
    "INSERT INTO h (id, cid) VALUES (1, 3) ON CONFLICT DO NOTHING",
    "INSERT INTO g (id, cb) SELECT id, b + 1 FROM c ON CONFLICT DO NOTHING",  # no unique key: nothing is skipped
    # two unique keys (id, b) and one row: skipped when either conflicts (documenso's service user)
    "INSERT INTO c VALUES (1, 0, NULL, 'x') ON CONFLICT DO NOTHING",
    "INSERT INTO c VALUES (21, 0, 1, 'x') ON CONFLICT DO NOTHING",
    "INSERT INTO c VALUES (22, -1, 9, 'x') ON CONFLICT DO NOTHING",
]
SKIPS_FOR_A_PERSON = [
    "INSERT INTO c VALUES (1, 0, NULL, 'x'), (23, 0, 1, NULL) ON CONFLICT DO NOTHING",  # two keys, two rows
    "INSERT INTO p SELECT x + 3 FROM p ON CONFLICT DO NOTHING",  # a query's rows: their order is not known
]
INSERTS += SKIPS + SKIPS_FOR_A_PERSON


@settings(max_examples=examples(), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parents=st.sets(st.integers(0, 5)), children=rows, g=refs, h=refs, k=few,
       statements=st.lists(st.sampled_from(INSERTS) | st.sampled_from(UPDATES), min_size=1, max_size=3)
       .filter(lambda s: any(x in INSERTS for x in s)))
def test_an_insert_is_judged_against_every_constraint_the_table_has_and_later_steps_see_its_rows(
        db, conninfo, parents, children, g, h, k, statements):
    """INSERT ... VALUES / SELECT: each value's conversion and length, NOT NULL, CHECK, foreign keys on the new rows,
    UNIQUE on the table with them; later steps read the table with the new rows. It used to be left for a person."""
    _load(conninfo, parents, children, g, h, k)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(";\n".join(statements)), db)
    accepted = postgres_accepts(conninfo, statements)
    _TALLY[("insert", assert_agrees(report, accepted, statements), accepted)] += 1


@pytest.mark.parametrize("statement", SKIPS)
def test_an_insert_that_skips_its_conflicts_is_decided_read_only(db, conninfo, statement):
    """ON CONFLICT DO NOTHING with one arbiter key and VALUES was left for a person; PostgreSQL agrees with the
    verdict on rows where the skipped row would break a foreign key, and where it would not."""
    for parents, children in (({0, 1, 2, 3, 4, 5}, [(1, 0, None, None), (2, 1, 1, None), (4, 0, None, None)]),
                              ({1}, [(3, 2, 1, "ab")])):
        _load(conninfo, parents, children, [], [], [])
        report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db)
        accepted = postgres_accepts(conninfo, [statement])
        assert assert_agrees(report, accepted, statement) != "unverified", report.summary()


@pytest.mark.parametrize("statement", WITHS)
def test_a_data_statement_with_a_read_only_with_is_decided_read_only(db, conninfo, statement):
    """A WITH of plain queries made its statement a step for a person; its queries are read as subqueries now, and
    PostgreSQL agrees with the verdict on rows where the statement fails and where it applies."""
    for parents, children in (({0, 1, 2, 3, 4, 5}, [(1, 0, 3, None), (2, 1, 4, None), (4, 0, None, None)]),
                              ({1, 4}, [(3, 2, 1, "ab"), (5, 0, 4, None)])):
        _load(conninfo, parents, children, [1, 4], [3], [])
        report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db)
        accepted = postgres_accepts(conninfo, [statement])
        assert assert_agrees(report, accepted, statement) != "unverified", report.summary()


TRIGGER_MADE_BY_THE_PLAN = """
CREATE FUNCTION guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.a > 2 THEN RAISE EXCEPTION 'too big'; END IF; RETURN NEW; END $$;
CREATE TRIGGER guard BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION guard();
UPDATE {table} SET a = a + 2;
"""


@pytest.mark.parametrize("rehearse", [True, False])
@pytest.mark.parametrize("table", ["c", "made"])
def test_a_trigger_the_plan_makes_before_an_update_is_named_never_a_silent_clear(db, conninfo, run_sql, table,
                                                                                 rehearse):
    """The triggers an UPDATE sets off were read from the database's catalog, which does not have the ones the plan
    makes first: the UPDATE was cleared and PostgreSQL's trigger refused it (a false clear). They are read from the
    rehearsal's catalog now; without the rehearsal, a trigger made earlier in the plan names the step."""
    _load(conninfo, {1}, [(1, 1, None, None), (2, 0, None, None)], [], [], [])
    text = ("CREATE TABLE made AS SELECT id, a FROM c;" if table == "made" else "") + \
        TRIGGER_MADE_BY_THE_PLAN.format(table=table)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db, rehearse=rehearse)
    assert not postgres_accepts(conninfo, [text])
    assert assert_agrees(report, False, text) == "unverified", report.summary()
