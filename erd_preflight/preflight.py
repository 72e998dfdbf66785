"""The orchestrator (spec 1.1.04c): run a plan's checks against PostgreSQL, in step order, and stop at the
first blocking result. Every query runs here, in a READ ONLY transaction with a statement timeout."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from .catalog import Catalog
from .checks import (
    CastProbe,
    Check,
    DuplicatesProbe,
    OrphansProbe,
    PreflightOptions,
    RowsProbe,
    WIDE_KEY,
    Verdict,
    all_not_null,
    null_datum,
)
from sqlalchemy.engine import make_url

from .contract import (
    ACKNOWLEDGE_STEP,
    CheckRun,
    Outcome,
    PreflightCheckResult,
    PreflightReport,
    ReplicaStamp,
    SampleColumn,
    utc_now,
)
from .db import Database, connect, read_only, redact_url
from .errors import CheckTimeout, PlanError, PreflightError, ReplicaError, classify, server_went_away
from .plan import MigrationPlan, display_name
from .rehearsal import plan_statements, rehearsed_checks, schemas_of
from .rows_rehearsal import RowsRehearsal, rehearse_rows
from .scan import Cancel, OpenConnection, Piece, PieceCounter, ScanProgress, begin_snapshot, plan_pieces
from .side_effects import unsafe_calls

ProgressCallback = Callable[[CheckRun, int, int], None]
"""Called after each check with (its checklist entry, checks done, checks in all)."""


@contextlib.contextmanager
def catalog_session(db: Database, timeout_s: float, doing: str) -> Iterator[psycopg.Connection[Any]]:
    """A read-only transaction for reading the catalog; its failures are errors, never findings: a timeout is
    ``CheckTimeout``, a lost server ``ConnectionFailed``."""
    with db.connection() as conn:
        try:
            with read_only(conn, timeout_s):
                yield conn
        except psycopg.Error as exc:
            raise catalog_error(exc, timeout_s, doing) from exc


def catalog_error(exc: psycopg.Error, timeout_s: float, doing: str) -> Exception:
    kind = classify(exc)
    if kind == "connection":
        return server_went_away(exc, doing)
    if kind not in ("timeout", "lock"):
        return PreflightError(f"{doing} failed: {exc.diag.message_primary or exc}")
    return CheckTimeout(
        f"{doing} took longer than check_timeout {timeout_s:g} s ({exc.diag.message_primary or exc}): a session "
        "may hold a lock on a table the plan touches (pg_locks shows which). Run again with a larger "
        f"check_timeout (e.g. check_timeout={max(timeout_s * 4, 60):g}) or when the database is quieter.")


def evaluated_sql(probe: Any) -> list[str]:
    """The SQL a data probe evaluates on real rows, in parts: the plan's expressions of each derived layer it
    reads, then its own (a predicate, a USING). Parts repeat from check to check and are screened once."""
    sources = [getattr(probe, n, None) for n in ("source", "child", "parent")]
    parts = [e for source in sources if source is not None for e in source.expressions]
    own: sql.Composable | None = None
    if isinstance(probe, RowsProbe):
        own = probe.predicate
    elif isinstance(probe, DuplicatesProbe):
        own = probe.where
    elif isinstance(probe, CastProbe):
        own = probe.converted()
    if own is not None:
        parts.append(sql.SQL("SELECT {}").format(own).as_string())
    return parts


def unsafe_message(check: Check, calls: list[str]) -> str:
    return (f"cannot verify step {check.step} before apply: it evaluates {', '.join(calls)}, which PostgreSQL marks "
            "volatile: it may act on the database (take a lock, write through dblink, signal a backend), and READ "
            "ONLY does not stop all of that, so preflight does not run it. Replace the call with an immutable or "
            "stable one, or review the step and the function yourself and acknowledge the step.")


def json_value(value: Any) -> Any:
    """A sample value as JSON can hold it; the DataFrame restores dtypes from the column types."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


class _Outcome:
    def __init__(self, outcome: Outcome, message: str, stats: dict[str, int | float],
                 rows: list[dict[str, Any]] | None = None, columns: list[SampleColumn] | None = None,
                 acknowledge: bool = False) -> None:
        self.outcome, self.message, self.stats, self.rows, self.columns = outcome, message, stats, rows, columns
        # a warning about what preflight cannot verify: the gate needs a person to acknowledge the step
        self.acknowledge = acknowledge


REPLICA_RETRIES = 2


