"""The locks a statement takes and the work it does, as the rehearsal reads them from the shadow, equal what
PostgreSQL does on the real database: the same statement runs there in a transaction that is rolled back, and a
second session reads its locks from pg_locks while it is open; a rewrite is a new relfilenode there. Every step
kind's EXAMPLE and a corpus of raw statements, on both servers (the shadow is always the embedded 18)."""

from __future__ import annotations

import threading
import time
import typing

import pglast
import psycopg
import pytest
from pglast import ast
from pglast.stream import RawStream
from psycopg import sql

from erd_preflight.rehearse import rehearsal as rehearsing
from erd_preflight.plan import PlanStep
from erd_preflight.rehearse.shadow_catalog import LOCK_MODES

_SETUP = """
CREATE SCHEMA {s};
CREATE TABLE {s}.p (id int PRIMARY KEY);
CREATE TABLE t (id int NOT NULL, a int, b int, c text, p int, room int4range, during tstzrange, active boolean,
                note text);
CREATE UNIQUE INDEX t_id_idx ON t (id);
CREATE INDEX t_a_ix ON t (a);
CREATE TABLE {s}.t (id int);
CREATE TABLE {s}.child (id int, t_id int);
CREATE INDEX t_a_idx ON {s}.t (id);
CREATE MATERIALIZED VIEW mv AS SELECT id FROM t;
CREATE UNLOGGED TABLE u (id int);
INSERT INTO {s}.p VALUES (1);
INSERT INTO t (id, a, b, c, p) VALUES (1, 1, 1, '1', 1), (2, 2, 2, '2', 1);
"""


def _kinds() -> list[type]:
    union = typing.get_args(PlanStep)[0]
    return list(typing.get_args(union))


EXAMPLES = [cls.EXAMPLE for cls in _kinds()]

RAW = [
    "ALTER TABLE t ADD COLUMN x int DEFAULT random()::int",  # a volatile default: a rewrite
    "ALTER TABLE t ADD COLUMN x int DEFAULT 7, ALTER COLUMN b SET NOT NULL",  # two commands, one scan
    "ALTER TABLE t ALTER COLUMN b TYPE bigint",  # not binary coercible: a rewrite
    "ALTER TABLE t ALTER COLUMN note TYPE varchar(20)",  # text to varchar(20): a scan, no rewrite
    "ALTER TABLE t ALTER COLUMN a SET DEFAULT 3",
    "CREATE INDEX ON t (b)",
    "UPDATE t SET note = 'x' WHERE id = 1",
    "DELETE FROM t WHERE id = 2",
    "INSERT INTO t (id) VALUES (9)",
    "DO $$ BEGIN UPDATE t SET a = a; END $$",
    "REFRESH MATERIALIZED VIEW mv",
    "ALTER TABLE u SET LOGGED",
    "ALTER TABLE t RENAME COLUMN note TO remark",
    "COMMENT ON TABLE t IS 'the t'",
    "CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "TRUNCATE {s}.child",
    "ALTER TABLE t SET (fillfactor = 70)",
    "ALTER TABLE {s}.child ADD FOREIGN KEY (t_id) REFERENCES {s}.p (id)",
    "LOCK TABLE {s}.t IN SHARE MODE",
    "CREATE VIEW w AS SELECT * FROM t",
]


# What an example needs beyond the setup (the object it validates or drops).
NEEDS = {
    "ALTER TABLE t VALIDATE CONSTRAINT t_p_fkey": ["ALTER TABLE t ADD CONSTRAINT t_p_fkey FOREIGN KEY (p) "
                                                   "REFERENCES s.p (id) NOT VALID"],
    "ALTER TABLE t DROP CONSTRAINT IF EXISTS t_a_key CASCADE": ["ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a, b)"],
}


def _in_schema(statement: str, extra: str) -> str:
    """The statement with the schema ``s`` of the examples made the test's own second schema (pglast renders it)."""
    (raw,) = pglast.parse_sql(statement.replace("{s}", "s"))
    for node in _nodes(raw.stmt):
        if isinstance(node, ast.RangeVar) and node.schemaname == "s":
            node.schemaname = extra
    if isinstance(raw.stmt, ast.DropStmt):  # DROP TABLE / INDEX s.x: the name is a list of strings
        raw.stmt.objects = tuple(
            (ast.String(sval=extra), *name[1:]) if len(name) == 2 and name[0].sval == "s" else name
            for name in raw.stmt.objects)
    if isinstance(raw.stmt, ast.CreateStmt) and raw.stmt.relation.relname == "t":
        raw.stmt.relation.relname = "fresh"  # the example's table exists here
    return RawStream()(raw.stmt)


