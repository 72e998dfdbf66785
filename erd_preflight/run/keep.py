"""What a remediation removes is kept, and can be put back.

A remediation that deletes rows runs as one statement that also copies them into ``<store>.remediation_rows``
(``WITH gone AS (DELETE ... RETURNING ...) INSERT INTO ...``), and one that overwrites values keeps each row as it
was and as it left it, in the same way: exact, atomic, in the remediation's own transaction. Each row is kept twice:
as ``jsonb`` (to read and query) and as PostgreSQL's own text of the row, which restore casts back to the table's
row type, so every value comes back as it was (json, arrays and floats too).

``restore`` puts back what one remediation removed or overwrote, in one transaction. It refuses, and changes
nothing, where an overwritten row has changed since (it must still be exactly as the remediation left it), where the
table's columns changed, or where a constraint now forbids a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..checks.remediation import RowChange
from ..catalog import Catalog
from ..errors import RunStateError
from ..plan import display_name


class KeepTooLarge(RunStateError):
    """The rows a remediation would keep are above ``ApplyOptions.keep_limit_bytes``."""


class KeepRefused(RunStateError):
    """A remediation would change rows the run cannot keep exactly (a foreign key's SET DEFAULT, a chain too deep)."""


class RestoreRefused(RunStateError):
    """Restore cannot put the rows back as they were; nothing was changed."""


@dataclass(frozen=True)
class TableFacts:
    """What keeping and restoring need of a table, read from the catalog when they run."""

    oid: int
    schema: str
    name: str
    primary_key: tuple[str, ...]
    writable: tuple[str, ...]  # the columns an INSERT or UPDATE may set: not generated, not dropped
    updatable: tuple[str, ...]  # of those, the ones an UPDATE may set (an identity ALWAYS column may not)

    @property
    def relation(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        """The table's name, schema-qualified, quoted only where needed: what to_regclass reads back."""
        return display_name(self.schema, self.name)


def table_facts(conn: psycopg.Connection[Any], schema: str | None, table: str) -> TableFacts:
    """The table as the catalog has it now (``schema`` None: the first on the search_path)."""
    return _facts_of(conn, sql.Identifier(*([schema] if schema else []), table).as_string(conn))


def _facts_of(conn: psycopg.Connection[Any], regclass: str) -> TableFacts:
    """``table_facts`` of a table named as to_regclass reads it (a kept row's table_name)."""
    row = conn.execute(
        """SELECT c.oid, n.nspname, c.relname,
                  ARRAY(SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                        WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.o),
                  ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                           AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum),
                  ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                           AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity <> 'a' ORDER BY a.attnum)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)""",
        (regclass,)).fetchone()
    if row is None:
        raise RestoreRefused(f"table {regclass} does not exist (any more); nothing was changed")
    return TableFacts(oid=row[0], schema=row[1], name=row[2], primary_key=tuple(row[3]), writable=tuple(row[4]),
                      updatable=tuple(row[5]))


def _key(facts: TableFacts, alias: str) -> sql.Composable:
    """The row's primary key as jsonb (pairs in groups of 50: jsonb_build_object takes 100 arguments at most), or
    the whole row where the table has none."""
    if not facts.primary_key:
        return sql.SQL("to_jsonb({}.*)").format(sql.Identifier(alias))
    columns = list(facts.primary_key)
    parts = [sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(alias, c)) for c in columns[i:i + 50]))
        for i in range(0, len(columns), 50)]
    return sql.SQL(" || ").join(parts)


MAX_DEPTH = 8  # foreign keys followed from the remediation's table: ON DELETE CASCADE chains, a tree's levels


@dataclass(frozen=True)
class Dependent:
    """Rows of another table that a foreign key's ON DELETE action deletes (CASCADE) or overwrites (SET NULL) when
    the remediation deletes its rows: kept too, before the remediation runs, in its transaction, with the rows
    locked so that what is kept is what PostgreSQL then changes."""

    facts: TableFacts
    alias: str
    condition: sql.Composable  # over ``alias``: the rows of the table the action reaches
    action: str  # deleted | updated
    depth: int
    constraint: str
    set_columns: tuple[str, ...] = ()  # SET NULL: the columns it sets

    def new_text(self) -> sql.Composable:
        """An overwritten row as SET NULL leaves it, in PostgreSQL's text: what restore expects to find."""
        nulls = sql.SQL(", ").join(sql.SQL("{}, NULL").format(sql.Literal(c)) for c in self.set_columns)
        return sql.SQL("(jsonb_populate_record({}, jsonb_build_object({})))::text").format(
            sql.Identifier(self.alias), nulls)


