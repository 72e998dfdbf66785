"""Replay real migration histories with PostgreSQL as the oracle, and count preflight's false verdicts.

For each project folder under ``--root`` (or ``$ERD_PREFLIGHT_HISTORIES``), the migration files are applied in
order to a fresh database. Each file is judged on a copy of that database with a few random rows added to every
table (small value pools, some NULLs, so duplicates, orphans and NULLs happen):

- preflight judges the file, twice: with the rehearsal (the checks derived from PostgreSQL's catalog) and
  without it (``rehearse=False``: the checks' own model of each statement);
- the oracle: PostgreSQL applies the same statements to the same rows, in a transaction rolled back;
- the file is applied for real to the database without the random rows, so the next file finds the schema
  (and the rows of earlier files) it expects.

A false block: preflight blocks, the oracle applies. A false clear: preflight neither blocks nor names the step as
unverified, and the oracle fails. The project folders are public repositories brought as git snapshots; they are
read from the folder given, never committed here. Layouts: diesel (``<version>_<name>/up.sql``) and whatever
``MigrationPlan.from_dir`` reads (golang-migrate, Flyway, dbmate, numbered files). A ``setup.sql`` in a project
folder runs once before its history: what its deployment makes first (a schema of its own, off the search_path).

    python benchmarks/replay_histories.py --root /tmp/histories [--url postgresql://...] [--rows 8] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import erd_preflight as ep
from erd_preflight.errors import PlanError

_DIESEL = re.compile(r"^(?P<version>[0-9-]+)_(?P<name>.+)$")


def migration_files(project: Path) -> list[tuple[str, str]]:
    """(name, SQL) of each migration of ``project``, in the order its tool applies them."""
    folder = project / "migrations" if (project / "migrations").is_dir() else project
    # diesel orders by the version with its dashes removed: 2017-09-23-182408 is 20170923182408
    diesel = sorted((p for p in folder.iterdir() if p.is_dir() and (p / "up.sql").is_file() and _DIESEL.match(p.name)),
                    key=lambda p: re.sub(r"\D", "", p.name.split("_", 1)[0]))
    if diesel:
        return [(p.name, (p / "up.sql").read_text(encoding="utf-8")) for p in diesel]
    from erd_preflight.plan.migration_dirs import migration_files as discover
    from erd_preflight.plan.tools import detect

    found_tool = detect(folder)
    if found_tool is not None:  # Prisma, Atlas, Liquibase...: as the tool reads its folder
        tool, root = found_tool
        migrations, _ = tool.migrations(root)
        return [(m.origin, m.text) for m in migrations]

    found, _ = discover(folder)
    return [(f.path.name, f.sql()) for f in found]


@dataclass
class Outcome:
    file: str
    oracle: str | None  # SQLSTATE and message of PostgreSQL's refusal, None when it applies
    rehearsal: str  # blocked / unverified / clear / error: ...
    model: str
    rehearsal_finding: str | None = None
    model_finding: str | None = None
    rehearsal_note: str | None = None  # why the rehearsal did not reach the end, when it did not
    reasons: list[str] = field(default_factory=list)  # what each step left for a person is about (rehearsal)
    copy: str = ""  # with --rehearse-on: the verdict with a full copy of the seeded database (rehearse_on)
    copy_reasons: list[str] = field(default_factory=list)


# Squawk's rules about a lock that blocks the application's traffic (its other rules are about style, types,
# timeouts or rerunning): each names a statement whose lock erd_preflight must name too, with the mode and table.
SQUAWK_LOCK_RULES = {
    "adding-required-field", "adding-not-nullable-field", "constraint-missing-not-valid",
    "require-concurrent-index-creation", "require-concurrent-index-deletion", "changing-column-type",
    "adding-field-with-default", "disallowed-unique-constraint", "adding-foreign-key-constraint",
    "adding-serial-primary-key-field", "ban-alter-domain-with-add-constraint", "renaming-column", "renaming-table",
}


@dataclass
class LockHazard:
    """One lock hazard Squawk names, and what erd_preflight says of the same statement's table."""

    file: str
    rule: str
    tables: list[str]
    new: bool  # a table the same file creates (or none that exists before it): no traffic to block
    named: str | None  # erd_preflight's lock on that table: "MODE on table (work, hold)"; None when not named
    alarm: bool  # erd_preflight shows it (write-blocking, held 0.1 s or more)
    why_not: str | None = None


