"""The orchestrator (spec 1.1.04c): run a plan's checks against PostgreSQL, in step order, and stop at the
first blocking result. The catalog is read in a READ ONLY transaction; the data checks run in executor.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import psycopg
from psycopg import sql

from ..catalog import Catalog
from ..checks import CastProbe, Check, DuplicatesProbe, PreflightOptions, unsafe_message
from ..rehearse.copy_rehearsal import CopyRehearsal, rehearse_on_copy
from ..report.contract import (
    ACKNOWLEDGE_STEP,
    CheckRun,
    LockReport,
    PreflightCheckResult,
    PreflightReport,
    SampleColumn,
    json_value,
    utc_now,
)
from ..db import Database, connect, read_only
from ..errors import CheckTimeout, PlanError, PreflightError, classify, server_went_away
from .executor import Executor
from .probes import CheckOutcome
from ..plan.phases import ApplyPhases, compile_phases
from ..plan import MigrationPlan
from .progress import ProgressCallback, progress_bar
from ..checks.rehearsed import plan_statements, rehearsed_checks
from .replica import Replica
from ..rehearse.rows_rehearsal import RowsRehearsal, rehearse_rows
from .scan import Cancel
from ..rehearse.shadow import apply_search_path
from ..rehearse.shadow_catalog import Rehearsal

__all__ = ["ProgressCallback", "catalog_session", "json_value", "progress_bar", "read_only", "run_preflight",
           "violating_rows"]


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


def run_preflight(
    plan: MigrationPlan,
    db: Database | str | Any = None,
    *,
    explore: bool = False,
    progress: ProgressCallback | bool | None = None,
    options: PreflightOptions | None = None,
    read_from: str | None = None,
    rehearse_on: str | None = None,
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

    ``rehearse_on``: the URL of a disposable full copy of ``db`` (a branch, a restored snapshot, a
    ``pg_basebackup`` copy). The apply's statements run there first, on the real rows (rolled back; concurrent
    builds for real, then dropped): a step preflight cannot decide read-only gets PostgreSQL's verdict from there
    instead of an acknowledgement, and the lock report's holds are the statements' times there. Refused, with
    ``CopyRefused``, when it is the target itself, a standby, or holds another schema; see ``copy_rehearsal``.

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
                statements = plan_statements(plan, catalog, online=False,  # verdicts: each step whole (proven)
                                             all_or_nothing=opts.all_or_nothing)
                kept: list[Rehearsal] = []
                checks = rehearsed_checks(plan, catalog, opts, statements, kept)
                phases = _phases(plan, catalog, opts)
                search_path = apply_search_path(conn) if rehearse_on is not None else ""
                key = catalog.key
                work_mem = str(conn.execute("SELECT current_setting('maintenance_work_mem')").fetchone()[0])  # type: ignore[index]
            copy = None
            if rehearse_on is not None and phases is not None:
                copy = rehearse_on_copy(conn, rehearse_on, phases, search_path=search_path,
                                        timeout_s=opts.check_timeout, statement_timeout_s=opts.rehearse_on_timeout)
            with read_only(conn, opts.check_timeout):
                locks = _locks(conn, plan, catalog, opts, phases, kept[0] if kept else None, copy)
        except psycopg.Error as exc:
            raise catalog_error(exc, opts.check_timeout, "reading the catalog") from exc
        callback = progress_bar() if progress is True else (progress or None)
        replica = stack.enter_context(Replica(read_from, conn, opts.check_timeout)) if read_from else None

        def on_early(position: int, early: CheckOutcome) -> None:
            if callback:
                check = checks[position]
                callback(CheckRun(check_id=check.check_id, step=check.step, step_summary=check.step_summary,
                                  target_ref=check.target, outcome=early.outcome, message=early.message,
                                  stats=early.stats, sample_columns=early.columns, sample_rows=early.rows),
                         position, len(checks))

        executor = Executor(
            conn, opts, checks, work_mem, explore=explore, cancel=cancel, on_early=on_early if callback else None,
            on_scan=getattr(callback, "scan", None),
            data=replica.conn if replica else None,
            open_data=replica.open if replica else database.dedicated,
            on_snapshot=replica.stamp if replica else None,
            reopen=replica.reopen if replica else None,
            # a table of more than half a piece by its estimate (estimates lag): its scan may come in pieces
            pieces_likely=catalog.largest_rows() * 2 > opts.scan_chunk_rows)
        try:
            executor.screen(key)
        except psycopg.Error as exc:
            raise catalog_error(exc, opts.check_timeout, "looking up the functions the plan's expressions call") \
                from exc
        results: list[PreflightCheckResult] = []
        runs: list[CheckRun] = []
        stopped_at: int | None = None
        exact: RowsRehearsal | None = None  # the exact rehearsal, run once, when a step first needs it
        copy_blocked: set[int] = set()  # steps the copy's refusal blocks (one finding each)
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
                if copy is not None:
                    outcome = _on_copy(outcome, copy, check.step, copy_blocked)
                if outcome.acknowledge and outcome.outcome == "warning" and opts.rehearse_data:
                    if exact is None:
                        if executor.conn is conn:
                            executor.end()  # the copy reads its own snapshot on this connection
                        exact = _rows_rehearsal(conn, statements, opts)
                    outcome = _decided(outcome, exact, check.step, {"rehearsedRows": sum(exact.copied.values())})
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
    return PreflightReport(status=status, results=results, created_at=utc_now(), checks=runs, replica=stamp,
                           locks=locks)


def _phases(plan: MigrationPlan, catalog: Catalog, opts: PreflightOptions) -> ApplyPhases | None:
    """The apply's statements, as apply will run them (None: apply refuses the order, and the gate says why)."""
    if not plan.steps:
        return None
    try:
        return compile_phases(plan, catalog, online=opts.online, all_or_nothing=opts.all_or_nothing)
    except PlanError:
        return None


