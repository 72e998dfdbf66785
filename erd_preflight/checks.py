"""Deterministic checks per plan step (spec 1.1.04b): each a small piece of data naming the SQL it runs.

``derive_checks(plan, catalog, options)`` walks the plan in order and asks ``checks_for(step, context)``
for each step, then lets the context absorb the step. The context knows what earlier steps did to each
table (a table created in the plan is empty; a column added with a default has that value; a simple
backfill UPDATE changes the rows it matches), so checks read the table *as it will be* at their step:
a table changed earlier in the plan is read through a derived relation that applies those changes.
Execution lives in ``preflight``; nothing here touches table data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import pglast
from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from .catalog import Catalog, TableInfo
from .contract import DEFAULT_SAMPLE_CAP, Outcome, TargetRef
from .plan import (
    AddCheck,
    AddColumn,
    AddForeignKey,
    AddUnique,
    AddUniqueUsingIndex,
    AlterColumnType,
    CreateIndex,
    CreateTable,
    DropColumn,
    DropConstraint,
    DropIndex,
    DropNotNull,
    DropTable,
    MigrationPlan,
    RawSQL,
    SetNotNull,
    Step,
    TableStep,
    ValidateConstraint,
    display_name,
    drop_index_concurrently,
    index_name,
)
from .shadow_catalog import ColumnSnapshot, Rehearsal, RelationSnapshot
from .sqlparse import normalize_expression, walk_ast

NOT_NULL_PRECHECK = "NOT_NULL_PRECHECK"
UNIQUE_PRECHECK = "UNIQUE_PRECHECK"
FK_VIOLATIONS_PRECHECK = "FK_VIOLATIONS_PRECHECK"
CAST_PRECHECK = "CAST_PRECHECK"
CHECK_CONSTRAINT_PRECHECK = "CHECK_CONSTRAINT_PRECHECK"
OBJECT_PRECHECK = "OBJECT_PRECHECK"
INVALID_INDEX_PRECHECK = "INVALID_INDEX_PRECHECK"
LARGE_TABLE_WARNING = "LARGE_TABLE_WARNING"
NON_CONCURRENT_INDEX_WARNING = "NON_CONCURRENT_INDEX_WARNING"
DESTRUCTIVE_CHANGE_WARNING = "DESTRUCTIVE_CHANGE_WARNING"
UNMODELLED_SQL_WARNING = "UNMODELLED_SQL_WARNING"
REHEARSAL_PRECHECK = "REHEARSAL_PRECHECK"  # PostgreSQL refused a statement on an empty copy of the schema
REHEARSAL_UNAVAILABLE_WARNING = "REHEARSAL_UNAVAILABLE_WARNING"


class PreflightOptions(BaseModel):
    """The caps and thresholds of a preflight. Every field can also be passed to ``run_preflight``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_cap: int = Field(default=DEFAULT_SAMPLE_CAP, ge=0, le=10_000, description="sample rows kept per finding")
    check_timeout: float = Field(default=60.0, gt=0, description="seconds one check may run before it blocks")
    rehearse: bool = Field(default=True, description="run the plan first on an empty copy of the schema in the "
                           "embedded PostgreSQL, so PostgreSQL itself says which statement it refuses")
    large_table_rows: int = Field(default=1_000_000, ge=0, description="estimated rows that make a table large")
    large_table_bytes: int = Field(default=1 << 30, ge=0, description="total bytes that make a table large")


# ---------------------------------------------------------------------------------------------------------
# What a check runs: a probe. Probes are data; preflight renders and executes them.


@dataclass(frozen=True)
class Source:
    """A table as it is at one step of the plan: the base table, or a derived relation over it."""

    key: str  # equal keys read the same rows: their checks may share one scan
    relation: sql.Composable
    alias: str
    columns: tuple[tuple[str, str], ...]  # (name, type) at this step
    derived: bool
    expressions: tuple[str, ...] = ()  # the plan's expressions each derived layer evaluates, as SELECT lists

    def from_item(self) -> sql.Composed:
        return sql.SQL("{} AS {}").format(self.relation, sql.Identifier(self.alias))


@dataclass(frozen=True)
class Verdict:
    """A result known without reading data: from the catalog, or from what the plan does."""

    outcome: Outcome
    message: str
    stats: dict[str, int | float] = field(default_factory=dict)


@dataclass(frozen=True)
class RowsProbe:
    """Violations are the rows of ``source`` for which ``predicate`` is true. Shares scans by source key."""

    source: Source
    predicate: sql.Composable


@dataclass(frozen=True)
class DuplicatesProbe:
    source: Source
    columns: tuple[str, ...]
    nulls_not_distinct: bool
    where: sql.Composable | None = None


@dataclass(frozen=True)
class OrphansProbe:
    child: Source
    columns: tuple[str, ...]
    parent: Source
    ref_columns: tuple[str, ...]
    match_full: bool


@dataclass(frozen=True)
class CastProbe:
    """Rows whose new value cannot be produced: the USING expression or the cast fails, or a NOT NULL
    column would get NULL. ``length_limit`` covers varchar(n)/char(n), which assignment enforces."""

    source: Source
    column: str
    expression: sql.Composable
    type: str
    not_null: bool
    length_limit: int | None


Probe = Verdict | RowsProbe | DuplicatesProbe | OrphansProbe | CastProbe


@dataclass(frozen=True)
class Check:
    """One check of one step. ``fail``/``ok`` are message templates filled with the measured stats."""

    check_id: str
    step: int
    step_summary: str
    target: TargetRef | None
    probe: Probe
    fail: str = ""
    ok: str = ""
    notes: tuple[str, ...] = ()
    failure: Literal["warning", "blocking"] = "blocking"
    rehearsed: bool = False  # PostgreSQL ran the step in the rehearsal: every object it names exists by then
    unsure_pass: str | None = None  # what a run without violations says instead of a pass (rows not read)

    def message(self, text: str, stats: dict[str, Any]) -> str:
        body = text.format(**{k: (f"{v:,}" if isinstance(v, int) else v) for k, v in stats.items()})
        return " ".join([body, *self.notes])

    def describe(self) -> dict[str, Any]:
        """What a notebook shows of a check before it runs."""
        return {
            "checkId": self.check_id,
            "step": self.step,
            "stepSummary": self.step_summary,
            "target": self.target.label() if self.target else "",
            "probe": type(self.probe).__name__,
            "source": getattr(getattr(self.probe, "source", None), "key", None)
            or getattr(getattr(self.probe, "child", None), "key", None),
        }


# ---------------------------------------------------------------------------------------------------------
# What each DDL takes and does, for the scheduling hint (PostgreSQL's documented lock levels).

_LOCKS: dict[str, tuple[str, str]] = {
    "add_column": ("ACCESS EXCLUSIVE", "no rewrite for a constant or non-volatile default (PostgreSQL 11+); "
                   "a volatile default rewrites the table; NOT NULL without a default scans it"),
    "set_not_null": ("ACCESS EXCLUSIVE", "a full scan to verify no NULLs, blocking reads and writes meanwhile"),
    "drop_not_null": ("ACCESS EXCLUSIVE", "a catalog change only, but it waits for and blocks all traffic"),
    "alter_column_type": ("ACCESS EXCLUSIVE", "a rewrite of the table and its indexes unless the types are "
                          "binary coercible"),
    "add_unique": ("ACCESS EXCLUSIVE", "a full scan and sort to build the unique index"),
    "create_index": ("SHARE", "a full scan and sort; writes wait until it ends"),
    "create_index_concurrently": ("SHARE UPDATE EXCLUSIVE", "two scans; reads and writes go on"),
    "add_foreign_key": ("SHARE ROW EXCLUSIVE on both tables", "a full scan of the referencing table"),
    "add_foreign_key_not_valid": ("SHARE ROW EXCLUSIVE on both tables", "no scan (NOT VALID)"),
    "add_check": ("ACCESS EXCLUSIVE", "a full scan to verify the expression"),
    "add_check_not_valid": ("ACCESS EXCLUSIVE", "no scan (NOT VALID)"),
    "add_unique_using_index": ("ACCESS EXCLUSIVE", "a brief catalog change: the index already exists"),
    "validate_constraint": ("SHARE UPDATE EXCLUSIVE", "a full scan; reads and writes go on"),
    "drop_column": ("ACCESS EXCLUSIVE", "a catalog change; the space is reclaimed by later rewrites"),
    "drop_table": ("ACCESS EXCLUSIVE", "the table and its data are removed"),
    "drop_constraint": ("ACCESS EXCLUSIVE", "a catalog change"),
    "drop_index": ("ACCESS EXCLUSIVE on its table", "a catalog change, but it waits for and blocks all traffic on "
                   "the table; DROP INDEX CONCURRENTLY does not"),
    "drop_index_concurrently": ("SHARE UPDATE EXCLUSIVE", "waits for transactions using the index; reads and "
                                "writes go on"),
    "create_table": ("none on existing tables", "a new, empty table; a REFERENCES clause takes SHARE ROW EXCLUSIVE "
                     "on the table it references"),
    "raw": ("unknown", "an unmodelled statement"),
}