def _statement_tables(text: str) -> list[tuple[int, int, list[str], bool]]:
    """(first line, last line, tables it names, whether it creates a table) of each statement of a file."""
    import pglast
    from pglast import ast as pgast

    from erd_preflight.sqlparse import walk_ast

    out = []
    for raw in pglast.parse_sql(text):
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(text)
        names = [n.relname for n in walk_ast(raw.stmt) if isinstance(n, pgast.RangeVar)]
        if isinstance(raw.stmt, pgast.DropStmt):  # DROP INDEX names its index, not its table: matched by the index
            names += [f"index:{name[-1].sval}" for name in raw.stmt.objects or () if isinstance(name, tuple)]
        out.append((text[:start].count("\n"), text[:end].count("\n"), names,
                    isinstance(raw.stmt, (pgast.CreateStmt, pgast.CreateTableAsStmt))))
    return out


def squawk_hazards(squawk: str, file: str, text: str, report: ep.PreflightReport | None,
                   existed: set[str]) -> tuple[list[LockHazard], int]:
    """Squawk's lock hazards in ``text`` next to erd_preflight's report of the same file on the same database, and
    the count of Squawk's lock_timeout warnings (apply always sets one)."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False, encoding="utf-8") as handle:
        handle.write(text)
    result = subprocess.run([squawk, "--reporter", "json", handle.name], capture_output=True, text=True, timeout=120)
    Path(handle.name).unlink()
    try:
        warnings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        return [], 0
    try:
        statements = _statement_tables(text)
    except Exception:  # noqa: BLE001 - a file pglast cannot read: no statement to match
        statements = []
    created = {name for _, _, names, creates in statements if creates for name in names[:1]}
    locks = report.locks.statements if report is not None and report.locks else []
    hazards: list[LockHazard] = []
    timeouts = 0
    for w in warnings:
        rule = w.get("rule_name", "")
        if rule in ("require-lock-timeout", "require-statement-timeout"):
            timeouts += 1
        if rule not in SQUAWK_LOCK_RULES:
            continue
        line = int(w.get("line", 0))
        tables = next((names for first, last, names, _ in statements if first <= line <= last), [])
        new = bool(tables) and all(t in created or t not in existed for t in tables if not t.startswith("index:")) \
            and not any(t.startswith("index:") for t in tables)
        indexes = [t.removeprefix("index:") for t in tables if t.startswith("index:")]
        mine = [s for s in locks if s.relation.rsplit(".", 1)[-1] in tables
                or any(f'"{i}"' in s.sql or f" {i}" in s.sql for i in indexes)]
        strongest = max(mine, key=lambda s: s.hold_seconds, default=None)
        named = (f"{strongest.mode} on {strongest.relation} ({strongest.work}, ≈ {strongest.hold_seconds:.3f} s)"
                 if strongest else None)
        why = None
        if strongest is None and not new:
            why = ("the file was not judged (blocked or an error)" if report is None or report.blocked else
                   "no lock on an existing table in the report")
        hazards.append(LockHazard(file=file, rule=rule, tables=tables, new=new, named=named,
                                  alarm=any(s.blocks_writes and s.hold_seconds >= 0.1 for s in mine), why_not=why))
    return hazards, timeouts


@dataclass
class Tally:
    project: str
    files: int = 0
    compared: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    steps: int = 0  # steps of the compared files
    known: int = 0  # of them: typed, or raw and classified as changing the catalog only
    judged_steps: int = 0  # steps of the files the rehearsal did not block (every step of them ran its checks)
    asked: int = 0  # of them: steps left for a person to acknowledge
    hazards: list[LockHazard] = field(default_factory=list)  # with --squawk
    squawk_timeouts: int = 0

    def false(self, mode: str) -> tuple[list[Outcome], list[Outcome]]:
        blocks = [o for o in self.outcomes if getattr(o, mode) == "blocked" and o.oracle is None]
        clears = [o for o in self.outcomes if getattr(o, mode) == "clear" and o.oracle is not None]
        return blocks, clears


def reason_of(message: str) -> str:
    """What a finding left for a person is about, without its step numbers and names, to count alike ones."""
    text = re.sub(r"\s+", " ", message)
    found = re.search(r"cannot verify step \d+ before apply: (.+?)(?:, and preflight does not model it|\. PostgreSQL"
                      r"|; acknowledge|$)", text)
    if "rehearsal on a copy of the schema stopped early" in text:
        found = re.search(r"stopped early: (.+?)(?:\. Where|$)", text)
        text = "the rehearsal stopped: " + (found.group(1) if found else text)
    elif found:
        text = found.group(1)
    text = re.sub(r'"[^"]*"|\b\w+\.\w+\b', "…", text)
    text = re.sub(r"\(.*?\)", "(…)", text)
    text = re.sub(r"\bsteps? [\d, ]+", "step N ", text)
    return text[:110].strip()


def _verdict(report: ep.PreflightReport, plan_steps: int) -> tuple[str, str | None]:
    if report.blocked:
        return "blocked", report.blockers[0].message[:300]
    # a step preflight cannot verify: the gate opens only once a person acknowledges it
    unverified = [r for r in report.results if (r.stats or {}).get("acknowledgeStep") is not None]
    if unverified:
        return "unverified", unverified[0].message[:300]
    return "clear", None


def _tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema') AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2").fetchall()]


_COLUMNS = """
SELECT a.attname, t.typcategory, format_type(a.atttypid, a.atttypmod), a.attidentity <> '' OR a.attgenerated <> ''
       OR coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%', false),
       (SELECT array_agg(e.enumlabel) FROM pg_enum e WHERE e.enumtypid = coalesce(nullif(t.typbasetype, 0), t.oid)),
       t.typelem <> 0 AND t.typcategory = 'A'
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


