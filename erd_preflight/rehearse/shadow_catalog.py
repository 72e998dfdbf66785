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

from ..catalog import ConstraintInfo, IndexInfo

# One row per relation outside the system schemas, with its columns, constraints and indexes as JSON. Names come
# back as they are (no quoting).
_SNAPSHOT = """
SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relispopulated,
  (SELECT coalesce(json_agg(json_build_array(a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
                                             a.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_constraint nv WHERE nv.conrelid = a.attrelid AND nv.contype = 'n'
                                               AND NOT nv.convalidated AND a.attnum = ANY(nv.conkey)),
                                             pg_get_expr(d.adbin, d.adrelid), a.attgenerated::text,
                                             a.attidentity::text,
                                             (SELECT json_build_array(sq.seqrelid::regclass::text, sq.seqstart,
                                                                      sq.seqincrement)
                                                FROM pg_depend dp JOIN pg_sequence sq ON sq.seqrelid = dp.objid
                                               WHERE dp.classid = 'pg_class'::regclass
                                                 AND dp.refclassid = 'pg_class'::regclass
                                                 AND dp.refobjid = a.attrelid AND dp.refobjsubid = a.attnum
                                                 AND dp.deptype IN ('a', 'i') LIMIT 1))
                            ORDER BY a.attnum), '[]')
     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT coalesce(json_agg(json_build_array(
             k.conname, k.contype::text, k.convalidated, pg_get_constraintdef(k.oid),
             ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY x(n, i)
                     JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.n ORDER BY x.i),
             fn.nspname, fc.relname,
             ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY x(n, i)
                     JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.n ORDER BY x.i),
             k.confmatchtype::text, CASE WHEN k.contype = 'c' THEN pg_get_expr(k.conbin, k.conrelid) END,
             k.confupdtype::text, k.confdeltype::text)
           ORDER BY k.conname), '[]')
     FROM pg_constraint k LEFT JOIN pg_class fc ON fc.oid = k.confrelid
     LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace WHERE k.conrelid = c.oid),
  (SELECT coalesce(json_agg(json_build_array(
             ic.relname, i.indisunique, i.indisvalid, i.indpred IS NOT NULL, i.indexprs IS NOT NULL,
             ARRAY(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
             i.indnullsnotdistinct, pg_get_indexdef(i.indexrelid), i.indimmediate)
           ORDER BY ic.relname), '[]')
     FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid),
  CASE WHEN c.relispartition THEN pg_get_partition_constraintdef(c.oid) END,
  ARRAY(SELECT 'trigger ' || quote_ident(t.tgname) FROM pg_trigger t
         WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D'
        UNION ALL
        SELECT 'rule ' || quote_ident(r.rulename) FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'
        ORDER BY 1),
  CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END
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
     d AS (SELECT adrelid AS rel, count(*) AS n, max(xmin::text::int8) AS x FROM pg_attrdef WHERE adrelid >= 16384 GROUP BY 1),
     t AS (SELECT tgrelid AS rel, count(*) AS n, max(xmin::text::int8) AS x FROM pg_trigger WHERE tgrelid >= 16384 GROUP BY 1),
     r AS (SELECT ev_class AS rel, count(*) AS n, max(xmin::text::int8) AS x FROM pg_rewrite WHERE ev_class >= 16384 GROUP BY 1)
SELECT c.oid::int8, concat_ws('/', c.xmin, n.xmin, a.n, a.x, k.n, k.x, i.n, i.x, d.n, d.x, t.n, t.x, r.n, r.x),
       current_schemas(false)::text[]
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN a ON a.rel = c.oid LEFT JOIN k ON k.rel = c.oid LEFT JOIN i ON i.rel = c.oid LEFT JOIN d ON d.rel = c.oid
  LEFT JOIN t ON t.rel = c.oid LEFT JOIN r ON r.rel = c.oid
 WHERE {where}
"""