class _RecoveryConflict(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Executor:
    """Runs probes. Row-predicate checks on the same relation share one scan (one FILTER per check)."""

    def __init__(self, conn: psycopg.Connection[Any], options: PreflightOptions, checks: list[Check],
                 work_mem: str, *, data: psycopg.Connection[Any] | None = None,
                 open_data: OpenConnection | None = None, cancel: Cancel | None = None, explore: bool = False,
                 on_scan: Callable[[ScanProgress], None] | None = None,
                 on_early: Callable[[int, _Outcome], None] | None = None,
                 on_snapshot: Callable[[psycopg.Connection[Any]], None] | None = None,
                 reopen: Callable[[], psycopg.Connection[Any]] | None = None) -> None:
        self.catalog = conn  # the primary: screening reads its catalog
        self.conn = data or conn  # where the data checks run: the primary, or a hot standby (read_from)
        self.open_data = open_data  # more connections to the same server, for scans in parallel
        self.options = options
        self.checks = checks
        self.work_mem = work_mem
        self.cancel = cancel
        self.explore = explore
        self.on_scan, self.on_early, self.on_snapshot = on_scan, on_early, on_snapshot
        self.reopen = reopen  # a new connection to the standby, after one it ended in a recovery conflict
        self.conflicts = 0
        self._shared: dict[int, dict[str, int] | BaseException] = {}
        self._shared_ms: dict[int, float] = {}
        self._unsafe: dict[int, list[str]] = {}
        self._user: str | None = None
        self._snapshot: str | None = None
        self._in_snapshot = False
        self._workers: int | None = options.scan_workers

    # --- one snapshot for every data check ----------------------------------------------------------------

    def _begin(self) -> None:
        """Every data check reads one REPEATABLE READ READ ONLY snapshot; each check runs in a savepoint of it, so a
        check that fails leaves the others their snapshot."""
        begin_snapshot(self.conn, self.options.check_timeout)
        self._in_snapshot = True
        if self.on_snapshot is not None:
            self.on_snapshot(self.conn)
        # As many connections as PostgreSQL would give one parallel query (its workers per Gather and the leader,
        # within max_parallel_workers, at most 8). They import this snapshot; a standby in recovery exports none,
        # so its scans run one piece after another.
        row = self.conn.execute(
            "SELECT least(current_setting('max_parallel_workers')::int, "
            "current_setting('max_parallel_workers_per_gather')::int + 1), pg_is_in_recovery()").fetchone()
        assert row is not None
        if self._workers is None:
            self._workers = max(1, min(int(row[0]), 8))
        self._snapshot = None
        if self._workers > 1 and self.open_data is not None and not row[1]:
            self._snapshot = str(self.conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]

    def end(self) -> None:
        """Close the snapshot (the next check opens a new one)."""
        if self._in_snapshot and not self.conn.closed and not self.conn.broken:
            self.conn.execute("ROLLBACK")
        self._in_snapshot = False

    @contextlib.contextmanager
    def _check(self) -> Iterator[None]:
        if self._in_snapshot and self.conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
            self._in_snapshot = False  # the server ended it (a lost connection is reported by the caller)
        if not self._in_snapshot:
            self._begin()
        watch = self.cancel.watching(self.conn) if self.cancel is not None else contextlib.nullcontext()
        with watch:
            self.conn.execute("SAVEPOINT erd_preflight_check")
            try:
                yield
            except BaseException:
                if not self.conn.closed and not self.conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        self.conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_check")
                raise
            self.conn.execute("RELEASE SAVEPOINT erd_preflight_check")

    def screen(self) -> None:
        """Find, before anything is evaluated, each check whose SQL would call a volatile function: it is
        never run, and never joins a shared scan (which would evaluate it on another check's behalf)."""
        screened: dict[str, list[str]] = {}
        with read_only(self.catalog, self.options.check_timeout):
            for position, check in enumerate(self.checks):
                calls: set[str] = set()
                for part in evaluated_sql(check.probe):
                    if part not in screened:
                        screened[part] = unsafe_calls(self.catalog, part)
                    calls.update(screened[part])
                if calls:
                    self._unsafe[position] = sorted(calls)

    # --- plumbing ---------------------------------------------------------------------------------------

    def _fetch(self, query: sql.Composable, params: Any = None) -> tuple[list[tuple[Any, ...]], list[Any]]:
        cur = self.conn.execute(query, params)
        return cur.fetchall(), list(cur.description or [])

    def _samples(self, query: sql.Composable, params: Any = None) -> tuple[list[dict[str, Any]], list[SampleColumn]]:
        if self.options.sample_cap == 0:
            return [], []
        rows, desc = self._fetch(query, params)
        columns = [SampleColumn(name=d.name, type=d.type_display) for d in desc]
        return [{c.name: json_value(v) for c, v in zip(columns, row)} for row in rows], columns

    def _limit(self) -> sql.Composable:
        return sql.Literal(self.options.sample_cap)

    def _judge(self, check: Check, stats: dict[str, Any], sampler: Callable[[], Any]) -> _Outcome:
        if stats["violations"] == 0:
            if check.unsure_pass:  # rows an earlier step adds are not read: no violation here is not a clear
                return _Outcome("warning", check.unsure_pass, stats, acknowledge=True)
            return _Outcome("pass", check.message(check.ok, stats), stats)
        rows, columns = sampler()
        return _Outcome(check.failure, check.message(check.fail, stats), stats, rows, columns,
                        acknowledge=check.acknowledge and check.failure == "warning")

    def run(self, position: int) -> tuple[_Outcome, float]:
        """The check's outcome and time. On a hot standby, a check the standby cancels to replay WAL (a recovery
        conflict) runs again in a new snapshot, up to REPLICA_RETRIES times."""
        for attempt in range(REPLICA_RETRIES + 1):
            try:
                return self._run_once(position)
            except _RecoveryConflict as conflict:
                self.conflicts += 1
                message = conflict.message
                self._in_snapshot = False
                if self.reopen is not None and (self.conn.closed or self.conn.broken):
                    self.conn = self.reopen()
                else:
                    with contextlib.suppress(psycopg.Error):
                        self.conn.execute("ROLLBACK")
        check = self.checks[position]
        return _Outcome("blocking", f"the standby cancelled step {check.step}'s check {REPLICA_RETRIES + 1} times to "
                        f"replay WAL ({message}), so preflight cannot say the step is safe. On the standby, set "
                        "hot_standby_feedback = on or raise max_standby_streaming_delay, or run without read_from "
                        "(on the primary).", {"recoveryConflicts": REPLICA_RETRIES + 1}), 0.0

    def _run_once(self, position: int) -> tuple[_Outcome, float]:
        check = self.checks[position]
        started = time.perf_counter()
        if isinstance(check.probe, Verdict):
            v = check.probe
            return _Outcome(v.outcome, v.message, dict(v.stats), acknowledge=v.acknowledge), 0.0
        if position in self._unsafe:
            # Preflight does not run what may act on the database, so it cannot say the step is safe: a person
            # decides (the gate needs an acknowledgement of the step).
            return _Outcome("warning", unsafe_message(check, self._unsafe[position]),
                            {"volatileFunctions": len(self._unsafe[position])}, acknowledge=True), 0.0
        try:
            with self._check():
                if isinstance(check.probe, RowsProbe):
                    outcome = self._rows(position)
                elif isinstance(check.probe, DuplicatesProbe):
                    outcome = self._duplicates(check, check.probe)
                elif isinstance(check.probe, OrphansProbe):
                    outcome = self._orphans(check, check.probe)
                else:
                    outcome = self._cast(position, check, check.probe)
        except (pgerrors.UndefinedTable, pgerrors.UndefinedColumn, pgerrors.UndefinedObject,
                pgerrors.UndefinedFunction, pgerrors.InvalidTextRepresentation) as exc:
            undefined = not isinstance(exc, pgerrors.InvalidTextRepresentation)
            if check.rehearsed and (undefined or check.enum_values_added):
                # An enum value an earlier step adds (ALTER TYPE ... ADD VALUE) is not in the database yet either.
                # PostgreSQL ran the step in the rehearsal, so what is missing here is made by an earlier step
                # (a type, a function, an extension): the rows cannot be judged before apply. Not a verdict.
                outcome = _Outcome("warning", f"cannot verify step {check.step} before apply: its check needs "
                                   f"what an earlier step of the plan makes ({exc.diag.message_primary}), so it "
                                   "cannot run on the database as it is now. PostgreSQL checks the rows at apply; "
                                   "acknowledge this step, or apply the earlier steps first and preflight again.",
                                   {}, acknowledge=True)
            elif undefined:
                outcome = _Outcome("blocking", f"{exc.diag.message_primary}: the object this check reads is "
                                   "missing, so the step would fail too. Check the names in the plan.", {})
            else:
                outcome = _Outcome("blocking", f"the check could not run: {exc.diag.message_primary}. PostgreSQL "
                                   "would meet the same error at apply; fix the expression or the data.", {})
        except psycopg.Error as exc:
            kind = classify(exc)
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()
            if self.reopen is not None and ("conflict with recovery" in str(exc) or self.conn.broken):
                raise _RecoveryConflict(" ".join(str(exc).split())) from exc
            if kind == "connection" or self.conn.broken:
                raise server_went_away(exc, f"running {check.check_id} of step {check.step}") from exc
            if kind == "timeout":
                outcome = self._timed_out(check)
            elif kind == "privilege":
                outcome = self._no_access(check, exc)
            else:
                outcome = _Outcome("blocking", f"the check could not run: {exc.diag.message_primary or exc}. "
                                   "PostgreSQL would meet the same error at apply; fix the expression or the data.", {})
        elapsed = (time.perf_counter() - started) * 1000
        return outcome, self._shared_ms.pop(position, elapsed)

    def _no_access(self, check: Check, exc: psycopg.Error) -> _Outcome:
        """The checking role may not read every row it must judge: say so, with what lifts it."""
        if self._user is None:
            self._user = str(self.conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
        user = sql.Identifier(self._user).as_string(self.conn)
        probe = check.probe
        tables = [s.relation for s in (getattr(probe, "source", None), getattr(probe, "child", None),
                                       getattr(probe, "parent", None)) if s is not None and not s.derived]
        grant = (sql.SQL("GRANT SELECT ON {} TO {}").format(sql.SQL(", ").join(tables), sql.Identifier(self._user))
                 .as_string(self.conn) if tables else f"GRANT SELECT ON <the table> TO {user}")
        primary = exc.diag.message_primary or str(exc)
        if "row-level security" in primary:
            what = (f"row-level security applies to role {user} here, so it would see only the rows a policy shows "
                    "and could call a table clean that is not. Run the preflight as the table's owner (without "
                    f"FORCE ROW LEVEL SECURITY) or as a role with BYPASSRLS (ALTER ROLE {user} BYPASSRLS)")
        else:
            what = f"role {user} may not read every column this check needs: {grant}"
        return _Outcome("blocking", f"preflight cannot read the rows this check must judge ({primary}): {what}; "
                        "then run the preflight again.", {"privilege": 1})

    def _timed_out(self, check: Check) -> _Outcome:
        cap = self.options.check_timeout
        return _Outcome(
            "blocking",
            f"the check did not finish within {cap:g} s, so preflight cannot say the step is safe. Raise the cap "
            f"with run_preflight(..., check_timeout={max(cap * 4, 60):g}) or PreflightOptions.check_timeout, "
            "or run it when the table is quieter.",
            {"timedOut": 1, "timeoutSeconds": cap},
        )

    # --- row predicates: NOT NULL, CHECK, ADD COLUMN NOT NULL -------------------------------------------

    def _rows(self, position: int) -> _Outcome:
        check = self.checks[position]
        probe = check.probe
        assert isinstance(probe, RowsProbe)
        if position not in self._shared:
            self._scan_group(position)
        counted = self._shared.pop(position)
        if isinstance(counted, BaseException):
            raise counted
        source = probe.source

        def sampler() -> Any:
            return self._samples(sql.SQL("SELECT * FROM {} WHERE {} LIMIT {}").format(
                source.from_item(), probe.predicate, self._limit()))

        outcome = self._judge(check, counted, sampler)
        if counted.get("countedEarly") and outcome.outcome != "pass":
            outcome.message = (f"{_early_message(check, counted)} Counting stopped at the first blocking answer "
                               "(counts='early'); run with counts='exact' to count every violating row.")
        return outcome

    def _group_of(self, position: int) -> list[int]:
        """This check and every later row-predicate or cast check on the same relation: one scan counts them all."""
        key = self.checks[position].probe.source.key  # type: ignore[union-attr]
        return [i for i in range(position, len(self.checks))
                if isinstance(self.checks[i].probe, (RowsProbe, CastProbe))
                and self.checks[i].probe.source.key == key  # type: ignore[union-attr]
                and i not in self._shared and i not in self._unsafe]

    def _scan_group(self, position: int) -> None:  # noqa: C901
        """One scan for this check and every later row-predicate or cast check on the same relation. A cast's
        conversion is evaluated on every row (count(converted)): if any value fails, the whole scan fails, and
        each check then runs on its own (a cast through its own path, which counts the failing values)."""
        first = self.checks[position].probe
        assert isinstance(first, (RowsProbe, CastProbe))
        group = self._group_of(position)
        filters = [sql.SQL("count(*) FILTER (WHERE {})").format(_violation(self.checks[i].probe)) for i in group]
        # every conversion evaluated on every row, as the ALTER would: count(expr) cannot be folded away
        filters += [sql.SQL("count({})").format(self.checks[i].probe.converted())  # type: ignore[union-attr]
                    for i in group if isinstance(self.checks[i].probe, CastProbe)]
        query = sql.SQL("SELECT count(*), {} FROM {}").format(sql.SQL(", ").join(filters), first.source.from_item())
        started = time.perf_counter()
        pieces = plan_pieces(self.conn, first.source.table, self.options.scan_chunk_rows) \
            if first.source.table is not None else None
        if len(group) > 1:
            self.conn.execute("SAVEPOINT erd_preflight_group")
        try:
            if pieces:
                stats = self._in_pieces(position, group, filters, pieces)
            else:
                row = self.conn.execute(query).fetchone()
                assert row is not None
                stats = [{"violations": row[offset + 1], "totalRows": row[0]} for offset in range(len(group))]
        except psycopg.Error as exc:
            if len(group) == 1 or classify(exc) in ("connection", "timeout", "privilege"):
                raise
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()
            self.conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_group")
            if isinstance(first, CastProbe):
                return  # the cast runs its own path, which tells a failing conversion from the rest
            # One predicate failed to evaluate: run this check alone, so each check gets its own verdict.
            row = self.conn.execute(sql.SQL("SELECT count(*), count(*) FILTER (WHERE {}) FROM {}").format(
                first.predicate, first.source.from_item())).fetchone()
            assert row is not None
            group, stats = [position], [{"violations": row[1], "totalRows": row[0]}]
        ms = (time.perf_counter() - started) * 1000
        for i, counted in zip(group, stats):
            self._shared[i] = counted
            if len(group) > 1:
                self._shared[i]["sharedScanChecks"] = len(group)
            self._shared_ms[i] = ms

    def _in_pieces(self, position: int, group: list[int], filters: list[sql.Composable],
                   pieces: list[Piece]) -> list[dict[str, int]]:
        """The group's counts, piece by piece (block ranges, partitions), with progress, the first blocking
        answer as soon as a piece has one, and per-partition counts."""
        first = self.checks[position]
        probe = first.probe
        assert isinstance(probe, (RowsProbe, CastProbe))
        alias = sql.Identifier(probe.source.alias)
        select = sql.SQL("SELECT count(*), {} FROM ").format(sql.SQL(", ").join(filters))

        def query(piece: Piece) -> sql.Composable:
            return sql.SQL("{}{} AS {}{}").format(select, piece.relation, alias, piece.where())

        totals = [0] * (len(filters) + 1)
        by_partition: dict[str, list[int]] = {}
        estimate = int(sum(p.rows for p in pieces))
        started = time.perf_counter()
        announced = False
        stopped_early = False
        done = 0
        table = display_name(probe.source.alias)

        def on_piece(index: int, row: tuple[Any, ...]) -> bool:
            nonlocal announced, stopped_early, done
            done += 1
            piece = pieces[index]
            for k, value in enumerate(row):
                totals[k] += int(value)
            if piece.partition is not None:
                counts = by_partition.setdefault(piece.partition, [0] * (len(filters) + 1))
                for k, value in enumerate(row):
                    counts[k] += int(value)
            elapsed = time.perf_counter() - started
            if self.on_scan is not None:
                self.on_scan(ScanProgress(
                    check_id=first.check_id, step=first.step, table=table, partition=piece.partition,
                    rows_done=totals[0], rows_total=max(estimate, totals[0]), pieces_done=done,
                    pieces_total=len(pieces), elapsed_s=elapsed, violations=totals[1]))
            if totals[1] and not announced and first.failure == "blocking" and not first.unsure_pass:
                announced = True
                counted = {"violations": totals[1], "countedRows": totals[0], "totalRows": max(estimate, totals[0])}
                if self.on_early is not None:
                    rows, columns = self._samples(sql.SQL("SELECT * FROM {} AS {} {} LIMIT {}").format(
                        piece.relation, alias, _and(piece, _violation(probe)), self._limit()))
                    self.on_early(position, _Outcome(first.failure, _early_message(first, counted), counted, rows,
                                                     columns))
                if self.options.counts == "early" and not self.explore:
                    stopped_early = True
                    return False
            return True

        counter = PieceCounter(self.conn, open_connection=self.open_data, workers=self._workers or 1,
                               snapshot=self._snapshot, timeout_s=self.options.check_timeout, cancel=self.cancel)
        counter.count(pieces, query, on_piece)
        stats: list[dict[str, int]] = []
        for k in range(len(group)):
            counted = {"violations": totals[k + 1], "totalRows": totals[0], "countedRows": totals[0]}
            if stopped_early:
                counted["totalRows"] = max(estimate, totals[0])  # the catalog's estimate: the rest was not read
                counted["countedEarly"] = 1
            if by_partition:
                counted["partitions"] = len(by_partition)
                for name, counts in by_partition.items():
                    counted[f"rows[{name}]"] = counts[0]
                    counted[f"violations[{name}]"] = counts[k + 1]
            stats.append(counted)
        return stats[:1] if stopped_early else stats

    # --- duplicates -------------------------------------------------------------------------------------

    def _duplicates(self, check: Check, probe: DuplicatesProbe) -> _Outcome:
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in probe.columns)
        # Grouping and counting needs the memory an index build would get (maintenance_work_mem).
        self.conn.execute("SELECT set_config('work_mem', %s, true)", (self.work_mem,))
        where = sql.SQL(" WHERE {}").format(probe.where) if probe.where is not None else sql.SQL("")
        if probe.nulls_not_distinct:
            dup = sql.SQL("n > 1")
            null_flag = sql.SQL("")
        else:
            # UNIQUE ignores rows with a NULL in the key: their groups never count as duplicates.
            dup = sql.SQL("n > 1 AND NOT has_null")
            null_flag = sql.SQL(", ({}) AS has_null").format(sql.SQL(" OR ").join(
                null_datum(sql.Identifier(c)) for c in probe.columns))
        fast = self._distinct_by_hash(probe)
        if fast is not None:
            total, wide_keys = fast
            stats = {"violations": 0, "duplicateGroups": 0, "totalRows": total}
            if wide_keys:
                return self._wide_keys(check, probe, stats, wide_keys)
            return self._judge(check, stats, lambda: ([], []))
        wide = probe.wide if probe.wide is not None else sql.SQL("false")
        query = sql.SQL(
            "SELECT coalesce(sum(n), 0)::bigint, count(*) FILTER (WHERE {dup}), "
            "coalesce(sum(n) FILTER (WHERE {dup}), 0)::bigint, count(*) FILTER (WHERE wide) "
            "FROM (SELECT count(*) AS n, bool_or({wide}) AS wide{null_flag} FROM {src}{where} GROUP BY {keys}) AS g"
        ).format(dup=dup, null_flag=null_flag, src=probe.source.from_item(), where=where, keys=keys, wide=wide)
        total, groups, rows, wide_keys = self.conn.execute(query).fetchone()  # type: ignore[misc]
        stats = {"violations": int(rows), "duplicateGroups": int(groups), "totalRows": int(total)}
        if wide_keys and not rows:
            return self._wide_keys(check, probe, stats, int(wide_keys))
        count_name = "duplicate_rows"
        while count_name in probe.columns:
            count_name += "_"

        def sampler() -> Any:
            return self._samples(sql.SQL("{} ORDER BY count(*) DESC, {} LIMIT {}").format(
                probe.violations(count_name), keys, self._limit()))

        return self._judge(check, stats, sampler)

    def _distinct_by_hash(self, probe: DuplicatesProbe) -> tuple[int, int] | None:
        """(rows, wide keys) when every key that counts is distinct, proved by sorting 8-byte hashes of the keys
        (no duplicate: as many distinct hashes as keys). None when that cannot prove it (a duplicate, a hash
        collision, a type without a hash function): the exact grouping decides. Sorting 8-byte values is about
        twice as fast as grouping the keys themselves, and a passing plan is the common case."""
        if self.conn.info.server_version < 140000:  # hash_record_extended is PostgreSQL 14+
            return None
        total, keyed, wide_keys = self.conn.execute(probe.counted()).fetchone()  # type: ignore[misc]
        self.conn.execute("SAVEPOINT erd_preflight_hash")
        try:
            # a sort of the hashes, not a hash table of a million groups: the planner would choose the latter
            self.conn.execute("SELECT set_config('enable_hashagg', 'off', true)")
            distinct = self.conn.execute(probe.distinct_hashes()).fetchone()[0]  # type: ignore[index]
        except (pgerrors.UndefinedFunction, pgerrors.FeatureNotSupported):
            self.conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_hash")  # no hash function agrees with equality
            return None
        self.conn.execute("SELECT set_config('enable_hashagg', 'on', true)")
        self.conn.execute("RELEASE SAVEPOINT erd_preflight_hash")
        return (int(total), int(wide_keys)) if distinct == keyed else None

    def _wide_keys(self, check: Check, probe: DuplicatesProbe, stats: dict[str, Any], wide_keys: int) -> _Outcome:
        shown = ", ".join(display_name(c) for c in probe.columns)
        return _Outcome("warning", f"cannot verify step {check.step} before apply: {wide_keys:,} key"
                        f"{'s' if wide_keys != 1 else ''} ({shown}) of {display_name(probe.source.alias)} "
                        f"{'are' if wide_keys != 1 else 'is'} more than {WIDE_KEY:,} bytes as stored, near btree's "
                        "index row limit (2,704 bytes after compression; SQLSTATE 54000 past it). Acknowledge this "
                        "step, or index a hash of the value.", {**stats, "wideKeys": wide_keys}, acknowledge=True)

    # --- orphans ------------------------------------------------------------------------------------------

    def _orphans(self, check: Check, probe: OrphansProbe) -> _Outcome:
        found = "erd_preflight_found"
        parent_keys = sql.SQL(", ").join(sql.Identifier(r) for r in probe.ref_columns)
        # The count is probe.condition() as a hash anti-join, as PostgreSQL's own validation does: each table is
        # read once. The samples use the condition as written (the oracle tests hold the two together).
        query = sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE ({keyed} AND p.{found} IS NULL) OR {partial}) "
            "FROM {child} AS c LEFT JOIN (SELECT {pkeys}, true AS {found} FROM {parent}) AS p ON {on}"
        ).format(keyed=all_not_null(probe.columns, "c"), found=sql.Identifier(found), partial=probe.partial(),
                 child=probe.child.relation, pkeys=parent_keys, parent=probe.parent.from_item(), on=probe.matches())
        total, orphans = self.conn.execute(query).fetchone()  # type: ignore[misc]
        stats = {"violations": int(orphans), "totalRows": int(total)}

        def sampler() -> Any:
            return self._samples(sql.SQL("{} LIMIT {}").format(probe.violations(), self._limit()))

        return self._judge(check, stats, sampler)

    # --- casts --------------------------------------------------------------------------------------------

    def _cast(self, position: int, check: Check, probe: CastProbe) -> _Outcome:
        converted, violation = probe.converted(), probe.violation()
        if position not in self._shared and len(self._group_of(position)) > 1:
            self._scan_group(position)
        if position in self._shared:  # every value converted in the shared scan
            counted = self._shared.pop(position)
            if isinstance(counted, BaseException):
                raise counted
            shared = self._judge(check, {**counted, "firstError": ""}, lambda: self._samples(sql.SQL(
                "SELECT * FROM {} WHERE {} LIMIT {}").format(probe.source.from_item(), violation, self._limit())))
            shared.stats.pop("firstError", None)
            return shared
        self.conn.execute("SAVEPOINT erd_preflight_cast")
        try:
            # Evaluating the conversion for every row is PostgreSQL's own test: if this succeeds, so does the step.
            # count(expr) must evaluate expr for every row; a constant-folded predicate would not.
            total, _converted, bad = self.conn.execute(sql.SQL(
                "SELECT count(*), count({}), count(*) FILTER (WHERE {}) FROM {}"
            ).format(converted, violation, probe.source.from_item())).fetchone()  # type: ignore[misc]
            stats = {"violations": int(bad), "totalRows": int(total), "firstError": ""}

            def sampler() -> Any:
                return self._samples(sql.SQL("SELECT * FROM {} WHERE {} LIMIT {}").format(
                    probe.source.from_item(), violation, self._limit()))

            outcome = self._judge(check, stats, sampler)
            outcome.stats.pop("firstError", None)
            return outcome
        # psycopg.DataError is SQLSTATE class 22: every data exception (bad text, out-of-range dates, overflow).
        except psycopg.DataError as exc:
            first_error = exc.diag.message_primary or str(exc)
            self.conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_cast")
        if probe.input_text is not None and self._input_function_converts(probe.type):
            return self._cast_by_input(check, probe, violation)
        return self._cast_rows(check, probe, converted, violation, first_error)

    def _input_function_converts(self, type_text: str) -> bool:
        """Whether text becomes ``type_text`` through that type's input function (PostgreSQL 16+ can then test
        each value with pg_input_is_valid): no cast function from text, no domain, not a string type."""
        if self.conn.info.server_version < 160000:
            return False
        row = self.conn.execute(
            "SELECT t.typtype <> 'd' AND t.typcategory <> 'S' AND NOT EXISTS (SELECT 1 FROM pg_cast c WHERE "
            "c.castsource = 'text'::regtype AND c.casttarget = t.oid) FROM pg_type t WHERE t.oid = to_regtype(%s)",
            (type_text,)).fetchone()
        return bool(row and row[0])

    def _cast_by_input(self, check: Check, probe: CastProbe, violation: sql.Composable) -> _Outcome:
        """Exact counts where some value does not convert, without raising: pg_input_is_valid() on each value's
        text; the values that do convert are then held to the column's other rules (NOT NULL, length)."""
        text = sql.SQL("CAST(({}) AS text)").format(probe.input_text)
        valid = sql.SQL("pg_input_is_valid({}, {})").format(text, sql.Literal(probe.type))
        # NULL converts to NULL (pg_input_is_valid of NULL is NULL): only the column's own rules judge it
        failing = sql.SQL("CASE WHEN {} IS NULL OR {} THEN {} ELSE true END").format(text, valid, violation)
        total, bad, first = self.conn.execute(sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE {failing}), "
            "(SELECT message FROM {source}, pg_input_error_info({text}, {type}) WHERE NOT {valid} LIMIT 1) FROM {source}"
        ).format(failing=failing, source=probe.source.from_item(), text=text, type=sql.Literal(probe.type),
                 valid=valid)).fetchone()  # type: ignore[misc]
        stats = {"violations": int(bad), "totalRows": int(total),
                 "firstError": f" (first error: {first})" if first else ""}

        def sampler() -> Any:
            return self._samples(sql.SQL("SELECT * FROM {} WHERE {} LIMIT {}").format(
                probe.source.from_item(), failing, self._limit()))

        outcome = self._judge(check, stats, sampler)
        outcome.stats.pop("firstError", None)
        return outcome

    def _cast_rows(self, check: Check, probe: CastProbe, converted: sql.Composable, violation: sql.Composable,
                   first_error: str, cap: int | None = None) -> _Outcome:
        """Some value fails to convert: count the failing rows one by one (a subtransaction per row)."""
        body_marker = "$erd_preflight$"
        source = probe.source
        text_of = sql.SQL("{} {}").format(converted, violation).as_string(self.conn)
        if source.derived or body_marker in text_of:
            # Rows of a derived relation have no ctid to revisit one by one: report the failure, not a count.
            return _Outcome("blocking", check.message(
                f"converting {display_name(source.alias, probe.column)} to {probe.type} fails for at least one "
                f"row (PostgreSQL: {first_error}); the step would fail. Fix those values or the USING expression.",
                {}), {"violations": 1})
        table = source.relation
        block = sql.SQL(
            "DO $erd_preflight$ DECLARE r record; bad bigint := 0; total bigint := 0; failed boolean; "
            "is_null boolean; ctids tid[] := '{{}}'; cap int := {cap}; BEGIN "
            "FOR r IN SELECT ctid AS erd_ctid FROM {table} LOOP total := total + 1; "
            "BEGIN SELECT {converted} IS NOT DISTINCT FROM NULL, {violation} INTO is_null, failed FROM {table} AS {alias} "
            "WHERE {alias}.ctid = r.erd_ctid; "
            "EXCEPTION WHEN OTHERS THEN failed := true; END; "
            "IF failed THEN bad := bad + 1; IF cardinality(ctids) < cap THEN ctids := ctids || r.erd_ctid; END IF; "
            "END IF; END LOOP; "
            "PERFORM set_config('erd_preflight.bad', bad::text, true), "
            "set_config('erd_preflight.total', total::text, true), "
            "set_config('erd_preflight.ctids', ctids::text, true); END $erd_preflight$"
        ).format(cap=sql.Literal(self.options.sample_cap if cap is None else cap), table=table, converted=converted, violation=violation,
                 alias=sql.Identifier(source.alias))
        self.conn.execute(block)
        bad, total, ctids = self.conn.execute(
            "SELECT current_setting('erd_preflight.bad')::bigint, current_setting('erd_preflight.total')::bigint, "
            "current_setting('erd_preflight.ctids')"
        ).fetchone()  # type: ignore[misc]
        stats = {"violations": int(bad), "totalRows": int(total), "firstError": f" (first error: {first_error})"}

        def sampler() -> Any:
            return self._samples(sql.SQL("SELECT * FROM {} WHERE ctid = ANY(%s::tid[]) ORDER BY ctid").format(
                source.from_item()), (ctids,))

        outcome = self._judge(check, stats, sampler)
        outcome.stats.pop("firstError", None)
        return outcome