def _value(rng: random.Random, category: str, type_text: str, labels: list[str] | None) -> sql.Composable:
    if rng.random() < 0.15:
        return sql.SQL("NULL")
    if labels:
        return sql.SQL("{}::{}").format(sql.Literal(rng.choice(labels)), sql.SQL(type_text))
    pools: dict[str, list[Any]] = {
        "N": [1, 2, 3, 4, 5], "S": ["a", "b", "c", "x" * 40, "Ab"], "B": [True, False],
        "D": ["2024-01-01", "2024-06-30", "2025-02-03 04:05:06"], "U": [
            "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"],
        "I": ["10.0.0.1", "192.168.1.1"],
    }
    if category == "U" and "json" in type_text:
        return sql.SQL("{}::{}").format(sql.Literal(rng.choice(['{}', '{"a": 1}', '[]'])), sql.SQL(type_text))
    if category == "A":
        return sql.SQL("{}::{}").format(sql.Literal("{}"), sql.SQL(type_text))
    pool = pools.get(category)
    if pool is None:
        return sql.SQL("DEFAULT")
    return sql.SQL("{}::{}").format(sql.Literal(rng.choice(pool)), sql.SQL(type_text))


def seed(conn: psycopg.Connection[Any], rng: random.Random, rows: int) -> int:
    """A few random rows in every table; a row PostgreSQL refuses (a key, a check) is left out."""
    inserted = 0
    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # a deferred key is checked at each row, not at the commit
    for schema, table in _tables(conn):
        columns = conn.execute(_COLUMNS, (sql.Identifier(schema, table).as_string(conn),)).fetchall()
        for _ in range(rows):
            values = [sql.SQL("DEFAULT") if filled else _value(rng, cat, typ, labels)
                      for _, cat, typ, filled, labels, _ in columns]
            names = [sql.Identifier(c[0]) for c in columns]
            statement = sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({})").format(
                sql.Identifier(schema, table), sql.SQL(", ").join(names), sql.SQL(", ").join(values))
            try:
                with conn.transaction():
                    conn.execute(statement)
                inserted += 1
            except psycopg.Error:
                pass
    conn.commit()
    return inserted


