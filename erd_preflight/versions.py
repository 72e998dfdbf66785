"""What a statement needs of PostgreSQL's version. The shadow runs PostgreSQL 18; a target on an older major
version refuses some statements the shadow accepts. Two sources, both PostgreSQL's own:

- syntax: pglast is PostgreSQL 18's parser, so it reads every newer form; each form below is one that older
  servers' grammars do not have (the release notes of the version named);
- functions: a call the shadow resolves to a built-in function (pg_catalog) that the target's pg_catalog lacks,
  such as ``uuidv7()`` (18), asked of both servers' catalogs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pglast
import psycopg
from pglast import ast, enums

from .sqlparse import walk_ast

# (the first major version that accepts it, what it is, how to find it in a node)
_FORMS: list[tuple[int, str, Callable[[Any], bool]]] = [
    (15, "MERGE", lambda n: isinstance(n, ast.MergeStmt)),
    (15, "UNIQUE NULLS NOT DISTINCT", lambda n: isinstance(n, (ast.IndexStmt, ast.Constraint))
     and bool(n.nulls_not_distinct)),
    (16, "SQL/JSON constructors and IS JSON", lambda n: isinstance(n, (
        ast.JsonObjectConstructor, ast.JsonArrayConstructor, ast.JsonArrayQueryConstructor,
        ast.JsonObjectAgg, ast.JsonArrayAgg, ast.JsonIsPredicate))),
    (16, "a subquery in FROM without an alias", lambda n: isinstance(n, ast.RangeSubselect) and n.alias is None),
    (17, "JSON_TABLE", lambda n: isinstance(n, ast.JsonTable)),
    (17, "MERGE ... RETURNING", lambda n: isinstance(n, ast.MergeStmt) and n.returningClause is not None),
    (17, "ALTER COLUMN ... SET EXPRESSION", lambda n: isinstance(n, ast.AlterTableCmd)
     and n.subtype == enums.AlterTableType.AT_SetExpression),
    (18, "a virtual generated column (GENERATED ALWAYS AS without STORED)", lambda n: isinstance(n, ast.Constraint)
     and n.contype == enums.ConstrType.CONSTR_GENERATED and n.generated_kind == "v"),
    (18, "WITHOUT OVERLAPS or PERIOD in a key", lambda n: isinstance(n, ast.Constraint)
     and bool(n.without_overlaps or n.fk_with_period or n.pk_with_period)),
    (18, "a named NOT NULL constraint, or NOT NULL ... NOT VALID", lambda n: isinstance(n, ast.Constraint)
     and n.contype == enums.ConstrType.CONSTR_NOTNULL and bool(n.keys)),
]


@functools.lru_cache(maxsize=512)
def _nodes(statement: str) -> tuple[Any, ...]:
    """Every node of ``statement``'s AST, parsed once for the three questions below (nothing here changes them);
    none when the text does not parse."""
    try:
        return tuple(walk_ast(pglast.parse_sql(statement)))
    except (pglast.parser.ParseError, ValueError):
        return ()


def newer_syntax(statement: str, version: int) -> tuple[int, str] | None:
    """The first form of ``statement`` a server of ``version`` (server_version_num) does not accept: the
    version that introduced it and its name; None when there is none (or the text does not parse)."""
    major = version // 10000
    for node in _nodes(statement):
        for since, what, found in _FORMS:
            if since > major and found(node):
                return since, what
    return None


def called_functions(statement: str) -> set[str]:
    """The unqualified (or pg_catalog.) function names ``statement`` calls outside function bodies."""
    names: set[str] = set()
    for node in _nodes(statement):
        if isinstance(node, ast.FuncCall):
            parts = [p.sval for p in node.funcname]
            if len(parts) == 1 or parts[0] == "pg_catalog":
                names.add(parts[-1])
    return names


_BUILT_IN = "SELECT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace AND proname = ANY(%s)"


def missing_built_ins(names: set[str], shadow: psycopg.Connection[Any], target: psycopg.Connection[Any]) -> set[str]:
    """The names that are built-in functions of the shadow's PostgreSQL and of no schema of the target's
    (a function the plan creates is in no pg_catalog; one an extension adds on the target is found there)."""
    if not names:
        return set()
    built_in = {r[0] for r in shadow.execute(_BUILT_IN, (sorted(names),))}
    if not built_in:
        return set()
    present = {r[0] for r in target.execute("SELECT proname FROM pg_proc WHERE proname = ANY(%s)", (sorted(built_in),))}
    return built_in - present


def created_functions(statement: str) -> set[str]:
    """The names of the functions ``statement`` creates (they are the plan's, not built-ins)."""
    return {n.funcname[-1].sval for n in _nodes(statement) if isinstance(n, ast.CreateFunctionStmt)}
