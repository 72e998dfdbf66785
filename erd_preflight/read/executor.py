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
    WIDE_KEY,
    Verdict,
    all_not_null,
    null_datum,
)
from ..report.contract import Outcome, SampleColumn, json_value
from ..db import read_only
from ..errors import classify, server_went_away
from ..plan import display_name
from .replica import REPLICA_RETRIES, RecoveryConflict
from .scan import Cancel, OpenConnection, Piece, PieceCounter, ScanProgress, begin_snapshot, plan_pieces
from ..side_effects import known_unsafe_calls, unsafe_calls


class CheckOutcome:
    def __init__(self, outcome: Outcome, message: str, stats: dict[str, int | float],
                 rows: list[dict[str, Any]] | None = None, columns: list[SampleColumn] | None = None,
                 acknowledge: bool = False) -> None:
        self.outcome, self.message, self.stats, self.rows, self.columns = outcome, message, stats, rows, columns
        # a warning about what preflight cannot verify: the gate needs a person to acknowledge the step
        self.acknowledge = acknowledge


# keys past which the hashes are sorted in parallel
_PARALLEL_SORT_KEYS = 200_000
TEXT_OID, VARCHAR_OID = 25, 1043


class Executor:
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

    def _duplicates(self, position: int, check: Check, probe: DuplicatesProbe) -> CheckOutcome:
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
        fast = self._distinct_by_hash(probe, self._dup_counts.pop(position, None))
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

    def _distinct_by_hash(self, probe: DuplicatesProbe,
                          counted: tuple[int, int, int] | None = None) -> tuple[int, int] | None:
        """(rows, wide keys) when every key that counts is distinct, proved by sorting 8-byte hashes of the keys
        (no duplicate: as many distinct hashes as keys). None when that cannot prove it (a duplicate, a hash
        collision, a type without a hash function): the exact grouping decides. Sorting 8-byte values is about
        twice as fast as grouping the keys themselves, and a passing plan is the common case."""
        if self.conn.info.server_version < 140000:  # hash_record_extended is PostgreSQL 14+
            return None
        # all rows, the rows whose key counts, and the wide keys: counted by a shared scan of this snapshot, or here
        total, keyed, wide_keys = counted or self.conn.execute(probe.counted()).fetchone()  # type: ignore[misc]
        if probe.where is None:
            self._totals[probe.source.key] = int(total)
        self.conn.execute("SAVEPOINT erd_preflight_hash")
        try:
            if keyed > _PARALLEL_SORT_KEYS:
                # a parallel sort (workers sort parts, the leader merges) is a sixth faster at 1M keys and a third
                # at 20M; the planner's default costs keep it to one process
                self.conn.execute("SELECT set_config('parallel_setup_cost', '0', true), "
                                  "set_config('parallel_tuple_cost', '0', true)")
            # One key of type text or varchar (as the result describes it: a domain is described by its base type):
            # its own hash function, a sixth faster than forming a record of it per row.
            types = [d.type_code for d in self.conn.execute(probe.key_types()).description or []]
            text_key = types in ([TEXT_OID], [VARCHAR_OID]) and not probe.nulls_not_distinct
            query = probe.distinct_text_hashes() if text_key else probe.distinct_hashes()
            distinct = self.conn.execute(query).fetchone()[0]  # type: ignore[index]
        except (pgerrors.UndefinedFunction, pgerrors.FeatureNotSupported):
            distinct = None  # no hash function agrees with the type's equality
        # undoes the settings above too: the other checks plan as they would
        self.conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_hash")
        self.conn.execute("RELEASE SAVEPOINT erd_preflight_hash")
        return (int(total), int(wide_keys)) if distinct == keyed else None

    def _wide_keys(self, check: Check, probe: DuplicatesProbe, stats: dict[str, Any], wide_keys: int) -> CheckOutcome:
        shown = ", ".join(display_name(c) for c in probe.columns)
        return CheckOutcome("warning", f"cannot verify step {check.step} before apply: {wide_keys:,} key"
                        f"{'s' if wide_keys != 1 else ''} ({shown}) of {display_name(probe.source.alias)} "
                        f"{'are' if wide_keys != 1 else 'is'} more than {WIDE_KEY:,} bytes as stored, near btree's "
                        "index row limit (2,704 bytes after compression; SQLSTATE 54000 past it). Acknowledge this "
                        "step, or index a hash of the value.", {**stats, "wideKeys": wide_keys}, acknowledge=True)

    # --- orphans ------------------------------------------------------------------------------------------

    def _orphans(self, check: Check, probe: OrphansProbe) -> CheckOutcome:
        found = "erd_preflight_found"
        parent_keys = sql.SQL(", ").join(sql.Identifier(r) for r in probe.ref_columns)
        # The count is probe.condition() as a hash anti-join, as PostgreSQL's own validation does: each table is
        # read once. The samples use the condition as written (the oracle tests hold the two together).
        known = self._totals.get(probe.child.key)
        if known is not None:
            # The child's rows were counted in this snapshot by another check's scan: only the orphans are counted,
            # by the condition itself (NOT EXISTS: a hash anti-join, which emits no row per matched child).
            orphans = self.conn.execute(sql.SQL("SELECT count(*) FROM {child} AS c WHERE {condition}").format(
                child=probe.child.relation, condition=probe.condition())).fetchone()[0]  # type: ignore[index]
            total = known
        else:
            query = sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE ({keyed} AND p.{found} IS NULL) OR {partial}) "
                "FROM {child} AS c LEFT JOIN (SELECT {pkeys}, true AS {found} FROM {parent}) AS p ON {on}"
            ).format(keyed=all_not_null(probe.columns, "c"), found=sql.Identifier(found), partial=probe.partial(),
                     child=probe.child.relation, pkeys=parent_keys, parent=probe.parent.from_item(), on=probe.matches())
            total, orphans = self.conn.execute(query).fetchone()  # type: ignore[misc]
            self._totals[probe.child.key] = int(total)
        stats = {"violations": int(orphans), "totalRows": int(total)}

        def sampler() -> Any:
            return self._samples(sql.SQL("{} LIMIT {}").format(probe.violations(), self._limit()))

        return self._judge(check, stats, sampler)

    # --- casts --------------------------------------------------------------------------------------------

    def _cast(self, position: int, check: Check, probe: CastProbe) -> CheckOutcome:
        converted, violation = probe.converted(), probe.violation()
        if position not in self._shared and len(self._group_of(position)) > 1:
            self._scan_group(position)
        if position in self._shared:  # every value converted in the shared scan
            counted = self._shared.pop(position)
            if isinstance(counted, BaseException):
                raise counted
            return self._judge_cast(check, probe, {**counted, "firstError": ""}, violation)
        self.conn.execute("SAVEPOINT erd_preflight_cast")
        try:
            # Evaluating the conversion for every row is PostgreSQL's own test: if this succeeds, so does the step.
            # count(expr) must evaluate expr for every row; a constant-folded predicate would not.
            total, _converted, bad = self.conn.execute(sql.SQL(
                "SELECT count(*), count({}), count(*) FILTER (WHERE {}) FROM {}"
            ).format(converted, violation, probe.source.from_item())).fetchone()  # type: ignore[misc]
            return self._judge_cast(check, probe, {"violations": int(bad), "totalRows": int(total), "firstError": ""},
                                    violation)
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

    def _cast_by_input(self, check: Check, probe: CastProbe, violation: sql.Composable) -> CheckOutcome:
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
        return self._judge_cast(check, probe, {"violations": int(bad), "totalRows": int(total),
                                               "firstError": f" (first error: {first})" if first else ""}, failing)

    def _judge_cast(self, check: Check, probe: CastProbe, stats: dict[str, Any], failing: sql.Composable) -> CheckOutcome:
        """A cast's verdict from its counts; its samples are the rows ``failing`` flags. ``firstError`` fills the
        message only, never the contract's numeric stats."""
        outcome = self._judge(check, stats, lambda: self._samples(sql.SQL("SELECT * FROM {} WHERE {} LIMIT {}").format(
            probe.source.from_item(), failing, self._limit())))
        outcome.stats.pop("firstError", None)
        return outcome

    def _cast_rows(self, check: Check, probe: CastProbe, converted: sql.Composable, violation: sql.Composable,
                   first_error: str, cap: int | None = None) -> CheckOutcome:
        """Some value fails to convert: count the failing rows one by one (a subtransaction per row)."""
        body_marker = "$erd_preflight$"
        source = probe.source
        text_of = sql.SQL("{} {}").format(converted, violation).as_string(self.conn)
        if source.derived or body_marker in text_of:
            # Rows of a derived relation have no ctid to revisit one by one: report the failure, not a count.
            return CheckOutcome("blocking", check.message(
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
