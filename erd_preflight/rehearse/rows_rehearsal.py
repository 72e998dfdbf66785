"""The exact rehearsal (``rehearse_data=True``): the plan run on a copy of the rows of small tables.

What preflight cannot verify read-only (a DO block that writes, DML on a table with triggers, an upsert, a
function with side effects) otherwise needs a person's acknowledgement. When every table such a step can read is
small (``rehearse_data_rows``, by the catalog's estimate), the user may allow a copy of those tables' rows:

- the rows are read from the target in one ``REPEATABLE READ READ ONLY`` snapshot (``COPY ... TO STDOUT``), and
  loaded into a database of their own on the shadow's server, made from the shadow (the target's schema), with
  triggers and foreign keys off while loading; the sequences get the target's positions;
- the plan's statements run there in apply's order, as the rehearsal role, in one transaction that is rolled
  back; the first one PostgreSQL refuses is PostgreSQL's own verdict on its step;
- the copy is dropped afterwards, whatever happened.

A step's verdict is exact only when every table it can read holds the real rows at that point: copied, made
empty by an earlier ``CREATE TABLE``, or changed only by earlier statements that read exact tables themselves.
A step that can read anything (a DO block, a function of the user's, a trigger or rule that fires) needs every
table of the database copied. Anything else stays a step for a person to acknowledge, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pglast
import psycopg
from pglast import ast
from psycopg import sql

from ..errors import classify
from .shadow import REHEARSAL_ROLE, Shadow, ShadowUnavailable, apply_search_path, scratch_database, shadow_for
from .rehearsal import plain_form
from .shadow_catalog import RehearsalFailure, about_the_rows
from ..sqlparse import walk_ast
from ..versions import created_functions

Key = int | tuple[str, str]  # a relation of the target (its oid), or a name the plan makes (schema or "", name)
ALL: None = None  # a footprint of None: the statement may read or write any table


@dataclass
class _Relation:
    oid: int
    name: str  # schema-qualified, quoted as PostgreSQL shows it
    kind: str  # pg_class.relkind
    rows: int  # the catalog's estimate (a bounded count when the table was never analyzed)
    columns: list[str]  # stored columns, in order (no generated ones: COPY cannot write them)


@dataclass
class RowsRehearsal:
    """What the exact rehearsal found, step by step."""

    unavailable: str | None = None  # why it did not run at all
    not_exact: dict[int, str] = field(default_factory=dict)  # step → why its verdict would not be exact
    ran: set[int] = field(default_factory=set)  # steps whose statements all ran
    failure: RehearsalFailure | None = None  # the first statement PostgreSQL refused on the copy
    copied: dict[str, int] = field(default_factory=dict)  # table → rows copied
    order: list[int] = field(default_factory=list)  # steps in apply's order

    def judge(self, step: int) -> tuple[str, str] | str:
        """("pass" | "blocking", message) when the copy decides ``step``, else why it cannot (a clause)."""
        if self.unavailable is not None:
            return f"the exact rehearsal on a copy of the rows did not run: {self.unavailable}"
        if step in self.not_exact:
            return f"the exact rehearsal cannot decide it: {self.not_exact[step]}"
        rows = sum(self.copied.values())
        copy = f"a copy of {rows:,} row{'s' if rows != 1 else ''} of {len(self.copied)} table" + \
            ("s" if len(self.copied) != 1 else "")
        if self.failure is not None and self.failure.step == step:
            return "blocking", (f"PostgreSQL refuses step {step} when the plan runs on {copy} (the exact rehearsal, "
                                f"rolled back): {self.failure.describe()}. It would fail at apply the same way on "
                                "these rows: fix the rows or the step.")
        if step in self.ran:
            return "pass", (f"step {step} ran without error when the plan ran on {copy} (the exact rehearsal, "
                            "rolled back): PostgreSQL's own verdict on the same rows.")
        if self.failure is not None:
            return (f"the exact rehearsal stopped at step {self.failure.step}, which PostgreSQL refused on the copy "
                    f"({self.failure.describe()})")
        return "the exact rehearsal did not reach it"


# ---------------------------------------------------------------------------------------------------------
# What a statement can read and write


@dataclass
class _Footprint:
    reads: set[Key] | None  # None: anything
    writes: set[Key] | None
    creates: set[Key]  # empty relations it makes (a plain CREATE TABLE)
    fills: set[Key]  # relations it makes from a query (exact when its reads are)
    opaque: str | None = None  # why it may touch anything


def _name_key(rv: ast.RangeVar) -> tuple[str, str]:
    return (rv.schemaname or "", rv.relname)


def _footprint(statement: str, user_functions: set[str]) -> _Footprint:
    try:
        parsed = pglast.parse_sql(statement)
    except (pglast.parser.ParseError, ValueError):
        return _Footprint(None, None, set(), set(), "it does not parse as SQL here")
    reads: set[Key] = set()
    writes: set[Key] = set()
    creates: set[Key] = set()
    fills: set[Key] = set()
    for raw in parsed:
        stmt = raw.stmt
        nodes = list(walk_ast(stmt))
        ctes = {n.ctename for n in nodes if isinstance(n, ast.CommonTableExpr)}
        mentioned = {_name_key(n) for n in nodes if isinstance(n, ast.RangeVar)
                     and not (n.schemaname is None and n.relname in ctes)}
        if isinstance(stmt, (ast.DoStmt, ast.CallStmt)):
            return _Footprint(None, None, set(), set(), "it runs procedural code, which may read and write any table")
        if isinstance(stmt, ast.CopyStmt):
            return _Footprint(None, None, set(), set(), "COPY reads or writes outside the database")
        for node in nodes:
            if isinstance(node, ast.FuncCall):
                parts = [p.sval for p in node.funcname]
                if (len(parts) > 1 and parts[0] != "pg_catalog") or parts[-1] in user_functions:
                    return _Footprint(None, None, set(), set(),
                                      f"it calls {'.'.join(parts)}(), a function of the database's own, which may "
                                      "read any table")
        if isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
            target = _name_key(stmt.relation)
            writes.add(target)
            reads.update(mentioned)
        elif isinstance(stmt, ast.TruncateStmt):
            writes.update(mentioned)
        elif isinstance(stmt, ast.CreateStmt) and stmt.partbound is None and not stmt.inhRelations:
            creates.add(_name_key(stmt.relation))
            reads.update(mentioned - {_name_key(stmt.relation)})
        elif isinstance(stmt, ast.CreateTableAsStmt) and stmt.into is not None:
            made = _name_key(stmt.into.rel)
            (creates if stmt.into.skipData else fills).add(made)
            reads.update(mentioned - {made})
        elif isinstance(stmt, ast.SelectStmt) and stmt.intoClause is None:
            reads.update(mentioned)
        else:  # DDL: what it names may be read and rewritten
            reads.update(mentioned)
            writes.update(mentioned)
    return _Footprint(reads, writes, creates, fills)


# ---------------------------------------------------------------------------------------------------------
# The target's side: which tables, how many rows, how they are linked

_RELATIONS = """
SELECT c.oid::int8, format('%I.%I', n.nspname, c.relname), c.relkind::text, c.reltuples::float8,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
                '{}')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""