def _statements(plan: ep.MigrationPlan) -> list[str]:
    return [re.sub(r"\bCONCURRENTLY\b", "", step.sql(), flags=re.IGNORECASE) for step in plan.steps]


def oracle(conn: psycopg.Connection[Any], plan: ep.MigrationPlan) -> str | None:
    try:
        for statement in _statements(plan):
            conn.execute(statement)
    except psycopg.Error as exc:
        return f"{exc.sqlstate}: {exc.diag.message_primary}"
    finally:
        conn.rollback()
    return None


def apply(conn: psycopg.Connection[Any], plan: ep.MigrationPlan) -> str | None:
    try:
        for statement in _statements(plan):
            conn.execute(statement)
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        return f"{exc.sqlstate}: {exc.diag.message_primary}"
    return None


def _fresh_database(url: str, name: str, template: str = "template0") -> str:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False).replace("+psycopg", "")


def replay(project: Path, url: str, *, rows: int = 8, limit: int | None = None, seed_value: int = 7,
           progress: bool = True, keep: bool = False, squawk: str | None = None, copy: bool = False) -> Tally:
    """Replay one project's history; its databases are dropped afterwards unless ``keep``. ``copy``: judge each
    file a third time with ``rehearse_on`` a copy of the seeded database (CREATE DATABASE ... TEMPLATE)."""
    try:
        return _replay(project, url, rows=rows, limit=limit, seed_value=seed_value, progress=progress, squawk=squawk,
                       copy=copy)
    finally:
        if not keep:
            name = f"erd_replay_{re.sub(r'[^a-z0-9]+', '_', project.name.lower())}"
            with psycopg.connect(url, autocommit=True) as admin:
                for database in (f"{name}_copy", f"{name}_work", name):
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def _replay(project: Path, url: str, *, rows: int, limit: int | None, seed_value: int, progress: bool,
            squawk: str | None = None, copy: bool = False) -> Tally:
    tally = Tally(project=project.name)
    name = f"erd_replay_{re.sub(r'[^a-z0-9]+', '_', project.name.lower())}"
    target = _fresh_database(url, name)
    if (project / "setup.sql").is_file():
        # What the project's deployment makes before its first migration (a schema of its own, roles): run once.
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute((project / "setup.sql").read_text(encoding="utf-8"))
    files = migration_files(project)[:limit]
    for number, (file, text) in enumerate(files, start=1):
        tally.files += 1
        try:
            plan = ep.MigrationPlan.from_sql(text)
        except PlanError as exc:
            tally.skipped["preflight cannot read it"] = tally.skipped.get("preflight cannot read it", 0) + 1
            with psycopg.connect(target) as conn:
                try:  # as its tool would: the whole file, in one transaction
                    conn.execute(text)
                except psycopg.Error:
                    conn.rollback()
            if progress:
                print(f"  {file}: preflight cannot read it ({str(exc)[:80]})", file=sys.stderr)
            continue
        if not plan.steps:
            tally.skipped["no statements"] = tally.skipped.get("no statements", 0) + 1
            continue
        # A copy of the database as the history left it, with random rows added: preflight and the oracle judge
        # the file there; the history itself goes on without them (its own rows, which later files may need).
        work = _fresh_database(url, f"{name}_work", template=name)
        with psycopg.connect(work) as conn:
            seed(conn, random.Random(seed_value * 100003 + number), rows)
        # a full copy of the seeded database, made while nobody is connected to it: what rehearse_on runs on
        copy_url = _fresh_database(url, f"{name}_copy", template=f"{name}_work") if copy else None
        db = ep.connect(work)
        verdicts = {}
        notes: dict[str, str | None] = {}
        judged: ep.PreflightReport | None = None
        asked_for: list[str] = []
        copy_asked: list[str] = []
        modes = [("rehearsal", True), ("model", False)] + ([("copy", True)] if copy_url else [])
        for mode, rehearse in modes:
            try:
                report = ep.run_preflight(plan, db, rehearse=rehearse, rehearse_on=copy_url if mode == "copy" else None)
                verdicts[mode] = _verdict(report, len(plan.steps))
                if mode == "copy":
                    copy_asked = sorted({reason_of(r.message) for r in report.results
                                         if (r.stats or {}).get("acknowledgeStep") is not None})
                    continue
                if rehearse:
                    judged = report
                    asked_for = sorted({reason_of(r.message) for r in report.results
                                        if (r.stats or {}).get("acknowledgeStep") is not None})
                if rehearse:
                    notes[mode] = next((r.message[:300] for r in report.results
                                        if r.check_id == "REHEARSAL_UNAVAILABLE_WARNING"), None)
                    if not report.blocked:
                        tally.judged_steps += len(plan.steps)
                        tally.asked += len({(r.stats or {}).get("acknowledgeStep") for r in report.results} - {None})
            except Exception as exc:  # noqa: BLE001 - the harness records every failure of preflight
                verdicts[mode] = (f"error: {type(exc).__name__}", str(exc)[:300])
        db.engine.dispose()
        if squawk:
            with psycopg.connect(work) as conn:
                existed = {name for _, name in _tables(conn)}
            found, timeouts = squawk_hazards(squawk, file, text, judged, existed)
            tally.hazards += found
            tally.squawk_timeouts += timeouts
        with psycopg.connect(work) as conn:
            refused = oracle(conn, plan)
        tally.compared += 1
        tally.steps += len(plan.steps)
        tally.known += sum(1 for step in plan.steps
                           if not isinstance(step, ep.RawSQL) or step.data_dependence is None)
        tally.outcomes.append(Outcome(file=file, oracle=refused, rehearsal=verdicts["rehearsal"][0],
                                      model=verdicts["model"][0], rehearsal_finding=verdicts["rehearsal"][1],
                                      model_finding=verdicts["model"][1], rehearsal_note=notes.get("rehearsal"),
                                      reasons=asked_for if verdicts["rehearsal"][0] == "unverified" else [],
                                      copy=verdicts.get("copy", ("",))[0],
                                      copy_reasons=copy_asked if verdicts.get("copy", ("",))[0] == "unverified"
                                      else []))
        with psycopg.connect(target) as conn:
            failed = apply(conn, plan)
        if failed is not None:
            tally.skipped["fails without the random rows"] = tally.skipped.get("fails without the random rows", 0) + 1
            if progress:
                print(f"  {file}: fails without the random rows too ({failed[:100]})", file=sys.stderr)
        if progress and number % 25 == 0:
            print(f"  {project.name}: {number}/{len(files)}", file=sys.stderr)
    return tally


