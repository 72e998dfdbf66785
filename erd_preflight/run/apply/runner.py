"""Phased apply (spec 1.1.04e): run the compiled phases against PostgreSQL and record every statement.

Every statement runs under ``lock_timeout``, so DDL never queues behind traffic (and traffic never queues
behind DDL waiting for its lock). A lock timeout is retried with backoff and jitter; each try is recorded.
The store is written on a separate connection, one short transaction per entry, so the record survives
whatever happens to the apply connection.
"""


from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from ...db import Database
from ...errors import ConnectionFailed, classify
from ...plan.phases import ApplyPhases, PhaseStatement, lock_settings
from ...plan import display_name, drop_index_concurrently
from ..store import AppliedStatement, RunStore, now_text
from .lock import ApplyOptions, ApplyProgress, try_apply_lock
from .watch import SNAPSHOT_HOLDERS, Blocker, IndexBuildWatch, LockWatch, holders_of

if TYPE_CHECKING:
    from ...read.scan import Cancel

# ---------------------------------------------------------------------------------------------------------


class ApplyFailure(Exception):
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
                 sleep: Callable[[float], None] = time.sleep, cancel: Cancel | None = None) -> None:
        self.db = db
        self.conn = conn
        self.store = store
        self.run_id = run_id
        self.options = options
        self.progress = progress
        self.sleep = sleep
        self.cancel = cancel  # a panel's Cancel button: stops before the next statement, and cancels the running one
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
                first = group[0]
                if self.cancel is not None and self.cancel.cancelled:
                    raise ApplyFailure(f"apply was cancelled before phase {first.phase} step {first.step}: what "
                                       "ran before it is applied and recorded, nothing after it ran. Apply again to "
                                       "continue from there", phase=first.phase)
                # Cancel also cancels the statement running on the server: it fails (57014) and is recorded so
                watching = self.cancel.watching(self.conn) if self.cancel is not None else contextlib.nullcontext()
                try:
                    with watching:
                        if first.transactional:
                            self._transaction(group)
                        else:
                            self._outside_transaction(first)
                except ConnectionFailed as exc:  # the record could not be written: the server is gone
                    raise ApplyFailure(
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
                    raise ApplyFailure(
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
                        raise ApplyFailure(self._lost_or_error(exc, group[0], None) + f" Whether the phase {phase} "
                                       "transaction committed is not known until the server answers; its record "
                                       "commits with it, so the next start reads the truth.", phase=phase) from exc
                    if all(stored[p].outcome == "applied" for _, p, _ in done):
                        # Lost while the COMMIT's answer was on its way: the record committed with the DDL, so
                        # it did.
                        self.applied.extend(statement for statement, _, _ in done)
                        raise ApplyFailure(self._lost_or_error(exc, group[0], None) + f" The phase {phase} transaction "
                                       "had committed.", phase=phase) from exc
                for item in done:
                    self._finish(*item, "rolled_back")
                if lost:
                    raise ApplyFailure(self._lost_or_error(exc, group[0], current) + " PostgreSQL rolls back an "
                                   f"unfinished transaction, so nothing of this phase {phase} transaction was "
                                   "applied.", phase=phase) from exc
                raise ApplyFailure(self._lost_or_error(exc, group[0], current) + f" Phase {phase}'s transaction was "
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
                    raise ApplyFailure(
                        f"step {statement.step} could not get its lock within {setting} {lock_timeout:g} s, "
                        f"{attempts} times; {blockers}. Wait for that session to finish (or end it), then apply "
                        "again.", phase="B") from exc
                self.sleep(self._backoff(attempt))
                continue
            except psycopg.Error as exc:
                self._finish(statement, position, entry, "failed", error=_error_text(exc))
                lost = self._lost(exc)
                self._drop_new_invalid(statement, relation, before, reconnect=lost)
                raise ApplyFailure(self._lost_or_error(exc, statement, None), phase="B") from exc
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
                holders = [Blocker(*r) for r in conn.execute(SNAPSHOT_HOLDERS, (self.pid,)).fetchall()]
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
                raise ApplyFailure(
                    f"step {statement.step} finished, but index {name} is INVALID: IF NOT EXISTS skipped the build "
                    f"because an INVALID index of that name was already there. Drop it (DROP INDEX CONCURRENTLY "
                    f"{name}) and apply again.", phase="B")
        invalid = self._invalid_since(relation, before, self.conn)
        if invalid:
            raise ApplyFailure(f"step {statement.step} left the INVALID index "
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


def failure_message(run_id: int, phases: ApplyPhases, runner: PhaseRunner, failure: ApplyFailure) -> str:
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
