"""What the database says about the tables a plan touches, read from the catalogs (no table scans)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

# A fingerprint of the target's catalog, cheap to take on every preflight: per catalog, how many rows describe user
# objects and the sum of their xmin. Any change to a row writes a new version with a newer xmin, an insert or a
# delete moves the count, and a delete with an insert still moves the sum (the new xmin is newer than any old one).
# What VACUUM and ANALYZE write in place (reltuples, relpages) moves nothing here: sizes are read fresh each time.
CATALOG_FINGERPRINT = """
SELECT concat_ws('/', current_setting('server_version_num'),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_namespace),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_class WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_attribute WHERE attrelid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_attrdef WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_constraint WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_index WHERE indexrelid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_type WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_proc WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_trigger WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_extension),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_rewrite WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_enum),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_sequence),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_inherits),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_operator WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_collation WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_cast WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_opclass WHERE oid >= 16384),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_policy),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_foreign_table),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_event_trigger),
  (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_statistic_ext))
"""

# The catalog key (where, fingerprint, role, search_path) with the fingerprint alone, in one round trip. The
# search_path is in the key because pg_get_constraintdef names other schemas' tables relative to it.
_KEY = sql.SQL("SELECT ({}), current_user::text, current_setting('search_path')").format(
    sql.SQL(CATALOG_FINGERPRINT.strip()))

# What a table is made of (columns, constraints, indexes), per catalog key and table oid, in this process: a
# catalog that has not changed since is not read again. Sizes and row estimates are never cached.
_STRUCTURE: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()
_STRUCTURE_LOCK = threading.Lock()
_STRUCTURE_MAX = 1024

# Row-count estimates come from pg_class; for a table never analyzed (reltuples = -1) the rows are
# estimated from its size and the average width of its columns, as the planner does.
_TABLE = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::float8,
       pg_relation_size(c.oid) AS heap_bytes, pg_total_relation_size(c.oid) AS total_bytes,
       (SELECT 24 + coalesce(sum(CASE WHEN t.typlen > 0 THEN t.typlen ELSE 32 END), 0)
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS row_width,
       EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid) AS has_children
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = to_regclass(%s)
"""

_COLUMNS = """
-- PostgreSQL 18: a NOT NULL constraint added NOT VALID sets attnotnull, but promises nothing of the rows there
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       a.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_constraint nv WHERE nv.conrelid = a.attrelid AND nv.contype = 'n'
                     AND NOT nv.convalidated AND a.attnum = ANY(nv.conkey)), a.atttypid,
       CASE WHEN a.attgenerated = 's' THEN pg_get_expr(d.adbin, d.adrelid) END
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""

_CONSTRAINTS = """
SELECT con.conname, con.contype::text, con.convalidated, pg_get_constraintdef(con.oid),
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i) AS columns,
       fn.nspname AS ref_schema, fc.relname AS ref_table,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) AS ref_columns,
       con.confmatchtype::text,
       CASE WHEN con.contype = 'c' THEN pg_get_expr(con.conbin, con.conrelid) END AS check_expr
  FROM pg_constraint con
  LEFT JOIN pg_class fc ON fc.oid = con.confrelid
  LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
 WHERE con.conrelid = %s
 ORDER BY con.conname
"""

_INDEXES = """
SELECT ic.relname, i.indisunique, i.indisvalid, i.indpred IS NOT NULL AS partial,
       i.indexprs IS NOT NULL AS expressions,
       ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o) AS columns,
       {nulls_not_distinct} AS nulls_not_distinct, i.indimmediate
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = %s
 ORDER BY ic.relname
"""


# What an UPDATE or DELETE of a table sets off besides itself: user triggers and rules, enabled.
_ACTIONS = """
SELECT 'trigger ' || quote_ident(tgname) FROM pg_trigger WHERE tgrelid = %(oid)s AND NOT tgisinternal AND tgenabled <> 'D'
UNION ALL
SELECT 'rule ' || quote_ident(rulename) FROM pg_rewrite WHERE ev_class = %(oid)s AND rulename <> '_RETURN'
ORDER BY 1
"""

# The foreign keys of other tables (or of the table itself) that reference a table.
_REFERENCING = """
SELECT n.nspname, c.relname, con.conname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i),
       con.confmatchtype::text, con.confupdtype::text, con.confdeltype::text, {set_columns}, con.conparentid <> 0
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE con.contype = 'f' AND con.confrelid = %s
 ORDER BY 1, 2, 3