# Within one transaction, cheaper than the digests: the relations with a catalog row this transaction wrote (its
# xmin is this transaction's or one of its subtransactions', so age() is not above 0), valid as long as no catalog
# row was deleted meanwhile (a deletion leaves no row to find: then the digests decide).
_CATALOGS_DELETING = ["pg_class", "pg_attribute", "pg_constraint", "pg_index", "pg_attrdef", "pg_namespace",
                      "pg_trigger", "pg_rewrite"]
_WRITTEN = """
SELECT (SELECT coalesce(sum(pg_stat_get_xact_tuples_deleted(t)), 0) FROM unnest(%s::regclass[]) AS t)::int8,
  ARRAY(SELECT DISTINCT r FROM (
          SELECT oid AS r FROM pg_class WHERE age(xmin) <= 0
          UNION ALL SELECT oid FROM pg_class WHERE relnamespace IN (SELECT oid FROM pg_namespace WHERE age(xmin) <= 0)
          UNION ALL SELECT i.indrelid FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                     WHERE age(i.xmin) <= 0 OR age(ic.xmin) <= 0
          UNION ALL SELECT attrelid FROM pg_attribute WHERE age(xmin) <= 0
          UNION ALL SELECT conrelid FROM pg_constraint WHERE age(xmin) <= 0
          UNION ALL SELECT adrelid FROM pg_attrdef WHERE age(xmin) <= 0
          UNION ALL SELECT tgrelid FROM pg_trigger WHERE age(xmin) <= 0
          UNION ALL SELECT ev_class FROM pg_rewrite WHERE age(xmin) <= 0) AS t
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
    # the sequence the column owns (a serial's, an identity's): its name as a DEFAULT's nextval shows it, START, and
    # INCREMENT BY; None when it owns none
    sequence: tuple[str, int, int] | None = None


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
    acting: tuple[str, ...] = ()  # its enabled user triggers and rules ("trigger t_audit"): what a write sets off
    definition: str | None = None  # a view's or materialized view's query, as pg_get_viewdef gives it
    # each constraint whole, as the target's catalog gives one (the CHECK's expression, a foreign key's columns)
    definitions: tuple[ConstraintInfo, ...] = field(default=(), compare=False)

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
    for oid, schema, name, kind, populated, columns, constraints, indexes, bound, acting, query_text in conn.execute(
            query, (oids,), prepare=True):
        out[oid] = RelationSnapshot(
            partition_constraint=bound, acting=tuple(acting or ()), definition=query_text,
            oid=oid, schema=schema, name=name, kind=kind, populated=populated,
            columns=tuple(ColumnSnapshot(*c[:7], sequence=tuple(c[7]) if c[7] else None)  # type: ignore[arg-type]
                          for c in _json(columns)),
            constraints=tuple((k[0], k[1], k[2]) for k in _json(constraints)),
            definitions=tuple(ConstraintInfo(name=k[0], type=k[1], validated=k[2], definition=k[3],
                                             columns=tuple(k[4] or ()), ref_schema=k[5], ref_table=k[6],
                                             ref_columns=tuple(k[7] or ()), match_full=k[8] == "f",
                                             check_expression=k[9], on_update=k[10].strip() or "a",
                                             on_delete=k[11].strip() or "a") for k in _json(constraints)),
            indexes=tuple(IndexInfo(ix[0], ix[1], ix[2], ix[3], ix[4], tuple(ix[5]), ix[6], ix[7], ix[8]) for ix in _json(indexes)),
        )
    return out


def _search_path(conn: psycopg.Connection[Any]) -> tuple[str, ...]:
    row = conn.execute("SELECT current_schemas(false)::text[]").fetchone()
    return tuple(row[0]) if row else ()


def _json(value: Any) -> list[Any]:
    return json.loads(value) if isinstance(value, str) else list(value)


# ---------------------------------------------------------------------------------------------------------
# What a statement does to the traffic on the relations that exist before the plan, as PostgreSQL shows it: the
# locks its transaction holds (pg_locks), a new relfilenode (a rewrite), a new index on an existing table, the
# scans the transaction's own statistics count. A relation the plan makes is seen by no other session.

# Lock modes from the weakest to the strongest (PostgreSQL's table-level lock modes, as pg_locks names them).
LOCK_MODES = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
              "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")

# The relations of the shadow before any statement: by OID, the name, kind, file and, for an index, its table.
_RELATION_FILES = """
SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relfilenode::int8, i.indrelid::int8
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid
 WHERE c.oid >= 16384 AND c.relkind IN ('r', 'p', 'm', 'i', 'I', 'f', 'S', 't')
