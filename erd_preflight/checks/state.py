"""The plan's effect on each table, step by step: a model of each statement, and what the rehearsal's
catalog says each step did (relations by OID, columns by number)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql

from ..catalog import Catalog, ColumnInfo, ReferencingKey, TableInfo
from ..plan import (
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
    RawSQL,
    SetNotNull,
    Step,
    TableStep,
    display_name,
)
from ..rehearse.shadow_catalog import ColumnSnapshot, Rehearsal, RelationSnapshot
from ..sqlparse import inline_ctes, normalize_expression, relations_replaced, walk_ast
from .expressions import cast_to, is_constant, mentions, serial_type
from .model import PreflightOptions, Source
from .new_tables import empty_info, fresh_numbers, made_names, quiet, starts_empty
from .views import as_subquery, views_inlined
from .upsert import Arbiter, arbiter_of, kept_rows

# The longest SQL of a changed table's rows that a later statement reads in its place (characters). Statements that
# read each other's tables (an UPDATE ... FROM of a table an UPDATE ... FROM changed) nest them: past this, the
# statement is a person's call, so a plan's checks stay of a size PostgreSQL plans in milliseconds.
READ_AS_PLANNED_MAX = 50_000


class _TooLarge(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# The plan's effect on each table, step by step.


@dataclass(frozen=True)
class UpdateLayer:
    """What a simulated ``UPDATE t [AS alias] SET col = expr [WHERE cond]`` did: the rows before it, and its
    assignments as written, so every constraint of the table can be checked on the rows it changes."""

    before: Source  # the table's rows just before the UPDATE
    alias: str  # the name the UPDATE's expressions use for the table
    where: str | None
    values: dict[str, str]  # column -> the expression assigned, as written
    types: dict[str, str]  # every column's type before the UPDATE
    recomputed: tuple[str, ...] = ()  # stored generated columns PostgreSQL computes again from the new values
    regenerated: tuple[tuple[str, str], ...] = ()  # each of those with its expression (over the written row)
    joined: str | None = None  # UPDATE ... FROM: a row of the table more than one row of the FROM items matches


@dataclass(frozen=True)
class InsertLayer:
    """What a simulated ``INSERT INTO t [(cols)] VALUES ... | SELECT ...`` added: its rows as written (each value
    before the assignment to its column's type, named ``erd_written_<column>``) and as stored (cast, with the
    DEFAULT of every column left out), in the table's column order."""

    written: Source  # the new rows, the values as written (columns the INSERT names only)
    stored: Source  # the new rows as the table holds them
    types: dict[str, str]  # every column's type
    before: Source  # the table's own rows just before the INSERT
    # ON CONFLICT DO NOTHING: the rows it adds (``stored`` are the rows it proposes, which NOT NULL and CHECK see)
    added: Source | None = None

    @property
    def rows(self) -> Source:
        """The rows the INSERT adds to the table: what foreign keys and unique keys see."""
        return self.added or self.stored


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
    updates: dict[int, UpdateLayer] = field(default_factory=dict)  # by step: what each simulated UPDATE did
    deletes: dict[int, UpdateLayer] = field(default_factory=dict)  # by step: what each simulated DELETE removed
    filters: dict[int, str] = field(default_factory=dict)  # layer depth -> a DELETE's condition: rows kept are not it
    unions: dict[int, str] = field(default_factory=dict)  # layer depth -> an INSERT's new rows, appended there
    inserts: dict[int, InsertLayer] = field(default_factory=dict)  # by step: what each simulated INSERT added
    generated: dict[str, str] = field(default_factory=dict)  # STORED generated column -> its expression
    retyped: dict[int, str] = field(default_factory=dict)  # by step: the column an ALTER COLUMN TYPE converted
    version: int = 0  # one more for each change of the rows: equal versions, equal rows (and a shared scan)
    attnums: dict[int, str] = field(default_factory=dict)  # the shadow's attnum -> the column's name here
    unknown: str | None = None  # why the rows are not known before apply (then no data check reads them)
    added_by: list[int] = field(default_factory=list)  # steps that insert rows preflight does not read
    starts_empty: bool = False  # made by a CREATE TABLE of its own rows only (no parent, not partitioned)
    taken_empty_at: int | None = None  # the INSERT from which the plan's table is read as rows (checks.new_tables)
    draws: dict[str, list[str]] = field(default_factory=dict)  # column -> the rows each INSERT wrote, drawing its sequence
    cascaded: dict[int, str] = field(default_factory=dict)  # by step: whose DELETE cascades to this table's rows
    _rendered: list[tuple[str, str]] = field(default_factory=list, repr=False)  # per layer: relation, its SQL

    @property
    def label(self) -> str:
        return display_name(self.schema, self.name)

    def column_label(self, column: str) -> str:
        return f"{self.label}.{display_name(column)}"

    def source(self, own_rows: bool = False) -> Source:
        """The table's rows at this step. ``own_rows``: of this table only, not of the tables that inherit from it
        (what a UNIQUE, a primary key or a foreign key of an inheritance parent covers, as PostgreSQL's ONLY)."""
        assert self.info is not None, "a table created in the plan has no rows to read"
        if own_rows and self.info.inherited_by:
            return self._source(sql.SQL("ONLY {}").format(self.info.relation), [], "@only")
        return self._source(self.info.relation, self._rendered, "")

    def _source(self, base: sql.Composable, rendered: list[tuple[str, str]], mode: str) -> Source:
        assert self.info is not None
        relation: str | None = None
        # a relation made from a query: the query runs again in every check, so it is screened like an expression
        expressions: list[str] = [f"SELECT * FROM {self.info.rows_from} AS erd_rows"] if self.info.rows_from else []
        # Each layer is rendered once and kept: a plan with a thousand steps on one table neither nests a
        # thousand Composed objects (Python's recursion limit) nor renders its layers again for every check.
        for depth, (layer_alias, projection) in enumerate(self.layers):
            if depth < len(rendered):
                relation, expression = rendered[depth]
            else:
                items = [
                    sql.SQL("{} AS {}").format(expr, sql.Identifier(name)) if expr is not None
                    else sql.Identifier(name)
                    for name, expr in projection
                ]
                inner: sql.Composable = base if relation is None else sql.SQL(relation)
                kept = sql.SQL(" WHERE ({}) IS NOT TRUE").format(sql.SQL(self.filters[depth])) \
                    if depth in self.filters else sql.SQL("")
                relation = sql.SQL("(SELECT {} FROM {} AS {}{})").format(
                    sql.SQL(", ").join(items), inner, sql.Identifier(layer_alias), kept).as_string()
                if depth in self.unions:  # an INSERT's rows join the table's here
                    names = sql.SQL(", ").join(sql.Identifier(name) for name, _ in projection)
                    relation = sql.SQL("(SELECT {} FROM {} AS erd_old UNION ALL SELECT {} FROM {} AS erd_new)").format(
                        names, sql.SQL(relation), names, sql.SQL(self.unions[depth])).as_string()
                changed = [sql.SQL("{} AS {}").format(expr, sql.Identifier(name))
                           for name, expr in projection if expr is not None]
                expression = sql.SQL("SELECT {}").format(sql.SQL(", ").join(changed)).as_string() if changed else ""
                rendered.append((relation, expression))
            if expression:
                expressions.append(expression)
        return Source(
            key=f"{self.schema}.{self.name}@{self.version}{mode}",
            relation=base if relation is None else sql.SQL(relation),
            alias=self.name,
            columns=tuple(self.columns.items()),
            derived=bool(self.layers),
            expressions=tuple(expressions),
            table=(self.schema, self.name) if relation is None and not self.info.rows_from and not mode else None,
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
        if (self.info is not None and independent and self.layers and len(self.layers) - 1 not in self.filters
                and len(self.layers) - 1 not in self.unions):
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
        if self.deletes:
            steps = ", ".join(str(s) for s in self.deletes)
            notes.append(f"The rows were read as the DELETE of step {steps} leaves them.")
        return tuple(notes)


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
    online: frozenset[int] = frozenset()  # steps apply runs in their online form (phases.online_steps)
    _oid_keys: dict[int, tuple[str, str]] = field(default_factory=dict)  # the shadow's relation -> its state
    created_domains: set[str] = field(default_factory=set)  # names of the domains the plan creates
    # steps that may make a trigger or a rule (CREATE TRIGGER, CREATE RULE, ENABLE TRIGGER, a DO block)
    action_steps: list[int] = field(default_factory=list)
    plan_extensions: dict[str, bool] = field(default_factory=dict)  # extension -> whether the plan so far leaves it
    # why no table's rows are known any more: a block or procedure that may write any table (dynamic SQL, a call)
    blind: str | None = None
    made: set[str] = field(default_factory=set)  # names of the functions and types the plan makes or changes so far
    writing_steps: list[int] = field(default_factory=list)  # steps that may write rows or move a sequence

    def references_to(self, state: TableState, index: int) -> list[ReferencingKey]:
        """The foreign keys referencing the table before step ``index``: those it had (catalog), those of the tables
        the plan made (the rehearsal's catalog), and those the plan added."""
        assert state.info is not None
        keys = list(self.catalog.referencing(state.info.oid)) if state.info.oid else []
        made = self.made_references(state, index)
        keys += made
        seen = {(k.schema, k.table, k.columns, k.ref_columns) for k in made}
        action = {"NO ACTION": "a", "RESTRICT": "r", "CASCADE": "c", "SET NULL": "n", "SET DEFAULT": "d"}
        for other in self.states():
            for s in other.enforced:
                if isinstance(s, AddForeignKey) and self.state(s.ref_schema, s.ref_table) is state \
                        and (s.name is None or s.name in other.constraint_names) \
                        and (other.schema, other.name, s.columns, s.ref_columns) not in seen:
                    keys.append(ReferencingKey(schema=other.schema, table=other.name, name=s.name or "(the plan's)",
                                               columns=s.columns, ref_columns=s.ref_columns, match_full=s.match_full,
                                               on_update=action[s.on_update], on_delete=action[s.on_delete]))
        return keys

    def _follow_actions(self, index: int, state: TableState, written: set[str] | None, depth: int = 0) -> None:
        """A DELETE (``written`` None) or an UPDATE of ``written`` columns of ``state``'s table sets off what the
        foreign keys that reference it do. ON DELETE CASCADE deletes the referencing rows of the rows it removes:
        simulated as a DELETE of the referencing table at the same step (its checks follow, and what its own
        foreign keys do, down to 8 tables). SET NULL, SET DEFAULT and ON UPDATE CASCADE change the referencing
        rows, which preflight does not simulate, so their later checks say they cannot read them (never read them
        as they are now)."""
        shown = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
        for key in self.references_to(state, index):
            action = key.on_delete if written is None else key.on_update
            if action not in shown or (written is not None and not written & set(key.ref_columns)):
                continue
            child = state if (key.schema, key.table) == (state.schema, state.name) else self.state(key.schema, key.table)
            if child is None or child.info is None:
                continue
            if written is None and action == "c" and depth < 8 and self._cascade(index, state, child, key, depth):
                continue
            verb = "deletes rows of" if written is None else "updates keys of"
            child.unknown = child.unknown or (
                f"step {index} {verb} {state.label}, and foreign key {display_name(key.name)} (ON "
                f"{'DELETE' if written is None else 'UPDATE'} {shown[action]}) changes the rows of {child.label} with "
                "them, which preflight does not simulate, so the rows later checks would read are not known before "
                "apply")

    def _cascade(self, index: int, parent: TableState, child: TableState, key: ReferencingKey, depth: int) -> bool:
        """Step ``index`` deletes rows of ``parent``; ``key`` (ON DELETE CASCADE) deletes the rows of ``child`` that
        reference them, as a DELETE of its own at the same step. False when that cannot be said here (the table
        references itself, its rows are not known, or it is deleted from twice in the step)."""
        layer = parent.deletes.get(index)
        if (layer is None or child is parent or child.unknown or child.added_by or index in child.deletes
                or child.info is None or child.info.inherited_by or child.name == layer.alias):
            return False
        match = sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier(layer.alias, r), sql.Identifier(child.name, c))
            for c, r in zip(key.columns, key.ref_columns))
        where = sql.SQL("EXISTS (SELECT 1 FROM {} AS {} WHERE ({}) AND {})").format(
            layer.before.relation, sql.Identifier(layer.alias), sql.SQL(layer.where or "true"), match).as_string()
        child.deletes[index] = UpdateLayer(before=child.source(), alias=child.name, where=where, values={},
                                           types=dict(child.columns))
        child.push_layer({}, alias=child.name)
        child.filters[len(child.layers) - 1] = where
        child.cascaded[index] = f"{parent.label} ({display_name(key.name)}, ON DELETE CASCADE)"
        self._follow_actions(index, child, None, depth + 1)
        return True

    def made_references(self, state: TableState, index: int) -> list[ReferencingKey]:
        """The foreign keys of tables the plan made that reference ``state``'s table before step ``index``, as the
        rehearsal's catalog has them (the target's catalog does not)."""
        snapshot = self.rehearsal.before.get(index) if self.rehearsal else None
        if snapshot is None or self.rehearsal is None:
            return []
        keys: list[ReferencingKey] = []
        for oid, relation in snapshot.relations.items():
            if oid in self.rehearsal.start.relations:
                continue
            for key in relation.definitions:
                if key.type == "f" and key.ref_table is not None \
                        and self.state(key.ref_schema, key.ref_table) is state:
                    keys.append(ReferencingKey(schema=relation.schema, table=relation.name, name=key.name,
                                               columns=key.columns, ref_columns=key.ref_columns,
                                               match_full=key.match_full, on_update=key.on_update,
                                               on_delete=key.on_delete))
        return keys

    def makes_actions_before(self, index: int) -> bool:
        """Whether a step before ``index`` may make or enable a trigger or rule, which the database's catalog does
        not show yet."""
        return any(step < index for step in self.action_steps)

    def plan_creates_domain(self, type_text: str) -> bool:
        try:
            names = pglast.parse_sql(f"SELECT NULL::{type_text}")[0].stmt.targetList[0].val.typeName.names
        except pglast.parser.ParseError:
            return True
        return names[-1].sval in self.created_domains

    def states(self) -> list[TableState]:
        """Every table state the plan has touched so far."""
        return list(self._states.values())

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
                generated={c.name: c.generated for c in info.columns.values() if c.generated},
                unknown=self.blind,
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

    def absorb_added_column(self, index: int, step: AddColumn) -> None:
        """An ADD COLUMN as PostgreSQL made it in the rehearsal (its real type; what each row gets: the DEFAULT,
        numbers from a sequence, the generation expression), else as the model reads the step."""
        added = self.added_column(index, step)
        state = self.state(step.schema_, step.table)
        if added is None or state is None or state.info is None or step.column in state.columns:
            self.absorb(index, step)
            return
        state.push_layer({step.column: added_value(added)}, new_types={step.column: added.type},
                         independent=not added.generated)
        state.attnums[added.attnum] = step.column  # the rehearsal's own record of it, followed later, is this one
        if added.not_null:
            state.not_null.add(step.column)

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
            elif (query := self.filled_by_query(step, index)) is not None and relation.kind in ("r", "m"):
                # its rows are the query's, which reads tables as they are now: read them from the database
                state.info = TableInfo(
                    oid=0, schema=relation.schema, name=relation.name, kind="r", estimated_rows=0,
                    rows_estimated_from_size=False, heap_bytes=0, total_bytes=0,
                    columns={c.name: ColumnInfo(name=c.name, type=c.type, not_null=c.not_null, type_oid=0)
                             for c in relation.columns},
                    constraints={}, indexes={}, rows_from=query_rows(query, [c.name for c in relation.columns]))
            elif not (relation.kind in ("r", "p") and creates_empty(step)) and not (
                    relation.kind == "m" and not relation.populated):
                state.unknown = (f"{label} is created by step {index} from a query or inside a block, so its rows "
                                 "are not known before apply")
            if key in self._states:  # DROP, then CREATE under the same name: another relation
                key = ("", f"oid {relation.oid}")
            self._states[key] = state
        self._oid_keys[relation.oid] = key
        state.starts_empty = relation.kind == "r" and (isinstance(step, CreateTable) or (
            isinstance(step, RawSQL) and creates_empty(step) and all(starts_empty(s) for s in step.parsed)))
        state.attnums = {c.attnum: c.name for c in relation.columns}
        state.columns = {c.name: c.type for c in relation.columns}
        take_constraints(state, relation)

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
                changes[column.name] = added_value(column)
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
        take_constraints(state, relation)

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
            state.unique_keys = create_table_keys(step)
            state.starts_empty = True
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
            kind = serial_type(step.type) or step.type
            if serial_type(step.type):  # a new sequence numbers the rows there: distinct, never NULL
                state.push_layer({step.column: cast_to(sql.SQL("row_number() OVER ()"), kind)},
                                 new_types={step.column: kind})
                state.not_null.add(step.column)
                return
            state.push_layer({step.column: cast_to(value, kind)}, new_types={step.column: kind}, independent=True)
            if step.not_null:
                state.not_null.add(step.column)
            if is_constant(step.default):
                state.no_nulls_because[step.column] = f"step {index} adds it with DEFAULT {step.default}"
        elif isinstance(step, AlterColumnType):
            using = sql.SQL(step.using) if step.using else sql.Identifier(step.column)
            state.push_layer({step.column: cast_to(using, step.type)}, new_types={step.column: step.type})
            state.no_nulls_because.pop(step.column, None)
            state.retyped[index] = step.column
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
        statements = step.parsed
        self.made |= made_names(statements)
        if not all(quiet(stmt) for stmt in statements):
            self.writing_steps.append(index)
        verbs = {ast.InsertStmt: "inserts rows into", ast.UpdateStmt: "updates", ast.DeleteStmt: "deletes rows of",
                 ast.MergeStmt: "merges into"}
        upsert = enums.OnConflictAction.ONCONFLICT_UPDATE
        if any(isinstance(stmt, (ast.CreateTrigStmt, ast.RuleStmt, ast.DoStmt, ast.CallStmt)) or (
                isinstance(stmt, ast.AlterTableStmt) and any("Enable" in cmd.subtype.name for cmd in stmt.cmds or ()))
               for stmt in statements):
            self.action_steps.append(index)
        for stmt in statements:
            if isinstance(stmt, (ast.DoStmt, ast.CallStmt)):
                self._absorb_block(index, stmt)
                continue
            if isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)) and stmt.withClause is not None:
                stmt = inline_ctes(stmt) or stmt  # a read-only WITH: its queries as subqueries, as PostgreSQL reads them
            if isinstance(stmt, ast.UpdateStmt) and self._simulate_update(index, stmt):
                continue
            if isinstance(stmt, ast.DeleteStmt) and self._simulate_delete(index, stmt):
                continue
            if isinstance(stmt, ast.InsertStmt) and self._simulate_insert(index, stmt):
                continue
            if isinstance(stmt, ast.AlterTableStmt):
                self._absorb_partitions(index, stmt)
                continue
            if isinstance(stmt, ast.CopyStmt) and stmt.is_from and stmt.relation is not None:
                copied = self.state(stmt.relation.schemaname, stmt.relation.relname)
                if copied is not None and copied.info is None:
                    self._filled(index, copied)  # a table of the target: COPY's rows are its step's, for a person
                continue
            verb = verbs.get(type(stmt))
            if verb is None:
                continue
            state = self.state(stmt.relation.schemaname, stmt.relation.relname)
            if state is None:
                continue
            if state.info is None:
                if isinstance(stmt, (ast.InsertStmt, ast.MergeStmt)):
                    self._filled(index, state)
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

    def _absorb_partitions(self, index: int, stmt: ast.AlterTableStmt) -> None:
        """ATTACH PARTITION adds the partition's rows to the parent's, which preflight does not read as the
        parent's: a later check of the parent says so (a violation there now is still one). DETACH takes rows away:
        what a later check of the parent reads is not known before apply."""
        for cmd in stmt.cmds or ():
            attach = cmd.subtype == enums.AlterTableType.AT_AttachPartition
            if not attach and cmd.subtype != enums.AlterTableType.AT_DetachPartition:
                continue
            state = self.state(stmt.relation.schemaname, stmt.relation.relname)
            if state is None or state.info is None:
                continue
            if attach:
                if index not in state.added_by:
                    state.added_by.append(index)
            else:
                state.unknown = state.unknown or (
                    f"step {index} detaches a partition of {state.label}, so the rows later checks of it would read "
                    "are not known before apply")

    def _absorb_block(self, index: int, stmt: ast.DoStmt | ast.CallStmt) -> None:
        """A DO block's rows are unknown after it for every table it writes (INSERT, UPDATE, DELETE, MERGE, COPY in
        its body); a block whose writes cannot be read from it (dynamic SQL, PERFORM, a CALL, another language)
        makes every table's rows unknown from then on."""
        written, blind = block_writes(stmt)
        if blind is not None:
            self.blind = self.blind or (f"step {index} {blind}, which may write any table, so the rows later checks "
                                        "would read are not known before apply")
            for state in self._states.values():
                state.unknown = state.unknown or self.blind
                if state.info is None:
                    self._filled(index, state)
            return
        for schema, name in written:
            state = self.state(schema, name)
            if state is not None and state.info is not None:
                state.unknown = state.unknown or (
                    f"step {index} writes {state.label} inside a DO block, which preflight does not simulate, so the "
                    "rows later checks would read are not known before apply")
            elif state is not None:
                self._filled(index, state)

    @staticmethod
    def _filled(index: int, state: TableState) -> None:
        """A table the plan made may hold rows from step ``index`` on, which preflight does not read: a later check
        of it says so, never that it is empty."""
        if state.created_step is not None and index not in state.inserted_by:
            state.inserted_by.append(index)

    def _simulate_insert(self, index: int, stmt: ast.InsertStmt) -> bool:
        """A single-table ``INSERT INTO t [(cols)] VALUES ... | SELECT ...`` (no ON CONFLICT, no WITH) appends its
        rows to the table's: the values it writes, cast to each column's type, and for the other columns what
        PostgreSQL fills in, as the rehearsal's catalog says (the DEFAULT; a sequence's next numbers). The query
        may read only tables the plan has not changed so far (it reads them as they are now). Anything else is
        only noted."""
        if stmt.withClause or stmt.selectStmt is None or stmt.override:
            return False
        state = self.state(stmt.relation.schemaname, stmt.relation.relname)
        snapshot = self.rehearsal.before.get(index) if self.rehearsal else None
        relation = snapshot.resolve(stmt.relation.schemaname, stmt.relation.relname) if snapshot else None
        query = stmt.selectStmt
        if state is None or relation is None or relation.kind != "r":
            return False
        arbiter: Arbiter | None = None
        if stmt.onConflictClause is not None:  # DO NOTHING: the rows it skips are read (checks.upsert)
            if stmt.onConflictClause.action != enums.OnConflictAction.ONCONFLICT_NOTHING:
                return False
            arbiter = arbiter_of(stmt.onConflictClause, relation, values=bool(query.valuesLists),
                                 lone=len(query.valuesLists or ()) == 1)
            if arbiter is None:
                return False
        if any(isinstance(n, ast.SetToDefault) for n in walk_ast(query)) or any(c.generated for c in relation.columns):
            return False
        if state.info is None and self._fits(stmt, [c.name for c in relation.columns]) is not None:
            self._take_empty(index, state, relation, query)  # only a statement modelled in full promotes it
        if state.info is None or state.unknown:
            return False
        names = self._fits(stmt, list(state.columns))
        if names is None:
            return False
        read = self._as_read(query)
        if read is None:
            return False  # a table whose rows at this step preflight does not know
        (query,) = read
        by_name = {c.name: c for c in relation.columns}
        alias = [sql.Identifier(f"erd_written_{n}") for n in names]
        source = sql.SQL("({}) AS erd_rows({})").format(sql.SQL(RawStream()(query)), sql.SQL(", ").join(alias))
        stored: list[sql.Composable] = []
        drawing: list[str] = []  # the columns whose sequence each proposed row draws a number from
        for name, kind in state.columns.items():
            if name in names:
                value: sql.Composable = cast_to(sql.Identifier(f"erd_written_{name}"), kind)
            else:
                column = by_name.get(name)
                if column is None:
                    return False
                numbers = column.identity or (column.default and calls_nextval(column.default))
                if numbers:
                    drawn: sql.Composable = sql.SQL("0")
                    if not state.info.oid:  # a table the plan made: its own sequence, drawn only by the plan's rows
                        following = fresh_numbers(relation, name) if state.taken_empty_at is not None else None
                        drawn = sql.SQL(" + ").join([drawn, *(sql.SQL("(SELECT count(*) FROM {} AS erd_drawn)").format(
                            sql.SQL(rows)) for rows in state.draws.get(name, ()))])
                    else:
                        following = self.catalog.sequence_next(
                            state.info.oid, name, nextval_sequence(column.default) if column.default else None)
                    if following is None:
                        return False
                    start, step_by = following
                    drawing.append(name)
                    value = cast_to(sql.SQL("{} + {} * ({} + row_number() OVER () - 1)").format(
                        sql.Literal(start), sql.Literal(step_by), drawn), kind)
                elif column.default is not None:
                    value = cast_to(sql.SQL(normalize_expression(column.default)), kind)
                else:
                    value = cast_to(sql.SQL("NULL"), kind)
            stored.append(sql.SQL("{} AS {}").format(value, sql.Identifier(name)))
        stored_sql = sql.SQL("(SELECT {} FROM {})").format(sql.SQL(", ").join(stored), source).as_string()
        written_sql = sql.SQL("(SELECT * FROM {})").format(source).as_string()
        if len(stored_sql) > READ_AS_PLANNED_MAX:
            return False  # the rows would be carried whole by every check that reads the table after: a person's call
        for name in drawing:  # every proposed row draws, also one ON CONFLICT DO NOTHING then skips
            # counted on the rows as written, never on the rows as stored: those count the draws before them, so
            # each INSERT would carry all the earlier ones, twice over (17 INSERTs into one new table: 2^17 copies)
            state.draws.setdefault(name, []).append(written_sql)
        key = f"{state.schema}.{state.name}@insert{index}"
        before = state.source(own_rows=True)
        stored_source = Source(key=key, relation=sql.SQL(stored_sql), alias=state.name,
                               columns=tuple(state.columns.items()), derived=True,
                               expressions=(stored_sql.removeprefix("(").removesuffix(")"),))
        added_sql, added = stored_sql, None
        if arbiter is not None:
            added_sql = kept_rows(sql.SQL(stored_sql), before.relation, list(state.columns), arbiter).as_string()
            added = dataclasses.replace(stored_source, key=key + "k", relation=sql.SQL(added_sql),
                                        expressions=(*stored_source.expressions,
                                                     added_sql.removeprefix("(").removesuffix(")")))
        state.inserts[index] = InsertLayer(
            before=before,
            written=Source(key=key + "w", relation=sql.SQL(written_sql), alias=state.name,
                           columns=tuple((f"erd_written_{n}", state.columns[n]) for n in names), derived=True,
                           expressions=(RawStream()(query),)),
            stored=stored_source, types=dict(state.columns), added=added)
        state.push_layer({}, independent=False)
        state.unions[len(state.layers) - 1] = added_sql
        state.no_nulls_because = {}  # the new rows may hold NULLs where the old ones did not
        return True

    @staticmethod
    def _fits(stmt: ast.InsertStmt, columns: list[str]) -> list[str] | None:
        """The columns an INSERT writes, in order, when its query's rows fit a table of ``columns`` as preflight
        models them (named once each, no subscripts; as many values as names, or fewer from a SELECT); else None."""
        names = [t.name for t in stmt.cols] if stmt.cols else list(columns)
        if any(t.indirection for t in stmt.cols or ()) or len(set(names)) != len(names) \
                or any(n not in columns for n in names):
            return None
        width = _width(stmt.selectStmt)
        if not width or (width != len(names) and not (stmt.selectStmt.valuesLists is None and width < len(names))):
            return None
        return names[:width]

    def _take_empty(self, index: int, state: TableState, relation: RelationSnapshot, query: Any) -> None:
        """A table the plan made, still empty at step ``index`` (nothing since its CREATE TABLE wrote rows or moved
        a sequence), whose first rows an INSERT reads from the target's tables: from here on it is read as rows,
        like a table of the target (checks.new_tables). Rows only the plan makes stay the rehearsal's to judge."""
        reads = [n for n in walk_ast(query) if isinstance(n, ast.RangeVar)]
        parents = [self.state(key.ref_schema, key.ref_table) for key in relation.definitions if key.type == "f"]
        of_target = bool(reads) or any(p is not None and p.info is not None and p.info.oid for p in parents)
        if (not state.starts_empty or state.created_step is None or state.inserted_by or state.unknown or self.blind
                or not of_target or self._as_read(query) is None
                or any(state.created_step < step < index for step in self.writing_steps)):
            return
        info = empty_info(relation, self.catalog, self.made)
        if info is None:
            return
        enforced = {s.name for s in state.enforced if getattr(s, "name", None)}
        state.info = dataclasses.replace(info, constraints={
            name: c for name, c in info.constraints.items() if name not in enforced})
        state.taken_empty_at = index
        state.columns = {c.name: c.type for c in relation.columns}
        take_constraints(state, relation)

    def _as_read(self, *nodes: Any) -> tuple[Any, ...] | None:
        """The subqueries (and FROM, USING items) of a data statement as they read at its step: copies in which each
        table the plan has changed so far (or made, and reads as rows) is replaced by its rows as the plan leaves
        them, as later checks read them; the nodes themselves when they read no such table, which are then
        evaluated on the database as it is now. None when a table's rows are not known before apply."""
        replaced = False
        for node in nodes:
            for read in (n for n in walk_ast(node) if isinstance(n, ast.RangeVar)):
                other = self.state(read.schemaname, read.relname)
                if other is None or other.info is None or other.unknown or other.added_by:
                    return None
                if other.layers or other.info.rows_from:
                    if other.info.inherited_by:
                        return None  # a parent read with its children: the layers are its own rows only
                    replaced = True
        if not replaced:
            return nodes

        carried = [0]  # characters of SQL the statement carries in the place of the tables it reads

        def as_planned(read: ast.RangeVar) -> ast.Node | None:
            other = self.state(read.schemaname, read.relname)
            assert other is not None and other.info is not None
            if not (other.layers or other.info.rows_from):
                return None
            relation = other.source().relation.as_string()
            carried[0] += len(relation)
            if carried[0] > READ_AS_PLANNED_MAX:
                raise _TooLarge  # each statement that reads it again would carry it whole: it grows without end
            (raw,) = pglast.parse_sql(f"SELECT * FROM {relation} AS erd_as_planned")
            return as_subquery(read, raw.stmt.fromClause[0].subquery, list(other.columns))

        try:
            return tuple(relations_replaced(copy.deepcopy(node), as_planned) for node in nodes)
        except _TooLarge:
            return None

    def filled_by_query(self, step: Step, index: int) -> str | None:
        """The query of a ``CREATE TABLE / MATERIALIZED VIEW ... AS query`` (WITH DATA) at step ``index`` that reads
        only tables the plan has not changed so far, as SQL, the views it reads replaced by their queries as the
        rehearsal's catalog has them (checks.views); None for anything else."""
        if not isinstance(step, RawSQL) or len(step.parsed) != 1:
            return None
        stmt = step.parsed[0]
        if not isinstance(stmt, ast.CreateTableAsStmt) or stmt.into is None or stmt.into.skipData:
            return None
        query = stmt.query
        snapshot = self.rehearsal.before.get(index) if self.rehearsal else None
        if snapshot is not None:
            query = views_inlined(query, snapshot)
        read = self._as_read(query) if isinstance(query, ast.SelectStmt) else None
        return None if read is None else RawStream()(read[0])

    def _simulate_delete(self, index: int, stmt: ast.DeleteStmt) -> bool:
        """A single-table ``DELETE FROM t [USING ...] [WHERE cond]`` keeps the rows for which cond is not true (with
        USING: for which no row of the USING items makes it true). Its subqueries and USING items may read tables
        the plan has not changed."""
        if stmt.withClause or not stmt.relation.inh:
            return False
        read = self._as_read(stmt.whereClause, stmt.usingClause)
        if read is None:
            return False
        condition, using = read
        state = self.state(stmt.relation.schemaname, stmt.relation.relname)
        if state is None or state.info is None:
            return False
        alias = stmt.relation.alias.aliasname if stmt.relation.alias else state.name
        where = RawStream()(condition) if condition is not None else "true"
        if using:
            where = sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {})").format(
                sql.SQL(", ").join(sql.SQL(RawStream()(item)) for item in using), sql.SQL(where)).as_string()
        state.deletes[index] = UpdateLayer(before=state.source(), alias=alias, where=where, values={},
                                           types=dict(state.columns))
        state.push_layer({}, alias=alias)
        state.filters[len(state.layers) - 1] = where
        self._follow_actions(index, state, None)
        return True

    def _simulate_update(self, index: int, stmt: ast.UpdateStmt) -> bool:
        """A single-table ``UPDATE t SET col = expr [WHERE cond]`` becomes a derived column:
        ``CASE WHEN cond THEN expr ELSE col END``; its subqueries may read tables the plan has not changed. Anything
        more complex (WITH) is only noted. With ``FROM items``, a row is updated when some row of the items makes
        the WHERE true, with the values of one such row: a row of t that more than one row matches is named for a
        person (which one PostgreSQL takes it does not say)."""
        if stmt.withClause or not stmt.relation.inh:
            return False
        state = self.state(stmt.relation.schemaname, stmt.relation.relname)
        if state is None or state.info is None:
            return False
        changes: dict[str, sql.Composable | None] = {}
        written: dict[str, str] = {}
        joined: str | None = None
        read = self._as_read(stmt.whereClause, stmt.fromClause, *[t.val for t in stmt.targetList])
        if read is None:
            return False
        where_node, from_items, *values = read
        if from_items:
            items = ", ".join(RawStream()(item) for item in from_items)
            condition = RawStream()(where_node) if where_node is not None else "true"
            joined = f"(SELECT count(*) FROM {items} WHERE {condition}) > 1"
            if len(items) * (len(values) + 2) > 4 * READ_AS_PLANNED_MAX:
                return False  # the FROM items are read once per column it sets: past this, a person's call
        for target, value in zip(stmt.targetList, values):
            if target.indirection or isinstance(target.val, ast.MultiAssignRef) or target.name not in state.columns:
                return False
            if any(isinstance(n, ast.SetToDefault) for n in walk_ast(value)):
                return False
            written[target.name] = RawStream()(value)
            if from_items:
                written[target.name] = f"(SELECT {written[target.name]} FROM {items} WHERE {condition} LIMIT 1)"
            changes[target.name] = sql.SQL(written[target.name])
        alias = stmt.relation.alias.aliasname if stmt.relation.alias else state.name
        where = RawStream()(where_node) if where_node is not None else None
        if from_items:
            where = f"EXISTS (SELECT 1 FROM {items} WHERE {condition})"
        state.updates[index] = UpdateLayer(before=state.source(), alias=alias, where=where, values=written,
                                           types=dict(state.columns), joined=joined)
        for name, value in list(changes.items()):
            new = cast_to(value, state.columns[name])  # type: ignore[arg-type]
            if where is not None:
                new = sql.SQL("CASE WHEN ({}) THEN {} ELSE {} END").format(sql.SQL(where), new,
                                                                           sql.Identifier(alias, name))
            changes[name] = new
            state.no_nulls_because.pop(name, None)
        state.push_layer(changes, alias=alias)
        snapshot = self.rehearsal.before.get(index) if self.rehearsal else None
        relation = snapshot.resolve(stmt.relation.schemaname, stmt.relation.relname) if snapshot else None
        generated = {c.name: c.default for c in relation.columns if c.generated == "s" and c.default} \
            if relation is not None else state.generated
        recomputed = {name: cast_to(sql.SQL(normalize_expression(expression)), state.columns[name])
                      for name, expression in generated.items() if name in state.columns
                      and any(mentions(expression, column) for column in written)}
        if recomputed:  # PostgreSQL computes a stored generated column again from the row the UPDATE writes
            state.push_layer(recomputed)
            state.updates[index] = dataclasses.replace(
                state.updates[index], recomputed=tuple(recomputed),
                regenerated=tuple((name, value.as_string()) for name, value in recomputed.items()))
        state.backfills.append(index)
        state.updated_at.append(index)
        self._follow_actions(index, state, set(written))
        return True


