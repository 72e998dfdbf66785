"""What the rehearsal reads back from the shadow after each step: the catalog as PostgreSQL left it.

Relations are known by OID, so a rename is followed; columns by attnum, so a renamed column is the same column.
The checks of later steps are derived from these snapshots instead of a model of each statement (see
``checks.PlanContext``): a table renamed, a column added inside a DO block, an index dropped and built again
under its old name are seen as PostgreSQL sees them. Plain data; the one query is ``read_snapshot``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .catalog import IndexInfo

# One row per relation outside the system schemas, with its columns, constraints and indexes as JSON. Names come
# back as they are (no quoting).
_SNAPSHOT = """
SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relispopulated,
  (SELECT coalesce(json_agg(json_build_array(a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
                                             a.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_constraint nv WHERE nv.conrelid = a.attrelid AND nv.contype = 'n'
                                               AND NOT nv.convalidated AND a.attnum = ANY(nv.conkey)),
                                             pg_get_expr(d.adbin, d.adrelid), a.attgenerated::text,
                                             a.attidentity::text)
                            ORDER BY a.attnum), '[]')
     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT coalesce(json_agg(json_build_array(k.conname, k.contype::text, k.convalidated) ORDER BY k.conname), '[]')
     FROM pg_constraint k WHERE k.conrelid = c.oid),
  (SELECT coalesce(json_agg(json_build_array(
             ic.relname, i.indisunique, i.indisvalid, i.indpred IS NOT NULL, i.indexprs IS NOT NULL,
             ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
             i.indnullsnotdistinct)
           ORDER BY ic.relname), '[]')
     FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid),
  CASE WHEN c.relispartition THEN pg_get_partition_constraintdef(c.oid) END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {where}