def print_squawk_table(tallies: list[Tally]) -> None:
    """Squawk's lock hazards against erd_preflight's measured locks, per project."""
    print(f"{'project':>12} | squawk lock hazards | on a table the file creates | on an existing table: named by "
          "erd_preflight (mode, table) / not named | erd_preflight alarms (≥ 0.1 s) | squawk's lock_timeout warnings")
    rows = [*tallies]
    for tally in rows:
        h = tally.hazards
        existing = [x for x in h if not x.new]
        print(f"{tally.project:>12} | {len(h):>19} | {sum(x.new for x in h):>27} | "
              f"{sum(x.named is not None for x in existing):>5} / {sum(x.named is None for x in existing):<5} | "
              f"{sum(x.alarm for x in h):>6} | {tally.squawk_timeouts}")
    every = [x for t in tallies for x in t.hazards]
    rules: dict[str, int] = {}
    for x in every:
        rules[x.rule] = rules.get(x.rule, 0) + 1
    print(f"{'by rule':>12}: " + ", ".join(f"{r} {n}" for r, n in sorted(rules.items(), key=lambda kv: -kv[1])))
    unnamed: dict[str, int] = {}
    for x in every:
        if not x.new and x.named is None:
            unnamed[x.why_not or "?"] = unnamed.get(x.why_not or "?", 0) + 1
    if unnamed:
        print(f"{'not named':>12}: " + "; ".join(f"{why}: {n}" for why, n in unnamed.items()))


