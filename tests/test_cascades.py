"""A DELETE does what its foreign keys say: ON DELETE CASCADE deletes the referencing rows too, as a DELETE of their
table at the same step (whose own foreign keys then act in turn); RESTRICT and NO ACTION fail on a row still
referenced. Later steps read the tables as the cascade leaves them. PostgreSQL is the oracle, on both servers."""

from __future__ import annotations


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import erd_preflight as ep
from tests.oracle import REFUSED, assert_agrees, examples, postgres_accepts

SETUP = """
DROP TABLE IF EXISTS g, c, p CASCADE;
CREATE TABLE p (id int PRIMARY KEY, k int);
CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p ON DELETE CASCADE, v int);
CREATE TABLE g (id int PRIMARY KEY, c_id int REFERENCES c {action}, w int);
"""
ACTIONS = ["", "ON DELETE CASCADE", "ON DELETE RESTRICT"]
STATEMENTS = [
    "DELETE FROM p WHERE k = 1",
    "DELETE FROM p WHERE id IN (SELECT p_id FROM c WHERE v = 0)",
    "DELETE FROM c WHERE v = 2",
    "CREATE UNIQUE INDEX c_v ON c (v)",
    "ALTER TABLE g ADD CONSTRAINT g_w CHECK (w < 2)",
    "UPDATE g SET w = w + 1",
]

ids = st.integers(1, 4)
rows = st.tuples(st.lists(st.integers(0, 2), max_size=4),  # p: k
                 st.lists(st.tuples(st.none() | ids, st.integers(0, 2)), max_size=4),  # c: p_id, v
                 st.lists(st.tuples(st.none() | ids, st.integers(0, 2)), max_size=4))  # g: c_id, w


def _load(run_sql, action: str, p: list, c: list, g: list) -> None:
    run_sql(SETUP.format(action=action))
    for i, k in enumerate(p, start=1):
        run_sql("INSERT INTO p VALUES (%s, %s)", (i, k))
    for i, (p_id, v) in enumerate(c, start=1):
        run_sql("INSERT INTO c VALUES (%s, %s, %s)", (i, p_id if p_id is not None and p_id <= len(p) else None, v))
    for i, (c_id, w) in enumerate(g, start=1):
        run_sql("INSERT INTO g VALUES (%s, %s, %s)", (i, c_id if c_id is not None and c_id <= len(c) else None, w))


@settings(max_examples=examples(2), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows, action=st.sampled_from(ACTIONS),
       statements=st.lists(st.sampled_from(STATEMENTS), min_size=1, max_size=3, unique=True))
def test_a_delete_cascades_as_postgresql_does_and_asks_nobody(db, run_sql, conninfo, data, action, statements):
    _load(run_sql, action, *data)
    accepted = postgres_accepts(conninfo, statements)
    report = ep.run_preflight(ep.MigrationPlan.from_sql(";\n".join(statements)), db)
    found = assert_agrees(report, accepted, statements, action, REFUSED)
    assert found != "unverified", (statements, action, report.summary())


def test_a_cascade_that_reaches_a_restricted_row_blocks(db, run_sql, conninfo):
    """It used to be named for a person: the DELETE cascades through c to rows that g's key references."""
    _load(run_sql, "ON DELETE RESTRICT", [1], [(1, 0)], [(1, 0)])
    text = "DELETE FROM p WHERE k = 1"
    assert not postgres_accepts(conninfo, [text])
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), db)
    assert report.blocked and "g" in report.blockers[0].message, report.summary()