_LINKS = """
SELECT conrelid::int8, confrelid::int8 FROM pg_constraint WHERE contype = 'f'
UNION ALL SELECT inhrelid::int8, inhparent::int8 FROM pg_inherits
"""

# Tables on which something the plan cannot see runs when rows change: a user trigger, or a rule.
_ACTING = """
SELECT tgrelid::int8 FROM pg_trigger WHERE NOT tgisinternal
UNION SELECT ev_class::int8 FROM pg_rewrite WHERE rulename <> '_RETURN'
"""

_RESOLVE = """
SELECT s, r, to_regclass(CASE WHEN s = '' THEN quote_ident(r) ELSE quote_ident(s) || '.' || quote_ident(r) END)::oid::int8
  FROM unnest(%s::text[], %s::text[]) AS t(s, r)
"""

_USER_FUNCTIONS = """
SELECT DISTINCT proname::text FROM pg_proc
 WHERE proname = ANY(%s) AND pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
"""


def _components(links: list[tuple[int, int]]) -> dict[int, set[int]]:
    """Each table's set of tables linked to it by foreign keys or inheritance, transitively (undirected): a
    change to one may check, cascade to or move rows of any of them."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        parent[find(a)] = find(b)
    groups: dict[int, set[int]] = {}
    for x in list(parent):
        groups.setdefault(find(x), set()).add(x)
    return {x: groups[find(x)] for x in parent}


# ---------------------------------------------------------------------------------------------------------


def rehearse_rows(target: psycopg.Connection[Any], statements: list[tuple[int, str]], *, max_rows: int, timeout_s: float) -> RowsRehearsal:
    """Run ``statements`` (step, SQL; apply's order) on a copy of the rows of the tables they can read, where
    each is under ``max_rows``; see the module's docstring. Never raises for a shadow that cannot be made: the
    result says why it did not run."""
    result = RowsRehearsal(order=list(dict.fromkeys(step for step, _ in statements)))
    try:
        shadow = shadow_for(target)
    except ShadowUnavailable as exc:
        result.unavailable = str(exc)
        return result
    try:
        with _snapshot(target, timeout_s):
            _rehearse(target, shadow, statements, max_rows, timeout_s, result)
    except ShadowUnavailable as exc:
        result.unavailable = str(exc)
    except psycopg.Error as exc:
        result.unavailable = f"reading or copying the rows failed ({' '.join(str(exc).split())})"
    return result


def _rehearse(target: psycopg.Connection[Any], shadow: Shadow, statements: list[tuple[int, str]], max_rows: int,
              timeout_s: float, result: RowsRehearsal) -> None:
    relations = {r[0]: _Relation(r[0], r[1], r[2], int(r[3]), list(r[4]))
                 for r in target.execute(_RELATIONS)}
    links = [(a, b) for a, b in target.execute(_LINKS) if a in relations and b in relations]
    component = _components(links)
    acting = {r[0] for r in target.execute(_ACTING)}
    called = set().union(*(_called(text) for _, text in statements)) if statements else set()
    own = set().union(*(created_functions(text) for _, text in statements)) if statements else set()
    user_functions = own | {r[0] for r in target.execute(_USER_FUNCTIONS, (sorted(called),))}
    prints = [(step, _footprint(text, user_functions)) for step, text in statements]
    made_acting = set().union(*(_made_acting(text) for _, text in statements)) if statements else set()
    names = sorted({k for _, f in prints for part in (f.reads, f.writes) if part for k in part if isinstance(k, tuple)}
                   | made_acting)
    resolved: dict[tuple[str, str], int] = {}
    if names:
        for s, r, oid in target.execute(_RESOLVE, ([n[0] for n in names], [n[1] for n in names])):
            if oid is not None and oid in relations:
                resolved[(s, r)] = oid

    acting |= {resolved[k] for k in made_acting if k in resolved}  # a trigger the plan makes on a table of the target

    def closure(keys: set[Key] | None) -> tuple[set[Key] | None, str | None]:
        """The relations ``keys`` reach (None: every one), and why it is every one."""
        if keys is None:
            return None, None
        out: set[Key] = set()
        for key in keys:
            if key in made_acting:
                shown = ".".join(part for part in key if part)  # type: ignore[union-attr]
                return None, f"a trigger or rule the plan makes on {shown} runs code that may read and write any table"
            oid = resolved.get(key) if isinstance(key, tuple) else key
            if oid is None:
                out.add(key)
                continue
            if relations[oid].kind in ("v", "m", "f"):
                return None, f"it reads {relations[oid].name}, a view or foreign table, which may read any table"
            for member in component.get(oid, {oid}):
                out.add(member)
        for oid in (k for k in out if isinstance(k, int)):
            if oid in acting:
                return None, f"a trigger or rule on {relations[oid].name} runs code that may read and write any table"
        return out, None

    # What to copy: every table some statement can reach (every table, when one can reach anything).
    reach: list[tuple[int, set[Key] | None, set[Key] | None, _Footprint, str | None]] = []
    for step, foot in prints:
        reads, why_r = closure(foot.reads if foot.reads is None else foot.reads | (foot.writes or set()))
        writes, why_w = closure(foot.writes)
        reach.append((step, reads, writes, foot, foot.opaque or why_r or why_w))
    wanted = set(relations) if any(r is None for _, r, _, _, _ in reach) else \
        {k for _, r, _, _, _ in reach for k in (r or ()) if isinstance(k, int)}
    tables = [relations[oid] for oid in sorted(wanted) if relations[oid].kind in ("r", "p")]
    too_big: dict[int, str] = {}
    for rel in tables:
        estimated = rel.kind == "r" and rel.rows > max_rows * 2
        if rel.kind == "p":
            rel.rows = 0  # its rows are its partitions'
        elif not estimated:
            rel.rows = _bounded_count(target, rel, max_rows)
        if rel.rows > max_rows:
            held = f"about {rel.rows:,}" if estimated else f"more than {max_rows:,}"
            too_big[rel.oid] = f"{rel.name} holds {held} rows, over rehearse_data_rows ({max_rows:,})"
    copy = [rel for rel in tables if rel.oid not in too_big and rel.kind == "r"]
    database = f"erd_rows_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with scratch_database(shadow, database) as url:
        _load(target, url, copy, result)
        search_path = apply_search_path(target)
        exact: set[Key] = {rel.oid for rel in tables if rel.oid not in too_big}
        exact |= {oid for oid, rel in relations.items() if rel.kind == "v"}  # no rows of their own
        _run(url, statements, reach, exact, too_big, relations, search_path, timeout_s, result)


def _made_acting(statement: str) -> set[tuple[str, str]]:
    """The tables a statement makes a trigger or rule on (by name, as written)."""
    try:
        parsed = pglast.parse_sql(statement)
    except (pglast.parser.ParseError, ValueError):
        return set()
    return {_name_key(raw.stmt.relation) for raw in parsed
            if isinstance(raw.stmt, (ast.CreateTrigStmt, ast.RuleStmt)) and raw.stmt.relation is not None}


def _called(statement: str) -> set[str]:
    try:
        return {n.funcname[-1].sval for raw in pglast.parse_sql(statement) for n in walk_ast(raw.stmt)
                if isinstance(n, ast.FuncCall)}
    except (pglast.parser.ParseError, ValueError):
        return set()


def _bounded_count(conn: psycopg.Connection[Any], rel: _Relation, max_rows: int) -> int:
    """The table's rows, counted up to one over ``max_rows`` (that is enough to say it is too big)."""
    row = conn.execute(sql.SQL("SELECT count(*) FROM (SELECT FROM ONLY {} LIMIT %s) AS t").format(_by_oid(rel)),
                       (max_rows + 1,)).fetchone()
    return int(row[0]) if row else 0


def _by_oid(rel: _Relation) -> sql.Composable:
    return sql.Identifier(*_split(rel.name))


def _split(qualified: str) -> tuple[str, str]:
    """``format('%I.%I')`` back into its two names (PostgreSQL's quoting: "" inside quotes)."""
    parts: list[str] = []
    current = ""
    quoted = False
    i = 0
    while i < len(qualified):
        ch = qualified[i]
        if quoted:
            if ch == '"' and qualified[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            elif ch == '"':
                quoted = False
            else:
                current += ch
        elif ch == '"':
            quoted = True
        elif ch == ".":
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts[0], parts[1]


@contextlib.contextmanager
def _snapshot(conn: psycopg.Connection[Any], timeout_s: float) -> Iterator[None]:
    """One REPEATABLE READ READ ONLY transaction on the target: every table is copied as of one moment."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        ms = f"{max(1, int(timeout_s * 1000))}ms"
        # synchronize_seqscans off: each table is read from its first page, so the copy keeps its physical order
        conn.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true), "
                     "set_config('row_security', 'off', true), set_config('synchronize_seqscans', 'off', true)",
                     (ms, ms))
        yield
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("ROLLBACK")


_SEQUENCES = """
SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences
 WHERE last_value IS NOT NULL AND schemaname NOT IN ('pg_catalog', 'information_schema')
"""


def _load(target: psycopg.Connection[Any], url: str, copy: list[_Relation], result: RowsRehearsal) -> None:
    """The rows of ``copy`` and the sequences' positions, from the target's snapshot into the copy. As the copy's
    superuser with ``session_replication_role = replica``: no trigger and no foreign key check runs while
    loading (the rows are the target's, consistent as they are)."""
    with psycopg.connect(url) as dest:
        dest.execute("SET session_replication_role = replica")
        for rel in copy:
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in rel.columns)
            relation = _by_oid(rel)
            cursor = dest.cursor()
            with target.cursor().copy(sql.SQL("COPY (SELECT {} FROM ONLY {}) TO STDOUT").format(
                    columns, relation)) as out, \
                    cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(relation, columns)) as into:
                for block in out:
                    into.write(block)
            result.copied[rel.name] = max(cursor.rowcount, 0)
        for name, value in target.execute(_SEQUENCES).fetchall():
            dest.execute("SELECT setval(s, %s, true) FROM to_regclass(%s) AS s WHERE s IS NOT NULL", (value, name))
        dest.commit()


def _run(url: str, statements: list[tuple[int, str]],
         reach: list[tuple[int, set[Key] | None, set[Key] | None, _Footprint, str | None]],
         exact: set[Key], too_big: dict[int, str], relations: dict[int, _Relation], search_path: str,
         timeout_s: float, result: RowsRehearsal) -> None:
    """The statements on the copy, as the rehearsal role, in one transaction rolled back; each step's
    exactness followed statement by statement."""
    every = set(relations)
    tainted: dict[Key, str] = {oid: why for oid, why in too_big.items()}
    for oid in every - exact:
        tainted.setdefault(oid, f"{relations[oid].name} was not copied")
    with psycopg.connect(psycopg.conninfo.make_conninfo(url, user=REHEARSAL_ROLE)) as conn:
        conn.execute("SELECT set_config('search_path', %s, true), set_config('standard_conforming_strings', 'on', "
                     "true), set_config('statement_timeout', %s, true), set_config('lock_timeout', '10s', true)",
                     (search_path, f"{max(1, int(timeout_s * 1000))}ms"))
        failed = False
        for (step, text), (_, reads, writes, foot, opaque) in zip(statements, reach):
            why = _why_not_exact(reads, exact, every, tainted, opaque, relations)
            if why is not None:
                result.not_exact.setdefault(step, why)
                result.ran.discard(step)
                # what it writes no longer holds the real rows
                for key in (every if writes is None else writes):
                    exact.discard(key)
                    tainted.setdefault(key, f"step {step} changes it, and {why}")
                for key in foot.creates | foot.fills:  # made by a statement the copy cannot run as apply would
                    tainted.setdefault(key, f"step {step} makes it, and {why}")
            else:
                exact.update(foot.creates | foot.fills)
            if failed:
                continue
            plain = plain_form(text)
            if plain is None:
                result.ran.add(step)
                continue
            conn.execute("SAVEPOINT erd_rows_step")
            try:
                conn.execute(plain)
            except psycopg.Error as exc:
                if conn.broken or classify(exc) in ("connection", "lock", "timeout"):
                    raise ShadowUnavailable(f"the copy's session failed at step {step} "
                                            f"({' '.join(str(exc).split())})") from exc
                state = exc.sqlstate or ""
                if not about_the_rows(state):
                    # Not about the rows (a right the rehearsal role lacks, an object of an extension the copy's
                    # server has not): the schema-only rehearsal judges structure; this is no verdict.
                    raise ShadowUnavailable(f"step {step} failed on the copy for a reason that is not about the rows "
                                            f"({exc.diag.message_primary or exc}; SQLSTATE {state})") from exc
                conn.execute("ROLLBACK TO SAVEPOINT erd_rows_step")
                diag = exc.diag
                result.failure = RehearsalFailure(step=step, statement=text, sqlstate=exc.sqlstate or "",
                                                  message=diag.message_primary or str(exc),
                                                  detail=diag.message_detail, hint=diag.message_hint)
                result.ran.discard(step)
                failed = True
                continue
            conn.execute("RELEASE SAVEPOINT erd_rows_step")
            if step not in result.not_exact:
                result.ran.add(step)
        conn.rollback()


def _why_not_exact(reads: set[Key] | None, exact: set[Key], every: set[int], tainted: dict[Key, str],
                   opaque: str | None, relations: dict[int, _Relation]) -> str | None:
    if reads is None:
        missing = sorted((k for k in every if k not in exact), key=str)
        if not missing:
            return None
        first = missing[0]
        return f"{opaque or 'it may read any table'}, and {tainted.get(first, f'{relations[first].name} was not copied')}"
    for key in sorted(reads, key=str):
        if key in exact:
            continue
        if key in tainted:
            return tainted[key]
        if isinstance(key, tuple):
            name = ".".join(p for p in key if p)
            return f"it reads {name}, which is neither a table of the target nor one an earlier step creates empty"
        return f"{relations[key].name} was not copied"
    return None