def dependents(conn: psycopg.Connection[Any], facts: TableFacts, alias: str, condition: sql.Composable,
               depth: int = 1) -> list[Dependent]:
    """What the ON DELETE actions of the foreign keys that reference ``facts`` do to other rows when the rows of
    ``facts`` where ``condition`` holds are deleted, level by level (only where rows are reached). Raises
    ``KeepRefused`` where a kept copy could not give them back: SET DEFAULT, or chains deeper than MAX_DEPTH."""
    found: list[Dependent] = []
    for key in Catalog(conn).referencing(facts.oid):
        if key.inherited or key.on_delete not in ("c", "n", "d"):
            continue  # a partition's copy (its partitioned table's key says it); NO ACTION / RESTRICT change nothing
        child = table_facts(conn, key.schema, key.table)
        child_alias = f"erd_k{depth}"
        matches = sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(child_alias, c),
                                                                  sql.Identifier(alias, r))
                                        for c, r in zip(key.columns, key.ref_columns))
        reached = sql.SQL("EXISTS (SELECT 1 FROM {} AS {} WHERE ({}) AND {})").format(
            facts.relation, sql.Identifier(alias), condition, matches)
        any_row = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} AS {} WHERE {})").format(
            child.relation, sql.Identifier(child_alias), reached)).fetchone()
        if not any_row or not any_row[0]:
            continue
        shown = f"{display_name(key.name)} of {child.label}"
        if key.on_delete == "d":
            raise KeepRefused(f"foreign key {shown} is ON DELETE SET DEFAULT: the remediation would overwrite rows of "
                              f"{child.label} in a way the run cannot keep exactly")
        if depth > MAX_DEPTH:
            raise KeepRefused(f"foreign key {shown} reaches rows {depth} levels from the remediation's table, deeper "
                              f"than the {MAX_DEPTH} the run keeps")
        if key.on_delete == "c":
            found.append(Dependent(child, child_alias, reached, "deleted", depth, key.name))
            found += dependents(conn, child, child_alias, reached, depth + 1)
        else:
            found.append(Dependent(child, child_alias, reached, "updated", depth, key.name,
                                   key.set_columns or key.columns))
    return found


def keep_dependents(conn: psycopg.Connection[Any], found: list[Dependent], store_schema: str, run_id: int,
                    position: int) -> int:
    """Copy (and lock) the rows the foreign keys' actions will delete or overwrite; returns how many."""
    kept = 0
    for d in found:
        alias = sql.Identifier(d.alias)
        fixed = sql.SQL("{}, {}, {}, {}").format(sql.Literal(run_id), sql.Literal(position),
                                                 sql.Literal(d.facts.label), sql.Literal(d.depth))
        kept += conn.execute(sql.SQL(
            "INSERT INTO {rows} (run_id, position, table_name, depth, action, row_key, old_row, old_text, new_text, "
            "row_tid) SELECT {fixed}, {action}, {key}, to_jsonb({a}.*), ({a}.*)::text, {new}, "
            "{a}.tableoid::text || {a}.ctid::text FROM {rel} AS {a} WHERE {cond} FOR UPDATE OF {a}").format(
            rows=_rows(store_schema), fixed=fixed, action=sql.Literal(d.action), key=_key(d.facts, d.alias), a=alias,
            new=d.new_text() if d.action == "updated" else sql.SQL("NULL"), rel=d.facts.relation,
            cond=d.condition)).rowcount
    return kept