"""

# After a statement: every relation lock the transaction holds, with the relation's file and scans now (an index
# the statement made names its table). The scan counts are this backend's pending ones: read as a difference.
_HELD = """
SELECT l.relation::int8, l.mode, c.relfilenode::int8, pg_stat_get_xact_numscans(l.relation),
       i.indrelid::int8, c.relkind::text
  FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_index i ON i.indexrelid = l.relation
 WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted AND l.relation >= 16384
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@dataclass(frozen=True)
class RelationFile:
    schema: str
    name: str
    kind: str
    filenode: int
    table: int | None  # an index's table


def read_relation_files(conn: psycopg.Connection[Any]) -> dict[int, RelationFile]:
    """The relations that exist before the plan (read once per shadow: its catalog does not change)."""
    return {oid: RelationFile(schema, name, kind, filenode, table)
            for oid, schema, name, kind, filenode, table in conn.execute(_RELATION_FILES)}


@dataclass(frozen=True)
class LockHeld:
    """A lock a statement took on a relation that exists before the plan, and the work it did on that relation
    while it ran: "catalog" (none on the rows), "scan", "index build", "rewrite"."""

    schema: str
    name: str
    kind: str  # pg_class.relkind
    mode: str  # as pg_locks names it: AccessExclusiveLock...
    work: str = "catalog"


@dataclass(frozen=True)
class StatementImpact:
    """What one statement of the rehearsal did to the relations that exist before the plan: each relation it locked
    or worked on, with the strongest mode its transaction holds there (a mode held already is not taken again), and
    the work on each."""

    step: int
    statement: str
    locks: tuple[LockHeld, ...]
    measured: bool = True  # False: not run in the rehearsal (outside its reach); nothing is known


