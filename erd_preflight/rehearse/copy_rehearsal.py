"""``rehearse_on``: the plan run by PostgreSQL on a full, disposable copy of the target, on the real rows.

A branch from a cloud provider, a restored snapshot, a ``pg_basebackup`` copy: what preflight cannot decide
read-only (a DO block, an UPDATE that fires triggers, an upsert, a function of the database's own) is decided
there, by PostgreSQL itself, and every statement of the apply is timed on the real rows:

- the transactional statements run in apply's order and form, as the URL's role, in one transaction that is
  rolled back (a concurrent build runs there in its plain form, so that later statements find its index); the
  first one PostgreSQL refuses for a reason of the rows is its verdict on its step, and the run stops there, as
  apply would;
- then each concurrent index build of the apply runs for real (``CREATE INDEX CONCURRENTLY``, timed), and the index
  is dropped (``DROP INDEX CONCURRENTLY``), also when the build failed and left it INVALID. A build on what an
  earlier step makes (rolled back by then) keeps its time from the transaction;
- each statement's duration and the locks its transaction holds are read, and replace the estimates of the lock
  report (``StatementLock.timed``).

Safety, before anything runs there:

- never the target: a transaction-level advisory lock with a random key is taken on the target (in memory,
  nothing written) while the candidate's ``pg_locks`` is read. The target's own database sees it: refused. A
  physical copy shares its source's system identifier and OIDs, so those cannot tell them apart; this can.
  Another database of the target's own server is a copy, and each verdict says its work competed with the
  target's traffic;
- never a standby (it cannot run the plan), and never a copy whose schema differs from the target's (its verdicts
  would be about another database): both refused, saying what differs.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from ..db import redact_url
from ..errors import CopyRefused, classify
from ..plan.phases import ApplyPhases, PhaseStatement
from .rehearsal import plain_form
from .shadow_catalog import ImpactReader, RehearsalFailure, StatementImpact, about_the_rows, read_relation_files

__all__ = ["CopyRefused", "CopyRehearsal", "TimedStatement", "rehearse_on_copy"]

# A concurrent build that needs what an earlier step makes (rolled back by then): no such table, column, type
_NEEDS_EARLIER = ("42P01", "42703", "42704", "3F000")


@dataclass
class TimedStatement:
    """One statement of the apply as it ran on the copy."""

    step: int
    sql: str
    seconds: float | None  # None: not run there
    concurrent: bool = False  # timed as a real concurrent build
    note: str | None = None  # why it was not run, or not timed as apply runs it


@dataclass
class CopyRehearsal:
    """What the run on the copy found, step by step."""

    shown: str  # the copy's URL for people (no password)
    same_server: bool = False  # another database of the target's own server
    failure: RehearsalFailure | None = None  # the first statement PostgreSQL refused there for a reason of the rows
    stopped: str | None = None  # why the run stopped before the end without a verdict
    stopped_at: int | None = None
    ran: set[int] = field(default_factory=set)  # steps whose every statement ran there
    timings: list[TimedStatement] = field(default_factory=list)  # one per statement of the apply, in order
    impacts: list[StatementImpact] = field(default_factory=list)  # the same, what each locked and did there

    def _where(self) -> str:
        server = ", on the target's own server: its work competed with the target's traffic" if self.same_server \
            else ""
        return f"on the copy {self.shown} (rehearse_on, rolled back{server})"

    def judge(self, step: int) -> tuple[str, str] | str:
        """("pass" | "blocking", message) when the copy decides ``step``, else why it cannot (a clause)."""
        if self.failure is not None and self.failure.step == step:
            return "blocking", (f"PostgreSQL refuses step {step} {self._where()}: {self.failure.describe()}. It "
                                "would fail at apply the same way on the target's rows, as they were when the copy "
                                "was made: fix the rows or the step.")
        if step in self.ran:
            seconds = sum(t.seconds or 0.0 for t in self.timings if t.step == step)
            return "pass", (f"step {step} ran without error {self._where()} in {_shown_seconds(seconds)}: "
                            "PostgreSQL's own verdict on the target's rows, as they were when the copy was made.")
        if self.stopped is not None and (self.stopped_at is None or self.stopped_at <= step):
            return f"the run on the copy {self.shown} stopped: {self.stopped}"
        if self.failure is not None:
            return (f"the run on the copy stopped at step {self.failure.step}, which PostgreSQL refused there "
                    f"({self.failure.describe()})")
        return f"the run on the copy {self.shown} did not reach it"

    def seconds(self) -> list[float | None]:
        """Each apply statement's time on the copy (None: not timed)."""
        return [t.seconds for t in self.timings]


