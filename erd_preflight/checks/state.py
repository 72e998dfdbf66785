"""The plan's effect on each table, step by step: a model of each statement, and what the rehearsal's
catalog says each step did (relations by OID, columns by number)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pglast
from pglast import ast, enums
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
from ..sqlparse import inline_ctes
from .expressions import cast_to, is_constant, serial_type
from .model import PreflightOptions
from .new_tables import made_names, quiet, starts_empty
from .simulate import Simulations
from .tables import (  # noqa: F401 (the table model: the checks read it through this module)
    READ_AS_PLANNED_MAX, InsertLayer, TableState, UpdateLayer, added_value, block_writes, calls_nextval,
    create_table_keys, creates_empty, nextval_sequence, query_rows, take_constraints,
)


@dataclass
class PlanContext(Simulations):
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