def _violation(probe: Any) -> sql.Composable:
    """The rows a row-predicate or cast check flags."""
    return probe.predicate if isinstance(probe, RowsProbe) else probe.violation()


def _and(piece: Piece, predicate: sql.Composable) -> sql.Composable:
    if piece.first_block is None:
        return sql.SQL("WHERE {}").format(predicate)
    return sql.SQL("{} AND ({})").format(piece.where(), predicate)


def _early_message(check: Check, counted: dict[str, int]) -> str:
    """A blocking answer before the scan ends: how many violating rows so far, in how many rows read."""
    shown = {"violations": f"at least {counted['violations']:,}",
             "totalRows": f"the first {counted['countedRows']:,} (of about {counted['totalRows']:,})"}
    return check.message(check.fail, shown)


class _ProgressBar:
    """A tqdm bar per check (on ``stream``, default stderr; a notebook widget under Jupyter); a long scan shows
    its rows done of rows in all with an ETA, and its first blocking answer as a line of its own."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.bar: Any = None

    def _open(self, total: int) -> Any:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="preflight", unit="check", leave=True, file=self.stream)
        return self.bar

    def __call__(self, run: CheckRun, done: int, total: int) -> None:
        bar = self._open(total)
        if "countedRows" in run.stats and done < total and run.finding is None and run.sample_rows is not None:
            bar.write(f"step {run.step} {run.check_id}: {run.outcome} (found early): {run.message}", file=self.stream)
            return
        bar.set_postfix_str(f"{run.check_id} {run.outcome}", refresh=False)
        bar.update(max(done - bar.n, 0))
        if done == total or run.outcome == "blocking":
            bar.close()

    def scan(self, progress: ScanProgress) -> None:
        if self.bar is not None and not getattr(self.bar, "disable", False):
            self.bar.set_postfix_str(progress.line())


def progress_bar(stream: Any = None) -> ProgressCallback:
    """A tqdm bar (on ``stream``, default stderr; a notebook widget under Jupyter) advancing per check, with the
    rows of a long scan and its ETA."""
    return _ProgressBar(stream)


def run_preflight(
    plan: MigrationPlan,
    db: Database | str | Any = None,
    *,
    explore: bool = False,
    progress: ProgressCallback | bool | None = None,
    options: PreflightOptions | None = None,
    read_from: str | None = None,
    cancel: Cancel | None = None,
    **option_overrides: Any,
) -> PreflightReport:
    """Run the checks of ``plan`` against ``db`` in step order and return the report.

    Stops at the first blocking result (the rest are listed as skipped) unless ``explore=True``, which
    runs every check for exploratory analysis. Warnings never block. ``progress=True`` shows a tqdm bar;
    a callable gets ``(check_run, done, total)`` after each check, and once more, early, when a long scan
    finds its first violating rows (that early entry has ``stats['countedRows']`` and ``sample_rows``); if the
    callable also has a ``scan`` method, it gets a ``ScanProgress`` after each piece of a long scan.

    ``read_from``: the URL of a hot standby of ``db``; the data checks read it, in one REPEATABLE READ snapshot,
    and the report's ``replica`` says which WAL position they saw. The catalog, the rehearsal and the gate stay
    on ``db``. ``cancel``: a ``Cancel`` whose ``cancel()`` stops the preflight from another thread.

    Caps and thresholds come from ``options`` and may be overridden by keyword: ``sample_cap``,
    ``check_timeout``, ``large_table_rows``, ``large_table_bytes``, ``scan_chunk_rows``, ``scan_workers``,
    ``counts``.
    """
    opts = PreflightOptions(**{**(options or PreflightOptions()).model_dump(), **option_overrides})
    if not plan.steps and not plan.nothing_pending:
        raise PlanError("the plan has no steps, so there is nothing to preflight; an empty plan is never reported "
                        "clear. Check where it was read from (a folder in a layout this reader knows, a .sql file "
                        "with statements, a non-empty Alembic range)")
    database = db if isinstance(db, Database) else connect(db)
    # A connection of its own, never the pool's, reset afterwards: whatever the plan's expressions did to the
    # session (a GUC, a temp object, an advisory lock) goes, and never reaches the pool.
    with database.session() as conn, contextlib.ExitStack() as stack:
        try:
            with read_only(conn, opts.check_timeout):
                catalog = Catalog(conn)
                statements = plan_statements(plan, catalog)
                schemas = schemas_of(plan, conn) if opts.rehearse_data else ()
                checks = rehearsed_checks(plan, catalog, opts, statements)
                work_mem = str(conn.execute("SELECT current_setting('maintenance_work_mem')").fetchone()[0])  # type: ignore[index]
        except psycopg.Error as exc:
            raise catalog_error(exc, opts.check_timeout, "reading the catalog") from exc
        callback = progress_bar() if progress is True else (progress or None)
        replica = stack.enter_context(Replica(read_from, conn, opts.check_timeout)) if read_from else None

        def on_early(position: int, early: _Outcome) -> None:
            if callback:
                check = checks[position]
                callback(CheckRun(check_id=check.check_id, step=check.step, step_summary=check.step_summary,
                                  target_ref=check.target, outcome=early.outcome, message=early.message,
                                  stats=early.stats, sample_columns=early.columns, sample_rows=early.rows),
                         position, len(checks))

        executor = _Executor(
            conn, opts, checks, work_mem, explore=explore, cancel=cancel, on_early=on_early,
            on_scan=getattr(callback, "scan", None),
            data=replica.conn if replica else None,
            open_data=replica.open if replica else database.dedicated,
            on_snapshot=replica.stamp if replica else None,
            reopen=replica.reopen if replica else None)
        try:
            executor.screen()
        except psycopg.Error as exc:
            raise catalog_error(exc, opts.check_timeout, "looking up the functions the plan's expressions call") \
                from exc
        results: list[PreflightCheckResult] = []
        runs: list[CheckRun] = []
        stopped_at: int | None = None
        exact: RowsRehearsal | None = None  # the exact rehearsal, run once, when a step first needs it
        try:
            for position, check in enumerate(checks):
                origin = plan.origin_of(check.step)
                # A plan read from a folder or from Alembic: each finding names the file or revision of its step.
                step_summary = f"{check.step_summary} (from {origin})" if origin else check.step_summary
                if stopped_at is not None:
                    runs.append(CheckRun(
                        check_id=check.check_id, step=check.step, step_summary=step_summary,
                        target_ref=check.target, outcome="skipped",
                        message=f"not run: preflight stopped at the first blocking result (step {stopped_at}). "
                        "Run with explore=True to run every check.",
                    ))
                    continue
                if cancel is not None:
                    cancel.raise_if_cancelled()
                outcome, ms = executor.run(position)
                if outcome.acknowledge and outcome.outcome == "warning" and opts.rehearse_data:
                    if exact is None:
                        if executor.conn is conn:
                            executor.end()  # the copy reads its own snapshot on this connection
                        exact = _rows_rehearsal(conn, statements, schemas, opts)
                    outcome = _decided(outcome, exact, check.step)
                finding: int | None = None
                if outcome.acknowledge and outcome.outcome == "warning":
                    # the contract's stats hold numbers: the step a person must acknowledge before Apply
                    outcome.stats = {**outcome.stats, ACKNOWLEDGE_STEP: check.step}
                if outcome.outcome in ("warning", "blocking"):
                    finding = len(results)
                    results.append(PreflightCheckResult(
                        check_id=check.check_id, severity=outcome.outcome, target_ref=check.target,
                        message=f"{outcome.message} (step {check.step}, from {origin})" if origin else outcome.message,
                        sample_rows=outcome.rows[: opts.sample_cap] if outcome.rows is not None else None,
                        stats=outcome.stats or None,
                    ))
                run = CheckRun(
                    check_id=check.check_id, step=check.step, step_summary=step_summary, target_ref=check.target,
                    outcome=outcome.outcome, message=outcome.message, stats=outcome.stats, duration_ms=round(ms, 3),
                    sample_columns=outcome.columns, finding=finding,
                )
                runs.append(run)
                if callback:
                    callback(run, position + 1, len(checks))
                if outcome.outcome == "blocking" and not explore:
                    stopped_at = check.step
        finally:
            executor.end()
    status = "blocked" if any(r.severity == "blocking" for r in results) else "clear"
    stamp = replica.stamped(executor.conflicts) if replica else None
    return PreflightReport(status=status, results=results, created_at=utc_now(), checks=runs, replica=stamp)


class Replica:
    """The hot standby the data checks read (``read_from``): checked to be a standby of the same cluster, its
    connections opened and closed here, and each snapshot stamped with the WAL position it saw."""

    def __init__(self, url: str, primary: psycopg.Connection[Any], timeout_s: float) -> None:
        self.url, self.primary, self.timeout_s = url, primary, timeout_s
        self.shown = redact_url(make_url(url)) if "://" in url else "the read_from server"
        self._conns: list[psycopg.Connection[Any]] = []
        self._stamp: ReplicaStamp | None = None
        self.snapshots = 0

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(int(self.timeout_s), 2),
                                   application_name="erd_preflight read_from")
        except psycopg.Error as exc:
            raise ReplicaError(f"cannot connect to read_from {self.shown}: {' '.join(str(exc).split())}. Check the "
                               "URL and that the standby accepts connections (hot_standby = on).") from exc
        self._conns.append(conn)
        return conn

    def __enter__(self) -> Replica:
        self.conn = self._connect()
        recovering = self.conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if not recovering or not recovering[0]:
            raise ReplicaError(f"read_from {self.shown} is not a hot standby (pg_is_in_recovery() is false): the "
                               "data checks read a standby of the database, never another primary. Give the URL "
                               "of a streaming replica of it, or leave read_from out to read the primary.")
        ids = []
        for conn in (self.primary, self.conn):
            try:
                ids.append(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])  # type: ignore[index]
            except psycopg.Error:  # the role may not read pg_control_system(): the check is skipped
                conn.rollback() if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE else None
        if len(ids) == 2 and ids[0] != ids[1]:
            raise ReplicaError(f"read_from {self.shown} is a standby of another cluster (system identifier "
                               f"{ids[1]}, the database's is {ids[0]}): give a standby of the database itself.")
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            with contextlib.suppress(Exception):
                conn.close()

    def reopen(self) -> psycopg.Connection[Any]:
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = self._connect()
        return self.conn

    @contextlib.contextmanager
    def open(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def stamp(self, conn: psycopg.Connection[Any]) -> None:
        """Called when a snapshot begins on the standby: where its replay stood, against the primary's WAL."""
        self.snapshots += 1
        lsn, seconds = conn.execute(
            "SELECT pg_last_wal_replay_lsn()::text, coalesce(extract(epoch FROM now() - "
            "pg_last_xact_replay_timestamp()), 0)::float8").fetchone()  # type: ignore[misc]
        primary_lsn = self.primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        behind = conn.execute("SELECT greatest(pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn), 0)::bigint",
                              (primary_lsn, lsn)).fetchone()[0]  # type: ignore[index]
        self._stamp = ReplicaStamp(url=self.shown, replay_lsn=lsn, lag_bytes=int(behind),
                                   lag_seconds=round(float(seconds), 3) if behind else 0.0)

    def stamped(self, conflicts: int) -> ReplicaStamp | None:
        if self._stamp is None:
            return None
        return self._stamp.model_copy(update={"snapshots": self.snapshots, "conflicts": conflicts})


