"""Exact by construction: a statement whose every input the plan itself makes is decided by the rehearsal.

The shadow holds the target's schema without rows. A relation the plan creates starts empty there exactly as on
the target; the rows an exact statement writes into it are the very rows apply writes. So a statement that reads
and writes only such relations (and the catalog, literals, VALUES, and sequences and functions the plan makes)
meets in the rehearsal the rows it meets at apply, and PostgreSQL's verdict there is its verdict at apply.

What the statement touched is read from PostgreSQL after it ran, not guessed from its text: every relation the
transaction newly locked, every relation (or an index of it) whose scans or written rows this backend counted,
every sequence that moved. That covers what a trigger, a foreign key's check, a default or a function reads.
When the statement fails, its subtransaction is gone with its locks and counts; then it is exact only where its
text and the catalog say so alone: it names only the plan's relations, the relations it writes have no trigger
or rule, their foreign keys reach only the plan's relations, and no function it or their constraints and
defaults call is anything but PostgreSQL's own.

Whatever may differ between the shadow and the target without a row (the session's role, the database's name,
settings, statistics, random numbers) makes a statement inexact, named in ``DIFFERS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pglast
import psycopg
from pglast import ast

from ..sqlparse import walk_ast

# Functions and catalog views whose answer in the shadow is not the target's although no table's row decides it.
DIFFERS = re.compile(
    r"\b(?:random|random_normal|setseed|current_database|current_user|session_user|current_role|current_setting|"
    r"current_catalog|version|inet_\w+|pg_backend_pid|txid_\w+|pg_current_\w+|pg_stat\w*|pg_settings|"
    r"pg_database\w*|pg_locks|pg_postmaster\w*|pg_is_in_recovery|pg_\w*_size|pg_size_\w+|reltuples|relpages|"
    r"pg_ls_\w+|pg_read_\w+|pg_sequence_last_value|pg_roles|pg_authid|pg_user|pg_shadow|dblink\w*|lo_\w+)\b",
    re.IGNORECASE)

# After a statement: per relation the transaction has locked, its table (an index counts for its table), how
# many scans and written rows this backend counted on it, and a sequence's position.
_TOUCHED = """
SELECT l.relation::int8, coalesce(i.indrelid, l.relation)::int8, c.relkind::text,
       pg_stat_get_xact_numscans(l.relation) + pg_stat_get_xact_tuples_inserted(l.relation)
       + pg_stat_get_xact_tuples_updated(l.relation) + pg_stat_get_xact_tuples_deleted(l.relation),
       pg_stat_get_xact_tuples_inserted(l.relation) + pg_stat_get_xact_tuples_updated(l.relation)
       + pg_stat_get_xact_tuples_deleted(l.relation),
       CASE WHEN c.relkind = 'S' AND has_sequence_privilege(l.relation, 'SELECT')
            THEN pg_sequence_last_value(l.relation) END, l.mode
  FROM pg_locks l JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_index i ON i.indexrelid = l.relation
 WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND l.relation >= 16384
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# For the relations a statement writes: its triggers and rules, the relations its foreign keys join it to, and
# the functions and relations its constraints, defaults and column domains depend on.
_WRITTEN = """
SELECT (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = r.oid AND NOT t.tgisinternal)
     + (SELECT count(*) FROM pg_rewrite w WHERE w.ev_class = r.oid AND w.rulename <> '_RETURN'),
       ARRAY(SELECT k.confrelid::int8 FROM pg_constraint k WHERE k.conrelid = r.oid AND k.contype = 'f'
             UNION SELECT k.conrelid::int8 FROM pg_constraint k WHERE k.confrelid = r.oid AND k.contype = 'f'),
       EXISTS (SELECT FROM pg_depend d JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid
                WHERE p.pronamespace <> 'pg_catalog'::regnamespace
                  AND ((d.classid = 'pg_constraint'::regclass AND d.objid IN (
                          SELECT k.oid FROM pg_constraint k WHERE k.conrelid = r.oid
                          UNION SELECT k.oid FROM pg_constraint k JOIN pg_attribute a ON a.atttypid = k.contypid
                           WHERE a.attrelid = r.oid))
                    OR (d.classid = 'pg_attrdef'::regclass AND d.objid IN (
                          SELECT x.oid FROM pg_attrdef x WHERE x.adrelid = r.oid)))),
       ARRAY(SELECT d.refobjid::int8 FROM pg_depend d JOIN pg_attrdef x ON d.classid = 'pg_attrdef'::regclass
              AND d.objid = x.oid WHERE x.adrelid = r.oid AND d.refclassid = 'pg_class'::regclass)
  FROM pg_class r WHERE r.oid = %s
"""


