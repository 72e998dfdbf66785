"""Runs the probes of a plan's checks on PostgreSQL: one REPEATABLE READ READ ONLY snapshot, a savepoint per
check, a statement timeout; row checks of one table share a scan, long scans go in pieces (scan.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from ..checks import (
    CastProbe,
    evaluated_sql,
    unsafe_message,
    Check,
    DuplicatesProbe,
    OrphansProbe,
    PreflightOptions,
    RowsProbe,
    Verdict,
)
from ..report.contract import SampleColumn, json_value
from ..db import read_only
from ..errors import classify, server_went_away
from ..plan import display_name
from .replica import REPLICA_RETRIES, RecoveryConflict
from .scan import Cancel, OpenConnection, Piece, PieceCounter, ScanProgress, begin_snapshot, plan_pieces
from ..side_effects import known_unsafe_calls, unsafe_calls
from .probes import CheckOutcome, ProbeRuns




class Executor(ProbeRuns):
    """Runs probes. Row-predicate checks on the same relation share one scan (one FILTER per check)."""

    def __init__(self, conn: psycopg.Connection[Any], options: PreflightOptions, checks: list[Check],
                 work_mem: str, *, data: psycopg.Connection[Any] | None = None,
                 open_data: OpenConnection | None = None, cancel: Cancel | None = None, explore: bool = False,
                 on_scan: Callable[[ScanProgress], None] | None = None,
                 on_early: Callable[[int, CheckOutcome], None] | None = None,
                 on_snapshot: Callable[[psycopg.Connection[Any]], None] | None = None,
                 reopen: Callable[[], psycopg.Connection[Any]] | None = None, pieces_likely: bool = True) -> None:
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
        # whether a table may be long enough to be scanned in pieces: only then is the snapshot exported for
        # other connections (a snapshot cannot be exported later, from inside a check's savepoint)
        self.pieces_likely = pieces_likely
        self.conflicts = 0
        self._shared: dict[int, dict[str, int] | BaseException] = {}
        # Counted by another check's scan in this snapshot (both emptied when a new snapshot begins):
        # a unique key's rows, keyed rows and wide keys (position -> (total, keyed, wide)); rows per source key
        self._dup_counts: dict[int, tuple[int, int, int]] = {}
        self._totals: dict[str, int] = {}
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
        self._dup_counts.clear()  # what another snapshot counted is not this one's
        self._totals.clear()
        if self.on_snapshot is not None:
            self.on_snapshot(self.conn)
        # As many connections as PostgreSQL would give one parallel query (its workers per Gather and the leader,
        # within max_parallel_workers, at most 8). They import this snapshot; a standby in recovery exports none,
        # so its scans run one piece after another.
        export = self.pieces_likely and self.open_data is not None and self._workers != 1
        row = self.conn.execute(sql.SQL(
            "SELECT w, CASE WHEN {export} AND coalesce({workers}, w) > 1 AND NOT pg_is_in_recovery() "
            "THEN pg_export_snapshot() END FROM (SELECT least(current_setting('max_parallel_workers')::int, "
            "current_setting('max_parallel_workers_per_gather')::int + 1) AS w) AS s").format(
                export=sql.Literal(export), workers=sql.Literal(self._workers))).fetchone()
        assert row is not None
        if self._workers is None:
            self._workers = max(1, min(int(row[0]), 8))
        self._snapshot = str(row[1]) if row[1] is not None and self._workers > 1 else None

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

    def screen(self, key: tuple[str, ...] | None = None) -> None:
        """Find, before anything is evaluated, each check whose SQL would call a volatile function: it is
        never run, and never joins a shared scan (which would evaluate it on another check's behalf). ``key``:
        the catalog's (``Catalog.key``); an answer given under it before is not asked again."""
        screened: dict[str, list[str]] = {}
        parts = {part for check in self.checks for part in evaluated_sql(check.probe)}
        for part in parts:
            known = known_unsafe_calls(key, part) if key is not None else None
            if known is not None:
                screened[part] = known
        if len(screened) < len(parts):
            with read_only(self.catalog, self.options.check_timeout):
                for part in parts - screened.keys():
                    screened[part] = unsafe_calls(self.catalog, part, key=key)
        for position, check in enumerate(self.checks):
            calls = {call for part in evaluated_sql(check.probe) for call in screened[part]}
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

    def _judge(self, check: Check, stats: dict[str, Any], sampler: Callable[[], Any]) -> CheckOutcome:
        if stats["violations"] == 0:
            if check.unsure_pass:  # rows an earlier step adds are not read: no violation here is not a clear
                return CheckOutcome("warning", check.unsure_pass, stats, acknowledge=True)
            return CheckOutcome("pass", check.message(check.ok, stats), stats)
        rows, columns = sampler()
        return CheckOutcome(check.failure, check.message(check.fail, stats), stats, rows, columns,
                        acknowledge=check.acknowledge and check.failure == "warning")

    def run(self, position: int) -> tuple[CheckOutcome, float]:
        """The check's outcome and time. On a hot standby, a check the standby cancels to replay WAL (a recovery
        conflict) runs again in a new snapshot, up to REPLICA_RETRIES times."""
        for attempt in range(REPLICA_RETRIES + 1):
            try:
                return self._run_once(position)
            except RecoveryConflict as conflict:
                self.conflicts += 1
                message = conflict.message
                self._in_snapshot = False
                if self.reopen is not None and (self.conn.closed or self.conn.broken):
                    self.conn = self.reopen()
                else:
                    with contextlib.suppress(psycopg.Error):
                        self.conn.execute("ROLLBACK")
        check = self.checks[position]
        return CheckOutcome("blocking", f"the standby cancelled step {check.step}'s check {REPLICA_RETRIES + 1} times to "
                        f"replay WAL ({message}), so preflight cannot say the step is safe. On the standby, set "
                        "hot_standby_feedback = on or raise max_standby_streaming_delay, or run without read_from "
                        "(on the primary).", {"recoveryConflicts": REPLICA_RETRIES + 1}), 0.0

    def _run_once(self, position: int) -> tuple[CheckOutcome, float]:
        check = self.checks[position]
        started = time.perf_counter()
        if isinstance(check.probe, Verdict):
            v = check.probe
            return CheckOutcome(v.outcome, v.message, dict(v.stats), acknowledge=v.acknowledge), 0.0
        if position in self._unsafe:
            # Preflight does not run what may act on the database, so it cannot say the step is safe: a person
            # decides (the gate needs an acknowledgement of the step).
            return CheckOutcome("warning", unsafe_message(check, self._unsafe[position]),
                            {"volatileFunctions": len(self._unsafe[position])}, acknowledge=True), 0.0
        try:
            with self._check():
                if isinstance(check.probe, RowsProbe):
                    outcome = self._rows(position)
                elif isinstance(check.probe, DuplicatesProbe):
                    outcome = self._duplicates(position, check, check.probe)
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
                outcome = CheckOutcome("warning", f"cannot verify step {check.step} before apply: its check needs "
                                   f"what an earlier step of the plan makes ({exc.diag.message_primary}), so it "
                                   "cannot run on the database as it is now. PostgreSQL checks the rows at apply; "
                                   "acknowledge this step, or apply the earlier steps first and preflight again.",
                                   {}, acknowledge=True)
            elif undefined:
                outcome = CheckOutcome("blocking", f"{exc.diag.message_primary}: the object this check reads is "
                                   "missing, so the step would fail too. Check the names in the plan.", {})
            else:
                outcome = CheckOutcome("blocking", f"the check could not run: {exc.diag.message_primary}. PostgreSQL "
                                   "would meet the same error at apply; fix the expression or the data.", {})
        except psycopg.Error as exc:
            kind = classify(exc)
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()
            if self.reopen is not None and ("conflict with recovery" in str(exc) or self.conn.broken):
                raise RecoveryConflict(" ".join(str(exc).split())) from exc
            if kind == "connection" or self.conn.broken:
                raise server_went_away(exc, f"running {check.check_id} of step {check.step}") from exc
            if kind == "timeout":
                outcome = self._timed_out(check)
            elif kind == "privilege":
                outcome = self._no_access(check, exc)
            elif check.rehearsed and (exc.sqlstate or "").startswith("42"):
                # PostgreSQL accepted the step's own statement in the rehearsal: a query preflight built that it
                # refuses (a syntax or a name) is preflight's limit, not a verdict on the step or its rows.
                outcome = CheckOutcome("warning", f"cannot verify step {check.step} before apply: preflight's check of it "
                                   f"could not run ({exc.diag.message_primary or exc}; SQLSTATE {exc.sqlstate}), "
                                   "though PostgreSQL accepted the step in the rehearsal. PostgreSQL checks the rows at "
                                   "apply; acknowledge this step.", {}, acknowledge=True)
            else:
                outcome = CheckOutcome("blocking", f"the check could not run: {exc.diag.message_primary or exc}. "
                                   "PostgreSQL would meet the same error at apply; fix the expression or the data.", {})
        elapsed = (time.perf_counter() - started) * 1000
        return outcome, self._shared_ms.pop(position, elapsed)

    def _no_access(self, check: Check, exc: psycopg.Error) -> CheckOutcome:
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
        return CheckOutcome("blocking", f"preflight cannot read the rows this check must judge ({primary}): {what}; "
                        "then run the preflight again.", {"privilege": 1})

    def _timed_out(self, check: Check) -> CheckOutcome:
        cap = self.options.check_timeout
        return CheckOutcome(
            "blocking",
            f"the check did not finish within {cap:g} s, so preflight cannot say the step is safe. Raise the cap "
            f"with run_preflight(..., check_timeout={max(cap * 4, 60):g}) or PreflightOptions.check_timeout, "
            "or run it when the table is quieter.",
            {"timedOut": 1, "timeoutSeconds": cap},
        )

    # --- row predicates: NOT NULL, CHECK, ADD COLUMN NOT NULL -------------------------------------------

    def _rows(self, position: int) -> CheckOutcome:
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
            outcome.message = (f"{check.early_message(counted)} Counting stopped at the first blocking answer "
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
        started = time.perf_counter()
        pieces = plan_pieces(self.conn, first.source.table, self.options.scan_chunk_rows) \
            if first.source.table is not None else None
        if pieces and not self._watched() and all(p.partition is None for p in pieces):
            # Block ranges serve progress and the early answer; with no one to see either, one query is faster:
            # PostgreSQL's own parallel scan (PostgreSQL 18 reads a seq scan through its read stream and I/O
            # workers, a TID range without: 29% slower per process, measured at 8M rows)
            pieces = None
        # A later unique key on the same rows: its keyed rows and wide keys are counted in this scan too, and its
        # hashed proof of uniqueness then reads the table once more instead of twice.
        dups = [] if pieces else [
            i for i in range(position + 1, len(self.checks))
            if isinstance(self.checks[i].probe, DuplicatesProbe) and self.checks[i].probe.where is None
            and self.checks[i].probe.source.key == first.source.key  # type: ignore[union-attr]
            and i not in self._dup_counts and i not in self._unsafe]
        base = 1 + len(filters)
        for i in dups:
            keyed, wide = self.checks[i].probe.keyed_and_wide()  # type: ignore[union-attr]
            filters += [sql.SQL("count(*) FILTER (WHERE {})").format(keyed),
                        sql.SQL("count(*) FILTER (WHERE {})").format(wide)]
        query = sql.SQL("SELECT count(*), {} FROM {}").format(sql.SQL(", ").join(filters), first.source.from_item())
        if len(group) > 1:
            self.conn.execute("SAVEPOINT erd_preflight_group")
        try:
            if pieces:
                stats = self._in_pieces(position, group, filters, pieces)
            else:
                row = self.conn.execute(query).fetchone()
                assert row is not None
                stats = [{"violations": row[offset + 1], "totalRows": row[0]} for offset in range(len(group))]
                for k, i in enumerate(dups):
                    self._dup_counts[i] = (int(row[0]), int(row[base + 2 * k]), int(row[base + 2 * k + 1]))
                self._totals[first.source.key] = int(row[0])
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

    def _watched(self) -> bool:
        """Whether anything reads a long scan as it goes: progress, an early answer, or counts that stop early."""
        return self.on_scan is not None or self.on_early is not None or self.options.counts == "early"

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
                        piece.relation, alias, piece.where_and(_violation(probe)), self._limit()))
                    self.on_early(position, CheckOutcome(first.failure, first.early_message(counted), counted, rows,
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

def _violation(probe: Any) -> sql.Composable:
    """The rows a row-predicate or cast check flags."""
    return probe.predicate if isinstance(probe, RowsProbe) else probe.violation()