def _nodes(node: typing.Any) -> typing.Iterator[typing.Any]:
    from erd_preflight.sqlparse import walk_ast

    yield from walk_ast(node)


def _strongest(modes: list[str]) -> str:
    return max(modes, key=LOCK_MODES.index)


def _on_target(conninfo: str, statement: str, extra: str) -> tuple[dict[str, str], set[str]]:
    """What PostgreSQL takes on the real database: the strongest lock per existing table (read from a second
    session while the statement's transaction is open) and the tables that got a new file."""
    with psycopg.connect(conninfo) as watcher, psycopg.connect(conninfo) as conn:
        watcher.autocommit = True
        before = dict(watcher.execute(
            "SELECT c.oid::int8, c.relfilenode::int8 FROM pg_class c WHERE c.relkind IN ('r','p','m','f') "
            "AND c.relnamespace::regnamespace::text = ANY(current_schemas(false) || %s::text[])",
            ([extra],)).fetchall())
        names = dict(watcher.execute("SELECT oid::int8, relname FROM pg_class WHERE oid = ANY(%s)",
                                     (list(before),)).fetchall())
        concurrent = "CONCURRENTLY" in statement
        locks: list[tuple[int, str]] = []
        if concurrent:
            # runs outside a transaction: an older transaction holding t makes it wait, with its lock held
            holder = psycopg.connect(conninfo)  # a snapshot kept open (REPEATABLE READ), which CIC waits out
            holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            holder.execute("SELECT txid_current(), count(*) FROM t")
            conn.autocommit = True
            pid = conn.info.backend_pid
            failure: list[BaseException] = []
            runner = threading.Thread(target=lambda: _run(conn, statement, failure))
            runner.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                locks = watcher.execute("SELECT relation::int8, mode FROM pg_locks WHERE pid = %s AND "
                                        "locktype = 'relation' AND granted", (pid,)).fetchall()
                waiting = watcher.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                          (pid,)).fetchone()
                if waiting and waiting[0] == "Lock" and any(oid in before for oid, _ in locks):
                    break
                time.sleep(0.02)
            holder.rollback()
            holder.close()
            runner.join()
            assert not failure, failure
            after = before  # nothing is rewritten
        else:
            conn.execute(statement)
            locks = watcher.execute("SELECT relation::int8, mode FROM pg_locks WHERE pid = %s AND "
                                    "locktype = 'relation' AND granted", (conn.info.backend_pid,)).fetchall()
            after = dict(conn.execute("SELECT oid::int8, relfilenode::int8 FROM pg_class WHERE oid = ANY(%s)",
                                      (list(before),)).fetchall())
            conn.rollback()
    held: dict[str, list[str]] = {}
    for oid, mode in locks:
        if oid in before:
            held.setdefault(names[oid], []).append(mode)
    rewritten = {names[oid] for oid, node in after.items() if before.get(oid) != node}
    return {name: _strongest(modes) for name, modes in held.items()}, rewritten


def _run(conn: psycopg.Connection, statement: str, failure: list[BaseException]) -> None:
    try:
        conn.execute(statement)
    except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
        failure.append(exc)


@pytest.fixture
def locks_db(run_sql, schema: str) -> str:
    extra = f"{schema}_s"
    run_sql(_SETUP.replace("{s}", sql.Identifier(extra).as_string()))
    yield extra
    run_sql(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(extra)))