def _locks(conn: psycopg.Connection[Any], plan: MigrationPlan, catalog: Catalog, opts: PreflightOptions,
           phases: ApplyPhases | None, rehearsal: Rehearsal | None,
           copy: CopyRehearsal | None) -> LockReport | None:
    """The apply's locks and their holds (``locks``): measured in the rehearsal when the apply is one transaction,
    on a scratch copy of the shadow when it is several; declared by each step kind without one. With a
    ``rehearse_on`` copy, the locks taken there and each statement's time there."""
    from ..rehearse.lock_rehearsal import needs_own_transactions, rehearse_locks
    from .locks import ReadRates, lock_report
    from ..rehearse.shadow import ShadowUnavailable

    if phases is None:
        return None
    if copy is not None and copy.failure is None and copy.stopped is None:
        return lock_report(plan, phases, copy.impacts, catalog, ReadRates(conn), seconds=copy.seconds())
    impacts = None
    if opts.rehearse and rehearsal is not None:
        if not needs_own_transactions(phases):
            impacts = rehearsal.impacts
        else:
            try:
                impacts = rehearse_locks(conn, phases, catalog=catalog.fingerprint, search_path=catalog.key[3])
            except ShadowUnavailable:
                impacts = None  # the declared locks stand in, marked not measured
    return lock_report(plan, phases, impacts, catalog, ReadRates(conn))


def _rows_rehearsal(conn: psycopg.Connection[Any], statements: list[tuple[int, str]],
                    opts: PreflightOptions) -> RowsRehearsal:
    try:
        return rehearse_rows(conn, statements, max_rows=opts.rehearse_data_rows, timeout_s=opts.check_timeout)
    except psycopg.Error as exc:
        if classify(exc) == "connection" or conn.broken:
            raise server_went_away(exc, "copying rows for the exact rehearsal") from exc
        return RowsRehearsal(unavailable=f"reading the rows failed ({' '.join(str(exc).split())})")


class _Judge(Protocol):
    """A rehearsal on real rows that may decide a step: ("pass" | "blocking", message), or why it cannot."""

    def judge(self, step: int) -> tuple[str, str] | str: ...


def _on_copy(outcome: CheckOutcome, copy: CopyRehearsal, step: int, blocked: set[int]) -> CheckOutcome:
    """A check's outcome with the copy's verdict on its step: a step PostgreSQL refused there blocks (once, on
    its first check that does not block already: also where the read-only checks passed it); a warning a person
    would acknowledge is decided there when the copy ran the step."""
    failure = copy.failure
    if failure is not None and failure.step == step and step not in blocked:
        blocked.add(step)
        if outcome.outcome != "blocking":
            _, message = copy.judge(step)  # type: ignore[misc]
            return CheckOutcome("blocking", message, outcome.stats)
        return outcome
    if outcome.acknowledge and outcome.outcome == "warning":
        return _decided(outcome, copy, step, outcome.stats)
    return outcome


def _decided(outcome: CheckOutcome, judge: _Judge, step: int, stats: dict[str, Any]) -> CheckOutcome:
    """A warning a person would acknowledge, decided by a rehearsal on real rows when it can be (with ``stats``);
    otherwise the same warning, saying why that rehearsal could not decide it."""
    verdict = judge.judge(step)
    if isinstance(verdict, tuple):
        decided, message = verdict
        return CheckOutcome(decided, message, stats)  # type: ignore[arg-type]
    return CheckOutcome(outcome.outcome, f"{outcome.message.rstrip('.')}. ({verdict[0].upper()}{verdict[1:]}.)",
                    outcome.stats, outcome.rows, outcome.columns, acknowledge=True)