"""

_RELATIONS = """c.relkind IN ('r', 'p', 'm', 'v', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
   AND n.nspname NOT LIKE 'pg\\_temp%%'"""

# What changes when a statement changes a relation's entry: a row of it written again (a new xmin), or one
# added or removed (the count). Cheap next to reading every relation whole: after a statement, only the
# relations whose digest moved are read again. (Objects a user makes have OIDs from 16384 on.)
_DIGESTS = """
WITH a AS (SELECT attrelid AS rel, count(*) AS n, max(xmin::text::int8) AS x FROM pg_attribute WHERE attrelid >= 16384 GROUP BY 1),
     k AS (SELECT conrelid AS rel, count(*) AS n, max(xmin::text::int8) AS x FROM pg_constraint WHERE conrelid >= 16384 GROUP BY 1),
     i AS (SELECT i.indrelid AS rel, count(*) AS n, max(greatest(i.xmin::text::int8, ic.xmin::text::int8)) AS x
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid >= 16384 GROUP BY 1),
     d AS (SELECT adrelid AS rel, count(*) AS n, max(xmin::text::int8) AS x FROM pg_attrdef WHERE adrelid >= 16384 GROUP BY 1)
SELECT c.oid::int8, concat_ws('/', c.xmin, n.xmin, a.n, a.x, k.n, k.x, i.n, i.x, d.n, d.x), current_schemas(false)::text[]
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN a ON a.rel = c.oid LEFT JOIN k ON k.rel = c.oid LEFT JOIN i ON i.rel = c.oid LEFT JOIN d ON d.rel = c.oid
 WHERE {where}
"""

# Within one transaction, cheaper than the digests: the relations with a catalog row this transaction wrote (its
# xmin is this transaction's or one of its subtransactions', so age() is not above 0), valid as long as no catalog
# row was deleted meanwhile (a deletion leaves no row to find: then the digests decide).
_CATALOGS_DELETING = ["pg_class", "pg_attribute", "pg_constraint", "pg_index", "pg_attrdef", "pg_namespace"]
_WRITTEN = """
SELECT (SELECT coalesce(sum(pg_stat_get_xact_tuples_deleted(t)), 0) FROM unnest(%s::regclass[]) AS t)::int8,
  ARRAY(SELECT DISTINCT r FROM (
          SELECT oid AS r FROM pg_class WHERE age(xmin) <= 0
          UNION ALL SELECT oid FROM pg_class WHERE relnamespace IN (SELECT oid FROM pg_namespace WHERE age(xmin) <= 0)
          UNION ALL SELECT i.indrelid FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                     WHERE age(i.xmin) <= 0 OR age(ic.xmin) <= 0
          UNION ALL SELECT attrelid FROM pg_attribute WHERE age(xmin) <= 0
          UNION ALL SELECT conrelid FROM pg_constraint WHERE age(xmin) <= 0
          UNION ALL SELECT adrelid FROM pg_attrdef WHERE age(xmin) <= 0) AS t
         WHERE r >= 16384)::int8[],
  current_schemas(false)::text[]
"""


@dataclass(frozen=True)
class ColumnSnapshot:
    attnum: int
    name: str
    type: str  # format_type: valid SQL for a cast
    not_null: bool
    default: str | None  # the DEFAULT, or the generation expression when ``generated``
    generated: str  # '' plain, 's' stored, 'v' virtual
    identity: str  # '' none, 'a' ALWAYS, 'd' BY DEFAULT


@dataclass(frozen=True)
class RelationSnapshot:
    oid: int
    schema: str
    name: str
    kind: str  # r table, p partitioned, m materialized view, v view, f foreign table
    populated: bool
    columns: tuple[ColumnSnapshot, ...]
    constraints: tuple[tuple[str, str, bool], ...]  # name, contype, validated
    indexes: tuple[IndexInfo, ...]
    partition_constraint: str | None = None  # a partition's: what each of its rows satisfies (PostgreSQL's text)

    def column(self, attnum: int) -> ColumnSnapshot | None:
        return next((c for c in self.columns if c.attnum == attnum), None)

    @property
    def not_null(self) -> set[str]:
        return {c.name for c in self.columns if c.not_null}

    @property
    def unique_keys(self) -> list[frozenset[str]]:
        """Column sets a foreign key may reference: valid, non-partial, plain-column unique indexes."""
        return [frozenset(ix.columns) for ix in self.indexes
                if ix.unique and ix.valid and not ix.partial and not ix.expressions]

    @property
    def has_primary_key(self) -> bool:
        return any(kind == "p" for _, kind, _ in self.constraints)

    @property
    def constraint_names(self) -> set[str]:
        return {name for name, _, _ in self.constraints}


@dataclass(frozen=True)
class CatalogSnapshot:
    """The shadow's relations at one moment, and the schemas an unqualified name is looked up in."""

    relations: dict[int, RelationSnapshot]
    search_path: tuple[str, ...]
    digests: dict[int, str] = field(default_factory=dict, repr=False, compare=False)
    # catalog rows deleted so far by the transaction that read this snapshot (see read_snapshot's ``deleted``)
    deleted: int = field(default=0, repr=False, compare=False)
    _by_name: dict[tuple[str, str], int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({(r.schema, r.name): oid for oid, r in self.relations.items()})

    def resolve(self, schema: str | None, name: str) -> RelationSnapshot | None:
        """The relation ``schema.name`` (or ``name`` on the search_path), as PostgreSQL would find it."""
        for candidate in (schema,) if schema else self.search_path:
            oid = self._by_name.get((candidate, name))
            if oid is not None:
                return self.relations[oid]
        return None


def read_snapshot(conn: psycopg.Connection[Any], previous: CatalogSnapshot | None = None, *,
                  deleted: int | None = None) -> CatalogSnapshot:
    """The catalog of the database ``conn`` is in, as the current transaction sees it. With ``previous``, only
    the relations whose entry changed since are read again. Expressions (a DEFAULT) are as PostgreSQL shows them
    under the session's search_path, the one the checks run with.

    ``deleted``: the catalog rows the current transaction had deleted when ``previous`` was true of it (0 when
    ``previous`` is the catalog as committed before the transaction began). While that count has not moved, the
    relations to read again are the ones with a catalog row this transaction wrote, which is cheaper to find
    than comparing every relation's digest."""
    if previous is not None and deleted is not None:
        now_deleted, written, search_path = conn.execute(_WRITTEN, (_CATALOGS_DELETING,), prepare=True).fetchone()  # type: ignore[misc]
        if now_deleted == deleted:
            stale = set(written)
            relations = {oid: r for oid, r in previous.relations.items() if oid not in stale}
            fresh = _read_relations(conn, sorted(stale))
            relations.update(fresh)
            for oid in stale - set(fresh):
                relations.pop(oid, None)  # not a relation the snapshot holds (an index, a sequence), or gone
            # The relations read again lose their digest (a deletion can bring a digest back to an old value), so
            # a later comparison of digests reads them again too.
            digests = {oid: d for oid, d in previous.digests.items() if oid not in stale}
            return CatalogSnapshot(relations=relations, search_path=tuple(search_path), digests=digests,
                                   deleted=now_deleted)
    where = sql.SQL(_RELATIONS)
    rows = conn.execute(sql.SQL(_DIGESTS).format(where=where), prepare=True).fetchall()
    search_path = tuple(rows[0][2]) if rows else _search_path(conn)
    digests = {oid: digest for oid, digest, _ in rows}
    relations: dict[int, RelationSnapshot] = {}
    stale_oids: list[int] = list(digests)
    if previous is not None:
        relations = {oid: r for oid, r in previous.relations.items()
                     if oid in digests and previous.digests.get(oid) == digests[oid]}
        stale_oids = [oid for oid in digests if oid not in relations]
    relations.update(_read_relations(conn, stale_oids))
    now = _deleted(conn) if deleted is not None else 0
    return CatalogSnapshot(relations=relations, search_path=search_path, digests=digests, deleted=now)


def _deleted(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(sum(pg_stat_get_xact_tuples_deleted(t)), 0)::int8 FROM unnest(%s::regclass[]) "
                       "AS t", (_CATALOGS_DELETING,)).fetchone()
    return int(row[0]) if row else 0


def _read_relations(conn: psycopg.Connection[Any], oids: list[int]) -> dict[int, RelationSnapshot]:
    if not oids:
        return {}
    query = sql.SQL(_SNAPSHOT).format(where=sql.SQL("{} AND c.oid = ANY(%s)").format(sql.SQL(_RELATIONS)))
    out: dict[int, RelationSnapshot] = {}
    for oid, schema, name, kind, populated, columns, constraints, indexes, bound in conn.execute(query, (oids,),
                                                                                               prepare=True):
        out[oid] = RelationSnapshot(
            partition_constraint=bound,
            oid=oid, schema=schema, name=name, kind=kind, populated=populated,
            columns=tuple(ColumnSnapshot(*c) for c in _json(columns)),
            constraints=tuple((k[0], k[1], k[2]) for k in _json(constraints)),
            indexes=tuple(IndexInfo(ix[0], ix[1], ix[2], ix[3], ix[4], tuple(ix[5]), ix[6]) for ix in _json(indexes)),
        )
    return out


def _search_path(conn: psycopg.Connection[Any]) -> tuple[str, ...]:
    row = conn.execute("SELECT current_schemas(false)::text[]").fetchone()
    return tuple(row[0]) if row else ()


def _json(value: Any) -> list[Any]:
    return json.loads(value) if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class RehearsalFailure:
    """The first statement PostgreSQL refused in the rehearsal, with its own error."""

    step: int
    statement: str
    sqlstate: str
    message: str
    detail: str | None
    hint: str | None
    needs_version: int | None = None  # the major version that accepts the statement, when the target's is older

    def describe(self) -> str:
        text = f"{self.message} (SQLSTATE {self.sqlstate})"
        if self.detail:
            text += f"; {self.detail.rstrip('.')}"
        if self.hint:
            text += f". Hint: {self.hint.rstrip('.')}"
        return text


@dataclass
class Rehearsal:
    """The rehearsal's outcome: PostgreSQL's catalog before the plan and after each step it ran, the first
    statement it refused, or why it stopped before the end without a verdict (``stopped``)."""

    start: CatalogSnapshot
    before: dict[int, CatalogSnapshot] = field(default_factory=dict)  # by step, as its first statement finds it
    after: dict[int, CatalogSnapshot] = field(default_factory=dict)  # by step, after its last statement
    failure: RehearsalFailure | None = None
    stopped: str | None = None
    unjudged: dict[int, str] = field(default_factory=dict)  # data steps the real rows decide, skipped here
    # steps PostgreSQL skipped whole (IF NOT EXISTS of what exists, IF EXISTS of what does not), with its notice
    skipped: dict[int, str] = field(default_factory=dict)
    adapted: tuple[Any, ...] = ()  # what the shadow holds in another form than the target (shadow.Adaptation)

    def passed(self, step: int) -> bool:
        """Whether PostgreSQL ran every statement of ``step`` without an error."""
        return step in self.after
