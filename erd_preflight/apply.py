"""Phased apply (spec 1.1.04e): run the compiled phases against PostgreSQL and record every statement.

Every statement runs under ``lock_timeout``, so DDL never queues behind traffic (and traffic never queues
behind DDL waiting for its lock). A lock timeout is retried with backoff and jitter; each try is recorded.
The store is written on a separate connection, one short transaction per entry, so the record survives
whatever happens to the apply connection.
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .db import Database
from .errors import ConcurrentApply, ConnectionFailed, classify
from .phases import ApplyPhases, PhaseStatement, lock_settings
from .plan import display_name, drop_index_concurrently
from .store import AppliedStatement, RunStore, now_text

# The apply lock: a two-key advisory lock, per database. 0x45524450 is "ERDP".
_LOCK_CLASS = 0x45524450
_LOCK_OBJECT = 1
_APP_NAME = "erd_preflight apply run {}"


class ApplyOptions(BaseModel):
    """Timeouts and retries of an apply. Seconds throughout; a statement timeout of 0 means no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lock_timeout: float = Field(default=2.0, ge=0.001, allow_inf_nan=False,
                                description="the longest any statement waits for a lock; at least 1 ms "
                                "(PostgreSQL reads 0 ms as no limit at all)")
    statement_timeout: float = Field(default=3600.0, ge=0, allow_inf_nan=False,
                                     description="the longest one statement may run; 0: no limit")
    index_build_timeout: float = Field(
        default=6 * 3600.0, ge=0.001, allow_inf_nan=False,
        description="the longest a CREATE INDEX CONCURRENTLY may take, waits for older snapshots included. Its "
        "lock (SHARE UPDATE EXCLUSIVE) blocks neither reads nor writes, so lock_timeout does not apply to it")
    lock_retries: int = Field(default=3, ge=0, description="retries after a lock timeout, before the run fails")
    retry_backoff: float = Field(default=1.0, ge=0, allow_inf_nan=False,
                                 description="the wait before the first retry; doubles each time")
    retry_backoff_max: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    retry_jitter: float = Field(default=0.5, ge=0, le=1, description="a random share of the wait added or taken off")
    max_report_age: float = Field(default=3600.0, gt=0, allow_inf_nan=False,
                                  description="how old a clear report may be at apply")

    @field_validator("statement_timeout")
    @classmethod
    def _whole_milliseconds(cls, value: float) -> float:
        if 0 < value < 0.001:
            raise ValueError("statement_timeout below 1 ms would be sent as 0 ms, which PostgreSQL reads as no "
                             "limit: give 0 for no limit, or at least 0.001 s")
        return value


ApplyProgress = Callable[[PhaseStatement, AppliedStatement], None]
"""Called when a statement starts and when it ends, with its phase statement and its record."""


# ---------------------------------------------------------------------------------------------------------
# The apply lock: one apply at a time per database.


def run_of(application_name: str | None) -> int | None:
    """The run an apply session works for, from its application_name (None: not an apply session)."""
    match = re.fullmatch(_APP_NAME.format(r"(\d+)"), application_name or "")
    return int(match.group(1)) if match else None


def try_apply_lock(conn: psycopg.Connection[Any], run_id: int | None) -> bool:
    if run_id is not None:
        conn.execute(sql.SQL("SET application_name = {}").format(sql.Literal(_APP_NAME.format(run_id))))
    row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_CLASS, _LOCK_OBJECT)).fetchone()
    return bool(row and row[0])


def release_apply_lock(conn: psycopg.Connection[Any]) -> None:
    with contextlib.suppress(psycopg.Error):
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_CLASS, _LOCK_OBJECT))


def apply_lock_holder(conn: psycopg.Connection[Any]) -> tuple[int | None, int | None, str]:
    """(run id, pid, description) of the session holding the apply lock."""
    row = conn.execute(
        "SELECT a.pid, a.application_name, a.usename, a.client_addr::text, a.backend_start "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2",
        (_LOCK_CLASS, _LOCK_OBJECT),
    ).fetchone()
    if row is None:
        return None, None, "another session (it finished meanwhile: try again)"
    run_id = run_of(row[1])
    who = f"pid {row[0]} ({row[2]}" + (f" from {row[3]}" if row[3] else "") + ")"
    return run_id, row[0], who