def violating_rows(db: Database, check: Check, *, offset: int, limit: int,
                   timeout: float = 60.0) -> tuple[list[dict[str, Any]], list[SampleColumn]]:
    """A page of every violating row of a data check (duplicates: of every duplicate group), read-only."""
    opts = PreflightOptions(sample_cap=min(max(limit, 1), 10_000), check_timeout=timeout)
    with db.dedicated() as conn:
        executor = Executor(conn, opts, [check], "64MB")
        executor.screen()
        if executor._unsafe:
            raise PreflightError(unsafe_message(check, executor._unsafe[0]))
        with read_only(conn, timeout):
            return _violating_page(conn, executor, check, offset=offset, limit=limit)


# A timestamp, a timestamp with time zone or a date: what a plot over time can use.
TIME_TYPES = ("timestamp", "timestamp with time zone", "timestamp without time zone", "timestamptz", "date")


def _rows_query(check: Check) -> sql.Composable | None:
    """Every violating row of a data check, whole rows (None: its violations are not rows, e.g. duplicate
    groups, or a conversion whose failing rows only a per-row pass finds)."""
    from ..checks import OrphansProbe, RowsProbe

    probe = check.probe
    if isinstance(probe, (RowsProbe, OrphansProbe)):
        return probe.violations()
    if isinstance(probe, CastProbe) and probe.input_text is not None:
        return sql.SQL("SELECT * FROM {} WHERE {}").format(probe.source.from_item(), probe.violation())
    return None


def _time_columns(conn: psycopg.Connection[Any], query: sql.Composable) -> list[str]:
    cur = conn.execute(sql.SQL("SELECT * FROM ({}) AS v LIMIT 0").format(query))
    return [d.name for d in cur.description or [] if d.type_display.split("(")[0] in TIME_TYPES]


def time_columns(db: Database, check: Check, timeout: float = 60.0) -> list[str]:
    """The columns of a check's violating rows that a plot over time can use (timestamps and dates), in table
    order; empty when its violations are not rows."""
    query = _rows_query(check)
    if query is None:
        return []
    with db.dedicated() as conn, read_only(conn, timeout):
        return _time_columns(conn, query)


def violations_over_time(db: Database, check: Check, column: str | None = None, *,
                         timeout: float = 60.0) -> tuple[str, str, list[tuple[Any, int]]]:
    """The violating rows of a data check counted per period of ``column`` (a timestamp or date column of the
    rows; None: the first one, ValueError when there is none), read-only: the period (hour, day, week or month,
    from the span of ``column`` over all the rows the check reads), the column, and (start, rows) for every
    period of that span, in time order, with 0 where no row violates: when the bad data started shows. Violating
    rows whose ``column`` is NULL come last, under a start of None."""
    from ..checks import OrphansProbe

    query = _rows_query(check)
    if query is None:
        raise PreflightError(f"{check.check_id}'s violations are not rows of one table, so they cannot be counted "
                             "over time")
    probe = check.probe
    rows = sql.SQL("{} AS c").format(probe.child.relation) if isinstance(probe, OrphansProbe) else \
        probe.source.from_item()  # type: ignore[union-attr]
    with db.dedicated() as conn, read_only(conn, timeout):
        found = _time_columns(conn, query)
        if column is None:
            if not found:
                raise ValueError(f"the violating rows of {check.check_id} have no timestamp or date column")
            column = found[0]
        elif column not in found:
            raise PreflightError(f"{column!r} is not a timestamp or date column of {check.check_id}'s violating "
                                 f"rows: pick one of {', '.join(found) or 'none'}")
        t = sql.Identifier(column)
        conn.execute("SELECT set_config('TimeZone', 'UTC', true)")  # periods start at UTC midnight
        span = conn.execute(sql.SQL("SELECT max({t})::timestamptz - min({t})::timestamptz FROM {rows}").format(
            t=t, rows=rows)).fetchone()
        days = span[0].total_seconds() / 86400 if span and span[0] is not None else 0.0
        period = "month" if days > 730 else "week" if days > 120 else "day" if days > 3 else "hour"
        p = sql.Literal(period)
        counted = conn.execute(sql.SQL(
            "WITH v AS (SELECT date_trunc({p}, {t}::timestamptz) AS at FROM ({q}) AS q), "
            "r AS (SELECT date_trunc({p}, min({t})::timestamptz) AS lo, date_trunc({p}, max({t})::timestamptz) AS hi "
            "FROM {rows}) "
            "SELECT g.at, count(v.at) FROM r, generate_series(r.lo, r.hi, {step}::interval) AS g(at) "
            "LEFT JOIN v ON v.at = g.at GROUP BY g.at "
            "UNION ALL SELECT NULL, count(*) FROM v WHERE v.at IS NULL HAVING count(*) > 0 "
            "ORDER BY 1 NULLS LAST").format(p=p, t=t, q=query, rows=rows, step=sql.Literal(f"1 {period}"))
        ).fetchall()
        return period, column, [(r[0], int(r[1])) for r in counted]


def _violating_page(conn: psycopg.Connection[Any], executor: Executor, check: Check, *, offset: int,
                    limit: int) -> tuple[list[dict[str, Any]], list[SampleColumn]]:
    from ..checks.remediation import order_for, violations_query

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