"""
_SET_COLUMNS = """ARRAY(SELECT a.attname FROM unnest(con.confdelsetcols) k(n)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n)"""


@dataclass(frozen=True)
class DomainInfo:
    known: bool  # the type is in the database (else one the plan makes: assume the worst)
    base: str  # what values are assigned to first, e.g. varchar(2)
    constrained: bool  # a NOT NULL or CHECK may refuse values


_SEQUENCE = """
SELECT s.seqmax, s.seqmin, s.seqincrement, s.seqcycle, s.seqstart,
       CASE WHEN has_sequence_privilege(s.seqrelid, 'SELECT,USAGE') THEN pg_sequence_last_value(s.seqrelid) END,
       has_sequence_privilege(s.seqrelid, 'SELECT,USAGE'), s.seqrelid::regclass::text
  FROM pg_sequence s WHERE s.seqrelid = to_regclass(%s)
"""

_DOMAIN = """
WITH RECURSIVE chain AS (
  SELECT t.oid, t.typtype, t.typbasetype, t.typtypmod, t.typnotnull, 0 AS depth
    FROM pg_type t WHERE t.oid = to_regtype(%s)
  UNION ALL
  SELECT b.oid, b.typtype, b.typbasetype, b.typtypmod, b.typnotnull, c.depth + 1
    FROM chain c JOIN pg_type b ON b.oid = c.typbasetype WHERE c.typtype = 'd')
SELECT (SELECT typtype::text FROM chain WHERE depth = 0),
       coalesce((SELECT format_type(typbasetype, typtypmod) FROM chain WHERE typtype = 'd' AND typtypmod >= 0
                  ORDER BY depth LIMIT 1),
                (SELECT format_type(oid, NULL) FROM chain ORDER BY depth DESC LIMIT 1)),
       (SELECT bool_or(typnotnull) FROM chain)
         OR EXISTS (SELECT 1 FROM pg_constraint k JOIN chain c ON k.contypid = c.oid)
