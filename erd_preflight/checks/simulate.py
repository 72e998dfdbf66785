"""The data statements of the plan simulated on the tables as the plan leaves them: an INSERT's rows appended as a
layer, an UPDATE's changes, a DELETE's rows gone and what its foreign keys do. A part of ``PlanContext`` (its
methods, in a module of their own); each answers False when the statement is not modelled, and it is then noted."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pglast
from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql

from ..plan import RawSQL, Step
from ..rehearse.shadow_catalog import RelationSnapshot
from ..sqlparse import normalize_expression, relations_replaced, walk_ast
from .expressions import cast_to, mentions
from .model import Source
from .new_tables import empty_info, fresh_numbers
from .views import as_subquery, views_inlined
from .upsert import Arbiter, arbiter_of, kept_rows
from .tables import (
    READ_AS_PLANNED_MAX, InsertLayer, TableState, TooLarge, UpdateLayer, calls_nextval, nextval_sequence,
    select_width, take_constraints,
)


class Simulations:
    """The simulations of ``PlanContext`` (see the module's docstring)."""

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
        width = select_width(stmt.selectStmt)
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
                raise TooLarge  # each statement that reads it again would carry it whole: it grows without end
            (raw,) = pglast.parse_sql(f"SELECT * FROM {relation} AS erd_as_planned")
            return as_subquery(read, raw.stmt.fromClause[0].subquery, list(other.columns))

        try:
            return tuple(relations_replaced(copy.deepcopy(node), as_planned) for node in nodes)
        except TooLarge:
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