def drop_duplicates(conn: psycopg.Connection[Any], store_schema: str, run_id: int, position: int) -> int:
    """A row two actions reach (two foreign keys, a table that references itself, the remediation's own rows) is
    kept once: deleted before overwritten, the nearest level first. Returns the rows of other tables kept."""
    conn.execute(sql.SQL(
        "DELETE FROM {rows} AS k WHERE k.run_id = %(run)s AND k.position = %(position)s AND EXISTS (SELECT 1 FROM "
        "{rows} AS o WHERE o.run_id = k.run_id AND o.position = k.position AND o.table_name = k.table_name AND "
        "o.row_tid = k.row_tid AND (o.action <> 'deleted', o.depth, o.id) < (k.action <> 'deleted', k.depth, k.id))"
    ).format(rows=_rows(store_schema)), {"run": run_id, "position": position})
    row = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE run_id = %s AND position = %s AND depth > 0").format(
        _rows(store_schema)), (run_id, position)).fetchone()
    return int(row[0]) if row else 0


def lock_rows(conn: psycopg.Connection[Any], change: RowChange, order: sql.Composable | None) -> None:
    """Lock the rows a remediation deletes, so no row that references them comes or goes before it runs."""
    alias = sql.Identifier(change.alias)
    conn.execute(sql.SQL("SELECT 1 FROM {} AS {} WHERE {} FOR UPDATE OF {}").format(
        change.relation, alias, change.condition(order), alias))


def _rows(store_schema: str) -> sql.Identifier:
    return sql.Identifier(store_schema, "remediation_rows")


