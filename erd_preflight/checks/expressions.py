"""SQL expressions the checks compose: casts, constants, NULL tests."""

from __future__ import annotations

import pglast
from pglast import ast
from pglast.stream import RawStream
from psycopg import sql

from ..plan import display_name
from ..sqlparse import walk_ast
from .model import all_not_null as all_not_null
from .model import Source, null_datum


def too_long(value: sql.Composable, type_text: str) -> sql.Composable | None:
    """Where assignment to ``type_text`` refuses ``value`` though an explicit CAST would cut or pad it: varchar(n)
    and char(n) longer than n (trailing spaces aside), and arrays of them; bit(n) of another length, varbit(n)
    longer than n (from a bit string: other sources go through the type's input, which refuses them itself).
    None when the type has no such limit."""
    node = pglast.parse_sql(f"SELECT NULL::{type_text}")[0].stmt.targetList[0].val.typeName
    name = node.names[-1].sval
    if not node.typmods or name not in ("varchar", "bpchar", "bit", "varbit"):
        return None
    limit = sql.Literal(int(node.typmods[0].val.ival))
    if name in ("varchar", "bpchar"):
        if node.arrayBounds:
            return sql.SQL("EXISTS (SELECT 1 FROM unnest(CAST(({}) AS text[])) AS erd_element(v) "
                           "WHERE char_length(rtrim(v, ' ')) > {})").format(value, limit)
        return sql.SQL("char_length(rtrim(CAST(({}) AS text), ' ')) > {}").format(value, limit)
    if node.arrayBounds:
        return None
    compare = sql.SQL("<>" if name == "bit" else ">")
    return sql.SQL("CASE WHEN pg_typeof(({v})) IN ('bit'::regtype, 'varbit'::regtype) "
                   "THEN length(CAST(CAST(({v}) AS text) AS varbit)) {c} {n} ELSE false END").format(
        v=value, c=compare, n=limit)


# Built-in type names: a column of one of these is no domain, so adding it reads no row.
_BUILT_IN_TYPES = frozenset("""bool boolean int int2 int4 int8 integer smallint bigint serial serial4 serial8 bigserial
smallserial numeric decimal real float float4 float8 money text varchar bpchar char character name bytea date time
timetz timestamp timestamptz interval uuid json jsonb xml inet cidr macaddr macaddr8 bit varbit tsvector tsquery
point line lseg box path polygon circle int4range int8range numrange daterange tsrange tstzrange oid regclass
""".split())


_SERIALS = {"serial": "integer", "serial4": "integer", "bigserial": "bigint", "serial8": "bigint",
            "smallserial": "smallint", "serial2": "smallint"}


def serial_type(type_text: str) -> str | None:
    """The integer type a ``serial`` pseudo-type column gets (its values: a new sequence's numbers), else None."""
    return _SERIALS.get(type_text.strip().lower())


def maybe_domain(type_text: str) -> bool:
    """Whether ``type_text`` can name a domain: not a type of pg_catalog (an array of a domain is left alone)."""
    try:
        node = pglast.parse_sql(f"SELECT NULL::{type_text}")[0].stmt.targetList[0].val.typeName
    except pglast.parser.ParseError:
        return True
    names = [n.sval for n in node.names]
    if node.arrayBounds or names[0] == "pg_catalog" or (len(names) == 1 and names[0] in _BUILT_IN_TYPES):
        return False
    return True


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
    return sql.SQL(" OR ").join(null_datum(sql.Identifier(c)) for c in columns)


def mentions(expression: str, column: str) -> bool:
    """Whether ``expression`` reads ``column`` (a column reference named so, qualified or not)."""
    tree = pglast.parse_sql(f"SELECT {expression}")
    return any(isinstance(n, ast.ColumnRef) and isinstance(n.fields[-1], ast.String) and n.fields[-1].sval == column
               for n in walk_ast(tree))


def index_keys(stmt: ast.IndexStmt, source: Source, tag: str) -> tuple[Source, tuple[str, ...], list[str]]:
    """The index's key values on the rows of ``source`` it covers (its WHERE): a relation of columns erd_key_1...,
    their names, and each key as shown to a person."""
    keys, where = _rendered(stmt)
    shown = [RawStream()(p.expr) if p.name is None else display_name(p.name) for p in stmt.indexParams]
    names = tuple(f"erd_key_{i}" for i in range(1, len(keys) + 1))
    relation = sql.SQL("(SELECT {} FROM {} AS {}{})").format(
        sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.SQL(k), sql.Identifier(n)) for k, n in zip(keys, names)),
        source.relation, sql.Identifier(source.alias),
        sql.SQL(" WHERE ({})").format(sql.SQL(where)) if where else sql.SQL(""))
    keyed = Source(key=f"{source.key}:{tag}", relation=relation, alias="erd_keys",
                   columns=tuple((n, "") for n in names), derived=True,
                   expressions=(*source.expressions, *(f"SELECT {k}" for k in keys),
                                *([f"SELECT {where}"] if where else [])))
    return keyed, names, shown


def renamed_keys(definition: str, rename: dict[str, str] | None = None) -> tuple[list[str], str | None]:
    """An index's keys and its WHERE (None: it covers every row) as SQL over the row's columns, each column read
    under the name ``rename`` gives it (unqualified: the index's own definition names no table)."""
    (raw,) = pglast.parse_sql(definition)
    stmt = raw.stmt
    assert isinstance(stmt, ast.IndexStmt)
    rename = rename or {}
    for node in walk_ast((tuple(p.expr for p in stmt.indexParams if p.expr is not None), stmt.whereClause)):
        if isinstance(node, ast.ColumnRef) and isinstance(node.fields[-1], ast.String):
            name = node.fields[-1].sval
            node.fields = (ast.String(sval=rename.get(name, name)),)
    return _rendered(stmt, rename)


def _rendered(stmt: ast.IndexStmt, rename: dict[str, str] | None = None) -> tuple[list[str], str | None]:
    """An index's keys (a plain column under the name ``rename`` gives it) and its WHERE, as SQL text. A stream per
    node: one keeps what it rendered before."""
    rename = rename or {}
    keys = [RawStream()(p.expr) if p.name is None else sql.Identifier(rename.get(p.name, p.name)).as_string()
            for p in stmt.indexParams]
    return keys, RawStream()(stmt.whereClause) if stmt.whereClause is not None else None


def index_columns(stmt: ast.IndexStmt) -> set[str] | None:
    """The columns an index's keys and WHERE read (None: one it reads as a whole row, or that cannot be told)."""
    found: set[str] = set()
    for param in stmt.indexParams:
        if param.name is not None:
            found.add(param.name)
    for node in walk_ast((tuple(p.expr for p in stmt.indexParams if p.expr is not None), stmt.whereClause)):
        if isinstance(node, ast.ColumnRef):
            last = node.fields[-1]
            if not isinstance(last, ast.String):
                return None  # a whole-row reference (t.*)
            found.add(last.sval)
    return found