@pytest.mark.parametrize("statement", EXAMPLES + RAW)
def test_the_rehearsal_names_the_locks_and_rewrites_postgresql_takes_on_the_target(conninfo, run_sql, locks_db,
                                                                                   statement):
    text = _in_schema(statement, locks_db)
    for pre in NEEDS.get(statement, ()):
        run_sql(_in_schema(pre, locks_db))
    expected, rewritten = _on_target(conninfo, text, locks_db)
    with psycopg.connect(conninfo) as target:
        rehearsal = rehearsing.rehearse(target, [(1, text)])
    assert rehearsal.failure is None and rehearsal.stopped is None, (rehearsal.failure, rehearsal.stopped)
    (impact,) = rehearsal.impacts
    assert impact.measured
    named = {lock.name: lock.mode for lock in impact.locks}
    # A lock that blocks a schema change or more is the statement's own, whatever the rows: the same on both.
    # A weaker one (ROW SHARE of a referenced table, taken per row checked) the rows may add on the target.
    strong = LOCK_MODES.index("ShareUpdateExclusiveLock")
    assert {n: m for n, m in named.items() if LOCK_MODES.index(m) >= strong} == \
        {n: m for n, m in expected.items() if LOCK_MODES.index(m) >= strong}, text
    assert named.items() <= expected.items(), text
    assert {lock.name for lock in impact.locks if lock.work == "rewrite"} == rewritten - {"child"}, text


def test_a_table_the_plan_creates_has_no_traffic_to_block(conninfo, locks_db):
    with psycopg.connect(conninfo) as target:
        rehearsal = rehearsing.rehearse(target, [(1, "CREATE TABLE fresh (id int)"),
                                             (2, "ALTER TABLE fresh ADD COLUMN x int DEFAULT random()::int"),
                                             (3, "CREATE INDEX ON fresh (x)")])
    assert [impact.locks for impact in rehearsal.impacts] == [(), (), ()]


def test_a_scan_and_an_index_build_are_told_apart_from_a_catalog_change(conninfo, locks_db):
    statements = ["ALTER TABLE t ALTER COLUMN a SET DEFAULT 3", "ALTER TABLE t ALTER COLUMN b SET NOT NULL",
                  "CREATE INDEX ON t (b)", "ALTER TABLE t ADD CONSTRAINT c_pos CHECK (a > 0)",
                  "ALTER TABLE t ADD CONSTRAINT c_neg CHECK (a < 100) NOT VALID"]
    with psycopg.connect(conninfo) as target:
        rehearsal = rehearsing.rehearse(target, list(enumerate(statements, start=1)))
    works = [{lock.name: lock.work for lock in impact.locks} for impact in rehearsal.impacts]
    # a statement that takes no lock its transaction lacks and does no work on rows names nothing (the last)
    assert works == [{"t": "catalog"}, {"t": "scan"}, {"t": "index build"}, {"t": "scan"}, {}]


@pytest.mark.parametrize("kind", _kinds(), ids=lambda k: k.__name__)
def test_each_step_kinds_declared_lock_agrees_with_the_shadow_on_its_example(conninfo, run_sql, locks_db, kind):
    """The hand-written LOCK is only the fallback without a rehearsal: it names the mode PostgreSQL takes on the
    step's own table, or says it takes none on an existing one."""
    from erd_preflight.read.locks import declared_mode
    from erd_preflight.plan import MigrationPlan

    text = _in_schema(kind.EXAMPLE, locks_db)
    for pre in NEEDS.get(kind.EXAMPLE, ()):
        run_sql(_in_schema(pre, locks_db))
    (step,) = MigrationPlan.from_sql(text).steps
    declared = declared_mode(step.lock()[0])
    with psycopg.connect(conninfo) as target:
        (impact,) = rehearsing.rehearse(target, [(1, text)]).impacts
    own = getattr(step, "table", None)
    measured = {lock.name: lock.mode for lock in impact.locks}
    if declared is None:
        assert own not in measured, (step.lock(), measured)
    elif own is None:  # DROP INDEX names no table: its index's table
        assert set(measured.values()) == {declared}, (step.lock(), measured)
    else:
        assert measured.get(own) == declared, (step.lock(), measured)


def test_a_drop_index_after_its_table_is_locked_still_names_the_table(conninfo, locks_db):
    with psycopg.connect(conninfo) as target:
        rehearsal = rehearsing.rehearse(target, [(1, "ALTER TABLE t ADD COLUMN x int"), (2, "DROP INDEX t_a_ix")])
    assert [{lock.name: lock.mode for lock in impact.locks} for impact in rehearsal.impacts] == [
        {"t": "AccessExclusiveLock"}, {"t": "AccessExclusiveLock"}]