@dataclass
class ImpactReader:
    """Reads, after each statement of one rehearsal transaction, what it locked and did (``StatementImpact``)."""

    files: dict[int, RelationFile]
    seen: dict[tuple[int, str], None] = field(default_factory=dict)  # (oid, mode) held so far
    scans: dict[int, int] = field(default_factory=dict)  # oid -> scans counted so far in this transaction
    last_new: list[tuple[int, str]] = field(default_factory=list)  # the (oid, mode) the last statement took
    filenodes: dict[int, int] = field(default_factory=dict)  # files changed so far, and indexes made on old tables

    def start(self, conn: psycopg.Connection[Any]) -> None:
        """Before the first statement: what the transaction holds and has counted already (the session flushes
        its counts between rehearsals, see ``shadow.shadow_session``, so a relation not seen yet starts from 0)."""
        for oid, mode, _, scans, _, _ in conn.execute(_HELD, prepare=True):
            self.seen[(oid, mode)] = None
            self.scans[oid] = int(scans or 0)

    def after(self, conn: psycopg.Connection[Any], step: int, statement: str) -> StatementImpact:
        rows = conn.execute(_HELD, prepare=True).fetchall()
        work: dict[int, str] = {}
        new: dict[int, list[str]] = {}
        for oid, mode, filenode, scans, table, kind in rows:
            known = self.files.get(oid)
            if (oid, mode) not in self.seen:
                self.seen[(oid, mode)] = None
                new.setdefault(oid, []).append(mode)
            if known is not None and filenode is not None and filenode != self.filenodes.get(oid, known.filenode):
                # a new file for a relation that existed: its rows were written again (or it was emptied)
                target = known.table if known.table is not None else oid
                work[target] = _stronger_work(work.get(target), "rewrite" if known.table is None else "index build")
                self.filenodes[oid] = filenode
            elif known is None and table in self.files and kind in ("i", "I") and oid not in self.filenodes:
                work[table] = _stronger_work(work.get(table), "index build")  # a new index on an existing table
                self.filenodes[oid] = filenode or 0
            if known is not None and known.kind in ("r", "p", "m") and scans is not None:
                if int(scans) > self.scans.get(oid, 0):
                    work[oid] = _stronger_work(work.get(oid), "scan")
                self.scans[oid] = int(scans)

        def lock(oid: int, modes: list[str]) -> LockHeld:
            f = self.files[oid]
            return LockHeld(f.schema, f.name, f.kind, _strongest(modes), work.get(oid, "catalog"))

        def held_modes(oid: int) -> list[str]:
            return [m for o, m in self.seen if o == oid]

        # one entry per relation it locked or worked on, with the strongest mode its transaction holds there: a
        # mode held already is not taken again, so where an earlier statement of the transaction took it, PostgreSQL
        # does not say whether this one needs it too (the report then over-states it, never under-states it)
        # a new lock on an index stands for its table: DROP INDEX after another statement of the transaction took
        # the table's ACCESS EXCLUSIVE takes no new lock on the table, only on the index
        tables_of_indexes = [f.table for oid in new if (f := self.files.get(oid)) is not None and f.table is not None]
        touched = [oid for oid in dict.fromkeys([*new, *work, *tables_of_indexes]) if self._shown(oid)]
        locks = tuple(lock(oid, held_modes(oid)) for oid in touched)
        self.last_new = [(oid, mode) for oid, modes in new.items() for mode in modes]
        return StatementImpact(step=step, statement=statement, locks=locks)

    def _shown(self, oid: int) -> bool:
        """The relations the application's traffic reads and writes: tables, partitioned tables, materialized views
        and foreign tables (an index's lock goes with its table's; a TOAST table is the table's own)."""
        known = self.files.get(oid)
        return known is not None and known.kind in ("r", "p", "m", "f")

    def undone(self) -> None:
        """The last statement was rolled back to its savepoint, which released the locks it took."""
        for key in self.last_new:
            self.seen.pop(key, None)
        self.last_new = []


_WORK_ORDER = ("catalog", "scan", "index build", "rewrite")


def _stronger_work(current: str | None, new: str) -> str:
    return new if current is None or _WORK_ORDER.index(new) > _WORK_ORDER.index(current) else current


def _strongest(modes: list[str]) -> str:
    return max(modes, key=lambda m: LOCK_MODES.index(m) if m in LOCK_MODES else -1)


# SQLSTATE classes the rows decide: cardinality (a subquery's or an upsert's second row), data exceptions,
# integrity violations, limits (an index row too large), and PL/pgSQL's RAISE, ASSERT and STRICT.
_ABOUT_ROWS = ("21", "22", "23", "54", "P0")


def about_the_rows(sqlstate: str) -> bool:
    """Whether an error PostgreSQL raised running a statement on real rows is a verdict on those rows (not a
    right the role lacks, a timeout, an object the server has not)."""
    return sqlstate[:2] in _ABOUT_ROWS


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
    exact_rows: bool = False  # it failed on rows the plan itself makes: the very rows apply meets

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
    impacts: list[StatementImpact] = field(default_factory=list)  # per statement run, in order
    end: CatalogSnapshot | None = None  # after the last statement, when asked for (``rehearse(end=True)``)
    # steps whose every statement read and wrote only rows the plan makes (``shadow_exact``): PostgreSQL's verdict
    # here is its verdict at apply; with the relations each read, as PostgreSQL names them
    exact: dict[int, tuple[str, ...]] = field(default_factory=dict)
    inexact: set[int] = field(default_factory=set)  # steps with a statement that read or wrote anything else

    def passed(self, step: int) -> bool:
        """Whether PostgreSQL ran every statement of ``step`` without an error."""
        return step in self.after