def concurrent_apply_error(conn: psycopg.Connection[Any]) -> ConcurrentApply:
    run_id, pid, who = apply_lock_holder(conn)
    if run_id is None and pid is not None:
        # The lock is held, but not by an apply: a session that took these keys by other means.
        return ConcurrentApply(
            f"the apply lock (pg_advisory_lock({_LOCK_CLASS}, {_LOCK_OBJECT})) is held by {who}, which is not an "
            f"erd_preflight apply. End that session (SELECT pg_terminate_backend({pid})) or have it release the "
            "lock, then apply again.", run_id=None, pid=pid)
    what = f"migration run {run_id}" if run_id is not None else "another apply"
    return ConcurrentApply(
        f"{what} is applying on this database right now ({who}); only one apply runs at a time. Wait for it to "
        f"finish (ep.runs(db) shows its status), then run the preflight again and apply. If its process was "
        f"killed, its backend may still be running its last statement: wait for it, or cancel it with "
        f"SELECT pg_cancel_backend({pid}).",
        run_id=run_id, pid=pid,
    )


@dataclass(frozen=True)
class RunningApply:
    """The backend of an apply still running on the server (its client may be gone: a killed process)."""

    run_id: int
    pid: int
    state: str | None
    query: str | None
    seconds: float | None

    def describe(self) -> str:
        query = " ".join((self.query or "").split())[:160]
        running = f", running for {self.seconds:.0f} s" if self.seconds is not None else ""
        return (f"the backend of run {self.run_id}'s apply is still on the server (pid {self.pid}, {self.state}"
                f"{running}: {query}). Its client may be gone; the statement goes on until it ends. Wait for it "
                f"(SELECT state FROM pg_stat_activity WHERE pid = {self.pid}) or cancel it (SELECT "
                f"pg_cancel_backend({self.pid})); until then a new apply waits for its lock.")


def running_applies(db: Database) -> list[RunningApply]:
    """Backends whose application_name says they apply a run, other than this session."""
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT application_name, pid, state, query, extract(epoch FROM now() - query_start)::float8 "
            "FROM pg_stat_activity WHERE application_name LIKE 'erd_preflight apply run %%' "
            "AND pid <> pg_backend_pid() AND datname = current_database()").fetchall()
    return [RunningApply(run_id, pid, state, query, seconds) for name, pid, state, query, seconds in rows
            if (run_id := run_of(name)) is not None]


# ---------------------------------------------------------------------------------------------------------
# Who blocks us: pg_blocking_pids, polled from a second connection while a statement waits.


@dataclass(frozen=True)
class Blocker:
    pid: int
    user: str | None
    application: str | None
    state: str | None
    query: str | None
    transaction_seconds: float | None

    def describe(self) -> str:
        parts = [f"pid {self.pid}"]
        if self.user:
            parts.append(f"user {self.user}")
        if self.application:
            parts.append(f"application {self.application!r}")
        if self.state:
            parts.append(self.state)
        if self.transaction_seconds is not None:
            parts.append(f"transaction open {self.transaction_seconds:.0f} s")
        text = ", ".join(parts)
        if self.query:
            query = " ".join(self.query.split())
            text += f", last query: {query[:160]}"
        return text


_BLOCKERS = """
SELECT a.pid, a.usename, a.application_name, a.state, a.query,
       extract(epoch FROM now() - a.xact_start)::float8
  FROM pg_stat_activity a
 WHERE a.pid = ANY(pg_blocking_pids(%s))
 ORDER BY a.pid
"""

_HOLDERS = """
SELECT DISTINCT a.pid, a.usename, a.application_name, a.state, a.query,
       extract(epoch FROM now() - a.xact_start)::float8
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.granted AND l.relation = to_regclass(%s) AND l.pid <> %s
 ORDER BY a.pid
"""


