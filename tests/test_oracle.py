"""PostgreSQL is the oracle: a check's verdict must agree with PostgreSQL running the same DDL in a
transaction that is rolled back, on generated data (NULLs, duplicates, orphans, partial NULL keys, bad
casts, empty tables, multi-step plans)."""


import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import erd_preflight as ep

from oracle import assert_agrees, examples, postgres_accepts

small = st.none() | st.integers(min_value=-3, max_value=3)
rows = st.lists(st.tuples(small, small, st.sampled_from(["1", "2", "x", "", " 7", None, "99999999999"])),
                max_size=12)
parents = st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), max_size=6, unique=True)

STEPS = [
    "ALTER TABLE c ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE c ADD UNIQUE (a)",
    "ALTER TABLE c ADD UNIQUE (a, b)",
    "ALTER TABLE c ADD UNIQUE NULLS NOT DISTINCT (a, b)",
    "ALTER TABLE c ADD PRIMARY KEY (a, b)",
    "CREATE UNIQUE INDEX c_ab ON c (a, b) WHERE b > 0",
    "ALTER TABLE c ADD FOREIGN KEY (a, b) REFERENCES p (x, y)",
    "ALTER TABLE c ADD FOREIGN KEY (a, b) REFERENCES p (x, y) MATCH FULL",
    "ALTER TABLE c ADD CHECK (a + b > 0)",
    "ALTER TABLE c ADD EXCLUDE (a WITH =, b WITH =)",
    "ALTER TABLE c ADD EXCLUDE USING hash (a WITH =) WHERE (b > 0)",
    "ALTER TABLE c ALTER COLUMN v TYPE integer USING v::integer",
    "ALTER TABLE c ALTER COLUMN v TYPE varchar(1)",
    "ALTER TABLE c ADD COLUMN d int NOT NULL",
    "UPDATE c SET a = 0 WHERE a IS NULL",
    "ALTER TABLE c ADD COLUMN e int DEFAULT 1",
    "ALTER TABLE c ALTER COLUMN e SET NOT NULL",
    "ALTER TABLE c ALTER COLUMN b TYPE bigint USING b * 1000000000000",
    "ALTER TABLE c ALTER COLUMN b TYPE integer",
]


def _load_tables(conninfo: str, child: list, parent: list) -> None:
    """Fresh tables c (the child) and p (the parent, keyed on (x, y)) holding the generated rows."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS c, p CASCADE")
        conn.execute("CREATE TABLE p (x int, y int, PRIMARY KEY (x, y)); CREATE TABLE c (a int, b int, v text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO p VALUES (%s, %s)", parent)
            cur.executemany("INSERT INTO c VALUES (%s, %s, %s)", child)


@settings(max_examples=examples(), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(child=rows, parent=parents, plan_steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=3))
def test_verdict_agrees_with_postgresql_running_the_ddl(db, conninfo, child, parent, plan_steps):
    _load_tables(conninfo, child, parent)
    plan = ep.MigrationPlan.from_sql(";\n".join(plan_steps))
    report = ep.run_preflight(plan, db)
    accepted = postgres_accepts(conninfo, plan_steps)
    assert_agrees(report, accepted, plan_steps)


_SHAPE = """
SELECT 'column', attname, format_type(atttypid, atttypmod), attnotnull::text FROM pg_attribute
 WHERE attrelid = 'c'::regclass AND attnum > 0 AND NOT attisdropped
UNION ALL
SELECT 'constraint', conname, pg_get_constraintdef(oid), convalidated::text FROM pg_constraint
 WHERE conrelid = 'c'::regclass AND contype <> 'n'
UNION ALL
SELECT 'index', c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid::text FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'c'::regclass
UNION ALL
SELECT 'rows', count(*)::text, coalesce(sum(hashtext(c::text)), 0)::text, '' FROM c
ORDER BY 1, 2
"""


def _shape_after_plain_ddl(conninfo: str, statements: list[str]) -> list[tuple[str, ...]]:
    with psycopg.connect(conninfo) as conn:
        try:
            for statement in statements:
                conn.execute(statement)
            return conn.execute(_SHAPE).fetchall()
        finally:
            conn.rollback()


@settings(max_examples=examples(2), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(child=rows, parent=parents, plan_steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=3))
def test_a_clear_plan_applies_in_phases_to_what_postgresql_makes_of_the_plain_ddl(db, conninfo, store, child,
                                                                                   parent, plan_steps):
    _load_tables(conninfo, child, parent)
    plan = ep.MigrationPlan.from_sql(";\n".join(plan_steps))
    try:
        ep.compile_phases(plan)
    except ep.PhaseOrderError:
        return  # refused before anything runs: nothing to compare
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    if run.preflight().status != "clear" or run.gate().acknowledgements_needed:
        return  # blocked, or a step left for a person to judge: no promise to compare
    expected = _shape_after_plain_ddl(conninfo, plan_steps)
    assert run.apply(options=ep.ApplyOptions(lock_timeout=5)).status == "applied"
    with psycopg.connect(conninfo) as conn:
        assert conn.execute(_SHAPE).fetchall() == expected, plan_steps


ranges = st.lists(st.tuples(st.integers(0, 3), st.none() | st.integers(0, 9), st.none() | st.integers(0, 9),
                            st.booleans()), max_size=10)


@settings(max_examples=examples(2), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=ranges, statement=st.sampled_from([
    "ALTER TABLE booking ADD CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&)",
    "ALTER TABLE booking ADD EXCLUDE USING gist (during WITH &&) WHERE (active)",
    "ALTER TABLE booking ADD EXCLUDE USING gist (during WITH -|-)",
    "ALTER TABLE booking ADD EXCLUDE (room WITH =, active WITH <>)",
]))
def test_an_exclusion_constraint_is_judged_as_postgresql_judges_it(db, conninfo, data, statement):
    """EXCLUDE: no two rows with every operator true between them; NULLs and empty ranges conflict with nothing,
    a row never conflicts with itself, and rows outside the WHERE are left out."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS booking; CREATE TABLE booking (room int, during int4range, active bool)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO booking VALUES (%s, CASE WHEN %s::int IS NULL THEN NULL "
                            "ELSE int4range(least(%s::int, %s::int), greatest(%s::int, %s::int)) END, %s)",
                            [(r, lo, lo, hi if hi is not None else lo, lo, hi if hi is not None else lo, a)
                             for r, lo, hi, a in data])
    plan = ep.MigrationPlan.from_sql(statement)
    assert plan.steps[0].kind == "add_exclude"
    report = ep.run_preflight(plan, db)
    assert (report.status == "clear") == postgres_accepts(conninfo, [statement]), (data, report.summary())
