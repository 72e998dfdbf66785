"""What the apply does to the application's traffic, statement by statement: the lock each statement takes and on
what, what that lock blocks, the work it does meanwhile, and how long the lock is held on this target.

The locks and the work are PostgreSQL's own, read from the shadow while the apply's statements run there
(``shadow_catalog.StatementImpact``; ``lock_rehearsal`` when the apply has several transactions). The hold is an
estimate for the target: the rows of each relation a statement scans, rewrites or indexes, at a read rate measured
on this target (the table read whole when small, else its first rows timed and scaled), times a multiple for the
work, as a range (calibrated on
the embedded PostgreSQL 18 at 2M rows; ``benchmarks/bench_traffic.py`` prints each step's estimate next to the
stall a writer measures while it runs). A lock is held until its transaction ends: the hold of a
lock taken in a transaction is the work of its statement and of every later statement of that transaction.

Without a rehearsal (``rehearse=False``) each step kind's declared lock (``Step.LOCK``) stands in, marked
``measured=False``.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from ..catalog import Catalog
from ..report.contract import LockReport, StatementLock
from ..plan.phases import ApplyPhases
from ..plan import MigrationPlan, TableStep
from ..rehearse.shadow_catalog import LOCK_MODES, LockHeld, StatementImpact

# pg_locks' names, as PostgreSQL's documentation writes them
MODE_NAMES = {
    "AccessShareLock": "ACCESS SHARE", "RowShareLock": "ROW SHARE", "RowExclusiveLock": "ROW EXCLUSIVE",
    "ShareUpdateExclusiveLock": "SHARE UPDATE EXCLUSIVE", "ShareLock": "SHARE",
    "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE", "ExclusiveLock": "EXCLUSIVE",
    "AccessExclusiveLock": "ACCESS EXCLUSIVE",
}


def blocks_of(mode: str) -> str:
    """What a mode keeps waiting: every mode from SHARE on conflicts with ROW EXCLUSIVE (INSERT, UPDATE, DELETE);
    ACCESS EXCLUSIVE also with ACCESS SHARE (SELECT); the weaker ones only with schema changes and the like."""
    rank = LOCK_MODES.index(mode) if mode in LOCK_MODES else len(LOCK_MODES) - 1
    if rank == len(LOCK_MODES) - 1:
        return "reads and writes"
    if rank >= LOCK_MODES.index("ShareLock"):
        return "writes"
    return "DDL"


# The time of the work, as a multiple of one sequential read of the relation's rows at the sampled rate (low, mid,
# high). Measured on the embedded PostgreSQL 18 at 2M rows, against the sampled read of the same table: SET NOT NULL
# and a CHECK 0.6-0.7x, a foreign key's validation 1.1x, a unique or plain index build 4x, a rewrite 8-13x (a type
# change, a volatile default); the range is half to twice that.
WORK_MULTIPLES: dict[str, tuple[float, float, float]] = {
    "catalog": (0.0, 0.0, 0.0),
    "scan": (0.35, 0.7, 1.4),
    "index build": (2.0, 4.0, 8.0),
    "rewrite": (5.0, 10.0, 20.0),
}
CATALOG_SECONDS = 0.001  # a catalog change alone, once its lock is granted
SAMPLE_ROWS = 100_000  # rows read to time this target's sequential read


def declared_mode(mode_words: str) -> str | None:
    """The pg_locks name of a mode a step kind's LOCK text starts with ("SHARE ROW EXCLUSIVE on both tables")."""
    by_words = {v: k for k, v in MODE_NAMES.items()}
    for words in sorted(by_words, key=len, reverse=True):
        if mode_words.upper().startswith(words):
            return by_words[words]
    return None


def declared_impacts(plan: MigrationPlan, phases: ApplyPhases, catalog: Catalog) -> list[StatementImpact]:
    """Each statement's lock as its step kind declares it (``Step.lock()``): the fallback without a rehearsal. The
    step names its table as written; its schema is the one ``catalog`` resolves it to by search_path."""
    out: list[StatementImpact] = []
    for statement in phases.statements:
        step = plan.steps[statement.step - 1]
        mode_text, effect = step.lock()
        mode = declared_mode(mode_text)
        locks: tuple[LockHeld, ...] = ()
        if mode is not None and isinstance(step, TableStep) and statement.table is not None:
            if statement.online and "VALIDATE" in statement.sql:
                mode, work = "ShareUpdateExclusiveLock", "scan"
            elif statement.online:
                mode = "ShareUpdateExclusiveLock" if statement.phase == "B" else "AccessExclusiveLock"
                work = "index build" if statement.phase == "B" else "catalog"
            else:
                work = ("rewrite" if "rewrite" in effect and "no rewrite" not in effect else
                        "index build" if "index" in effect and "scan" in effect else
                        "scan" if "scan" in effect and "no scan" not in effect else "catalog")
            schema, table = statement.table
            info = catalog.table(schema, table)
            locks = (LockHeld(info.schema if info else schema or "", table, "r", mode, work),)
        out.append(StatementImpact(step=statement.step, statement=statement.sql, locks=locks, measured=False))
    return out