def _rows_rehearsal(conn: psycopg.Connection[Any], statements: list[tuple[int, str]], schemas: tuple[str, ...],
                    opts: PreflightOptions) -> RowsRehearsal:
    try:
        return rehearse_rows(conn, statements, schemas, max_rows=opts.rehearse_data_rows, timeout_s=opts.check_timeout)
    except psycopg.Error as exc:
        if classify(exc) == "connection" or conn.broken:
            raise server_went_away(exc, "copying rows for the exact rehearsal") from exc
        return RowsRehearsal(unavailable=f"reading the rows failed ({' '.join(str(exc).split())})")


def _decided(outcome: _Outcome, exact: RowsRehearsal, step: int) -> _Outcome:
    """A warning a person would acknowledge, decided by the exact rehearsal when it can be; otherwise the same
    warning, saying why the copy could not decide it."""
    verdict = exact.judge(step)
    stats = {"rehearsedRows": sum(exact.copied.values())}
    if isinstance(verdict, tuple):
        decided, message = verdict
        return _Outcome(decided, message, stats)  # type: ignore[arg-type]
    return _Outcome(outcome.outcome, f"{outcome.message.rstrip('.')}. ({verdict[0].upper()}{verdict[1:]}.)",
                    outcome.stats, outcome.rows, outcome.columns, acknowledge=True)


