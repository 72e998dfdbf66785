"""``erd-preflight``: the same preflight, gate and apply as a notebook, for CI and terminals.

    erd-preflight check PLAN [--db URL] [--explore] [--json] [--rehearse-data [--rehearse-data-rows N]]
                       [--read-from STANDBY_URL] [--rehearse-on COPY_URL] [--counts exact|early] [--workers N]
                       [--chunk-rows N]
    erd-preflight apply PLAN [--db URL] [--confirm-large TABLE ...] [--acknowledge STEP ...] [--rehearse-on COPY_URL]
    erd-preflight runs [--db URL]

PLAN is a ``.sql`` file, a folder of migrations, ``alembic:PATH/alembic.ini``, or ``TOOL:PATH`` for prisma, diesel,
atlas, liquibase or django (a folder in one of their layouts is recognised without the prefix). Without ``--db`` the URL comes
from ERD_PREFLIGHT_URL, then DATABASE_URL. Exit codes: 0 clear / applied, 1 blocked / refused, 2 usage or
connection error, 3 apply failed, 4 (check only) clear but a step needs a person's acknowledgement before apply
(``apply --acknowledge STEP``; a CI job may fail on it), 130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .run.apply import ApplyOptions
from .checks import PreflightOptions
from .report.contract import PreflightReport
from .db import Database, connect
from .errors import (
    ApplyBlocked,
    ApplyFailed,
    ConcurrentApply,
    PreflightError,
)
from .report.frames import LOCK_SHOWN_FROM, TEXT_MARKS, lock_lines
from .plan.phases import PhaseStatement
from .plan import MigrationPlan
from .sqlparse import read_sql_file
from .run.store import DEFAULT_STORE_SCHEMA, AppliedStatement

EXIT_OK, EXIT_BLOCKED, EXIT_USAGE, EXIT_APPLY_FAILED = 0, 1, 2, 3
PLAN_HELP = ("a .sql file, a folder of migrations, alembic:PATH/alembic.ini, or prisma:PATH, diesel:PATH, atlas:PATH, "
             "liquibase:CHANGELOG, django:PATH/manage.py")
EXIT_ACKNOWLEDGE = 4  # check: clear, but a step needs a person's acknowledgement before apply
EXIT_CANCELLED = 130  # a shell's code for Ctrl-C
SAMPLE_ROWS = 3


class UsageError(Exception):
    """Bad arguments or environment: exit code 2, one line that says what to do."""


def database_url(given: str | None) -> str:
    url = given or os.environ.get("ERD_PREFLIGHT_URL") or os.environ.get("DATABASE_URL")
    if not url:
        raise UsageError("no database: pass --db postgresql://user@host:5432/dbname, or set ERD_PREFLIGHT_URL "
                         "(or DATABASE_URL)")
    return url


def plan_path(spec: str) -> Path:
    """The file or folder a PLAN argument names; a UsageError when it does not exist, said before any database is
    asked for."""
    from .plan.tools import TOOLS

    tool, _, rest = spec.partition(":")
    if rest and tool in TOOLS:
        path, missing = Path(rest), f"no such file or folder: {rest}"
    elif spec.startswith("alembic:"):
        path = Path(spec.removeprefix("alembic:"))
        missing = f"{path} does not exist: give alembic:PATH/TO/alembic.ini"
    else:
        path, missing = Path(spec), f"no such file: {spec}"
    if not path.exists():
        raise UsageError(missing)
    return path


def load_plan(spec: str, db: Database) -> MigrationPlan:
    """A ``.sql`` file, a folder of migrations (pending ones only), ``alembic:PATH/alembic.ini``, or
    ``TOOL:PATH`` for prisma, diesel, atlas, liquibase or django."""
    from .plan.tools import TOOLS, detect

    path = plan_path(spec)
    tool, _, rest = spec.partition(":")
    if rest and tool in TOOLS:
        return MigrationPlan.from_tool(tool, path, db=db)
    if spec.startswith("alembic:"):
        return MigrationPlan.from_alembic(path, db=db)
    if path.is_dir():
        return MigrationPlan.from_dir(path, db=db)
    if path.is_file():
        found = detect(path)  # a Liquibase changelog, a Django manage.py
        if found is not None:
            return MigrationPlan.from_tool(found[0].name, path, db=db)
        return MigrationPlan.from_sql(read_sql_file(path), name=path.name, origin=path.name)
    raise UsageError(f"{spec} is not a .sql file, a folder of migrations, alembic:PATH/alembic.ini or TOOL:PATH "
                     "(prisma, diesel, atlas, liquibase, django)")


def nothing_pending(plan: MigrationPlan, out: TextIO) -> bool:
    """A plan whose migrations are all applied already (the tool's history says so): said, and exit 0."""
    if plan.nothing_pending:
        print(f"{plan.name or 'plan'}: nothing pending · " + "; ".join(plan.notes), file=out)
    return plan.nothing_pending


def _progress(stream: TextIO) -> Any:
    """A progress bar per check on a terminal; nothing when the output is a file or a CI log."""
    from .read.preflight import progress_bar

    return progress_bar(stream) if stream.isatty() else None


def print_report(report: PreflightReport, plan: MigrationPlan, out: TextIO) -> None:
    """The short human report: status and counts, the checklist with marks, the first sample rows."""
    ran = [c for c in report.checks if c.outcome != "skipped"]
    print(f"{plan.name or 'plan'}: {_plural(len(plan), 'step', 'steps')} · {report.headline} · "
          f"{len(ran)} of {_plural(len(report.checks), 'check', 'checks')} ran · {len(report.blockers)} blocking · "
          f"{_plural(len(report.warnings), 'warning', 'warnings')}", file=out)
    for note in plan.notes:
        print(f"  note: {note}", file=out)
    stopped = next((run.step for run in report.checks if run.outcome == "blocking"), None)
    for run in report.checks:
        origin = plan.origin_of(run.step)
        where = f"step {run.step} from {origin}" if origin else f"step {run.step}"
        message = run.message
        if run.outcome == "skipped":  # the library's words name explore=True; a terminal has a flag for it
            message = (f"not run: preflight stopped at the first blocking result (step {stopped}); "
                       "--explore runs every check")
        print(f"  [{TEXT_MARKS[run.outcome]}] {where} {run.check_id}: {message}", file=out)
    held = lock_lines(report, at_least=LOCK_SHOWN_FROM)
    if held:
        online = report.locks.online_steps if report.locks else []
        print("  locks on existing tables at apply (held ≥ 0.1 s, estimated here)"
              + (f"; steps {', '.join(map(str, online))} run online (--no-online: as written)" if online else "")
              + ":", file=out)
        for line in held:
            print(f"    {line}", file=out)
    for index, finding in enumerate(report.results):
        if finding.sample_rows:
            frame = report.samples(index)
            print(f"\n  {sample_heading(finding.check_id, len(frame), finding.stats or {})}:", file=out)
            text = shown_frame(frame.head(SAMPLE_ROWS)).to_string(index=False)
            print("\n".join("    " + line for line in text.splitlines()), file=out)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def sample_heading(check_id: str, kept: int, stats: dict[str, Any]) -> str:
    """What the sample below is, in its own unit: duplicate groups for a unique key, rows otherwise."""
    shown = min(kept, SAMPLE_ROWS)
    if "duplicateGroups" in stats:
        groups, rows = int(stats["duplicateGroups"]), int(stats.get("violations", 0))
        what = (f"{_plural(groups, 'duplicate group', 'duplicate groups')} "
                f"({_plural(rows, 'row', 'rows')} in {'it' if groups == 1 else 'them'})")
        total = groups
    else:
        total = int(stats.get("violations", kept))
        what = _plural(total, "violating row", "violating rows")
    return f"{check_id}: {what}; " + ("all shown" if shown >= total else f"the first {shown:,} shown")


def shown_frame(frame: Any) -> Any:
    """Sample rows for a terminal: NULL where PostgreSQL has NULL (pandas would print <NA> or None)."""
    return frame.astype(object).where(frame.notna(), "NULL")


def cmd_check(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    from .read.preflight import run_preflight

    plan = load_plan(args.plan, db)
    if not args.json and nothing_pending(plan, out):
        return EXIT_OK
    report = run_preflight(plan, db, explore=args.explore, progress=None if args.json else _progress(sys.stderr),
                           **_rehearse_data(args))
    if args.json:
        print(report.contract_json(), file=out)
    else:
        print_report(report, plan, out)
    if report.blocked:
        return EXIT_BLOCKED
    return EXIT_ACKNOWLEDGE if report.steps_to_acknowledge else EXIT_OK


def cmd_apply(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    from .run.migration_run import MigrationRun

    plan = load_plan(args.plan, db)
    if nothing_pending(plan, out):
        return EXIT_OK
    run = MigrationRun.start(plan, db, name=plan.name, store_schema=args.store_schema,
                             options=ApplyOptions(lock_timeout=args.lock_timeout, online=not args.no_online,
                                                  max_blocking_lock=args.max_blocking_lock))
    report = run.preflight(explore=args.explore, progress=_progress(sys.stderr), **_rehearse_data(args))
    print_report(report, plan, out)
    decision = run.gate(confirm_large_non_concurrent=args.confirm_large, acknowledge=args.acknowledge)
    if not decision.can_apply:
        print(f"\nrun {run.id}: Apply refused", file=out)
        for reason in decision.reasons:
            print(f"  - {reason.code}: {_in_cli_words(reason.message)}", file=out)
        return EXIT_BLOCKED

    bars: dict[int, Any] = {}
    ran: dict[str, int] = {}  # per transactional phase, the statements that ran in it
    committed: set[str] = set()

    def progress(statement: PhaseStatement, entry: AppliedStatement) -> None:
        building = getattr(entry, "progress", None)
        if building and entry.outcome == "running":  # a CONCURRENTLY build: each change of its progress
            build = getattr(entry, "build", None) or {}
            if sys.stderr.isatty() and build.get("blocks_total"):
                from tqdm import tqdm

                bar = bars.get(statement.step)
                if bar is None or bar.total != build["blocks_total"]:
                    if bar is not None:
                        bar.close()
                    bar = bars[statement.step] = tqdm(total=build["blocks_total"], unit="block", leave=False,
                                                      desc=f"step {statement.step} index build", file=sys.stderr)
                bar.set_postfix_str(str(build.get("phase", "")), refresh=False)
                bar.update(build["blocks_done"] - bar.n)
            else:
                print(f"  phase {statement.phase} step {statement.step} … {building}", file=out, flush=True)
            return
        if statement.step in bars and entry.outcome != "running":
            bars.pop(statement.step).close()
        if entry.outcome == "running":
            return
        sql_text = " ".join(statement.sql.split())  # whole, on one line
        # a tool's folder keeps each migration's transaction: phase A of the second one is "phase A (2)"
        phase = statement.phase if statement.unit == 1 or statement.phase != "A" else f"A ({statement.unit})"
        key = f"{statement.phase}{statement.unit}" if statement.phase == "A" else statement.phase
        if entry.outcome == "done":  # ran in its phase's transaction: applied when the phase commits
            if key not in ran:
                print(f"  phase {phase}: one transaction; its statements are applied when it commits",
                      file=out, flush=True)
            ran[key] = ran.get(key, 0) + 1
            print(f"  phase {phase} step {statement.step} [ran] {sql_text}", file=out, flush=True)
        elif entry.outcome == "applied" and key in ran:  # the commit of statements listed above
            if key not in committed:
                committed.add(key)
                print(f"  phase {phase} committed: "
                      f"{_plural(ran[key], 'statement', 'statements')} applied", file=out, flush=True)
        else:
            print(f"  phase {statement.phase} step {statement.step} [{entry.outcome}] {sql_text}", file=out,
                  flush=True)

    print(f"\nrun {run.id}: applying", file=out, flush=True)  # apply compiles the phases itself
    record = run.apply(progress=progress)
    print(f"run {record.id}: {record.status}", file=out)
    if plan.record_hint:
        print("\nrecord it in the migration tool's own history (erd-preflight never writes it):", file=out)
        print("\n".join("  " + line for line in plan.record_hint.splitlines()), file=out)
    return EXIT_OK


def cmd_runs(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    import pandas as pd

    from .run.store import runs

    frame = runs(db, store_schema=args.store_schema, limit=args.limit)
    if frame.empty:
        print(frame.attrs.get("note") or f"no migration runs recorded yet in {args.store_schema}.migration_run",
              file=out)
        return EXIT_OK
    columns = ["created_at", "name", "status", "steps", "blocking", "warnings", "applied_statements", "error"]
    shown = frame[columns].astype(object).where(frame[columns].notna(), "")  # no "None" where nothing is recorded
    if not shown["error"].astype(bool).any():
        shown = shown.drop(columns="error")
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(shown.to_string(), file=out)
    return EXIT_OK


def cmd_remediate(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    """Show what one remediation of a stored run will touch, ask, then run it, keeping what it removes."""
    from .run.migration_run import MigrationRun

    run = MigrationRun.load(args.run, db, store_schema=args.store_schema)
    found = [r for r in run.remediations() if r.finding == args.finding and r.kind == args.kind and r.runnable]
    if not found:
        offered = ", ".join(f"{r.finding} {r.kind}" for r in run.remediations() if r.runnable) or "none"
        raise UsageError(f"run {run.id} has no runnable remediation {args.kind!r} for finding {args.finding} "
                         f"(offered: {offered}); run erd-preflight check again if the data changed")
    remediation = found[0]
    if remediation.change is not None:
        preview = run.preview(remediation, survivor=args.survivor)
        print(preview.summary(), file=out)
        if preview.sample:
            import pandas as pd

            with pd.option_context("display.width", 200, "display.max_colwidth", 60):
                print(preview.sample_frame().head(10).to_string(index=False), file=out)
    print(f"runs: {remediation.sql}", file=out)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not run: confirm with --yes (stdin is not a terminal to ask on)")
        if input("Run it? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not run.", file=out)
            return EXIT_BLOCKED
    rows = run.remediate(remediation, value=args.value, expression=args.expression, keep=not args.no_keep,
                         survivor=args.survivor)
    position = len(run.record.applied_sql) - 1
    kept = "" if args.no_keep or remediation.change is None else \
        f"; kept on the run: erd-preflight restore {run.id} {position} puts them back"
    print(f"{remediation.kind}: {rows} rows changed{kept}. Run erd-preflight check again before apply.", file=out)
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, db: Database, out: TextIO) -> int:
    """Put back what one remediation of a stored run deleted or overwrote."""
    from .run.migration_run import MigrationRun

    run = MigrationRun.load(args.run, db, store_schema=args.store_schema)
    rows = run.restore(args.position)
    print(f"restored statement {args.position} of run {run.id}: put back {rows} row{'s' if rows != 1 else ''}. "
          "Run erd-preflight check again before apply.", file=out)
    return EXIT_OK


def _at_least(kind: type, minimum: float, what: str) -> Any:
    """An argparse type: a finite number of ``kind``, at least ``minimum``."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite {what}, at least {minimum:g}")
        return value

    return convert


# PostgreSQL reads a timeout of 0 ms as no limit at all: the shortest is 1 ms.
_seconds = _at_least(float, 0.001, "number of seconds")
_count = _at_least(int, 1, "whole number")


def _rehearse_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rehearse-data", action="store_true",
                        help="decide the steps preflight cannot verify read-only by running the plan on a copy of "
                        "the rows of small tables (copied into the embedded PostgreSQL, dropped afterwards)")
    parser.add_argument("--no-rehearse", action="store_true",
                        help="do not rehearse the plan on a copy of the schema: structural failures are then judged "
                        "by preflight's own model of each statement alone")
    parser.add_argument("--no-online", action="store_true",
                        help="apply every step as written: no online form (NOT VALID + VALIDATE, CREATE UNIQUE INDEX "
                        "CONCURRENTLY + USING INDEX) for a step that would scan a large table under a write-blocking "
                        "lock")
    parser.add_argument("--rehearse-data-rows", type=_count, default=PreflightOptions().rehearse_data_rows,
                        metavar="N", help="the most rows a table may hold for --rehearse-data to copy it "
                        "(default %(default)s)")


    parser.add_argument("--read-from", metavar="URL", help="run the data checks on this hot standby of the "
                        "database (the catalog, the rehearsal and the gate stay on --db)")
    parser.add_argument("--rehearse-on", metavar="URL", help="a disposable full copy of the database (a branch, a "
                        "restored snapshot, a pg_basebackup copy; never the database itself, which is refused): the "
                        "apply's statements run there first, rolled back, so PostgreSQL decides on the real rows "
                        "what preflight cannot decide read-only, and the locks' holds are timed there")
    parser.add_argument("--counts", choices=["exact", "early"], default="exact",
                        help="early: a long scan stops at its first blocking answer instead of counting every "
                        "violating row (default %(default)s)")
    parser.add_argument("--workers", type=_count, default=None, metavar="N",
                        help="connections scanning a large table's pieces at once (default: as many as the server "
                        "gives one parallel query, max_parallel_workers_per_gather + 1)")
    parser.add_argument("--chunk-rows", type=_count, default=PreflightOptions().scan_chunk_rows, metavar="N",
                        help="tables over N rows are read in pieces of about N rows, with progress (default "
                        "%(default)s)")


def _in_cli_words(message: str) -> str:
    """A gate reason as a terminal user acts on it: the CLI's flags where the message names the API's arguments."""
    import re

    message = re.sub(r"apply\(confirm_large_non_concurrent=\['([^']*)'\]\)", r"--confirm-large \1", message)
    return re.sub(r"apply\(acknowledge=\[(\d+)\]\), or --acknowledge \d+ in the CLI", r"--acknowledge \1", message)


def _rehearse_data(args: argparse.Namespace) -> dict[str, Any]:
    """The preflight options and arguments of ``check`` and ``apply``."""
    return {"rehearse": not args.no_rehearse, "online": not args.no_online, "rehearse_data": args.rehearse_data, "rehearse_data_rows": args.rehearse_data_rows,
            "read_from": args.read_from, "rehearse_on": args.rehearse_on, "counts": args.counts, "scan_workers": args.workers,
            "scan_chunk_rows": max(args.chunk_rows, 1000)}


def parser() -> argparse.ArgumentParser:
    summary = __doc__.split("\n\n")[0].replace("``", "") if __doc__ else None  # the docstring's markup is not shown
    top = argparse.ArgumentParser(prog="erd-preflight", description=summary)
    top.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = top.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="PostgreSQL URL (default: $ERD_PREFLIGHT_URL, then $DATABASE_URL)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error")

    check = sub.add_parser("check", help="preflight a plan (read-only): exit 0 clear, 1 blocked, 4 clear but a step "
                           "needs your acknowledgement before apply")
    check.add_argument("plan", help=PLAN_HELP)
    check.add_argument("--explore", action="store_true", help="run every check instead of stopping at a blocker")
    _rehearse_data_arguments(check)
    check.add_argument("--json", action="store_true", help="print exactly the contract JSON of the report")
    common(check)

    apply = sub.add_parser("apply", help="preflight, gate and apply in phases, recorded in migration_run")
    apply.add_argument("plan", help=PLAN_HELP)
    apply.add_argument("--confirm-large", metavar="TABLE", action="append", default=[],
                       help="confirm, on this table, a non-concurrent index build on a large table or a lock that "
                       "blocks writes longer than --max-blocking-lock (repeatable)")
    apply.add_argument("--max-blocking-lock", type=float, default=ApplyOptions().max_blocking_lock, metavar="SECONDS",
                       help="a step whose estimated write-blocking lock is held longer needs --confirm-large TABLE "
                       "(default: %(default)s)")
    apply.add_argument("--acknowledge", metavar="STEP", type=_count, action="append", default=[],
                       help="acknowledge a step preflight cannot verify, after reviewing it (repeatable)")
    apply.add_argument("--explore", action="store_true", help="run every check before deciding")
    _rehearse_data_arguments(apply)
    apply.add_argument("--lock-timeout", type=_seconds, default=ApplyOptions().lock_timeout,
                       help="seconds each statement waits for its lock before a retry (default: %(default)s)")
    apply.add_argument("--store-schema", default=DEFAULT_STORE_SCHEMA, help="schema of migration_run")
    common(apply)

    runs = sub.add_parser("runs", help="list the audit trail (migration_run)")
    runs.add_argument("--limit", type=_count, default=20, help="how many runs to list, newest first")
    runs.add_argument("--store-schema", default=DEFAULT_STORE_SCHEMA, help="schema of migration_run")
    common(runs)

    remediate = sub.add_parser("remediate", help="show what a remediation of a stored run will delete or change, "
                               "then run it, keeping those rows on the run")
    remediate.add_argument("run", type=int, help="the run's id (erd-preflight runs)")
    remediate.add_argument("finding", type=int, help="the finding's number in the run's report (from 0)")
    remediate.add_argument("kind", help="dedupe, delete_orphans, null_orphans, backfill, insert_parents, ...")
    remediate.add_argument("--value", help="a backfill's value (sent as a parameter)")
    remediate.add_argument("--expression", help="a backfill's SQL expression over the row's columns")
    remediate.add_argument("--survivor", default="first", help="a dedupe's kept row: first, oldest:COLUMN, "
                           "newest:COLUMN or most_referenced (default: %(default)s)")
    remediate.add_argument("--no-keep", action="store_true", help="do not keep the rows (above keep_limit_bytes); "
                           "they cannot be restored then")
    remediate.add_argument("--yes", action="store_true", help="run without asking")
    remediate.add_argument("--store-schema", default=DEFAULT_STORE_SCHEMA, help="schema of migration_run")
    common(remediate)

    restore = sub.add_parser("restore", help="put back what one remediation of a stored run deleted or overwrote")
    restore.add_argument("run", type=int, help="the run's id (erd-preflight runs)")
    restore.add_argument("position", type=int, help="the remediation's statement number in the run's record")
    restore.add_argument("--store-schema", default=DEFAULT_STORE_SCHEMA, help="schema of migration_run")
    common(restore)
    return top


COMMANDS = {"check": cmd_check, "apply": cmd_apply, "runs": cmd_runs, "remediate": cmd_remediate,
            "restore": cmd_restore}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parser().parse_args(argv)  # argparse exits 2 on a usage error, with its own message
    stream = out or sys.stdout
    try:
        if getattr(args, "plan", None):
            plan_path(args.plan)  # a missing file is the first thing to say, before "no database"
        db = connect(database_url(args.db))
        return COMMANDS[args.command](args, db, stream)
    except KeyboardInterrupt:
        # psycopg cancels the running query on the server before the interrupt reaches here; a long scan's
        # other connections are cancelled by the scan itself
        done = ("the run's record says where it stopped: erd-preflight runs" if args.command == "apply"
                else "the query preflight was running was cancelled on the server, and nothing was changed")
        print(f"erd-preflight: cancelled (Ctrl-C): {done}.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:
        code, message = _classify(exc)
        if args.debug:
            raise
        first, *rest = message.splitlines() or [""]
        print(f"erd-preflight: {first}", file=sys.stderr)
        if code == EXIT_APPLY_FAILED:
            print("  the run's record says what was applied and what was not: erd-preflight runs", file=sys.stderr)
        elif rest:
            print(f"  {rest[0].strip()}" + (" (more with --debug)" if len(rest) > 1 else ""), file=sys.stderr)
        return code


def _classify(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, ApplyFailed):
        return EXIT_APPLY_FAILED, str(exc)
    if isinstance(exc, (ApplyBlocked, ConcurrentApply)):
        return EXIT_BLOCKED, str(exc)
    if isinstance(exc, (UsageError, PreflightError)):  # bad arguments, a bad plan, no connection
        return EXIT_USAGE, str(exc)
    return EXIT_USAGE, f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    sys.exit(main())
