"""A table as the plan leaves it at each step: its rows in layers (what each UPDATE and INSERT of the plan did to
them), its columns and constraints, and the helpers that read a statement's shape. ``state`` keeps one per table."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast, enums
from psycopg import sql

from ..catalog import TableInfo
from ..plan import (
    CreateTable,
    RawSQL,
    Step,
    display_name,
)
from ..rehearse.shadow_catalog import ColumnSnapshot, RelationSnapshot
from ..sqlparse import normalize_expression, walk_ast
from .expressions import cast_to
from .model import Source


# The longest SQL of a changed table's rows that a later statement reads in its place (characters). Statements that
# read each other's tables (an UPDATE ... FROM of a table an UPDATE ... FROM changed) nest them: past this, the
# statement is a person's call, so a plan's checks stay of a size PostgreSQL plans in milliseconds.
READ_AS_PLANNED_MAX = 50_000


class TooLarge(Exception):
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


def select_width(query: ast.SelectStmt) -> int:
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