@dataclass
class Exactness:
    """Which relations hold, in the shadow, exactly the rows they hold at apply: those the plan made (not among
    ``existing``) and that no inexact statement has written since."""

    existing: frozenset[int]  # relations of the target (and so of the shadow before the plan)
    tainted: set[int] = field(default_factory=set)  # the plan's relations an inexact statement wrote
    all_tainted: bool = False  # an inexact statement failed: what it would write at apply is not known
    baseline: dict[tuple[int, str], tuple[int, int, int | None]] = field(default_factory=dict)

    def faithful(self, oid: int) -> bool:
        return oid >= 16384 and oid not in self.existing and oid not in self.tainted and not self.all_tainted

    def start(self, conn: psycopg.Connection[Any]) -> None:
        """Before a statement: what the transaction holds and has counted so far."""
        self.baseline = {(rel, mode): (count, writes, position) for _, rel, _, count, writes, position, mode
                         in _read(conn)}

    def touched(self, conn: psycopg.Connection[Any]) -> tuple[set[int], set[int]]:
        """After a statement that ran: the relations it read or wrote, and of them those it wrote."""
        read: set[int] = set()
        written: set[int] = set()
        counts_before = {rel: v for (rel, _), v in self.baseline.items()}
        for _, rel, kind, count, writes, position, mode in _read(conn):
            before = self.baseline.get((rel, mode))
            old = counts_before.get(rel)
            if before is None and old is None:
                read.add(rel)  # a lock on a relation it had not held: it opened it
                if mode not in ("AccessShareLock",):
                    written.add(rel)
                continue
            if before is None and mode not in ("AccessShareLock", "RowShareLock"):
                written.add(rel)
                read.add(rel)
            reference = before or old
            assert reference is not None
            if count != reference[0] or position != reference[2]:
                read.add(rel)
            if writes != reference[1] or (kind == "S" and position != reference[2]):
                written.add(rel)
        return read, written

    def inexact_reads(self, read: set[int]) -> list[int]:
        return [oid for oid in read if not self.faithful(oid)]


def _read(conn: psycopg.Connection[Any]) -> list[tuple[int, int, str, int, int, int | None, str]]:
    return [(int(a), int(b), str(c), int(d or 0), int(e or 0), None if f is None else int(f), str(g))
            for a, b, c, d, e, f, g in conn.execute(_TOUCHED, prepare=True).fetchall()]


def statement_node(statement: str) -> ast.Node | None:
    try:
        (raw,) = pglast.parse_sql(statement)
    except (pglast.parser.ParseError, ValueError):
        return None
    return raw.stmt


def differs(statement: str) -> str | None:
    """What in ``statement`` may answer otherwise in the shadow than on the target, with no row deciding it."""
    found = DIFFERS.search(statement)
    if found is not None:
        return found.group(0)
    stmt = statement_node(statement)
    if stmt is not None and any(isinstance(n, ast.SQLValueFunction) and n.op.name.startswith(
            ("SVFOP_CURRENT_ROLE", "SVFOP_CURRENT_USER", "SVFOP_USER", "SVFOP_SESSION_USER", "SVFOP_CURRENT_CATALOG"))
            for n in walk_ast(stmt)):
        return "the session's role"
    return None