def _shown_seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


# ---------------------------------------------------------------------------------------------------------
# Is it a copy of the target, and not the target?

_ADVISORY_SEEN = """
SELECT l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  FROM pg_locks l
 WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.objsubid = 1
"""

# The schema as lines of text, the same on a copy as on its source, whatever the OIDs: relations, columns,
# constraints, indexes, triggers, functions (by their definition). The run store's own schema is left out: a run
# recorded on the target after the copy was made is not a difference that matters.
_SCHEMA_LINES = """
WITH s AS (SELECT oid, nspname FROM pg_namespace
            WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'erd_preflight')
              AND nspname NOT LIKE 'pg\\_%')
SELECT format('relation %I.%I (%s)', s.nspname, c.relname, c.relkind) FROM pg_class c JOIN s ON s.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
UNION ALL
SELECT format('column %I.%I.%I %s%s', s.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
              CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN s ON s.oid = c.relnamespace
 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT format('constraint %I on %I.%I: %s', k.conname, s.nspname, c.relname, pg_get_constraintdef(k.oid))
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN s ON s.oid = c.relnamespace
UNION ALL
SELECT format('index %s', pg_get_indexdef(i.indexrelid))
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN s ON s.oid = c.relnamespace
UNION ALL
SELECT format('trigger %s', pg_get_triggerdef(t.oid))
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN s ON s.oid = c.relnamespace WHERE NOT t.tgisinternal
UNION ALL
SELECT format('function %I.%I(%s) %s', s.nspname, p.proname, pg_get_function_identity_arguments(p.oid), md5(p.prosrc))
  FROM pg_proc p JOIN s ON s.oid = p.pronamespace
"""


def _schema(conn: psycopg.Connection[Any]) -> set[str]:
    return {row[0] for row in conn.execute(_SCHEMA_LINES)}


def check_copy(target: psycopg.Connection[Any], copy: psycopg.Connection[Any], shown: str,
               timeout_s: float) -> bool:
    """Raises ``CopyRefused`` unless ``copy`` is a copy of ``target`` that is not the target itself; returns
    whether it is another database of the target's own server. ``target`` is idle; ``copy`` in autocommit."""
    if copy.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
        raise CopyRefused(f"rehearse_on {shown} is a standby (pg_is_in_recovery() is true): it cannot run the plan. "
                          "Give a copy that accepts writes: a branch, a restored snapshot, a promoted "
                          "pg_basebackup copy.")
    ms = f"{max(1, int(timeout_s * 1000))}ms"
    target.execute("BEGIN TRANSACTION READ ONLY")
    try:
        target.execute("SELECT set_config('statement_timeout', %s, true)", (ms,))
        while True:  # a random key nobody holds: held in the target's memory only, released at the rollback
            key = secrets.randbits(63)
            if target.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]:  # type: ignore[index]
                break
        seen = [row[0] for row in copy.execute(_ADVISORY_SEEN, (key >> 32, key & 0xFFFFFFFF))]
        if any(seen):
            raise CopyRefused(f"rehearse_on {shown} is the target itself (the same server sees the lock preflight "
                              "holds on the target, in the same database): preflight never runs the plan there. "
                              "Give a disposable copy: a branch, a restored snapshot, a pg_basebackup copy.")
        on_target = _schema(target)
        differs = sorted(on_target ^ _schema(copy))
    finally:
        target.execute("ROLLBACK")
    if differs:
        shown_diffs = "; ".join(f"{line} ({'only on the target' if line in on_target else 'only on the copy'})"
                                for line in differs[:3])
        more = f", and {len(differs) - 3} more" if len(differs) > 3 else ""
        raise CopyRefused(f"rehearse_on {shown} does not hold the target's schema: {shown_diffs}{more}. Its verdicts "
                          "would be about another database: make a fresh copy of the target and run again.")
    return bool(seen)