"""


@dataclass(frozen=True)
class ReferencingKey:
    """A foreign key of ``schema.table`` that references the table asked about, with its actions
    (a NO ACTION, r RESTRICT, c CASCADE, n SET NULL, d SET DEFAULT)."""

    schema: str
    table: str
    name: str
    columns: tuple[str, ...]
    ref_columns: tuple[str, ...]
    match_full: bool
    on_update: str
    on_delete: str
    set_columns: tuple[str, ...] = ()  # ON DELETE SET NULL / SET DEFAULT (columns), PostgreSQL 15+: only those
    inherited: bool = False  # a partition's copy of a foreign key its partitioned table has


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    not_null: bool
    type_oid: int
    generated: str | None = None  # the expression of a STORED generated column


@dataclass(frozen=True)
class ConstraintInfo:
    name: str
    type: str  # c check, f foreign key, u unique, p primary key, n not null (PG 18), x exclusion
    validated: bool
    definition: str
    columns: tuple[str, ...]
    ref_schema: str | None
    ref_table: str | None
    ref_columns: tuple[str, ...]
    match_full: bool
    check_expression: str | None
    on_update: str = "a"  # a foreign key's actions, where known (a NO ACTION, r, c, n, d as ReferencingKey's)
    on_delete: str = "a"


@dataclass(frozen=True)
class IndexInfo:
    name: str
    unique: bool
    valid: bool
    partial: bool
    expressions: bool
    columns: tuple[str, ...]
    nulls_not_distinct: bool
    definition: str | None = None  # pg_get_indexdef, where read (the rehearsal's catalog reads it)
    immediate: bool = True  # checked row by row as a statement goes (False: a DEFERRABLE constraint's index)


@dataclass(frozen=True)
class IndexRef:
    """An index found by its name: where it lives, its table, and whether PostgreSQL may use it."""

    schema: str
    name: str
    table_schema: str
    table: str
    valid: bool
    unique: bool
    definition: str


@dataclass(frozen=True)
class TableInfo:
    oid: int
    schema: str
    name: str
    kind: str
    estimated_rows: int
    rows_estimated_from_size: bool
    heap_bytes: int
    total_bytes: int
    columns: dict[str, ColumnInfo]
    constraints: dict[str, ConstraintInfo]
    indexes: dict[str, IndexInfo]
    # a table other tables inherit from (not partitions): its UNIQUE and foreign keys cover its own rows only,
    # while a scan of it reads theirs too
    inherited_by: bool = False
    # a relation the plan makes from a query (CREATE TABLE AS): its rows are that query's, read from the database
    rows_from: str | None = None

    @property
    def relation(self) -> sql.Composable:
        return sql.SQL(self.rows_from) if self.rows_from else sql.Identifier(self.schema, self.name)

    def unique_keys(self) -> list[frozenset[str]]:
        """Column sets a foreign key may reference: valid, non-partial, plain-column unique indexes."""
        return [
            frozenset(ix.columns)
            for ix in self.indexes.values()
            if ix.unique and ix.valid and not ix.partial and not ix.expressions
        ]


@dataclass
class Catalog:
    """A lazily filled snapshot of the tables a plan touches. Reads catalogs only, never table data."""

    conn: psycopg.Connection[Any]
    _tables: dict[tuple[str | None, str], TableInfo | None] = field(default_factory=dict)
    _key: tuple[str, str, str, str] | None = None

    @property
    def fingerprint(self) -> str:
        """The catalog's fingerprint (``CATALOG_FINGERPRINT``), read once per Catalog."""
        return self.key[1]

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Where, the catalog's fingerprint, the role and the search_path: what the structure read depends on."""
        if self._key is None:
            row = self.conn.execute(_KEY).fetchone()
            assert row is not None
            info = self.conn.info
            self._key = (f"{info.host}:{info.port}/{info.dbname}", str(row[0]), str(row[1]), str(row[2]))
        return self._key

    @property
    def server_version(self) -> int:
        return self.conn.info.server_version

    def table(self, schema: str | None, name: str) -> TableInfo | None:
        key = (schema, name)
        if key not in self._tables:
            self._tables[key] = self._load(schema, name)
        return self._tables[key]

    def largest_rows(self) -> int:
        """The largest row estimate of the tables read so far (0 when none), or of their size at 32 bytes a row
        when that is more (an estimate from an ANALYZE long ago)."""
        return max((max(t.estimated_rows, t.heap_bytes // 32) for t in self._tables.values() if t is not None),
                   default=0)

    def _load(self, schema: str | None, name: str) -> TableInfo | None:
        regclass = sql.Identifier(*[p for p in (schema, name) if p is not None]).as_string(self.conn)
        row = self.conn.execute(_TABLE, (regclass,)).fetchone()
        if row is None or row[3] not in ("r", "p", "m"):  # a materialized view's rows are read like a table's
            return None
        oid, nspname, relname, relkind, reltuples, heap_bytes, total_bytes, row_width, has_children = row
        from_size = reltuples < 0
        estimated = int(heap_bytes / max(int(row_width), 1)) if from_size else int(reltuples)
        columns, constraints, indexes = self._structure(oid)
        return TableInfo(
            oid=oid,
            schema=nspname,
            name=relname,
            kind=relkind,
            estimated_rows=max(estimated, 0),
            rows_estimated_from_size=from_size,
            heap_bytes=heap_bytes,
            total_bytes=total_bytes,
            columns=columns,
            constraints=constraints,
            indexes=indexes,
            inherited_by=bool(has_children) and relkind == "r",
        )

    def _structure(self, oid: int) -> tuple[dict[str, ColumnInfo], dict[str, ConstraintInfo], dict[str, IndexInfo]]:
        """A table's columns, constraints and indexes: from the process's cache while the catalog's fingerprint
        holds, else read (and kept). Each caller gets dicts of its own."""
        key = (*self.key, oid)
        with _STRUCTURE_LOCK:
            cached = _STRUCTURE.get(key)
            if cached is not None:
                _STRUCTURE.move_to_end(key)
        if cached is None:
            columns = {
                r[0]: ColumnInfo(name=r[0], type=r[1], not_null=r[2], type_oid=r[3], generated=r[4])
                for r in self.conn.execute(_COLUMNS, (oid,))
            }
            constraints = {
                r[0]: ConstraintInfo(
                    name=r[0],
                    type=r[1],
                    validated=r[2],
                    definition=r[3],
                    columns=tuple(r[4]),
                    ref_schema=r[5],
                    ref_table=r[6],
                    ref_columns=tuple(r[7]),
                    match_full=r[8] == "f",
                    check_expression=r[9],
                )
                for r in self.conn.execute(_CONSTRAINTS, (oid,))
            }
            nnd = "i.indnullsnotdistinct" if self.server_version >= 150000 else "false"
            indexes = {
                r[0]: IndexInfo(
                    name=r[0],
                    unique=r[1],
                    valid=r[2],
                    partial=r[3],
                    expressions=r[4],
                    columns=tuple(r[5]),
                    nulls_not_distinct=r[6],
                    immediate=r[7],
                )
                for r in self.conn.execute(sql.SQL(_INDEXES).format(nulls_not_distinct=sql.SQL(nnd)), (oid,))
            }
            cached = (tuple(columns.items()), tuple(constraints.items()), tuple(indexes.items()))
            with _STRUCTURE_LOCK:
                _STRUCTURE[key] = cached
                while len(_STRUCTURE) > _STRUCTURE_MAX:
                    _STRUCTURE.popitem(last=False)
        return dict(cached[0]), dict(cached[1]), dict(cached[2])

    def actions(self, oid: int) -> list[str]:
        """The enabled user triggers and rules of a table: what a data statement on it sets off."""
        return [r[0] for r in self.conn.execute(_ACTIONS, {"oid": oid})]

    def referencing(self, oid: int) -> list[ReferencingKey]:
        """The foreign keys that reference a table."""
        set_columns = _SET_COLUMNS if self.server_version >= 150000 else "ARRAY[]::name[]"
        return [ReferencingKey(schema=r[0], table=r[1], name=r[2], columns=tuple(r[3]), ref_columns=tuple(r[4]),
                               match_full=r[5] == "f", on_update=r[6], on_delete=r[7], set_columns=tuple(r[8]),
                               inherited=r[9])
                for r in self.conn.execute(sql.SQL(_REFERENCING).format(set_columns=sql.SQL(set_columns)), (oid,))]

    def relation_exists(self, schema: str, name: str) -> bool:
        regclass = sql.Identifier(schema, name).as_string(self.conn)
        return self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (regclass,)).fetchone()[0]  # type: ignore[index]

    def assignment_cast_exists(self, source_type_oid: int, target_type: str) -> bool:
        """Whether PostgreSQL converts ``source`` to ``target`` without USING (an assignment or implicit cast,
        a binary-coercible pair, or an I/O conversion to a string type)."""
        row = self.conn.execute(
            """
            WITH pair AS (  -- the types, or for two array types their element types (array coercion)
              SELECT CASE WHEN s.typelem <> 0 AND t.typelem <> 0 AND s.typlen = -1 AND t.typlen = -1
                          THEN s.typelem ELSE s.oid END AS src,
                     CASE WHEN s.typelem <> 0 AND t.typelem <> 0 AND s.typlen = -1 AND t.typlen = -1
                          THEN t.typelem ELSE t.oid END AS dst
                FROM pg_type s, pg_type t WHERE s.oid = %(src)s AND t.oid = %(target)s::regtype)
            SELECT t.oid = p.src
                OR t.typcategory = 'S'
                OR EXISTS (SELECT 1 FROM pg_cast c WHERE c.castsource = p.src AND c.casttarget = t.oid
                           AND c.castcontext IN ('a', 'i'))
                OR EXISTS (SELECT 1 FROM pg_type s WHERE s.oid = p.src AND s.typbasetype = t.oid)
              FROM pair p JOIN pg_type t ON t.oid = p.dst
            """,
            {"src": source_type_oid, "target": target_type},
        ).fetchone()
        return bool(row and row[0])

    def sequence_capacity(self, name: str) -> tuple[float, str] | None:
        """How many numbers the sequence ``name`` (as nextval reads it) can still give (inf when it cycles), and
        how to name it; None when there is no such sequence or this role may not read its position."""
        row = self.conn.execute(_SEQUENCE, (name,)).fetchone()
        if row is None or not row[6]:
            return None
        high, low, step, cycle, start, last, shown = row[0], row[1], row[2], row[3], row[4], row[5], row[7]
        if cycle:
            return math.inf, f"sequence {shown}"
        following = start if last is None else last + step
        if step > 0:
            left = 0 if following > high else (high - following) // step + 1
        else:
            left = 0 if following < low else (following - low) // -step + 1
        return float(left), f"sequence {shown}"

    def default_partition(self, oid: int) -> tuple[str, str] | None:
        """(schema, name) of the DEFAULT partition of the partitioned table ``oid``, if it has one."""
        row = self.conn.execute(
            "SELECT n.nspname, c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partdefid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.partrelid = %s", (oid,)).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def sequence_next(self, table_oid: int, column: str, name: str | None) -> tuple[int, int] | None:
        """The next number a column's sequence gives (``name``, as its DEFAULT's nextval reads it; else the identity
        or serial sequence of the column) and its increment; None when not known (no such sequence, or this role
        may not read its position)."""
        row = self.conn.execute(
            """
            SELECT s.seqincrement, s.seqstart, pg_sequence_last_value(s.seqrelid)
              FROM pg_sequence s
             WHERE s.seqrelid = coalesce(to_regclass(%s), pg_get_serial_sequence(%s::regclass::text, %s)::regclass)
               AND has_sequence_privilege(s.seqrelid, 'SELECT,USAGE')
            """, (name, table_oid, column)).fetchone()
        if row is None:
            return None
        step, start, last = int(row[0]), int(row[1]), row[2]
        return (start if last is None else int(last) + step), step

    def names_known(self, types: Iterable[str], functions: Iterable[str]) -> bool:
        """Whether every type (as format_type shows it) and a function of every name exist in this database."""
        row = self.conn.execute(
            "SELECT (SELECT coalesce(bool_and(to_regtype(t) IS NOT NULL), true) FROM unnest(%s::text[]) AS t) "
            "AND (SELECT coalesce(bool_and(EXISTS (SELECT 1 FROM pg_proc p WHERE p.proname = f)), true) "
            "FROM unnest(%s::text[]) AS f)", (sorted(set(types)), sorted(set(functions)))).fetchone()
        return bool(row and row[0])

    def domain_of(self, type_text: str) -> DomainInfo | None:
        """What a type is when it is a domain: the type and length its values are assigned to (the first length
        limit down the chain of domains, else the base type), and whether a NOT NULL or CHECK of any domain in
        the chain refuses values. None when ``type_text`` is no domain; ``DomainInfo(known=False)`` when there is
        no such type in the database (one the plan makes)."""
        row = self.conn.execute(_DOMAIN, (type_text,)).fetchone()
        if row is None or row[0] is None:
            return DomainInfo(known=False, base=type_text, constrained=True)
        if row[0] != "d":
            return None
        return DomainInfo(known=True, base=row[1], constrained=bool(row[2]))

    def index_by_name(self, schema: str, name: str) -> IndexRef | None:
        """The index called ``schema.name``, on whichever table, or None when there is no such index."""
        regclass = sql.Identifier(schema, name).as_string(self.conn)
        row = self.conn.execute(
            """
            SELECT tn.nspname, t.relname, i.indisvalid, i.indisunique, pg_get_indexdef(i.indexrelid)
              FROM pg_index i
              JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
             WHERE i.indexrelid = to_regclass(%s)
            """,
            (regclass,),
        ).fetchone()
        if row is None:
            return None
        return IndexRef(schema=schema, name=name, table_schema=row[0], table=row[1], valid=row[2], unique=row[3],
                        definition=row[4])