def _width(query: ast.SelectStmt) -> int:
    """The number of columns a query gives: its VALUES rows', its target list's, or for a UNION, INTERSECT or EXCEPT
    its first query's (0: not known)."""
    while query.op != enums.SetOperation.SETOP_NONE and query.larg is not None:
        query = query.larg
    if query.valuesLists:
        return len(query.valuesLists[0])
    if any(isinstance(t.val, ast.ColumnRef) and isinstance(t.val.fields[-1], ast.A_Star)
           for t in query.targetList or ()):
        return 0  # a * : as many as the tables it names have
    return len(query.targetList or ())


def take_constraints(state: TableState, relation: RelationSnapshot) -> None:
    state.not_null = relation.not_null
    state.unique_keys = relation.unique_keys
    state.has_primary_key = relation.has_primary_key
    state.constraint_names = relation.constraint_names


def added_value(column: ColumnSnapshot) -> sql.Composable:
    """What a column added by ADD COLUMN holds in the rows already there, as PostgreSQL fills it: its DEFAULT
    or generation expression, distinct numbers for an identity or a sequence, else NULL."""
    if column.identity or (column.default and calls_nextval(column.default)):
        return cast_to(sql.SQL("row_number() OVER ()"), column.type)
    if column.default is None:
        return cast_to(sql.SQL("NULL"), column.type)
    return cast_to(sql.SQL(normalize_expression(column.default)), column.type)