# ---------------------------------------------------------------------------------------------------------
# The run


def rehearse_on_copy(target: psycopg.Connection[Any], url: str, phases: ApplyPhases, *, search_path: str,
                     timeout_s: float, statement_timeout_s: float) -> CopyRehearsal:
    """Run ``phases`` on the copy at ``url``; see the module's docstring. ``target`` is idle (no transaction).
    Raises ``CopyRefused`` when ``url`` is not a copy preflight may use, or cannot be reached."""
    shown = redact_url(make_url(url)) if "://" in url else "the rehearse_on server"
    try:
        copy = psycopg.connect(url, autocommit=True, connect_timeout=max(int(timeout_s), 2),
                               application_name="erd_preflight rehearse_on")
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        raise CopyRefused(f"cannot connect to rehearse_on {shown}: {reason}. Check the URL and that the copy "
                          "accepts connections.") from exc
    with copy:
        try:
            result = CopyRehearsal(shown=shown, same_server=check_copy(target, copy, shown, timeout_s))
            _in_transaction(copy, phases, search_path, statement_timeout_s, result)
            if result.failure is None and result.stopped is None:
                _concurrent_builds(copy, phases, search_path, statement_timeout_s, result)
        except psycopg.Error as exc:
            if target.broken:
                raise  # the target's connection: its own error
            reason = " ".join(str(exc).split())
            raise CopyRefused(f"reading the copy rehearse_on {shown} failed ({reason}): check that its role may read "
                              "its catalog (pg_locks, pg_proc) and run the plan, or leave rehearse_on out.") from exc
    return result


def _settings(conn: psycopg.Connection[Any], search_path: str, statement_timeout_s: float, local: bool) -> None:
    conn.execute("SELECT set_config('search_path', %(path)s, %(local)s), "
                 "set_config('standard_conforming_strings', 'on', %(local)s), "
                 "set_config('statement_timeout', %(ms)s, %(local)s), set_config('lock_timeout', '10s', %(local)s)",
                 {"path": search_path, "ms": f"{max(1, int(statement_timeout_s * 1000))}ms", "local": local})


def _in_transaction(copy: psycopg.Connection[Any], phases: ApplyPhases, search_path: str,
                    statement_timeout_s: float, result: CopyRehearsal) -> None:
    files = read_relation_files(copy)
    copy.execute("BEGIN")
    try:
        _settings(copy, search_path, statement_timeout_s, local=True)
        reader = ImpactReader(files)
        reader.start(copy)
        failed: set[int] = set()
        for statement in phases.statements:
            text = statement.sql if statement.transactional else plain_form(statement.sql)
            stopped = result.failure is not None or result.stopped is not None
            if stopped or text is None:
                note = "not run: the run stopped before it" if stopped else "not run: it has no meaning in a " \
                    "transaction that is rolled back"
                result.timings.append(TimedStatement(statement.step, statement.sql, None, note=note))
                result.impacts.append(StatementImpact(statement.step, statement.sql, (), measured=False))
                if stopped:
                    failed.add(statement.step)
                continue
            copy.execute("SAVEPOINT erd_copy_statement")
            started = time.perf_counter()
            try:
                copy.execute(text)
            except psycopg.Error as exc:
                _refused(copy, exc, statement, result)
                reader.undone()
                failed.add(statement.step)
                result.timings.append(TimedStatement(statement.step, statement.sql, None, note="refused"))
                result.impacts.append(StatementImpact(statement.step, statement.sql, (), measured=False))
                continue
            seconds = time.perf_counter() - started
            result.impacts.append(reader.after(copy, statement.step, statement.sql))
            copy.execute("RELEASE SAVEPOINT erd_copy_statement")
            result.timings.append(TimedStatement(statement.step, statement.sql, seconds))
        result.ran = {s.step for s in phases.statements} - failed
    finally:
        if not copy.closed and not copy.broken:
            copy.execute("ROLLBACK")