class ReadRates:
    """This target's sequential read time per table, timed once per table on a read-only connection, less the time
    of the same query reading no row (a round trip, opening and planning the table, which would make a small table
    look slow)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.seconds: dict[tuple[str, str], float] = {}

    def _timed(self, query: sql.Composable) -> tuple[float, int]:
        started = time.perf_counter()
        row = self.conn.execute(query).fetchone()
        return time.perf_counter() - started, int(row[0]) if row else 0

    def scan_seconds(self, schema: str, name: str, rows: int) -> float | None:
        """How long one sequential read of the whole table takes on this target: timed whole when it has at most
        SAMPLE_ROWS rows (the best of three reads), else its first SAMPLE_ROWS rows timed and scaled to ``rows``."""
        key = (schema, name)
        if key not in self.seconds:
            wanted = max(1, min(rows, SAMPLE_ROWS))
            relation = sql.Identifier(schema, name)
            read_none = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM ONLY {} LIMIT 0) AS s").format(relation)
            read_some = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM ONLY {} LIMIT {}) AS s").format(
                relation, sql.Literal(wanted))
            try:
                self.conn.execute("SAVEPOINT erd_preflight_rate")
                # the same query reading no row: what opening and planning the table costs, which is not reading it
                fixed = min(self._timed(read_none)[0] for _ in range(2))
                seconds, read = self._timed(read_some)
                whole = read < wanted or rows <= SAMPLE_ROWS
                if whole:  # a small table, read whole: its best time, not one noisy one
                    seconds = min([seconds] + [self._timed(read_some)[0] for _ in range(2)])
                self.conn.execute("RELEASE SAVEPOINT erd_preflight_rate")
            except psycopg.Error:
                self.conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_rate")
                return None
            net = max(seconds - fixed, 0.0)
            self.seconds[key] = net if whole else rows * net / max(read, 1)
        return self.seconds[key]


def lock_report(plan: MigrationPlan, phases: ApplyPhases, impacts: list[StatementImpact] | None, catalog: Catalog,
                rates: ReadRates, seconds: list[float | None] | None = None) -> LockReport:
    """One entry per statement and relation it locks that exists before the plan, with the estimated hold.
    ``seconds``: each statement's time on a full copy of the target (``rehearse_on``), which replaces the estimate
    of its work where it is known."""
    measured = impacts is not None and len(impacts) == len(phases.statements)
    found = impacts if measured and impacts is not None else declared_impacts(plan, phases, catalog)
    timed = seconds if seconds is not None and len(seconds) == len(found) else [None] * len(found)
    # the work (low, mid, high seconds) of each statement, over every relation it works on
    works: list[tuple[float, float, float]] = []
    rows_of: dict[tuple[str, str], int] = {}
    for impact, took in zip(found, timed):
        total = [0.0, 0.0, 0.0]
        if took is not None:  # its time on the real rows: no estimate
            for lock in impact.locks:
                info = catalog.table(lock.schema or None, lock.name)
                rows_of[(lock.schema, lock.name)] = info.estimated_rows if info is not None else 0
            works.append((took, took, took))
            continue
        for lock in impact.locks:
            info = catalog.table(lock.schema or None, lock.name)
            rows = info.estimated_rows if info is not None else 0
            rows_of[(lock.schema, lock.name)] = rows
            if lock.work == "catalog" or rows <= 0:
                continue
            read = rates.scan_seconds(lock.schema, lock.name, rows) if info is not None else None
            if read is None:
                continue
            for i, multiple in enumerate(WORK_MULTIPLES[lock.work]):
                total[i] += read * multiple
        works.append((total[0], total[1], total[2]))
    # held to the end of its transaction: its own work and that of every later statement in it (a statement outside
    # any transaction, its own), summed from the last statement back
    holds: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * len(found)
    after: dict[tuple[str, int], tuple[float, float, float]] = {}
    all_timed: list[bool] = [False] * len(found)
    timed_after: dict[tuple[str, int], bool] = {}
    for index in reversed(range(len(found))):
        statement = phases.statements[index]
        key = (statement.phase, statement.unit)
        later = after.get(key, (0.0, 0.0, 0.0)) if statement.transactional else (0.0, 0.0, 0.0)
        holds[index] = after[key] = (later[0] + works[index][0], later[1] + works[index][1],
                                     later[2] + works[index][2])
        # timed whole: this statement and every later one of its transaction ran on the copy
        all_timed[index] = timed_after[key] = timed[index] is not None and (
            timed_after.get(key, True) if statement.transactional else True)
    statements: list[StatementLock] = []
    for statement, impact, (low, mid, high), whole in zip(phases.statements, found, holds, all_timed):
        extra = 0.0 if whole else CATALOG_SECONDS
        for lock in impact.locks:
            statements.append(StatementLock(
                step=statement.step, phase=statement.phase,
                transaction=f"{statement.phase}{statement.unit}" if statement.transactional else "none",
                sql=statement.sql, relation=f"{lock.schema}.{lock.name}" if lock.schema else lock.name,
                mode=MODE_NAMES.get(lock.mode, lock.mode), blocks=blocks_of(lock.mode), work=lock.work,
                rows=rows_of.get((lock.schema, lock.name), 0), hold_seconds=round(mid + extra, 4),
                hold_low_seconds=round(low + extra, 4), hold_high_seconds=round(high + extra, 4),
                measured=impact.measured and measured, timed=whole))
    return LockReport(online_steps=list(phases.online_steps), statements=statements)
