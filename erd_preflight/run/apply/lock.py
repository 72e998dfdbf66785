"""The apply lock (one apply per database at a time), the apply's options, and who is applying now."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...db import Database
from ...errors import ConcurrentApply
from ...plan.phases import PhaseStatement
from ..store import AppliedStatement

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
    all_or_nothing: bool = Field(
        default=False, description="a plan read from a tool's folder: every pending migration in one phase A "
        "transaction (all of them apply or none) instead of each migration's own transaction, as its tool runs it")
    online: bool = Field(default=True, description="run a step that would scan a large table under a write-blocking "
                         "lock in its online form (NOT VALID + VALIDATE, CREATE UNIQUE INDEX CONCURRENTLY + USING "
                         "INDEX); False: every step as written")
    max_blocking_lock: float | None = Field(
        default=5.0, ge=0, allow_inf_nan=False,
        description="seconds: a step whose estimated lock blocking writes on an existing table is held longer needs "
        "a confirmation naming the table (None: no budget)")
    keep_limit_bytes: int = Field(
        default=256 * 2**20, ge=0, description="the most a remediation may keep of the rows it deletes or "
        "overwrites (their text and jsonb, in remediation_rows); above it, it runs only with keep=False")
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
