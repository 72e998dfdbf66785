"""A table the plan creates, read as rows on the target: empty, with the constraints PostgreSQL gave it.

A ``CREATE TABLE`` makes an empty table. When the plan's first statement to fill it is an ``INSERT ... SELECT``
reading the target's tables, the rows it adds are that query's, which preflight reads on the target as it reads
any INSERT's (``PlanContext._simulate_insert``). For that the table needs what a table of the target has: its
columns and their types, its constraints whole, its unique indexes, and where its sequences start. All of it comes
from the rehearsal's catalog after the ``CREATE TABLE`` (PostgreSQL's own reading of the statement), and the rows
it starts with are an empty relation of those types.

This holds only while the table is surely empty and its sequences untouched: nothing between the ``CREATE TABLE``
and the INSERT may write rows or move a sequence (``quiet``), and every type, function and sequence the checks
would name must exist on the target, where they run. Anything else keeps the table a person's call.
"""

from __future__ import annotations

from collections.abc import Iterable

import pglast
from pglast import ast, enums
from psycopg import sql

from ..catalog import Catalog, ColumnInfo, TableInfo
from ..plan.steps.raw import data_dependence
from ..rehearse.shadow_catalog import RelationSnapshot
from ..sqlparse import walk_ast
from .expressions import cast_to

# Constraint kinds preflight checks on the rows an INSERT adds: CHECK, foreign key, UNIQUE, PRIMARY KEY, NOT NULL
_CHECKED_KINDS = frozenset("cfupn")
_MOVES_SEQUENCE = {enums.AlterTableType.AT_SetIdentity}


def quiet(stmt: ast.Node) -> bool:
    """Whether a statement can neither write a row of any table nor move a sequence: it changes the catalog only
    (or builds an index). A trigger or rule fires only on a write, so none fires either."""
    if isinstance(stmt, (ast.AlterSeqStmt, ast.SelectStmt)):
        return False  # ALTER SEQUENCE ... RESTART; a SELECT may call setval() or a function that writes
    if isinstance(stmt, ast.AlterTableStmt):
        return not any(cmd.subtype in _MOVES_SEQUENCE for cmd in stmt.cmds or ()) and all(
            cmd.subtype != enums.AlterTableType.AT_AddColumn or not _calls_functions(cmd.def_)
            for cmd in stmt.cmds or ())
    return isinstance(stmt, ast.IndexStmt) or data_dependence(stmt) is None


def starts_empty(stmt: ast.CreateStmt) -> bool:
    """Whether a CREATE TABLE makes a table whose rows are only its own: no parent (INHERITS, PARTITION OF), not
    partitioned, not of a composite type's rows elsewhere."""
    return not stmt.inhRelations and stmt.partbound is None and stmt.partspec is None


def empty_info(relation: RelationSnapshot, catalog: Catalog, made: set[str]) -> TableInfo | None:
    """The table as the target's catalog would show it if it had it, with no rows; None when preflight could not
    check an INSERT into it on the target (a constraint kind it does not check, a generated column, a type or a
    function the plan makes or changes (``made``: their names) or the target lacks, a DEFAULT that draws on a
    sequence the column does not own)."""
    if relation.kind != "r" or relation.partition_constraint is not None:
        return None
    if any(c.type not in _CHECKED_KINDS for c in relation.definitions):
        return None
    expressions = [c.check_expression or "" for c in relation.definitions if c.type == "c"]
    for column in relation.columns:
        if column.generated:
            return None
        numbers = column.identity or (column.default is not None and _nextval_of(column.default) is not None)
        if numbers and (column.sequence is None or (
                not column.identity and _nextval_of(column.default or "") != column.sequence[0])):
            return None
        if column.default is not None and not numbers:
            expressions.append(column.default)
    functions: set[str] = set()
    for expression in expressions:
        called = _calls(expression)
        if called is None:
            return None
        functions |= called
    types = {c.type for c in relation.columns}
    if functions & made or {_last_name(t) for t in types} & made or not catalog.names_known(types, functions):
        return None
    empty = sql.SQL("(SELECT {} WHERE false)").format(sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(cast_to(sql.SQL("NULL"), c.type), sql.Identifier(c.name))
        for c in relation.columns)).as_string()
    return TableInfo(
        oid=0, schema=relation.schema, name=relation.name, kind="r", estimated_rows=0,
        rows_estimated_from_size=False, heap_bytes=0, total_bytes=0,
        columns={c.name: ColumnInfo(name=c.name, type=c.type, not_null=c.not_null, type_oid=0)
                 for c in relation.columns},
        constraints={c.name: c for c in relation.definitions},
        indexes={ix.name: ix for ix in relation.indexes}, rows_from=empty)


def fresh_numbers(relation: RelationSnapshot, column: str) -> tuple[int, int] | None:
    """The first number a column's own sequence gives, untouched since it was made, and its increment."""
    found = next((c for c in relation.columns if c.name == column), None)
    if found is None or found.sequence is None:
        return None
    _, start, step = found.sequence
    return int(start), int(step)


def _nextval_of(expression: str) -> str | None:
    """The sequence a ``nextval('name'::regclass)`` DEFAULT draws from, as PostgreSQL shows it; None otherwise."""
    try:
        (raw,) = pglast.parse_sql(f"SELECT {expression}")
    except (pglast.parser.ParseError, ValueError):
        return None
    value = raw.stmt.targetList[0].val
    if not (isinstance(value, ast.FuncCall) and value.funcname[-1].sval == "nextval" and value.args):
        return None
    argument = value.args[0]
    while isinstance(argument, ast.TypeCast):
        argument = argument.arg
    return argument.val.sval if isinstance(argument, ast.A_Const) and isinstance(argument.val, ast.String) else None


def _calls(expression: str) -> set[str] | None:
    """The names of the functions an expression calls; None when it does not parse."""
    try:
        tree = pglast.parse_sql(f"SELECT {expression}")
    except pglast.parser.ParseError:
        return None
    return {n.funcname[-1].sval for n in walk_ast(tree) if isinstance(n, ast.FuncCall)}


def _last_name(type_text: str) -> str:
    try:
        return pglast.parse_sql(f"SELECT NULL::{type_text}")[0].stmt.targetList[0].val.typeName.names[-1].sval
    except (pglast.parser.ParseError, AttributeError, IndexError):
        return "?"


def _calls_functions(node: ast.Node | None) -> bool:
    return node is not None and any(isinstance(n, ast.FuncCall) for n in walk_ast(node))


def made_names(statements: Iterable[ast.Node]) -> set[str]:
    """The names of the functions, procedures and types ``statements`` create or change (an enum's values, a
    domain's constraints): the target's objects of those names are not what an INSERT after them meets."""
    names: set[str] = set()
    for stmt in statements:
        if isinstance(stmt, ast.CreateFunctionStmt):
            names.add(stmt.funcname[-1].sval)
        elif isinstance(stmt, (ast.CreateEnumStmt, ast.AlterEnumStmt, ast.CreateRangeStmt, ast.AlterDomainStmt)):
            names.add(stmt.typeName[-1].sval)
        elif isinstance(stmt, ast.CreateDomainStmt):
            names.add(stmt.domainname[-1].sval)
        elif isinstance(stmt, ast.CompositeTypeStmt):
            names.add(stmt.typevar.relname)
        elif isinstance(stmt, ast.DefineStmt):
            names.add(stmt.defnames[-1].sval)
    return names