def calls_nextval(expression: str) -> bool:
    try:
        tree = pglast.parse_sql(f"SELECT {expression}")
    except pglast.parser.ParseError:
        return False
    return any(isinstance(n, ast.FuncCall) and n.funcname[-1].sval == "nextval" for n in walk_ast(tree))


def query_rows(query: str, columns: list[str]) -> str:
    """A query's rows as a relation whose columns have ``columns``' names (a CREATE TABLE AS names them so)."""
    return sql.SQL("(SELECT * FROM ({}) AS erd_query({}))").format(
        sql.SQL(query), sql.SQL(", ").join(sql.Identifier(c) for c in columns)).as_string()


def nextval_sequence(expression: str) -> str | None:
    """The sequence a ``nextval('name')`` in ``expression`` draws from, as written (None when not a literal)."""
    try:
        tree = pglast.parse_sql(f"SELECT {expression}")
    except pglast.parser.ParseError:
        return None
    for node in walk_ast(tree):
        if isinstance(node, ast.FuncCall) and node.funcname[-1].sval == "nextval" and node.args:
            arg = node.args[0]
            while isinstance(arg, ast.TypeCast):
                arg = arg.arg
            if isinstance(arg, ast.A_Const) and isinstance(arg.val, ast.String):
                return arg.val.sval
    return None