def _refused(copy: psycopg.Connection[Any], exc: psycopg.Error, statement: PhaseStatement,
             result: CopyRehearsal) -> None:
    diag = exc.diag
    state = exc.sqlstate or ""
    if copy.broken or classify(exc) == "connection":
        result.stopped, result.stopped_at = (f"the connection to the copy was lost at step {statement.step} "
                                             f"({' '.join(str(exc).split())})"), statement.step
        return
    copy.execute("ROLLBACK TO SAVEPOINT erd_copy_statement")
    if about_the_rows(state):
        result.failure = RehearsalFailure(step=statement.step, statement=statement.sql, sqlstate=state,
                                          message=diag.message_primary or str(exc), detail=diag.message_detail,
                                          hint=diag.message_hint)
        return
    # Not about the rows (a right the URL's role lacks, a timeout, an extension the copy's server has not): no
    # verdict, and the statements after it would not find what it makes.
    longer = ", longer than rehearse_on_timeout allows one statement" if classify(exc) == "timeout" else ""
    result.stopped = (f"step {statement.step} failed there for a reason that is not about the rows "
                      f"({diag.message_primary or exc}; SQLSTATE {state}{longer})")
    result.stopped_at = statement.step


_NEW_INDEXES = """
SELECT n.nspname::text, c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.indrelid = %s::regclass AND NOT (i.indexrelid = ANY(%s::oid[]))
"""


def _concurrent_builds(copy: psycopg.Connection[Any], phases: ApplyPhases, search_path: str,
                       statement_timeout_s: float, result: CopyRehearsal) -> None:
    """Each concurrent index build for real, timed, then dropped (its INVALID index too, when it failed)."""
    _settings(copy, search_path, statement_timeout_s, local=False)
    try:
        for position, statement in enumerate(phases.statements):
            if statement.transactional or not statement.builds_index or statement.table is None:
                continue
            schema, name = statement.table
            table = sql.Identifier(*([schema, name] if schema else [name])).as_string(copy)
            try:
                row = copy.execute("SELECT array_agg(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
                                   (table,)).fetchone()
            except psycopg.Error:
                result.timings[position].note = "timed in the transaction: its table is made by an earlier step"
                continue
            before = (row[0] if row else None) or []
            started = time.perf_counter()
            try:
                copy.execute(statement.sql)
                seconds: float | None = time.perf_counter() - started
                note = None
            except psycopg.Error as exc:
                seconds = None
                state = exc.sqlstate or ""
                note = ("timed in the transaction: it needs what an earlier step makes" if state in _NEEDS_EARLIER
                        else f"the concurrent build failed there ({exc.diag.message_primary or exc}; SQLSTATE {state})")
            finally:
                for index_schema, index_name in copy.execute(_NEW_INDEXES, (table, before)).fetchall():
                    with contextlib.suppress(psycopg.Error):
                        copy.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                            sql.Identifier(index_schema, index_name)))
            timing = result.timings[position]
            if seconds is not None:
                timing.seconds, timing.concurrent, timing.note = seconds, True, None
            else:
                timing.note = note
    finally:
        copy.execute("RESET ALL")