def _measure(conn: psycopg.Connection[Any], relation: sql.Composable, alias: str, condition: sql.Composable,
             copies: int) -> tuple[int, int]:
    """The rows of ``relation`` where ``condition`` holds, and the bytes keeping them takes: the row's text
    (``copies`` times: an overwritten row is kept as it was and as it is left, estimated as the old text) and its
    jsonb."""
    name = sql.Identifier(alias)
    row = conn.execute(sql.SQL(
        "SELECT count(*), coalesce(sum({} * octet_length(({}.*)::text) + pg_column_size(to_jsonb({}.*))), 0) "
        "FROM {} AS {} WHERE {}").format(sql.Literal(copies), name, name, relation, name, condition)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def measure(conn: psycopg.Connection[Any], change: RowChange, order: sql.Composable | None) -> tuple[int, int]:
    """The rows the remediation would delete or change, and the bytes keeping them takes."""
    return _measure(conn, change.relation, change.alias, change.condition(order), 1 if change.sets is None else 2)


def measure_each(conn: psycopg.Connection[Any], found: list[Dependent]) -> list[tuple[int, int]]:
    """``measure`` for each set of rows the foreign keys' actions reach."""
    return [_measure(conn, d.facts.relation, d.alias, d.condition, 2 if d.action == "updated" else 1) for d in found]


def kept_statement(change: RowChange, facts: TableFacts, store_schema: str, run_id: int, position: int, *,
                   value: sql.Composable | None = None, order: sql.Composable | None = None) -> sql.Composable:
    """The remediation as one statement that keeps what it removes: its rowcount is the rows it changed."""
    alias = sql.Identifier(change.alias)
    fixed = sql.SQL("{}, {}, {}").format(sql.Literal(run_id), sql.Literal(position), sql.Literal(facts.label))
    if change.sets is None:
        return sql.SQL(
            "WITH erd_gone AS (DELETE FROM {rel} AS {a} WHERE {where} RETURNING ({a}.*)::text AS erd_text, "
            "to_jsonb({a}.*) AS erd_row, {key} AS erd_key, {a}.tableoid::text || {a}.ctid::text AS erd_tid) "
            "INSERT INTO {rows} (run_id, position, table_name, action, row_key, old_row, old_text, row_tid) "
            "SELECT {fixed}, 'deleted', erd_key, erd_row, erd_text, erd_tid FROM erd_gone").format(
            rel=change.relation, a=alias, where=change.condition(order), key=_key(facts, change.alias),
            rows=_rows(store_schema), fixed=fixed)
    # The old rows are read in a WITH under the same name, then updated by (tableoid, ctid) with the WHERE checked
    # again: a row another session changed meanwhile is left alone (its ctid moved), never kept wrong.
    return sql.SQL(
        "WITH erd_old AS (SELECT {a}.tableoid AS erd_oid, {a}.ctid AS erd_ctid, ({a}.*)::text AS erd_text, "
        "to_jsonb({a}.*) AS erd_row FROM {rel} AS {a} WHERE {where}), "
        "erd_changed AS (UPDATE {rel} AS {a} SET {sets} FROM erd_old WHERE {a}.tableoid = erd_old.erd_oid "
        "AND {a}.ctid = erd_old.erd_ctid AND ({where}) RETURNING erd_old.erd_text, erd_old.erd_row, "
        "({a}.*)::text AS erd_new, {key} AS erd_key, erd_old.erd_oid::text || erd_old.erd_ctid::text AS erd_tid) "
        "INSERT INTO {rows} (run_id, position, table_name, action, row_key, old_row, old_text, new_text, row_tid) "
        "SELECT {fixed}, 'updated', erd_key, erd_row, erd_text, erd_new, erd_tid FROM erd_changed").format(
        rel=change.relation, a=alias, where=change.condition(order), sets=change.assignments(value),
        key=_key(facts, change.alias), rows=_rows(store_schema), fixed=fixed)


@dataclass(frozen=True)
class Kept:
    """What one remediation kept: its table, the rows it deleted or overwrote, the rows of other tables its
    foreign keys' actions reached, and how many have been put back."""

    table: str
    rows: int
    dependents: int
    restored: int


def kept(conn: psycopg.Connection[Any], store_schema: str, run_id: int, position: int) -> Kept | None:
    row = conn.execute(sql.SQL(
        "SELECT min(table_name) FILTER (WHERE depth = 0), count(*) FILTER (WHERE depth = 0), "
        "count(*) FILTER (WHERE depth > 0), count(restored_at) FROM {} WHERE run_id = %s AND position = %s"
    ).format(_rows(store_schema)), (run_id, position)).fetchone()
    if row is None or not (row[1] or row[2]):
        return None
    return Kept(table=row[0] or "", rows=row[1], dependents=row[2], restored=row[3])


def kept_rows(conn: psycopg.Connection[Any], store_schema: str, run_id: int) -> list[tuple[Any, ...]]:
    """Every row the run's remediations kept: position, table, level, action, key, old row, restored at."""
    if conn.execute("SELECT to_regclass(%s) IS NULL", (_rows(store_schema).as_string(conn),)).fetchone()[0]:
        return []  # a store older than version 2 (read-only): nothing was kept
    return conn.execute(sql.SQL(
        "SELECT position, table_name, depth, action, row_key, old_row, restored_at FROM {} WHERE run_id = %s "
        "ORDER BY position, depth, id").format(_rows(store_schema)), (run_id,)).fetchall()


def restore_rows(conn: psycopg.Connection[Any], store_schema: str, run_id: int, position: int) -> tuple[int, str]:
    """Put back, inside the caller's transaction, what the remediation at ``position`` deleted or overwrote (and
    what its foreign keys' actions deleted or overwrote, the remediation's table first, then level by level);
    returns the rows put back and the SQL that ran. Raises ``RestoreRefused`` (the caller rolls back)."""
    found = kept(conn, store_schema, run_id, position)
    if found is None:
        raise RestoreRefused(f"run {run_id} kept no rows for statement {position}: it was not a remediation that "
                             "deletes or overwrites rows, or it ran without keeping them")
    if found.restored:
        raise RestoreRefused(f"statement {position} of run {run_id} was restored already ({found.restored} rows)")
    rows = _rows(store_schema)
    groups = conn.execute(sql.SQL(
        "SELECT depth, table_name, action, count(*) FROM {} WHERE run_id = %s AND position = %s "
        "GROUP BY 1, 2, 3 ORDER BY 1, 3, 2").format(rows), (run_id, position)).fetchall()
    statements: list[sql.Composable] = []
    done = 0
    for depth, label, action, count in groups:
        facts = _facts_of(conn, label)
        where = sql.SQL("k.run_id = {} AND k.position = {} AND k.depth = {} AND k.table_name = {} "
                        "AND k.action = {}").format(sql.Literal(run_id), sql.Literal(position), sql.Literal(depth),
                                                    sql.Literal(label), sql.Literal(action))
        try:
            if action == "updated":
                done += _restore_updated(conn, facts, rows, where, count, statements)
                continue
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in facts.writable)
            picked = sql.SQL(", ").join(sql.SQL("(erd_k.erd_r).{}").format(sql.Identifier(c)) for c in facts.writable)
            insert = sql.SQL(
                "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM (SELECT k.old_text::{} AS erd_r FROM {} "
                "AS k WHERE {} ORDER BY k.id) AS erd_k").format(facts.relation, cols, picked, facts.relation, rows,
                                                                 where)
            statements.append(insert)
            done += conn.execute(insert).rowcount
        except psycopg.errors.InvalidTextRepresentation as exc:
            raise RestoreRefused(f"the columns of {facts.label} changed since the remediation, so its rows no longer "
                                 f"fit the table: {exc.diag.message_primary}. Nothing was restored.") from exc
        except psycopg.errors.IntegrityError as exc:
            detail = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
            raise RestoreRefused(f"a constraint now forbids the rows of {facts.label}: {exc.diag.message_primary}"
                                 f"{detail}. Nothing was restored.") from exc
    conn.execute(sql.SQL("UPDATE {} AS k SET restored_at = now() WHERE k.run_id = %s AND k.position = %s").format(
        rows), (run_id, position))
    return done, ";\n".join(s.as_string(conn) for s in statements)