def lock_of(step: Step) -> tuple[str, str]:
    """The lock a step takes and what it does meanwhile. Every step kind has an entry: a missing one fails."""
    return _LOCKS[_lock_key(step)]


def _lock_key(step: Step) -> str:
    if isinstance(step, (CreateIndex, DropIndex)) and step.concurrently:
        return f"{step.kind}_concurrently"
    if isinstance(step, (AddForeignKey, AddCheck)) and step.not_valid:
        return f"{step.kind}_not_valid"
    return step.kind


def _human_rows(n: int) -> str:
    return f"{n:,}"


def human_bytes(n: int) -> str:
    """A size for people: 812 B, 3.4 MiB, 1.2 GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# ---------------------------------------------------------------------------------------------------------
# The plan's effect on each table, step by step.


@dataclass
class TableState:
    schema: str
    name: str
    info: TableInfo | None  # None: created in this plan
    created_step: int | None = None
    dropped_step: int | None = None
    columns: dict[str, str] = field(default_factory=dict)  # name -> type, in order
    not_null: set[str] = field(default_factory=set)
    no_nulls_because: dict[str, str] = field(default_factory=dict)
    layers: list[tuple[str, tuple[tuple[str, sql.Composable | None], ...]]] = field(default_factory=list)
    backfills: list[int] = field(default_factory=list)
    unique_keys: list[frozenset[str]] = field(default_factory=list)
    plan_constraints: dict[str, Step] = field(default_factory=dict)
    inserted_by: list[int] = field(default_factory=list)
    has_primary_key: bool = False
    constraint_names: set[str] = field(default_factory=set)
    enforced: list[Step] = field(default_factory=list)  # constraints the plan added: they apply to later UPDATEs
    updated_at: list[int] = field(default_factory=list)  # steps whose simulated UPDATE changed rows
    version: int = 0  # one more for each change of the rows: equal versions, equal rows (and a shared scan)
    attnums: dict[int, str] = field(default_factory=dict)  # the shadow's attnum -> the column's name here
    unknown: str | None = None  # why the rows are not known before apply (then no data check reads them)
    added_by: list[int] = field(default_factory=list)  # steps that insert rows preflight does not read
    _rendered: list[tuple[str, str]] = field(default_factory=list, repr=False)  # per layer: relation, its SQL

    @property
    def label(self) -> str:
        return display_name(self.schema, self.name)

    def column_label(self, column: str) -> str:
        return f"{self.label}.{display_name(column)}"

    def source(self) -> Source:
        assert self.info is not None, "a table created in the plan has no rows to read"
        relation: str | None = None
        expressions: list[str] = []
        # Each layer is rendered once and kept: a plan with a thousand steps on one table neither nests a
        # thousand Composed objects (Python's recursion limit) nor renders its layers again for every check.
        for depth, (layer_alias, projection) in enumerate(self.layers):
            if depth < len(self._rendered):
                relation, expression = self._rendered[depth]
            else:
                items = [
                    sql.SQL("{} AS {}").format(expr, sql.Identifier(name)) if expr is not None
                    else sql.Identifier(name)
                    for name, expr in projection
                ]
                inner: sql.Composable = self.info.relation if relation is None else sql.SQL(relation)
                relation = sql.SQL("(SELECT {} FROM {} AS {})").format(
                    sql.SQL(", ").join(items), inner, sql.Identifier(layer_alias)).as_string()
                changed = [sql.SQL("{} AS {}").format(expr, sql.Identifier(name))
                           for name, expr in projection if expr is not None]
                expression = sql.SQL("SELECT {}").format(sql.SQL(", ").join(changed)).as_string() if changed else ""
                self._rendered.append((relation, expression))
            if expression:
                expressions.append(expression)
        return Source(
            key=f"{self.schema}.{self.name}@{self.version}",
            relation=self.info.relation if relation is None else sql.SQL(relation),
            alias=self.name,
            columns=tuple(self.columns.items()),
            derived=bool(self.layers),
            expressions=tuple(expressions),
        )

    def push_layer(self, changes: dict[str, sql.Composable | None], *, alias: str | None = None,
                   new_types: dict[str, str] | None = None, independent: bool = False) -> None:
        """Derive the next state: ``changes`` maps a column to its new expression (None drops it).
        ``independent``: no expression reads a column, so the change may fold into the layer below."""
        projection: list[tuple[str, sql.Composable | None]] = []
        for name in self.columns:
            if name in changes:
                if changes[name] is not None:
                    projection.append((name, changes[name]))
            else:
                projection.append((name, None))
        for name, expr in changes.items():
            if name not in self.columns and expr is not None:
                projection.append((name, expr))
        self.version += 1
        if self.info is not None and independent and self.layers:
            # No expression of this layer reads a column (a DEFAULT cannot; a dropped column has none): it
            # folds into the layer below instead of nesting one more subquery per step.
            below_alias, below = self.layers[-1]
            below_of = dict(below)
            self.layers[-1] = (below_alias, tuple((name, below_of.get(name) if expr is None else expr)
                                                  for name, expr in projection))
            del self._rendered[len(self.layers) - 1:]
        elif self.info is not None:
            self.layers.append((alias or self.name, tuple(projection)))
        types = dict(self.columns)
        types.update(new_types or {})
        self.columns = {name: types[name] for name, _ in projection}

    def history_notes(self) -> tuple[str, ...]:
        notes = []
        if self.backfills:
            steps = ", ".join(str(s) for s in self.backfills)
            notes.append(f"The rows were read as the UPDATE of step {steps} leaves them.")
        return tuple(notes)


def _length_limit(type_text: str) -> int | None:
    node = pglast.parse_sql(f"SELECT NULL::{type_text}")[0].stmt.targetList[0].val.typeName
    name = node.names[-1].sval
    if name in ("varchar", "bpchar") and node.typmods and not node.arrayBounds:
        return int(node.typmods[0].val.ival)
    return None


def _constant(expression: str) -> ast.A_Const | None:
    """The literal an expression is, under any casts; None when it is not a literal."""
    node = pglast.parse_sql(f"SELECT {expression}")[0].stmt.targetList[0].val
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node if isinstance(node, ast.A_Const) else None


def _is_constant(expression: str | None) -> bool:
    const = _constant(expression) if expression is not None else None
    return const is not None and not const.isnull


def _is_null_constant(expression: str | None) -> bool:
    if expression is None:
        return True
    const = _constant(expression)
    return const is not None and bool(const.isnull)


def _cast(expression: sql.Composable, type_text: str) -> sql.Composed:
    return sql.SQL("CAST(({}) AS {})").format(expression, sql.SQL(type_text))


def _all_not_null(columns: tuple[str, ...], qualifier: str | None = None) -> sql.Composed:
    return sql.SQL(" AND ").join(
        sql.SQL("{} IS NOT NULL").format(sql.Identifier(*([qualifier] if qualifier else []), c)) for c in columns
    )


def _any_null(columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in columns)


@dataclass
class PlanContext:
    """What the database holds and what earlier steps of the plan did to it."""

    catalog: Catalog
    options: PreflightOptions = field(default_factory=PreflightOptions)
    _states: dict[tuple[str, str], TableState] = field(default_factory=dict)
    _current_schema: str | None = None
    relations: set[tuple[str, str]] = field(default_factory=set)  # (schema, name) created by the plan
    plan_indexes: dict[tuple[str, str], CreateIndex] = field(default_factory=dict)  # named indexes the plan builds
    invalid_checked: set[tuple[str, str]] = field(default_factory=set)  # tables already checked for INVALID indexes
    dropped_indexes: set[tuple[str, str]] = field(default_factory=set)  # (schema, name) an earlier step drops
    rehearsal: Rehearsal | None = None  # PostgreSQL's catalog before and after each step, from the shadow
    step: int = 0  # the step whose checks are derived now
    _oid_keys: dict[int, tuple[str, str]] = field(default_factory=dict)  # the shadow's relation -> its state

    def relation_exists(self, schema: str, name: str) -> bool:
        return (schema, name) in self.relations or (
            (schema, name) not in self.dropped_indexes and self.catalog.relation_exists(schema, name))

    @property
    def current_schema(self) -> str:
        if self._current_schema is None:
            row = self.catalog.conn.execute("SELECT current_schema()").fetchone()
            self._current_schema = str(row[0]) if row and row[0] else "public"
        return self._current_schema

    def state(self, schema: str | None, name: str) -> TableState | None:
        """The table as the plan has left it so far; None when it exists neither in the database nor the plan.
        Where the rehearsal reached this step, the name is looked up as PostgreSQL did (renames followed)."""
        snapshot = self.rehearsal.before.get(self.step) if self.rehearsal else None
        if snapshot is not None:
            relation = snapshot.resolve(schema, name)
            return None if relation is None else self._state_of(relation)
        return self._state_by_name(schema, name)

    def _state_by_name(self, schema: str | None, name: str) -> TableState | None:
        key = (schema or self.current_schema, name)
        if key in self._states:
            return self._states[key]
        info = self.catalog.table(schema, name)
        if info is None:
            return None
        real_key = (info.schema, info.name)
        if real_key not in self._states:
            self._states[real_key] = TableState(
                schema=info.schema,
                name=info.name,
                info=info,
                columns={c.name: c.type for c in info.columns.values()},
                not_null={c.name for c in info.columns.values() if c.not_null},
                unique_keys=info.unique_keys(),
                has_primary_key=any(c.type == "p" for c in info.constraints.values()),
                constraint_names=set(info.constraints),
            )
        return self._states[real_key]

    def _state_of(self, relation: RelationSnapshot) -> TableState | None:
        """The state of a relation of the shadow, by OID: one the database has, or one the plan created."""
        assert self.rehearsal is not None
        key = self._oid_keys.get(relation.oid)
        if key is not None:
            return self._states.get(key)
        origin = self.rehearsal.start.relations.get(relation.oid)
        if origin is None:
            return None
        state = self._state_by_name(origin.schema, origin.name)
        if state is None:  # a view or a foreign table: PostgreSQL has it; its rows are not a table's to read
            kinds = {"v": "a view", "f": "a foreign table", "p": "a partitioned table"}
            state = TableState(schema=origin.schema, name=origin.name, info=None,
                               columns={c.name: c.type for c in origin.columns},
                               unknown=f"{display_name(origin.schema, origin.name)} is "
                                       f"{kinds.get(origin.kind, 'not a table')}, whose rows preflight does not read")
            self._states[(origin.schema, origin.name)] = state
        self._oid_keys[relation.oid] = (state.schema, state.name)
        state.attnums = {c.attnum: c.name for c in origin.columns}
        return state

    def added_column(self, index: int, step: AddColumn) -> ColumnSnapshot | None:
        """The column an ADD COLUMN made, as PostgreSQL has it after the step (its real type and default)."""
        after = self.rehearsal.after.get(index) if self.rehearsal else None
        relation = after.resolve(step.schema_, step.table) if after is not None else None
        return next((c for c in relation.columns if c.name == step.column), None) if relation else None

    def follow_rehearsal(self, index: int, step: Step) -> None:
        """After step ``index`` is absorbed: take what PostgreSQL's catalog says the step did, for the checks of
        later steps (tables created, renamed, columns added, dropped, renamed, constraints and indexes)."""
        if self.rehearsal is None or index not in self.rehearsal.after:
            return
        before, after = self.rehearsal.before[index], self.rehearsal.after[index]
        if before is after:
            return
        for oid, relation in after.relations.items():
            old = before.relations.get(oid)
            if old == relation:
                continue
            if old is None and oid not in self.rehearsal.start.relations and oid not in self._oid_keys:
                self._created(index, step, relation)
                continue
            state = self._state_of(relation)
            if state is not None:
                self._follow(index, step, state, old, relation)

    def _created(self, index: int, step: Step, relation: RelationSnapshot) -> None:
        key = (relation.schema, relation.name)
        state = self._states.get(key)
        if state is None or state.created_step != index:  # not the model's own CREATE TABLE of this step
            label = display_name(relation.schema, relation.name)
            state = TableState(schema=relation.schema, name=relation.name, info=None, created_step=index)
            if relation.kind in ("v", "f"):
                state.unknown = f"{label} is a {'view' if relation.kind == 'v' else 'foreign table'}"
            elif not (relation.kind in ("r", "p") and _creates_empty(step)) and not (
                    relation.kind == "m" and not relation.populated):
                state.unknown = (f"{label} is created by step {index} from a query or inside a block, so its rows "
                                 "are not known before apply")
            if key in self._states:  # DROP, then CREATE under the same name: another relation
                key = ("", f"oid {relation.oid}")
            self._states[key] = state
        self._oid_keys[relation.oid] = key
        state.attnums = {c.attnum: c.name for c in relation.columns}
        state.columns = {c.name: c.type for c in relation.columns}
        _take_constraints(state, relation)

    def _follow(self, index: int, step: Step, state: TableState, old: RelationSnapshot | None,
                relation: RelationSnapshot) -> None:
        state.schema, state.name = relation.schema, relation.name
        changes: dict[str, sql.Composable | None] = {}
        independent = True
        renamed_from: set[str] = set()
        for column in relation.columns:
            name = state.attnums.get(column.attnum)
            if name is None:  # added: it holds what PostgreSQL fills in (the model may not know the statement,
                state.attnums[column.attnum] = column.name  # nor what a serial or a domain default becomes)
                changes[column.name] = _added_value(column)
                independent = independent and not column.generated
            elif name != column.name:
                changes[column.name] = sql.Identifier(name)
                renamed_from.add(name)
                state.attnums[column.attnum] = column.name
                independent = False
            previous = old.column(column.attnum) if old is not None else None
            if previous is not None and previous.type != column.type and not (
                    isinstance(step, AlterColumnType) and step.column == column.name):
                state.unknown = (f"step {index} changes the type of {state.column_label(column.name)} in a statement "
                                 "preflight does not model, so the values later checks would read are not known "
                                 "before apply")
        present = {c.attnum for c in relation.columns}
        for attnum in [a for a in state.attnums if a not in present]:
            gone = state.attnums.pop(attnum)
            if gone in state.columns and gone not in changes:
                changes[gone] = None
        for name in renamed_from:
            changes.setdefault(name, None)
        if changes:
            state.push_layer(changes, independent=independent, new_types={c.name: c.type for c in relation.columns})
        if set(state.columns) != {c.name for c in relation.columns}:
            state.unknown = state.unknown or (f"preflight could not follow what step {index} did to the columns of "
                                              f"{state.label}")
        state.columns = {c.name: c.type for c in relation.columns}
        _take_constraints(state, relation)

    def is_large(self, state: TableState) -> bool:
        info = state.info
        if info is None:
            return False
        return (
            info.estimated_rows > self.options.large_table_rows or info.total_bytes > self.options.large_table_bytes
        )

    # --- effects of steps -------------------------------------------------------------------------------

    def absorb(self, index: int, step: Step) -> None:
        """Record what ``step`` (1-based ``index``) does, for the checks of later steps."""
        if isinstance(step, DropIndex):
            key = (step.schema_ or self.current_schema, step.name)
            self.dropped_indexes.add(key)
            self.relations.discard(key)
            return
        if isinstance(step, CreateTable):
            if self.state(step.schema_, step.table) is not None and step.if_not_exists:
                return
            state = TableState(
                schema=step.schema_ or self.current_schema, name=step.table, info=None, created_step=index,
                columns={c.name: c.type for c in step.columns},
                not_null={c.name for c in step.columns if c.not_null},
            )
            state.unique_keys = _create_table_keys(step)
            state.has_primary_key = any(
                t.startswith("PRIMARY KEY") for c in step.columns for t in c.constraints
            ) or any(t.startswith("PRIMARY KEY") for t in step.constraints)
            self._states[(state.schema, state.name)] = state
            return
        if isinstance(step, RawSQL):
            self._absorb_raw(index, step)
            return
        if not isinstance(step, TableStep):
            return
        state = self.state(step.schema_, step.table)
        if state is None:
            return
        if isinstance(step, (SetNotNull, AddUnique, AddForeignKey, AddCheck)) or (
            isinstance(step, CreateIndex) and step.unique
        ):
            state.enforced.append(step)
        if isinstance(step, AddColumn):
            if step.column in state.columns:
                return
            value = sql.SQL(step.default) if step.default is not None else sql.SQL("NULL")
            state.push_layer({step.column: _cast(value, step.type)}, new_types={step.column: step.type},
                             independent=True)
            if step.not_null:
                state.not_null.add(step.column)
            if _is_constant(step.default):
                state.no_nulls_because[step.column] = f"step {index} adds it with DEFAULT {step.default}"
        elif isinstance(step, AlterColumnType):
            using = sql.SQL(step.using) if step.using else sql.Identifier(step.column)
            state.push_layer({step.column: _cast(using, step.type)}, new_types={step.column: step.type})
            state.no_nulls_because.pop(step.column, None)
        elif isinstance(step, DropColumn):
            if step.column in state.columns:
                state.push_layer({step.column: None}, independent=True)
                state.not_null.discard(step.column)
        elif isinstance(step, SetNotNull):
            state.not_null.add(step.column)
        elif isinstance(step, DropNotNull):
            state.not_null.discard(step.column)
        elif isinstance(step, AddUnique):
            state.unique_keys.append(frozenset(step.columns))
            if step.name:
                state.plan_constraints[step.name] = step
                state.constraint_names.add(step.name)
                self.relations.add((state.schema, step.name))
            if step.primary_key:
                state.not_null.update(step.columns)
                state.has_primary_key = True
        elif isinstance(step, CreateIndex):
            if step.unique and not step.where:
                state.unique_keys.append(frozenset(step.columns))
            if step.name:
                self.relations.add((state.schema, step.name))
                self.plan_indexes[(state.schema, step.name)] = step
        elif isinstance(step, AddUniqueUsingIndex):
            state.constraint_names.add(step.constraint_name)
            planned = self.plan_indexes.get((state.schema, step.index))
            existing = state.info.indexes.get(step.index) if state.info else None
            columns = planned.columns if planned else existing.columns if existing else ()
            if step.primary_key:
                state.has_primary_key = True
                state.not_null.update(columns)
        elif isinstance(step, (AddForeignKey, AddCheck)):
            if step.name:
                state.plan_constraints[step.name] = step
                state.constraint_names.add(step.name)
        elif isinstance(step, DropConstraint):
            planned = state.plan_constraints.get(step.name)
            existing = state.info.constraints.get(step.name) if state.info else None
            if (isinstance(planned, AddUnique) and planned.primary_key) or (existing and existing.type == "p"):
                state.has_primary_key = False
            state.constraint_names.discard(step.name)
            state.plan_constraints.pop(step.name, None)
        elif isinstance(step, DropTable):
            state.dropped_step = index

    def _absorb_raw(self, index: int, step: RawSQL) -> None:
        """A data statement preflight does not simulate makes the rows of its target unknown from then on (a later
        check says it cannot verify, never guesses from the rows as they are now). Rows a plan's own table gets
        are noted on it; the rehearsal holds the constant ones."""
        try:
            statements = pglast.parse_sql(step.statement)
        except pglast.parser.ParseError:
            return
        verbs = {ast.InsertStmt: "inserts rows into", ast.UpdateStmt: "updates", ast.DeleteStmt: "deletes rows of",
                 ast.MergeStmt: "merges into"}
        upsert = enums.OnConflictAction.ONCONFLICT_UPDATE
        for raw in statements:
            stmt = raw.stmt
            if isinstance(stmt, ast.UpdateStmt) and self._simulate_update(index, stmt):
                continue
            verb = verbs.get(type(stmt))
            if verb is None:
                continue
            state = self.state(stmt.relation.schemaname, stmt.relation.relname)
            if state is None:
                continue
            if state.info is None:
                if isinstance(stmt, ast.InsertStmt) and index not in state.inserted_by:
                    state.inserted_by.append(index)
                continue
            if isinstance(stmt, ast.InsertStmt) and not (stmt.onConflictClause and
                                                         stmt.onConflictClause.action == upsert):
                # Rows are only added: a violation among the rows there now stays one at apply (NULLs, a failed
                # check or cast, a duplicate, an orphan), so a block is still exact; "none" is not a clear.
                if index not in state.added_by:
                    state.added_by.append(index)
                continue
            state.unknown = state.unknown or (
                f"step {index} {verb} {state.label} in a statement preflight does not simulate, so the rows later "
                "checks would read are not known before apply")

    def _simulate_update(self, index: int, stmt: ast.UpdateStmt) -> bool:
        """A single-table ``UPDATE t SET col = expr [WHERE cond]`` becomes a derived column:
        ``CASE WHEN cond THEN expr ELSE col END``. Anything more complex is only noted."""
        if stmt.fromClause or stmt.withClause or not stmt.relation.inh:
            return False
        state = self.state(stmt.relation.schemaname, stmt.relation.relname)
        if state is None or state.info is None:
            return False
        changes: dict[str, sql.Composable | None] = {}
        for target in stmt.targetList:
            if target.indirection or isinstance(target.val, ast.MultiAssignRef) or target.name not in state.columns:
                return False
            if any(isinstance(n, (ast.SubLink, ast.SetToDefault)) for n in walk_ast(target.val)):
                return False
            changes[target.name] = sql.SQL(RawStream()(target.val))
        if stmt.whereClause is not None and any(isinstance(n, ast.SubLink) for n in walk_ast(stmt.whereClause)):
            return False
        alias = stmt.relation.alias.aliasname if stmt.relation.alias else state.name
        for name, value in list(changes.items()):
            new = _cast(value, state.columns[name])  # type: ignore[arg-type]
            if stmt.whereClause is not None:
                new = sql.SQL("CASE WHEN ({}) THEN {} ELSE {} END").format(
                    sql.SQL(RawStream()(stmt.whereClause)), new, sql.Identifier(alias, name)
                )
            changes[name] = new
            state.no_nulls_because.pop(name, None)
        state.push_layer(changes, alias=alias)
        state.backfills.append(index)
        state.updated_at.append(index)
        return True

    def rechecks(self, index: int, step: Step) -> list[Check]:
        """After a simulated UPDATE: the constraints the plan already added to that table are enforced on
        the updated rows, so their checks run again on the rows as the UPDATE leaves them."""
        checks: list[Check] = []
        for state in self._states.values():
            if index not in state.updated_at or state.info is None:
                continue
            for added in state.enforced:
                if isinstance(added, SetNotNull):
                    checks.append(_not_null_check(index, step, state, added.column, self,
                                                  predicate=sql.SQL("{} IS NULL").format(
                                                      sql.Identifier(added.column))))
                elif isinstance(added, (AddUnique, CreateIndex)):
                    checks.extend(_unique_check(index, added, state, summary=step.summary()))
                elif isinstance(added, AddForeignKey):
                    parent = self.state(added.ref_schema, added.ref_table)
                    if parent is not None:
                        checks.append(_fk_check(index, step, state, parent, added.columns, added.ref_columns,
                                                added.match_full))
                elif isinstance(added, AddCheck):
                    checks.append(_check_constraint_check(index, step, state, added.expression, added.name))
        return checks


def _take_constraints(state: TableState, relation: RelationSnapshot) -> None:
    state.not_null = relation.not_null
    state.unique_keys = relation.unique_keys
    state.has_primary_key = relation.has_primary_key
    state.constraint_names = relation.constraint_names


def _added_value(column: ColumnSnapshot) -> sql.Composable:
    """What a column added by ADD COLUMN holds in the rows already there, as PostgreSQL fills it: its DEFAULT
    or generation expression, distinct numbers for an identity or a sequence, else NULL."""
    if column.identity or (column.default and _calls_nextval(column.default)):
        return _cast(sql.SQL("row_number() OVER ()"), column.type)
    if column.default is None:
        return _cast(sql.SQL("NULL"), column.type)
    return _cast(sql.SQL(normalize_expression(column.default)), column.type)


def _calls_nextval(expression: str) -> bool:
    try:
        tree = pglast.parse_sql(f"SELECT {expression}")
    except pglast.parser.ParseError:
        return False
    return any(isinstance(n, ast.FuncCall) and n.funcname[-1].sval == "nextval" for n in walk_ast(tree))


def _creates_empty(step: Step) -> bool:
    """Whether the relations a step creates start without rows: a CREATE TABLE, not AS a query nor in a block."""
    if isinstance(step, CreateTable):
        return True
    if not isinstance(step, RawSQL):
        return False
    try:
        statements = pglast.parse_sql(step.statement)
    except pglast.parser.ParseError:
        return False
    return all(isinstance(raw.stmt, ast.CreateStmt) for raw in statements)


def _create_table_keys(step: CreateTable) -> list[frozenset[str]]:
    keys: list[frozenset[str]] = []
    for column in step.columns:
        for text in column.constraints:
            if text.startswith(("PRIMARY KEY", "UNIQUE")) and "(" not in text:
                keys.append(frozenset([column.name]))
    for text in step.constraints:
        node = pglast.parse_sql(f"CREATE TABLE x ({text})")[0].stmt.tableElts[0]
        if isinstance(node, ast.Constraint) and node.contype in (
            enums.ConstrType.CONSTR_PRIMARY,
            enums.ConstrType.CONSTR_UNIQUE,
        ):
            keys.append(frozenset(k.sval for k in node.keys))
    return keys


# ---------------------------------------------------------------------------------------------------------
# Checks per step.


def _verdict(check_id: str, index: int, step: Step, outcome: Outcome, message: str,
             target: TargetRef | None = None, **stats: int | float) -> Check:
    return Check(
        check_id=check_id,
        step=index,
        step_summary=step.summary(),
        target=target or step.target(),
        probe=Verdict(outcome=outcome, message=message, stats=dict(stats)),
        failure="warning" if outcome == "warning" else "blocking",
    )


def _primary_check_id(step: Step) -> str:
    if isinstance(step, SetNotNull):
        return NOT_NULL_PRECHECK
    if isinstance(step, AddColumn):
        return NOT_NULL_PRECHECK if step.not_null else OBJECT_PRECHECK
    if isinstance(step, AddUnique) or (isinstance(step, CreateIndex) and step.unique):
        return UNIQUE_PRECHECK
    if isinstance(step, AddForeignKey):
        return FK_VIOLATIONS_PRECHECK
    if isinstance(step, AlterColumnType):
        return CAST_PRECHECK
    if isinstance(step, AddCheck):
        return CHECK_CONSTRAINT_PRECHECK
    return OBJECT_PRECHECK


def _missing_objects(index: int, step: Step, ctx: PlanContext) -> Check | None:
    """The table or column a step needs is missing (or one it creates exists): a clear blocking result."""
    if not isinstance(step, TableStep):
        return None
    check_id = _primary_check_id(step)
    if isinstance(step, CreateTable):
        if ctx.state(step.schema_, step.table) is not None and not step.if_not_exists:
            return _verdict(check_id, index, step, "blocking",
                            f"table {display_name(step.schema_, step.table)} already exists; CREATE TABLE would "
                            "fail. Drop the step, use IF NOT EXISTS, or pick another name.")
        return None
    state = ctx.state(step.schema_, step.table)
    shown = display_name(step.schema_, step.table)
    if state is None or state.dropped_step is not None:
        if isinstance(step, (DropTable,)) and step.if_exists:
            return None
        why = f"is dropped by step {state.dropped_step}" if state else "does not exist"
        return _verdict(check_id, index, step, "blocking",
                        f"table {shown} {why}; this step would fail. Check the table name and schema "
                        "(search_path) or the order of the steps.")
    needed: tuple[str, ...] = ()
    if isinstance(step, (SetNotNull, DropNotNull, AlterColumnType)) or (
        isinstance(step, DropColumn) and not step.if_exists
    ):
        needed = (step.column,)
    elif isinstance(step, (AddUnique, CreateIndex, AddForeignKey)):
        needed = step.columns
    missing = [c for c in needed if c not in state.columns]
    if missing:
        cols = ", ".join(display_name(c) for c in missing)
        return _verdict(check_id, index, step, "blocking",
                        f"column {cols} does not exist in {state.label}; this step would fail. "
                        f"Its columns are: {', '.join(display_name(c) for c in state.columns) or '(none)'}.")
    if isinstance(step, AddColumn) and step.column in state.columns and not step.if_not_exists:
        return _verdict(check_id, index, step, "blocking",
                        f"column {state.column_label(step.column)} already exists; ADD COLUMN would fail. "
                        "Use ADD COLUMN IF NOT EXISTS or another name.")
    name = getattr(step, "name", None)
    if isinstance(step, AddUniqueUsingIndex):
        name = step.constraint_name
    if isinstance(step, CreateIndex) and step.concurrently:
        name = index_name(step)  # apply names the index it builds concurrently explicitly
    if isinstance(step, AddUniqueUsingIndex) and step.primary_key and state.has_primary_key:
        return _verdict(check_id, index, step, "blocking",
                        f"{state.label} already has a primary key and a table can have only one; the step would "
                        "fail. Drop the old primary key first, or add a UNIQUE constraint instead.")
    if isinstance(step, (AddUnique, AddForeignKey, AddCheck, AddUniqueUsingIndex)) and name and \
            name in state.constraint_names:
        return _verdict(check_id, index, step, "blocking",
                        f"constraint {display_name(name)} already exists on {state.label}; the step would fail. "
                        "Pick another name or drop the old constraint first.")
    index_like = isinstance(step, AddUnique) or (isinstance(step, CreateIndex) and not step.if_not_exists)
    if index_like and name and ctx.relation_exists(state.schema, name):
        return _verdict(check_id, index, step, "blocking",
                        f"a relation named {display_name(state.schema, name)} already exists, so the index "
                        f"{display_name(name)} cannot be created. Pick another name.")
    if isinstance(step, AddUnique) and step.primary_key and state.has_primary_key:
        return _verdict(check_id, index, step, "blocking",
                        f"{state.label} already has a primary key and a table can have only one; the step would "
                        "fail. Add a UNIQUE constraint instead, or drop the old primary key first.")
    if isinstance(step, AddForeignKey):
        parent = ctx.state(step.ref_schema, step.ref_table)
        if parent is None or parent.dropped_step is not None:
            return _verdict(check_id, index, step, "blocking",
                            f"referenced table {display_name(step.ref_schema, step.ref_table)} does not exist; "
                            "the foreign key cannot be added.")
        missing = [c for c in step.ref_columns if c not in parent.columns]
        if missing:
            return _verdict(check_id, index, step, "blocking",
                            f"referenced column {', '.join(display_name(c) for c in missing)} does not exist "
                            f"in {parent.label}.")
        if frozenset(step.ref_columns) not in parent.unique_keys or len(set(step.ref_columns)) != len(
            step.ref_columns
        ):
            return _verdict(check_id, index, step, "blocking",
                            f"{parent.label}({', '.join(display_name(c) for c in step.ref_columns)}) has no "
                            "primary key or unique constraint on exactly these columns, so PostgreSQL refuses "
                            "the foreign key. Add a UNIQUE constraint (or unique index) on them first.")
    return None


def _created_index_name(step: Step) -> str | None:
    """The name of the index a step builds, when the step names it."""
    if isinstance(step, CreateIndex):
        return step.name
    if isinstance(step, AddUnique):
        return step.name
    return None


def _invalid_index_checks(index: int, step: Step, ctx: PlanContext) -> list[Check]:
    """An INVALID index (left by a failed CREATE INDEX CONCURRENTLY) on a table the plan touches, or under a
    name the plan creates, must never pass for done: it is a blocker whose fix is a concurrent drop."""
    checks: list[Check] = []
    own = _created_index_name(step)
    if own is not None and isinstance(step, TableStep):
        state = ctx.state(step.schema_, step.table)
        schema = state.schema if state else (step.schema_ or ctx.current_schema)
        fresh = (schema, own) in ctx.relations or (schema, own) in ctx.dropped_indexes
        found = None if fresh else ctx.catalog.index_by_name(schema, own)
        if found is not None and not found.valid:
            ctx.invalid_checked.add((found.table_schema, found.table))
            drop = drop_index_concurrently(schema, own)
            what = ("IF NOT EXISTS would silently skip the build, leaving an index PostgreSQL never uses"
                    if isinstance(step, CreateIndex) and step.if_not_exists
                    else "the step would fail with \"already exists\"")
            checks.append(_verdict(
                INVALID_INDEX_PRECHECK, index, step, "blocking",
                f"index {display_name(schema, own)} exists but is INVALID (a CREATE INDEX CONCURRENTLY that "
                f"failed or was cancelled left it behind), and {what}. Drop it first: {drop.as_string()}",
                target=TargetRef(kind="index", schema=found.table_schema, table=found.table, name=own),
            ))
    tables = [] if isinstance(step, CreateTable) else [ctx.state(s, t) for s, t in step.tables()]
    for state in tables:
        if state is None or state.info is None or (state.schema, state.name) in ctx.invalid_checked:
            continue
        ctx.invalid_checked.add((state.schema, state.name))
        for ix in state.info.indexes.values():
            if ix.valid or (state.schema, ix.name) in ctx.dropped_indexes:
                continue
            drop = drop_index_concurrently(state.schema, ix.name)
            checks.append(_verdict(
                INVALID_INDEX_PRECHECK, index, step, "blocking",
                f"index {display_name(state.schema, ix.name)} on {state.label} is INVALID: a CREATE INDEX "
                "CONCURRENTLY failed or was cancelled and left it behind. PostgreSQL does not use it for queries "
                "but still maintains it on every write, and a rebuild under the same name would be skipped. "
                f"Drop it first: {drop.as_string()}",
                target=TargetRef(kind="index", schema=state.schema, table=state.name, name=ix.name),
            ))
    return checks


def _using_index_checks(index: int, step: AddUniqueUsingIndex, state: TableState, ctx: PlanContext) -> list[Check]:
    planned = ctx.plan_indexes.get((state.schema, step.index))
    existing = state.info.indexes.get(step.index) if state.info else None
    what = f"index {display_name(state.schema, step.index)}"
    if planned is not None:
        ok = planned.unique and not planned.where and planned.method == "btree"
        columns = planned.columns
    elif existing is not None:
        if not existing.valid:
            return []  # reported by the INVALID index check
        ok = existing.unique and not existing.partial and not existing.expressions
        columns = existing.columns
    else:
        return [_verdict(OBJECT_PRECHECK, index, step, "blocking",
                         f"{what} does not exist on {state.label}; build it first (CREATE UNIQUE INDEX "
                         "CONCURRENTLY), then add the constraint USING INDEX.")]
    if not ok:
        return [_verdict(OBJECT_PRECHECK, index, step, "blocking",
                         f"{what} is not a plain unique btree index on columns (it is partial, on expressions, "
                         "or not unique), so PostgreSQL refuses to turn it into a constraint.")]
    checks = [_verdict(OBJECT_PRECHECK, index, step, "pass",
                       f"{what} is a unique index on ({', '.join(display_name(c) for c in columns)}): the "
                       "constraint needs no scan for duplicates.")]
    if step.primary_key and state.info is not None:
        checks.extend(_primary_key_nulls(index, step.summary(), state, columns))
    return checks


def _large_table_checks(index: int, step: Step, ctx: PlanContext) -> list[Check]:
    if not isinstance(step, TableStep) or isinstance(step, CreateTable):
        return []
    checks: list[Check] = []
    tables = [ctx.state(s, t) for s, t in step.tables()]
    lock, work = lock_of(step)
    for state in tables:
        if state is None or state.info is None or not ctx.is_large(state):
            continue
        info = state.info
        estimate = "estimated from its size (never analyzed)" if info.rows_estimated_from_size else "estimated"
        stats = {"estimatedRows": info.estimated_rows, "totalBytes": info.total_bytes}
        checks.append(_verdict(
            LARGE_TABLE_WARNING, index, step, "warning",
            f"{state.label} is large: ~{_human_rows(info.estimated_rows)} rows ({estimate}), "
            f"{human_bytes(info.total_bytes)}. This step takes a {lock} lock; {work}. "
            "Schedule it off-peak, with a lock_timeout.",
            target=TargetRef(kind="table", schema=state.schema, table=state.name), **stats,
        ))
        if isinstance(step, CreateIndex) and not step.concurrently or isinstance(step, AddUnique):
            alternative = (
                "build it with CREATE INDEX CONCURRENTLY instead"
                if isinstance(step, CreateIndex)
                else "build a unique index CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX"
            )
            checks.append(_verdict(
                NON_CONCURRENT_INDEX_WARNING, index, step, "warning",
                f"builds an index on large table {state.label} without CONCURRENTLY, blocking writes "
                f"({lock}) for the whole build. Apply will require an explicit confirmation naming "
                f"{state.label}; or {alternative}.",
                target=TargetRef(kind="table", schema=state.schema, table=state.name), **stats,
            ))
    return checks


def _created_in_plan(index: int, step: Step, state: TableState, check_id: str, what: str) -> Check:
    if state.inserted_by:
        steps = ", ".join(str(s) for s in state.inserted_by)
        return _verdict(check_id, index, step, "warning",
                        f"{state.label} is created by step {state.created_step} and filled by step {steps} "
                        f"(raw SQL), which preflight cannot read before apply: {what} is checked by "
                        "PostgreSQL at apply time only.")
    return _verdict(check_id, index, step, "pass",
                    f"{state.label} is created by step {state.created_step} and is empty here: {what} holds.")


def _not_null_check(index: int, step: Step, state: TableState, column: str, ctx: PlanContext,
                    predicate: sql.Composable | None = None) -> Check:
    label = state.column_label(column)
    if state.info is None:
        return _created_in_plan(index, step, state, NOT_NULL_PRECHECK, f"NOT NULL on {label}")
    if predicate is None and column in state.no_nulls_because:
        return _verdict(NOT_NULL_PRECHECK, index, step, "pass",
                        f"{label} has no NULLs: {state.no_nulls_because[column]}.")
    if predicate is None and column in state.not_null and not state.layers:
        return _verdict(NOT_NULL_PRECHECK, index, step, "pass", f"{label} is already NOT NULL.")
    return Check(
        check_id=NOT_NULL_PRECHECK,
        step=index,
        step_summary=step.summary(),
        target=TargetRef(kind="column", schema=state.schema, table=state.name, columns=(column,)),
        probe=RowsProbe(source=state.source(), predicate=predicate or sql.SQL("{} IS NULL").format(
            sql.Identifier(column))),
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} have NULL in {display_name(column)}; "
        f"{step.summary()} would fail. Backfill them (UPDATE … SET {display_name(column)} = … WHERE "
        f"{display_name(column)} IS NULL) or delete them first.",
        ok=f"no NULLs in {label} ({{totalRows}} rows).",
        notes=state.history_notes(),
    )


def _primary_key_nulls(index: int, step_summary: str, state: TableState, columns: tuple[str, ...]) -> list[Check]:
    """A primary key makes its columns NOT NULL: rows with a NULL in any of them fail the step."""
    nullable = tuple(c for c in columns if c not in state.not_null or state.layers)
    if not nullable:
        return []
    cols = ", ".join(display_name(c) for c in columns)
    return [Check(
        check_id=NOT_NULL_PRECHECK, step=index, step_summary=step_summary,
        target=TargetRef(kind="column", schema=state.schema, table=state.name, columns=columns),
        probe=RowsProbe(source=state.source(), predicate=_any_null(nullable)),
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} have NULL in ({cols}); a primary "
        "key makes its columns NOT NULL, so the step would fail. Backfill or delete those rows.",
        ok=f"no NULLs in the primary key columns ({cols}) of {state.label} ({{totalRows}} rows).",
        notes=state.history_notes(),
    )]


def _unique_check(index: int, step: AddUnique | CreateIndex, state: TableState,
                  summary: str | None = None) -> list[Check]:
    step_summary = summary or step.summary()
    cols = ", ".join(display_name(c) for c in step.columns)
    target = TargetRef(kind="column", schema=state.schema, table=state.name, columns=step.columns)
    if state.info is None:
        return [_created_in_plan(index, step, state, UNIQUE_PRECHECK, f"uniqueness of ({cols})")]
    checks = []
    source = state.source()
    if isinstance(step, AddUnique) and step.primary_key:
        checks.extend(_primary_key_nulls(index, step_summary, state, step.columns))
    where = sql.SQL(step.where) if isinstance(step, CreateIndex) and step.where else None
    nnd = step.nulls_not_distinct or (isinstance(step, AddUnique) and step.primary_key)
    null_rule = "" if nnd else " (rows with a NULL in the key are not compared, as PostgreSQL does)"
    checks.append(Check(
        check_id=UNIQUE_PRECHECK, step=index, step_summary=step_summary, target=target,
        probe=DuplicatesProbe(source=source, columns=step.columns, nulls_not_distinct=nnd, where=where),
        fail=f"{{duplicateGroups}} values of ({cols}) occur more than once in {state.label}, in "
        f"{{violations}} rows{null_rule}; {step_summary} would fail. Dedupe those rows first.",
        ok=f"({cols}) is unique in {state.label} ({{totalRows}} rows){null_rule}.",
        notes=state.history_notes(),
    ))
    return checks


def _fk_check(index: int, step: Step, state: TableState, parent: TableState, columns: tuple[str, ...],
              ref_columns: tuple[str, ...], match_full: bool) -> Check:
    cols = ", ".join(display_name(c) for c in columns)
    refs = ", ".join(display_name(c) for c in ref_columns)
    target = TargetRef(kind="relationship", schema=state.schema, table=state.name, columns=columns,
                       ref_schema=parent.schema, ref_table=parent.name, ref_columns=ref_columns)
    if state.info is None:
        return _created_in_plan(index, step, state, FK_VIOLATIONS_PRECHECK, "the foreign key")
    rule = ("MATCH FULL: a key that is partly NULL is a violation too" if match_full
            else "rows with a NULL in the key are not checked (MATCH SIMPLE)")
    common = dict(
        check_id=FK_VIOLATIONS_PRECHECK, step=index, step_summary=step.summary(), target=target,
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} have a ({cols}) with no matching "
        f"{parent.label}({refs}); {rule}. Fix the orphans (delete them, set the key to NULL, or insert the "
        "missing parents) before adding the foreign key.",
        ok=f"every ({cols}) of {state.label} has a matching {parent.label}({refs}) ({{totalRows}} rows; {rule}).",
        notes=state.history_notes() + parent.history_notes(),
    )
    if parent.info is None and not parent.inserted_by:
        # The referenced table is new and empty: every fully non-NULL key is an orphan.
        keyed = _all_not_null(columns)
        if match_full:
            keyed = sql.SQL("({}) OR NOT ({})").format(keyed, sql.SQL(" AND ").join(
                sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in columns))
        return Check(probe=RowsProbe(source=state.source(), predicate=keyed), **common)  # type: ignore[arg-type]
    if parent.info is None:
        return _created_in_plan(index, step, parent, FK_VIOLATIONS_PRECHECK, "the foreign key")
    return Check(  # type: ignore[arg-type]
        probe=OrphansProbe(child=state.source(), columns=columns, parent=parent.source(),
                           ref_columns=ref_columns, match_full=match_full),
        **common,
    )


def _check_constraint_check(index: int, step: Step, state: TableState, expression: str,
                            name: str | None) -> Check:
    shown = f"CHECK ({expression})" + (f" ({display_name(name)})" if name else "")
    if state.info is None:
        return _created_in_plan(index, step, state, CHECK_CONSTRAINT_PRECHECK, shown)
    return Check(
        check_id=CHECK_CONSTRAINT_PRECHECK, step=index, step_summary=step.summary(),
        target=TargetRef(kind="constraint", schema=state.schema, table=state.name, name=name),
        # A CHECK passes when its expression is true or NULL: only FALSE violates it.
        probe=RowsProbe(source=state.source(), predicate=sql.SQL("({}) IS FALSE").format(sql.SQL(expression))),
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} violate {shown}; the step would fail. "
        "Correct or delete those rows, or add the constraint NOT VALID and validate it after cleanup.",
        ok=f"every row of {state.label} satisfies {shown} ({{totalRows}} rows).",
        notes=state.history_notes(),
    )


def _cast_check(index: int, step: AlterColumnType, state: TableState, ctx: PlanContext) -> Check:
    label = state.column_label(step.column)
    if state.info is None:
        return _created_in_plan(index, step, state, CAST_PRECHECK, f"the conversion of {label}")
    base = state.info.columns.get(step.column)
    if step.using is None and base is not None and not state.layers:
        if not ctx.catalog.assignment_cast_exists(base.type_oid, step.type):
            return _verdict(CAST_PRECHECK, index, step, "blocking",
                            f"{label} ({base.type}) cannot be converted to {step.type} automatically; PostgreSQL "
                            f"would refuse the step. Add USING, e.g. USING {display_name(step.column)}::{step.type}.")
    expression = sql.SQL(step.using) if step.using else sql.Identifier(step.column)
    return Check(
        check_id=CAST_PRECHECK, step=index, step_summary=step.summary(),
        target=TargetRef(kind="column", schema=state.schema, table=state.name, columns=(step.column,)),
        probe=CastProbe(source=state.source(), column=step.column, expression=expression, type=step.type,
                        not_null=step.column in state.not_null, length_limit=_length_limit(step.type)),
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} cannot be converted to {step.type}"
        f"{' with USING ' + step.using if step.using else ''}{{firstError}}; the step would fail. "
        "Fix those values or change the USING expression.",
        ok=f"every value of {label} converts to {step.type} ({{totalRows}} rows).",
        notes=state.history_notes(),
    )


def _validate_checks(index: int, step: ValidateConstraint, state: TableState, ctx: PlanContext) -> list[Check]:
    planned = state.plan_constraints.get(step.name)
    if isinstance(planned, AddForeignKey):
        parent = ctx.state(planned.ref_schema, planned.ref_table)
        if parent is not None:
            return [_fk_check(index, step, state, parent, planned.columns, planned.ref_columns, planned.match_full)]
    if isinstance(planned, AddCheck):
        return [_check_constraint_check(index, step, state, planned.expression, planned.name)]
    info = state.info.constraints.get(step.name) if state.info else None
    if info is None:
        return [_verdict(OBJECT_PRECHECK, index, step, "blocking",
                         f"constraint {display_name(step.name)} does not exist on {state.label}; VALIDATE would "
                         "fail. Check its name in \\d of the table.")]
    if info.validated:
        return [_verdict(OBJECT_PRECHECK, index, step, "pass",
                         f"constraint {display_name(step.name)} is already valid; VALIDATE does nothing.")]
    if info.type == "f" and info.ref_table:
        parent = ctx.state(info.ref_schema, info.ref_table)
        if parent is not None:
            return [_fk_check(index, step, state, parent, info.columns, info.ref_columns, info.match_full)]
    if info.type == "c" and info.check_expression:
        return [_check_constraint_check(index, step, state, info.check_expression, info.name)]
    if info.type == "n" and info.columns:
        return [_not_null_check(index, step, state, info.columns[0], ctx,
                                predicate=sql.SQL("{} IS NULL").format(sql.Identifier(info.columns[0])))]
    return [_verdict(OBJECT_PRECHECK, index, step, "warning",
                     f"constraint {display_name(step.name)} ({info.definition}) is of a kind preflight does not "
                     "precheck; PostgreSQL validates it at apply.")]


def _destructive(index: int, step: Step, ctx: PlanContext) -> Check | None:
    if isinstance(step, DropTable):
        state = ctx.state(step.schema_, step.table)
        rows = state.info.estimated_rows if state and state.info else 0
        return _verdict(DESTRUCTIVE_CHANGE_WARNING, index, step, "warning",
                        f"drops table {display_name(step.schema_, step.table)} (~{_human_rows(rows)} rows) and its "
                        "data; it cannot be undone without a backup." + (" CASCADE also drops dependent objects."
                                                                          if step.cascade else ""),
                        estimatedRows=rows)
    if isinstance(step, DropColumn):
        state = ctx.state(step.schema_, step.table)
        rows = state.info.estimated_rows if state and state.info else 0
        return _verdict(DESTRUCTIVE_CHANGE_WARNING, index, step, "warning",
                        f"drops column {display_name(step.schema_, step.table, step.column)} and its values in "
                        f"~{_human_rows(rows)} rows; code that still reads it will fail.", estimatedRows=rows)
    if isinstance(step, DropConstraint):
        return _verdict(DESTRUCTIVE_CHANGE_WARNING, index, step, "warning",
                        f"drops constraint {display_name(step.name)} on {display_name(step.schema_, step.table)}: "
                        "the data is no longer guaranteed to satisfy it.")
    if isinstance(step, DropIndex):
        how = "" if step.concurrently else " It takes an ACCESS EXCLUSIVE lock on the table; DROP INDEX " \
            "CONCURRENTLY does not block traffic."
        return _verdict(DESTRUCTIVE_CHANGE_WARNING, index, step, "warning",
                        f"drops index {display_name(step.schema_, step.name)}: queries that use it slow down, and a "
                        f"unique index stops enforcing uniqueness.{how}")
    return None


def _reads_rows(step: Step) -> bool:
    """Whether the step's check reads the rows of its table (so needs to know them)."""
    if isinstance(step, (AddForeignKey, AddCheck)):
        return not step.not_valid
    if isinstance(step, CreateIndex):
        return step.unique
    if isinstance(step, AddColumn):
        return step.not_null
    return isinstance(step, (SetNotNull, AlterColumnType, AddUnique, ValidateConstraint, AddUniqueUsingIndex))