class LockWatch:
    """A thread that, while armed, polls who blocks the apply backend; ``blockers`` keeps the last answer."""

    def __init__(self, db: Database, pid: int, interval: float = 0.1) -> None:
        self.db = db
        self.pid = pid
        self.interval = interval
        self.blockers: list[Blocker] = []
        self._armed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="erd_preflight-lockwatch", daemon=True)

    def __enter__(self) -> LockWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._armed.set()
        self._thread.join(timeout=5)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        self.blockers = []
        self._armed.set()
        try:
            yield
        finally:
            self._armed.clear()

    def _loop(self) -> None:
        try:
            with self.db.connection() as conn:
                while not self._stop.is_set():
                    self._armed.wait()
                    if self._stop.is_set():
                        return
                    rows = conn.execute(_BLOCKERS, (self.pid,)).fetchall()
                    if rows:
                        self.blockers = [Blocker(*r) for r in rows]
                    time.sleep(self.interval)
        except Exception:  # the watch only improves messages; apply must not fail because of it
            return


# Transactions holding a snapshot (any database's: CREATE INDEX CONCURRENTLY waits for all of them).
_SNAPSHOT_HOLDERS = """
SELECT a.pid, a.usename, a.application_name, a.state, a.query,
       extract(epoch FROM now() - a.xact_start)::float8
  FROM pg_stat_activity a
 WHERE a.backend_xmin IS NOT NULL AND a.xact_start IS NOT NULL AND a.pid <> %s AND a.pid <> pg_backend_pid()
 ORDER BY a.xact_start
"""

_BUILD_PROGRESS = """
SELECT p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, p.lockers_done, p.lockers_total,
       p.current_locker_pid
  FROM pg_stat_progress_create_index p WHERE p.pid = %s
"""


class IndexBuildWatch:
    """While a CONCURRENTLY build runs: reads pg_stat_progress_create_index every ``interval`` seconds and
    passes each change (phase, blocks done of total, the pid it waits for) to the apply's progress callback,
    as the statement's record with a ``progress`` text."""

    def __init__(self, runner: PhaseRunner, statement: PhaseStatement, entry: AppliedStatement,
                 interval: float = 0.5) -> None:
        self.runner, self.statement, self.entry, self.interval = runner, statement, entry, interval
        self.last: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="erd_preflight-buildwatch", daemon=True)

    def __enter__(self) -> IndexBuildWatch:
        if self.runner.progress:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        try:
            with self.runner.db.connection() as conn:
                while not self._stop.wait(self.interval):
                    row = conn.execute(_BUILD_PROGRESS, (self.runner.pid,)).fetchone()
                    if row is None:
                        continue
                    text = describe_build(*row)
                    if text != self.last:
                        self.last = text
                        assert self.runner.progress is not None
                        build = dict(zip(("phase", "blocks_done", "blocks_total", "tuples_done", "tuples_total",
                                          "lockers_done", "lockers_total", "waiting_for_pid"), row))
                        self.runner.progress(self.statement, self.entry.model_copy(
                            update={"progress": text, "build": build}))
        except Exception:  # progress only informs; the build must not fail because of it
            return


def describe_build(phase: str, blocks_done: int, blocks_total: int, tuples_done: int, tuples_total: int,
                   lockers_done: int, lockers_total: int, locker: int) -> str:
    text = f"index build: {phase}"
    if blocks_total:
        text += f", {blocks_done:,} of {blocks_total:,} blocks ({100 * blocks_done // max(blocks_total, 1)}%)"
    elif tuples_total:
        text += f", {tuples_done:,} of {tuples_total:,} tuples"
    if lockers_total:
        text += f", {lockers_done} of {lockers_total} transactions ended"
    if locker:
        text += f", waiting for pid {locker}"
    return text


def holders_of(conn: psycopg.Connection[Any], relation: str, own_pid: int) -> list[Blocker]:
    return [Blocker(*r) for r in conn.execute(_HOLDERS, (relation, own_pid)).fetchall()]


# ---------------------------------------------------------------------------------------------------------


class _Failure(Exception):
    def __init__(self, message: str, *, phase: str) -> None:
        self.message = message
        self.phase = phase
        super().__init__(message)


