"""What an apply waits on, shown while it waits: the sessions holding or queueing for its lock, and an index
build's progress."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from ...db import Database
from ...plan.phases import PhaseStatement
from ..store import AppliedStatement

if TYPE_CHECKING:
    from .runner import PhaseRunner  # the runner a build watch reports to (it imports this module)

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
SNAPSHOT_HOLDERS = """
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