def checks_for(index: int, step: Step, context: PlanContext) -> list[Check]:
    """The checks of one step (1-based ``index``), in a fixed order: warnings from the catalog first,
    then the data checks. The context must already hold the effects of the steps before it."""
    if isinstance(step, RawSQL):
        return [_verdict(UNMODELLED_SQL_WARNING, index, step, "warning",
                         f"step {index} is not modelled ({step.reason}); it is applied as written and nothing "
                         "about its data is prechecked. Split it into supported statements to get prechecks.")]
    checks: list[Check] = []
    destructive = _destructive(index, step, context)
    if destructive:
        checks.append(destructive)
    # An INVALID index first: a leftover under the very name the step creates would otherwise read as
    # "already exists", when what clears it is its DROP INDEX CONCURRENTLY.
    invalid = _invalid_index_checks(index, step, context)
    # Where PostgreSQL ran the step in the rehearsal, its objects exist as it needs them: no model's guess.
    rehearsed = context.rehearsal is not None and context.rehearsal.passed(index)
    missing = None if rehearsed else _missing_objects(index, step, context)
    if missing is not None:
        own = _created_index_name(step)
        named = [c for c in invalid if own is not None and c.target is not None and c.target.name == own]
        return checks + invalid + ([] if named else [missing])
    checks.extend(invalid)
    checks.extend(_large_table_checks(index, step, context))
    if not isinstance(step, TableStep) or isinstance(step, CreateTable):
        return checks
    state = context.state(step.schema_, step.table)
    if state is None:  # rehearsed: a DROP ... IF EXISTS of nothing
        return checks
    parent = context.state(step.ref_schema, step.ref_table) if isinstance(step, AddForeignKey) else None
    unknown = state.unknown or (parent.unknown if parent is not None else None)
    if parent is not None and parent.added_by and _reads_rows(step):
        unknown = unknown or (f"step {', '.join(map(str, parent.added_by))} inserts rows into {parent.label}, which "
                              "preflight does not read, and they may be the parents a foreign key needs")
    if unknown and _reads_rows(step):
        checks.append(_verdict(_primary_check_id(step), index, step, "warning",
                               f"cannot verify step {index} before apply: {unknown}. PostgreSQL checks the rows "
                               "at apply; acknowledge this step, or split the plan so its rows exist first."))
        return checks
    first_data = len(checks)
    if isinstance(step, SetNotNull):
        checks.append(_not_null_check(index, step, state, step.column, context))
    elif isinstance(step, AddColumn) and step.not_null and step.column not in state.columns:
        added = context.added_column(index, step)  # what PostgreSQL made of it, when rehearsed
        numbered = added is not None and (bool(added.identity) or _calls_nextval(added.default or ""))
        default = step.default if added is None else added.default
        generated = added is not None and bool(added.generated)
        if numbered:
            pass  # an identity or a serial: every row gets the next number, never NULL
        elif _is_null_constant(default) and not generated:
            # Every existing row would get NULL: all of them violate, so the check is a row count.
            checks.append(Check(
                check_id=NOT_NULL_PRECHECK, step=index, step_summary=step.summary(),
                target=step.target(), probe=RowsProbe(source=state.source(), predicate=sql.SQL("true"))
                if state.info else Verdict("pass", f"{state.label} is created by step {state.created_step} "
                                                   "and is empty here."),
                fail=f"{state.label} has {{totalRows}} rows and the new column {display_name(step.column)} is "
                "NOT NULL without a DEFAULT, so every row would violate it. Add a DEFAULT, or add the column "
                "nullable, backfill, then SET NOT NULL.",
                ok=f"{state.label} is empty, so a NOT NULL column without a default can be added.",
                notes=state.history_notes(),
            ))
        elif (generated or not _is_constant(default)) and state.info is not None:
            value = _added_value(added) if added is not None else _cast(sql.SQL(step.default or "NULL"), step.type)
            checks.append(_not_null_check(index, step, state, step.column, context,
                                          predicate=sql.SQL("{} IS NULL").format(value)))
    elif isinstance(step, AlterColumnType):
        checks.append(_cast_check(index, step, state, context))
    elif isinstance(step, AddUnique) or (isinstance(step, CreateIndex) and step.unique):
        checks.extend(_unique_check(index, step, state))
    elif isinstance(step, AddForeignKey) and not step.not_valid:
        assert parent is not None
        checks.append(_fk_check(index, step, state, parent, step.columns, step.ref_columns, step.match_full))
    elif isinstance(step, AddCheck) and not step.not_valid:
        checks.append(_check_constraint_check(index, step, state, step.expression, step.name))
    elif isinstance(step, ValidateConstraint):
        checks.extend(_validate_checks(index, step, state, context))
    elif isinstance(step, AddUniqueUsingIndex):
        checks.extend(_using_index_checks(index, step, state, context))
    if state.added_by:
        added = ", ".join(map(str, state.added_by))
        unsure = (f"cannot verify step {index} before apply: none of the rows of {state.label} there now breaks it, "
                  f"but step {added} inserts rows preflight does not read. PostgreSQL checks them at apply; "
                  "acknowledge this step, or apply the earlier steps first and preflight again.")
        checks[first_data:] = [dataclasses.replace(c, unsure_pass=unsure) for c in checks[first_data:]]
    return checks


def derive_checks(plan: MigrationPlan, catalog: Catalog, options: PreflightOptions | None = None,
                  rehearsal: Rehearsal | None = None) -> list[Check]:
    """All checks of a plan, in step order. The same plan on the same catalog gives the same checks. With a
    ``rehearsal``, each step is judged on the catalog PostgreSQL had when the rehearsal ran it."""
    context = PlanContext(catalog=catalog, options=options or PreflightOptions(), rehearsal=rehearsal)
    checks: list[Check] = []
    for index, step in enumerate(plan.steps, start=1):
        context.step = index
        own = checks_for(index, step, context)
        if rehearsal is not None and rehearsal.passed(index):
            own = [dataclasses.replace(c, rehearsed=True) for c in own]
        checks.extend(own)
        context.absorb(index, step)
        context.follow_rehearsal(index, step)
        checks.extend(context.rechecks(index, step))
    return checks