def creates_empty(step: Step) -> bool:
    """Whether the relations a step creates start without rows: a CREATE TABLE, not AS a query nor in a block."""
    if isinstance(step, CreateTable):
        return True
    if not isinstance(step, RawSQL):
        return False
    return all(isinstance(stmt, ast.CreateStmt) for stmt in step.parsed)


def create_table_keys(step: CreateTable) -> list[frozenset[str]]:
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


_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


def block_writes(stmt: ast.DoStmt | ast.CallStmt) -> tuple[list[tuple[str | None, str]], str | None]:
    """The tables a DO block's PL/pgSQL body writes, as pglast reads the body; or why that cannot be known."""
    if isinstance(stmt, ast.CallStmt):
        return [], "calls a procedure"
    options = {o.defname: o.arg for o in stmt.args or ()}
    language = options.get("language")
    if language is not None and language.sval != "plpgsql":
        return [], f"runs a {language.sval} block"
    body = options["as"].sval
    marker = "$erd_block$"
    if marker in body:
        return [], "runs a DO block preflight cannot read"
    try:
        parsed = pglast.parse_plpgsql(f"CREATE FUNCTION erd_block() RETURNS void LANGUAGE plpgsql AS {marker}{body}{marker}")
    except Exception:  # noqa: BLE001 (pglast raises several kinds for a body it cannot read)
        return [], "runs a DO block preflight cannot read"
    written: list[tuple[str | None, str]] = []
    pending: list[Any] = [parsed]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for kind in ("PLpgSQL_stmt_dynfors", "PLpgSQL_stmt_perform", "PLpgSQL_stmt_call"):
            if kind in node:
                return [], "runs a DO block with dynamic SQL, PERFORM or CALL"
        query = node.get("PLpgSQL_stmt_execsql", {}).get("sqlstmt", {}).get("PLpgSQL_expr", {}).get("query")
        if "PLpgSQL_stmt_dynexecute" in node:  # EXECUTE of a constant string is read as that string's SQL
            query = _constant_text(node["PLpgSQL_stmt_dynexecute"].get("query", {}).get("PLpgSQL_expr", {})
                                   .get("query", ""))
            if query is None:
                return [], "runs a DO block with dynamic SQL, PERFORM or CALL"
        if query is not None:
            try:
                statements = [raw.stmt for raw in pglast.parse_sql(query)]
            except Exception:  # noqa: BLE001
                return [], "runs a DO block preflight cannot read"
            for inner in statements:  # a write in a WITH too
                for found in [inner, *walk_ast(inner)]:
                    target = found.relation if isinstance(found, (*_WRITES, ast.CopyStmt)) else None
                    if target is not None:
                        written.append((target.schemaname, target.relname))
        pending.extend(node.values())
    return written, None


def _constant_text(expression: str) -> str | None:
    """The text of a PL/pgSQL expression that is one string constant; None for anything else."""
    try:
        (raw,) = pglast.parse_sql(f"SELECT {expression}")
    except Exception:  # noqa: BLE001
        return None
    targets = raw.stmt.targetList or ()
    if len(targets) != 1 or not isinstance(targets[0].val, ast.A_Const) or not isinstance(targets[0].val.val,
                                                                                           ast.String):
        return None
    return str(targets[0].val.val.sval)