def _relation_text(statement: PhaseStatement) -> str | None:
    if statement.table is None:
        return None
    return sql.Identifier(*[p for p in statement.table if p is not None]).as_string()


class PhaseRunner:
    """Runs compiled phases on one dedicated connection that holds the apply lock."""

    def __init__(self, db: Database, conn: psycopg.Connection[Any], store: RunStore, run_id: int,
                 options: ApplyOptions, progress: ApplyProgress | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.db = db
        self.conn = conn
        self.store = store
        self.run_id = run_id
        self.options = options
        self.progress = progress
        self.sleep = sleep
        self.pid = conn.info.backend_pid
        self.applied: list[PhaseStatement] = []
        self.cleanup_notes: list[str] = []
        self.watch: LockWatch  # set by run(), for the length of the apply

    # --- records ------------------------------------------------------------------------------------------

    def _start(self, statement: PhaseStatement, attempt: int, phase: str | None = None,
               text: str | None = None) -> tuple[int, AppliedStatement]:
        entry = AppliedStatement(phase=phase or statement.phase, step=statement.step, sql=text or statement.sql,
                                 attempt=attempt, started=now_text())
        position = self.store.append_statement(self.run_id, entry)
        if self.progress:
            self.progress(statement, entry)
        return position, entry

    def _finish(self, statement: PhaseStatement, position: int, entry: AppliedStatement, outcome: str,
                error: str | None = None, rows: int | None = None) -> AppliedStatement:
        fields: dict[str, Any] = {"outcome": outcome, "finished": now_text()}
        if error is not None:
            fields["error"] = error
        if rows is not None and rows >= 0:
            fields["rows"] = rows
        try:
            self.store.update_statement(self.run_id, position, **fields)
        except ConnectionFailed:
            pass  # the server went away: the outcome is still reported; the next start completes the record
        done = entry.model_copy(update=fields)
        if self.progress:
            self.progress(statement, done)
        return done

    # --- the phases -------------------------------------------------------------------------------------

    def run(self, phases: ApplyPhases) -> None:
        with LockWatch(self.db, self.pid) as watch:
            self.watch = watch
            for group in phases.units():
                try:
                    if group[0].transactional:
                        self._transaction(group)
                    else:
                        self._outside_transaction(group[0])
                except ConnectionFailed as exc:  # the record could not be written: the server is gone
                    raise _Failure(
                        f"the connection to PostgreSQL was lost during phase {group[0].phase} and the server does "
                        f"not answer ({exc})", phase=group[0].phase) from exc

    def _backoff(self, attempt: int) -> float:
        o = self.options
        wait = min(o.retry_backoff * (2 ** (attempt - 1)), o.retry_backoff_max)
        return max(0.0, wait * (1 + random.uniform(-o.retry_jitter, o.retry_jitter)))

    def _blockers(self, statement: PhaseStatement) -> str:
        blockers = list(self.watch.blockers)
        relation = _relation_text(statement)
        if not blockers and relation:
            with contextlib.suppress(psycopg.Error), self.db.connection() as conn:
                blockers = holders_of(conn, relation, self.pid)
        if not blockers:
            return "the blocking session was not seen (it may have finished)"
        return "blocked by " + "; ".join(b.describe() for b in blockers)

    def _transaction(self, group: list[PhaseStatement]) -> None:
        """One transaction (phase A, or one unit of phase C), retried as a whole after a lock timeout."""
        phase = group[0].phase
        attempts = self.options.lock_retries + 1
        for attempt in range(1, attempts + 1):
            done: list[tuple[PhaseStatement, int, AppliedStatement]] = []
            current: tuple[PhaseStatement, int, AppliedStatement] | None = None
            try:
                self.conn.execute("BEGIN")
                self.conn.execute(lock_settings(self.options.lock_timeout, self.options.statement_timeout, local=True))
                for statement in group:
                    position, entry = self._start(statement, attempt)
                    current = (statement, position, entry)
                    with self.watch.watching():
                        cursor = self.conn.execute(statement.sql)
                    done.append((statement, position, entry))
                    current = None
                    self._finish(statement, position, entry, "done", rows=cursor.rowcount)
                # The record of these statements as applied commits in the same transaction as they do: a crash
                # at any moment leaves migration_run telling the truth.
                self.conn.execute(self.store.mark_applied([p for _, p, _ in done], self.run_id))
                self.conn.execute("COMMIT")
            except pgerrors.LockNotAvailable as exc:
                assert current is not None
                blockers = self._blockers(current[0])
                self._rollback()
                self._finish(*current, "lock_timeout", error=f"{exc.diag.message_primary}; {blockers}")
                for item in done:
                    self._finish(*item, "rolled_back")
                if attempt == attempts:
                    raise _Failure(
                        f"step {current[0].step} could not get its lock within lock_timeout "
                        f"{self.options.lock_timeout:g} s, {attempts} times; {blockers}. Phase {phase}'s transaction "
                        "was rolled back each time. Wait for that session to finish (or end it), then apply again.",
                        phase=phase) from exc
                self.sleep(self._backoff(attempt))
                continue
            except psycopg.Error as exc:
                lost = self._lost(exc)
                if not lost:
                    self._rollback()
                if current is not None:
                    self._finish(*current, "failed", error=_error_text(exc))
                if lost and done and current is None:
                    # Lost while the COMMIT's answer was on its way: the record commits with the DDL, so it says.
                    try:
                        stored = self.store.get(self.run_id).applied_sql
                    except ConnectionFailed:
                        raise _Failure(self._lost_or_error(exc, group[0], None) + f" Whether the phase {phase} "
                                       "transaction committed is not known until the server answers; its record "
                                       "commits with it, so the next start reads the truth.", phase=phase) from exc
                    if all(stored[p].outcome == "applied" for _, p, _ in done):
                        # Lost while the COMMIT's answer was on its way: the record committed with the DDL, so
                        # it did.
                        self.applied.extend(statement for statement, _, _ in done)
                        raise _Failure(self._lost_or_error(exc, group[0], None) + f" The phase {phase} transaction "
                                       "had committed.", phase=phase) from exc
                for item in done:
                    self._finish(*item, "rolled_back")
                if lost:
                    raise _Failure(self._lost_or_error(exc, group[0], current) + " PostgreSQL rolls back an "
                                   f"unfinished transaction, so nothing of this phase {phase} transaction was "
                                   "applied.", phase=phase) from exc
                raise _Failure(self._lost_or_error(exc, group[0], current) + f" Phase {phase}'s transaction was "
                               "rolled back.", phase=phase) from exc
            for statement, position, entry in done:
                self.applied.append(statement)
                if self.progress:
                    self.progress(statement, entry.model_copy(update={"outcome": "applied"}))
            return

    def _outside_transaction(self, statement: PhaseStatement) -> None:
        """One phase B statement, alone: CONCURRENTLY cannot run inside a transaction block."""
        attempts = self.options.lock_retries + 1
        relation = _relation_text(statement)
        # CREATE INDEX CONCURRENTLY waits for every transaction in the database whose snapshot is older than
        # its build, and its lock (SHARE UPDATE EXCLUSIVE) blocks neither reads nor writes: lock_timeout would
        # only fail the build, so the build waits under index_build_timeout and says whom it waits for.
        building = statement.builds_index
        lock_timeout = self.options.index_build_timeout if building else self.options.lock_timeout
        statement_timeout = self.options.index_build_timeout if building else self.options.statement_timeout
        for attempt in range(1, attempts + 1):
            before = self._index_oids(relation) if building else set()
            position, entry = self._start(statement, attempt)
            if building:
                self._report_snapshot_holders(statement, entry)
            try:
                self.conn.execute(lock_settings(lock_timeout, statement_timeout, local=False))
                with self.watch.watching(), IndexBuildWatch(self, statement, entry) if building \
                        else contextlib.nullcontext():
                    self.conn.execute(statement.sql)
            except pgerrors.LockNotAvailable as exc:
                blockers = self._blockers(statement)
                self._finish(statement, position, entry, "lock_timeout", error=f"{exc.diag.message_primary}; {blockers}")
                self._drop_new_invalid(statement, relation, before)
                if attempt == attempts:
                    setting = "index_build_timeout" if building else "lock_timeout"
                    raise _Failure(
                        f"step {statement.step} could not get its lock within {setting} {lock_timeout:g} s, "
                        f"{attempts} times; {blockers}. Wait for that session to finish (or end it), then apply "
                        "again.", phase="B") from exc
                self.sleep(self._backoff(attempt))
                continue
            except psycopg.Error as exc:
                self._finish(statement, position, entry, "failed", error=_error_text(exc))
                lost = self._lost(exc)
                self._drop_new_invalid(statement, relation, before, reconnect=lost)
                raise _Failure(self._lost_or_error(exc, statement, None), phase="B") from exc
            self._finish(statement, position, entry, "applied")
            self.applied.append(statement)
            if statement.builds_index:
                self._verify_valid(statement, relation, before)
            return

    def _report_snapshot_holders(self, statement: PhaseStatement, entry: AppliedStatement) -> None:
        """Name, before the build, the sessions whose open transactions it will wait for."""
        if not self.progress:
            return
        try:
            with self.db.connection() as conn:
                holders = [Blocker(*r) for r in conn.execute(_SNAPSHOT_HOLDERS, (self.pid,)).fetchall()]
        except (psycopg.Error, ConnectionFailed):
            return
        if holders:
            note = ("the build waits for these open transactions to end first: "
                    + "; ".join(b.describe() for b in holders))
            self.progress(statement, entry.model_copy(update={"progress": note}))

    # --- invalid indexes ---------------------------------------------------------------------------------

    def _index_oids(self, relation: str | None, conn: psycopg.Connection[Any] | None = None) -> set[int]:
        if relation is None:
            return set()
        rows = (conn or self.conn).execute(
            "SELECT indexrelid::int8 FROM pg_index WHERE indrelid = to_regclass(%s)", (relation,)).fetchall()
        return {r[0] for r in rows}

    def _invalid_since(self, relation: str | None, before: set[int],
                       conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
        if relation is None:
            return []
        rows = conn.execute(
            "SELECT n.nspname, c.relname, i.indexrelid::int8 FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE i.indrelid = to_regclass(%s) AND NOT i.indisvalid", (relation,)).fetchall()
        return [(r[0], r[1]) for r in rows if r[2] not in before]

    def _drop_new_invalid(self, statement: PhaseStatement, relation: str | None, before: set[int],
                          reconnect: bool = False) -> None:
        """A failed CONCURRENTLY build leaves an INVALID index: drop it (concurrently), and record both."""
        if not statement.builds_index or relation is None:
            return
        with contextlib.ExitStack() as stack:
            conn = self.conn
            if reconnect or conn.closed or conn.broken:
                conn = stack.enter_context(self.db.dedicated())
                if not try_apply_lock(conn, self.run_id):
                    self.cleanup_notes.append(
                        "the connection was lost and another apply took the lock, so an INVALID index the build may "
                        "have left was not dropped: the next preflight reports it with the DROP that clears it")
                    return
            try:
                names = self._invalid_since(relation, before, conn)
            except psycopg.Error as exc:
                self.cleanup_notes.append(f"could not look for an INVALID index after the failure: {_error_text(exc)}")
                return
            for schema, index in names:
                name = display_name(schema, index)
                drop = drop_index_concurrently(schema, index).as_string(conn)
                position, entry = self._start(statement, 1, phase="cleanup", text=drop)
                try:
                    conn.execute(lock_settings(self.options.lock_timeout, self.options.statement_timeout, local=False))
                    conn.execute(drop)
                except psycopg.Error as exc:
                    self._finish(statement, position, entry, "failed", error=_error_text(exc))
                    self.cleanup_notes.append(f"the INVALID index {name} left by the failed build could not be "
                                              f"dropped ({_error_text(exc)}); run {drop} yourself")
                    continue
                self._finish(statement, position, entry, "applied")
                self.cleanup_notes.append(f"the failed build left the INVALID index {name}; it was dropped")

    def _verify_valid(self, statement: PhaseStatement, relation: str | None, before: set[int]) -> None:
        """A CONCURRENTLY build that "succeeds" may still leave nothing usable: IF NOT EXISTS skips over an
        INVALID index of the same name. PostgreSQL's pg_index.indisvalid is the only proof."""
        if statement.index is not None and relation is not None:
            schema = statement.table[0] if statement.table else None
            name = sql.Identifier(*[p for p in (schema, statement.index) if p is not None]).as_string()
            row = self.conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                                    (name,)).fetchone()
            if row is not None and not row[0]:
                raise _Failure(
                    f"step {statement.step} finished, but index {name} is INVALID: IF NOT EXISTS skipped the build "
                    f"because an INVALID index of that name was already there. Drop it (DROP INDEX CONCURRENTLY "
                    f"{name}) and apply again.", phase="B")
        invalid = self._invalid_since(relation, before, self.conn)
        if invalid:
            raise _Failure(f"step {statement.step} left the INVALID index "
                           f"{', '.join(display_name(*i) for i in invalid)}.", phase="B")

    # --- messages --------------------------------------------------------------------------------------

    def _lost(self, exc: psycopg.Error) -> bool:
        """Whether the apply connection is gone. psycopg calls many server errors "operational" (54000, an index
        row too large, among them); those leave the session, and the lock it holds, alive."""
        return self.conn.broken or self.conn.closed or classify(exc) == "connection"

    def _rollback(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("ROLLBACK")

    def _lost_or_error(self, exc: psycopg.Error, statement: PhaseStatement,
                       current: tuple[PhaseStatement, int, AppliedStatement] | None) -> str:
        where = current[0] if current else statement
        if self._lost(exc):
            return (f"the connection to PostgreSQL was lost during step {where.step} ({_error_text(exc)}); "
                    "the server ended the session (pg_terminate_backend, a restart, or the network).")
        if isinstance(exc, pgerrors.QueryCanceled):
            return (f"step {where.step} ran longer than statement_timeout {self.options.statement_timeout:g} s and "
                    "was cancelled; raise ApplyOptions.statement_timeout or apply when the table is quieter.")
        if classify(exc) == "limit":
            return (f"step {where.step} hit a PostgreSQL limit: {_error_text(exc)} (SQLSTATE {exc.sqlstate}). The data "
                    "does not fit what the step builds (e.g. a key too large for a btree index row): change the step "
                    "(an index on a hash or prefix of the value) or the data.")
        if isinstance(exc, psycopg.IntegrityError):
            return (f"step {where.step} failed because the data changed after the preflight: "
                    f"{_error_text(exc)}. PostgreSQL enforced the constraint anyway. Run the preflight again to see "
                    "the new violations.")
        return f"step {where.step} failed: {_error_text(exc)}."


def _error_text(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    detail = getattr(diag, "message_detail", None) if diag else None
    text = primary or str(exc).strip() or type(exc).__name__
    return f"{text} ({detail})" if detail else text


def failure_message(run_id: int, phases: ApplyPhases, runner: PhaseRunner, failure: _Failure) -> str:
    applied_steps = sorted({s.step for s in runner.applied})
    applied_keys = {(s.phase, s.unit, s.sql) for s in runner.applied}
    pending = [s for s in phases.statements if (s.phase, s.unit, s.sql) not in applied_keys]
    parts = [f"Apply of run {run_id} failed in phase {failure.phase}: {failure.message}"]
    if applied_steps:
        by_phase: dict[str, list[int]] = {}
        for s in runner.applied:
            by_phase.setdefault(s.phase, []).append(s.step)
        parts.append("Applied: " + "; ".join(
            f"phase {p} (step{'s' if len(set(v)) > 1 else ''} {', '.join(str(x) for x in sorted(set(v)))})"
            for p, v in by_phase.items()) + ".")
    else:
        parts.append("Nothing was applied.")
    if pending:
        pending_steps = sorted({s.step for s in pending})
        parts.append(f"Not applied: step{'s' if len(pending_steps) > 1 else ''} "
                     f"{', '.join(str(x) for x in pending_steps)}.")
    # A retried build may meet the same cleanup on each try: each is said once.
    parts.extend(note[0].upper() + note[1:] + "." for note in dict.fromkeys(runner.cleanup_notes))
    return " ".join(parts)