def violating_rows(db: Database, check: Check, *, offset: int, limit: int,
                   timeout: float = 60.0) -> tuple[list[dict[str, Any]], list[SampleColumn]]:
    """A page of every violating row of a data check (duplicates: of every duplicate group), read-only."""
    opts = PreflightOptions(sample_cap=min(max(limit, 1), 10_000), check_timeout=timeout)
    with db.dedicated() as conn:
        executor = _Executor(conn, opts, [check], "64MB")
        executor.screen()
        if executor._unsafe:
            raise PreflightError(unsafe_message(check, executor._unsafe[0]))
        with read_only(conn, timeout):
            return _violating_page(conn, executor, check, offset=offset, limit=limit)


def _violating_page(conn: psycopg.Connection[Any], executor: _Executor, check: Check, *, offset: int,
                    limit: int) -> tuple[list[dict[str, Any]], list[SampleColumn]]:
    from .remediation import order_for, violations_query

    probe = check.probe
    if isinstance(probe, CastProbe):
        converted, violation = probe.converted(), probe.violation()
        conn.execute("SAVEPOINT erd_preflight_page")
        try:
            # When every value converts, the violations are the rows the predicate flags.
            conn.execute(sql.SQL("SELECT count({}) FROM {}").format(converted, probe.source.from_item()))
            return executor._samples(sql.SQL("SELECT * FROM {} WHERE {}{} LIMIT {} OFFSET {}").format(
                probe.source.from_item(), violation, order_for(check), sql.Literal(limit), sql.Literal(offset)))
        except psycopg.DataError:
            conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_page")
        # Some value fails to convert: the per-row path collects failing rows up to offset + limit.
        paged = executor._cast_rows(check, probe, converted, violation, "", cap=offset + limit)
        return (paged.rows or [])[offset:], paged.columns or []
    query = violations_query(check)
    if query is None:
        return [], []
    page = sql.SQL("{}{} LIMIT {} OFFSET {}").format(query, order_for(check), sql.Literal(limit),
                                                     sql.Literal(offset))
    if isinstance(probe, DuplicatesProbe):
        conn.execute("SELECT set_config('work_mem', current_setting('maintenance_work_mem'), true)")
    cur = conn.execute(page)
    columns = [SampleColumn(name=d.name, type=d.type_display) for d in cur.description or []]
    return [{c.name: json_value(v) for c, v in zip(columns, row)} for row in cur.fetchall()], columns