def projects(root: Path) -> Iterator[Path]:
    yield from sorted(p for p in root.iterdir() if p.is_dir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("ERD_PREFLIGHT_HISTORIES"),
                        help="a folder with one folder per project (default: $ERD_PREFLIGHT_HISTORIES)")
    parser.add_argument("--url", default=os.environ.get("ERD_PREFLIGHT_TEST_URL"),
                        help="a server where databases may be created (default: the embedded PostgreSQL)")
    parser.add_argument("--rows", type=int, default=8, help="random rows seeded in each table before each file")
    parser.add_argument("--limit", type=int, default=None, help="at most this many files per project")
    parser.add_argument("--only", default=None, help="one project folder")
    parser.add_argument("--json", default=None, help="write every outcome here")
    parser.add_argument("--keep", action="store_true", help="keep each project's databases (to look at them)")
    parser.add_argument("--squawk", default=None, metavar="PATH",
                        help="the squawk executable (pip install squawk-cli): compare its lock hazards with the "
                        "report's locks, file by file, on the same database")
    parser.add_argument("--rehearse-on", action="store_true",
                        help="judge each file a third time with rehearse_on a full copy of the seeded database (a "
                        "database made from it as a template, on the same server)")
    args = parser.parse_args(argv)
    if not args.root:
        parser.error("no --root and no ERD_PREFLIGHT_HISTORIES")
    if not args.url:
        from erd_preflight.db import embedded_url

        args.url = embedded_url()
    url = args.url
    tallies = []
    started = time.perf_counter()
    modes = ("model", "rehearsal", "copy") if args.rehearse_on else ("model", "rehearsal")
    for project in projects(Path(args.root)):
        if args.only and project.name != args.only:
            continue
        tally = replay(project, url, rows=args.rows, limit=args.limit, keep=args.keep, squawk=args.squawk,
                       copy=args.rehearse_on)
        tallies.append(tally)
        for mode in modes:
            blocks, clears = tally.false(mode)
            unverified = sum(1 for o in tally.outcomes if getattr(o, mode) == "unverified")
            errors = sum(1 for o in tally.outcomes if getattr(o, mode).startswith("error"))
            print(f"{tally.project:>12} {mode:>9}: {tally.compared} compared of {tally.files}; false blocks "
                  f"{len(blocks)} ({len(blocks) / max(tally.compared, 1):.1%}), false clears {len(clears)} "
                  f"({len(clears) / max(tally.compared, 1):.1%}), unverified {unverified}, errors {errors}")
        print(f"{'':>12} skipped: {tally.skipped}; steps typed or catalog-only: {tally.known} of {tally.steps} "
              f"({tally.known / max(tally.steps, 1):.1%}); of the steps of files not blocked, decided without a "
              f"person: {tally.judged_steps - tally.asked} of {tally.judged_steps} "
              f"({(tally.judged_steps - tally.asked) / max(tally.judged_steps, 1):.1%})")
    total = sum(t.compared for t in tallies)
    for mode in modes:
        blocks = sum(len(t.false(mode)[0]) for t in tallies)
        clears = sum(len(t.false(mode)[1]) for t in tallies)
        print(f"{'all':>12} {mode:>9}: {total} compared; false blocks {blocks} ({blocks / max(total, 1):.1%}), "
              f"false clears {clears} ({clears / max(total, 1):.1%})")
    left = sum(1 for t in tallies for o in t.outcomes if o.rehearsal == "unverified")
    print(f"{'all':>12} left for a person: {left} of {total} files ({left / max(total, 1):.1%}); why, counted by file:")
    reasons: dict[str, int] = {}
    for o in (o for t in tallies for o in t.outcomes):
        for why in o.reasons:
            reasons[why] = reasons.get(why, 0) + 1
    for why, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"{count:>16}  {why}")
    if args.rehearse_on:
        left = sum(1 for t in tallies for o in t.outcomes if o.copy == "unverified")
        print(f"{'all':>12} with rehearse_on a full copy, left for a person: {left} of {total} files "
              f"({left / max(total, 1):.1%}); why, counted by file:")
        reasons = {}
        for o in (o for t in tallies for o in t.outcomes):
            for why in o.copy_reasons:
                reasons[why] = reasons.get(why, 0) + 1
        for why, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            print(f"{count:>16}  {why}")
    if args.squawk:
        print_squawk_table(tallies)
    print(f"in {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(t) for t in tallies], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