def _restore_updated(conn: psycopg.Connection[Any], facts: TableFacts, rows: sql.Composable, where: sql.Composable,
                     expected: int, statements: list[sql.Composable]) -> int:
    """Each overwritten row, found as the remediation left it (its exact text; equal rows paired one to one), set
    back to what it was. A row changed or gone since refuses the whole restore."""
    alias = sql.Identifier("erd_cur")
    narrow = sql.SQL("")
    if facts.primary_key:  # read the rows by their key, not the whole table
        keys = sql.SQL(", ").join(sql.SQL("{}.{}").format(alias, sql.Identifier(c)) for c in facts.primary_key)
        wanted = sql.SQL(", ").join(sql.SQL("(w.new_text::{}).{}").format(facts.relation, sql.Identifier(c))
                                    for c in facts.primary_key)
        narrow = sql.SQL(" AND ({}) IN (SELECT {} FROM erd_want AS w)").format(keys, wanted)
    sets = sql.SQL(", ").join(sql.Identifier(c) for c in facts.updatable)
    values = sql.SQL(", ").join(sql.SQL("(erd_p.erd_r).{}").format(sql.Identifier(c)) for c in facts.updatable)
    statement = sql.SQL(
        "WITH erd_want AS (SELECT k.old_text, k.new_text, row_number() OVER (PARTITION BY k.new_text ORDER BY k.id) "
        "AS n FROM {rows} AS k WHERE {where} AND k.action = 'updated'), "
        "erd_have AS (SELECT {a}.tableoid AS erd_oid, {a}.ctid AS erd_ctid, ({a}.*)::text AS erd_t, row_number() "
        "OVER (PARTITION BY ({a}.*)::text ORDER BY {a}.tableoid, {a}.ctid) AS n FROM {rel} AS {a} "
        "WHERE ({a}.*)::text IN (SELECT new_text FROM erd_want){narrow}), "
        "erd_p AS (SELECT w.old_text::{rel} AS erd_r, h.erd_oid, h.erd_ctid FROM erd_want AS w "
        "JOIN erd_have AS h ON h.erd_t = w.new_text AND h.n = w.n) "
        "UPDATE {rel} AS {a} SET ({sets}) = ROW({values}) FROM erd_p "
        "WHERE {a}.tableoid = erd_p.erd_oid AND {a}.ctid = erd_p.erd_ctid").format(
        rows=rows, where=where, a=alias, rel=facts.relation, narrow=narrow, sets=sets, values=values)
    statements.append(statement)
    done = conn.execute(statement).rowcount
    if done != expected:
        raise RestoreRefused(f"{expected - done} of the {expected} rows the remediation overwrote in {facts.label} have "
                             "changed since (or are gone), so putting back their old values would overwrite someone "
                             "else's change. Nothing was restored; the kept rows are in remediation_rows.")
    return done
