"""SQL expressions the checks compose: casts, constants, NULL tests."""

from __future__ import annotations

import pglast
from pglast import ast
from psycopg import sql

from ..sqlparse import walk_ast
from .model import all_not_null as all_not_null


def length_limit(type_text: str) -> int | None:
    node = pglast.parse_sql(f"SELECT NULL::{type_text}")[0].stmt.targetList[0].val.typeName
    name = node.names[-1].sval
    if name in ("varchar", "bpchar") and node.typmods and not node.arrayBounds:
        return int(node.typmods[0].val.ival)
    return None


def constant_of(expression: str) -> ast.A_Const | None:
    """The literal an expression is, under any casts; None when it is not a literal."""
    node = pglast.parse_sql(f"SELECT {expression}")[0].stmt.targetList[0].val
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node if isinstance(node, ast.A_Const) else None


def is_constant(expression: str | None) -> bool:
    const = constant_of(expression) if expression is not None else None
    return const is not None and not const.isnull


def is_null_constant(expression: str | None) -> bool:
    if expression is None:
        return True
    const = constant_of(expression)
    return const is not None and bool(const.isnull)


def cast_to(expression: sql.Composable, type_text: str) -> sql.Composed:
    return sql.SQL("CAST(({}) AS {})").format(expression, sql.SQL(type_text))


def any_null(columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in columns)


def mentions(expression: str, column: str) -> bool:
    """Whether ``expression`` reads ``column`` (a column reference named so, qualified or not)."""
    tree = pglast.parse_sql(f"SELECT {expression}")
    return any(isinstance(n, ast.ColumnRef) and isinstance(n.fields[-1], ast.String) and n.fields[-1].sval == column
               for n in walk_ast(tree))