def _named(stmt: ast.Node) -> list[ast.RangeVar]:
    ctes = {c.ctename for n in walk_ast(stmt) if isinstance(n, ast.WithClause) for c in n.ctes or ()}
    return [n for n in walk_ast(stmt) if isinstance(n, ast.RangeVar)
            and not (n.schemaname is None and n.relname in ctes)]


def _written(stmt: ast.Node) -> list[ast.RangeVar]:
    found = []
    for n in walk_ast(stmt):
        if isinstance(n, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.AlterTableStmt,
                          ast.IndexStmt)):
            found.append(n.relation)
    return [r for r in found if r is not None]


def _functions(stmt: ast.Node) -> list[str]:
    return [n.funcname[-1].sval for n in walk_ast(stmt) if isinstance(n, ast.FuncCall)]


_EXACT_ON_FAILURE = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.AlterTableStmt,
                     ast.IndexStmt, ast.CreateTableAsStmt, ast.SelectStmt, ast.DoStmt)

# Every relation (an index as its table) this backend counted a scan or a written row on in this transaction, and
# every sequence's position: read before and after a statement that may fail, as a difference. A subtransaction
# rolled back releases its locks, but neither its counted scans nor the numbers its sequences gave.
_COUNTED = """
SELECT coalesce(i.indrelid, c.oid)::int8,
       CASE WHEN c.relkind = 'S' THEN CASE WHEN has_sequence_privilege(c.oid, 'SELECT')
                                           THEN pg_sequence_last_value(c.oid) END
            ELSE pg_stat_get_xact_numscans(c.oid) + pg_stat_get_xact_tuples_inserted(c.oid)
                 + pg_stat_get_xact_tuples_updated(c.oid) + pg_stat_get_xact_tuples_deleted(c.oid) END
  FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid
 WHERE c.oid >= 16384 AND c.relkind IN ('r', 'p', 'm', 'i', 'I', 'S') ORDER BY c.oid
"""


def candidate(conn: psycopg.Connection[Any], statement: str, exactness: Exactness) -> bool:
    """Whether ``statement`` may be exact if it fails: of a kind that can fail on rows, naming only the plan's
    relations. Asked before it runs, so that ``counted`` can be read before it too."""
    stmt = statement_node(statement)
    if not isinstance(stmt, _EXACT_ON_FAILURE) or differs(statement) is not None:
        return False
    oids = _resolve(conn, _named(stmt))
    return all(oid is not None and exactness.faithful(oid) for oid in oids)


def counted(conn: psycopg.Connection[Any]) -> dict[int, tuple[int | None, ...]]:
    found: dict[int, list[int | None]] = {}
    for rel, value in conn.execute(_COUNTED, prepare=True).fetchall():
        found.setdefault(int(rel), []).append(None if value is None else int(value))
    return {rel: tuple(values) for rel, values in found.items()}


def exact_after_failure(conn: psycopg.Connection[Any], statement: str, exactness: Exactness,
                        before: dict[int, tuple[int | None, ...]]) -> bool:
    """Whether ``statement``, a ``candidate`` that PostgreSQL refused in the rehearsal (its subtransaction rolled
    back), would be refused the same at apply: every relation it read or wrote on its way, as the counts say, is
    the plan's, and no code it ran asks what differs between the shadow and the target."""
    after = counted(conn)
    touched = {rel for rel, values in after.items() if before.get(rel) != values}
    if any(not exactness.faithful(rel) for rel in touched):
        return False
    stmt = statement_node(statement)
    written = {o for o in _resolve(conn, _written(stmt)) if o is not None} if stmt is not None else set()
    return functions_differ(conn, statement, written) is None


def _resolve(conn: psycopg.Connection[Any], names: list[ast.RangeVar]) -> list[int | None]:
    if not names:
        return []
    texts = [".".join(_quote(p) for p in (n.schemaname, n.relname) if p) for n in names]
    return [None if r is None else int(r) for (r,) in conn.execute(
        "SELECT to_regclass(n)::oid::int8 FROM unnest(%s::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i",
        (texts,)).fetchall()]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# The functions a statement calls that are not PostgreSQL's own, the trigger functions of the relations it writes,
# and every function of the database one of their bodies names, transitively: their bodies, and whether one of
# them is opaque (not SQL or PL/pgSQL) and volatile.
_BODIES = """
WITH RECURSIVE f(oid) AS (
    SELECT p.oid FROM pg_proc p
     WHERE p.pronamespace <> 'pg_catalog'::regnamespace
       AND (p.proname = ANY(%s) OR p.oid IN (SELECT t.tgfoid FROM pg_trigger t
                                             WHERE t.tgrelid = ANY(%s::oid[]) AND NOT t.tgisinternal))
    UNION
    SELECT q.oid FROM f JOIN pg_proc p ON p.oid = f.oid
      JOIN pg_proc q ON q.pronamespace <> 'pg_catalog'::regnamespace AND position(q.proname IN p.prosrc) > 0
)
SELECT coalesce(string_agg(p.prosrc, ' '), ''),
       coalesce(bool_or(l.lanname NOT IN ('sql', 'plpgsql') AND p.provolatile = 'v'), false)
  FROM f JOIN pg_proc p USING (oid) JOIN pg_language l ON l.oid = p.prolang
"""

_CALLS = re.compile(r"\b([A-Za-z_][A-Za-z0-9_$]*)\s*\(")


def functions_differ(conn: psycopg.Connection[Any], statement: str, written: set[int]) -> str | None:
    """What in the code a statement runs (functions it calls, triggers it fires, and what they call) may answer
    otherwise in the shadow than on the target with no row deciding it, or None."""
    names = sorted(set(_CALLS.findall(statement)))
    bodies, opaque = conn.execute(_BODIES, (names, sorted(written))).fetchone()
    if opaque:
        return "a volatile function in a language preflight cannot read"
    found = DIFFERS.search(bodies or "")
    return None if found is None else f"{found.group(0)} in a function it runs"


def taint_after(conn: psycopg.Connection[Any], statement: str, exactness: Exactness, written: set[int]) -> None:
    """An inexact statement: what it writes at apply is not what it wrote here. The relations it writes (as
    PostgreSQL counted them here, and as its text names them: on empty tables it may have written no row), and
    those their foreign keys cascade to, hold other rows at apply; a block of code, or a trigger, may write any."""
    stmt = statement_node(statement)
    if stmt is None or isinstance(stmt, (ast.DoStmt, ast.CallStmt)):
        exactness.all_tainted = True
        return
    targets = {o for o in _resolve(conn, _written(stmt)) if o is not None} | set(written)
    if isinstance(stmt, ast.CreateTableAsStmt) or (isinstance(stmt, ast.SelectStmt) and stmt.intoClause):
        into = stmt.into.rel if isinstance(stmt, ast.CreateTableAsStmt) else stmt.intoClause.rel
        targets |= {o for o in _resolve(conn, [into]) if o is not None}
    for oid in targets:
        row = conn.execute(_WRITTEN, (oid,)).fetchone()
        if row is None:
            continue
        triggers, partners, _, _ = row
        if triggers:
            exactness.all_tainted = True
            return
        exactness.tainted.update(int(p) for p in partners)
    exactness.tainted |= targets


def runs_own_code(conn: psycopg.Connection[Any], statement: str) -> bool:
    """Whether a data statement runs code of the database's own on the rows it writes (a trigger, a rule, a
    constraint or default calling a function that is not PostgreSQL's), which may read any rows."""
    stmt = statement_node(statement)
    if stmt is None:
        return True
    for oid in _resolve(conn, _written(stmt)):
        if oid is None:
            return True
        row = conn.execute(_WRITTEN, (oid,)).fetchone()
        if row is None or row[0] or row[2]:
            return True
    return False
