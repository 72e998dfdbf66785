"""``ALTER DOMAIN ... ADD CONSTRAINT`` (CHECK, NOT NULL), ``VALIDATE CONSTRAINT`` and ``SET NOT NULL``, checked on
the rows: PostgreSQL checks every value of every column of the domain (and of the domains over it), so the same is
asked here, of each such column, with the constraint's ``VALUE`` read as the column.

A domain used inside an array or a composite type, a column of a table the plan changed in a way preflight does
not know, or a constraint the plan adds itself and validates later, are left for a person.
"""

from __future__ import annotations

from typing import Any

import pglast
from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql

from ..report.contract import TargetRef
from ..plan import RawSQL, display_name
from ..sqlparse import walk_ast
from .model import CHECK_CONSTRAINT_PRECHECK, NOT_NULL_PRECHECK, Check, RowsProbe, null_datum
from .state import PlanContext

# Every column whose type is the domain or a domain over it; ``nested`` counts its uses inside an array or a
# composite type, which are not read here.
_USES = """
WITH RECURSIVE d AS (
  SELECT t.oid FROM pg_type t WHERE t.oid = to_regtype(%(domain)s) AND t.typtype = 'd'
  UNION SELECT t.oid FROM pg_type t JOIN d ON t.typbasetype = d.oid WHERE t.typtype = 'd')
SELECT (SELECT count(*) FROM d),
       coalesce((SELECT json_agg(json_build_array(n.nspname, c.relname, a.attname) ORDER BY n.nspname, c.relname,
                                 a.attnum)
                   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE a.atttypid IN (SELECT oid FROM d) AND a.attnum > 0 AND NOT a.attisdropped
                    AND c.relkind IN ('r', 'm')), '[]'),
       (SELECT count(*) FROM pg_type t WHERE t.typelem IN (SELECT oid FROM d) AND t.typarray = 0
                                          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.atttypid = t.oid))
     + (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE a.atttypid IN (SELECT oid FROM d) AND c.relkind = 'c'),
       (SELECT pg_get_expr(k.conbin, 0) FROM pg_constraint k
         WHERE k.contypid = to_regtype(%(domain)s) AND k.conname = %(name)s AND k.contype = 'c')
"""


def _value_as(expression: ast.Node, column: str) -> str:
    """The domain constraint's expression with ``VALUE`` read as ``column``."""
    (raw,) = pglast.parse_sql(f"SELECT {RawStream()(expression)}")
    for node in _nodes(raw.stmt):
        if isinstance(node, ast.ColumnRef) and len(node.fields) == 1 and isinstance(node.fields[0], ast.String) \
                and node.fields[0].sval == "value":
            node.fields = (ast.String(sval=column),)
    return RawStream()(raw.stmt.targetList[0].val)


def _nodes(node: Any) -> list[Any]:
    return list(walk_ast(node))


def domain_checks(index: int, step: RawSQL, context: PlanContext) -> list[Check] | None:
    """The checks of an ALTER DOMAIN that reads rows; None when this is not one, or when preflight cannot read the
    values it checks (then the step is left for a person)."""
    if len(step.parsed) != 1 or not isinstance(step.parsed[0], ast.AlterDomainStmt):
        return None
    stmt = step.parsed[0]
    names = [n.sval for n in stmt.typeName]
    domain = sql.Identifier(*names).as_string(context.catalog.conn)
    constraint = stmt.def_
    if stmt.subtype == "C" and isinstance(constraint, ast.Constraint) and not constraint.skip_validation:
        if constraint.contype == enums.ConstrType.CONSTR_CHECK:
            kind, expression = "check", constraint.raw_expr
        elif constraint.contype == enums.ConstrType.CONSTR_NOTNULL:
            kind, expression = "not null", None
        else:
            return None
    elif stmt.subtype == "O":
        kind, expression = "not null", None
    elif stmt.subtype == "V":
        kind, expression = "check", None
    else:
        return None
    row = context.catalog.conn.execute(_USES, {"domain": domain, "name": stmt.name or ""}).fetchone()
    if row is None or not row[0] or row[2]:
        return None  # a domain the plan makes, or one used inside arrays or composite types
    if stmt.subtype == "V":
        if row[3] is None:
            return None  # a constraint the plan adds: its rows are checked by the step that validates it
        expression = pglast.parse_sql(f"SELECT {row[3]}")[0].stmt.targetList[0].val
    shown = display_name(*names)
    checks: list[Check] = []
    for schema, table, column in row[1]:
        state = context.state(schema, table)
        if state is None or state.info is None or state.unknown or column not in state.columns:
            return None
        label = state.column_label(column)
        if kind == "not null":
            predicate: sql.Composable = null_datum(sql.Identifier(column))
            check_id, what = NOT_NULL_PRECHECK, f"NOT NULL of domain {shown}"
        else:
            assert expression is not None
            text = _value_as(expression, column)
            predicate = sql.SQL("({}) IS FALSE").format(sql.SQL(text))
            check_id, what = CHECK_CONSTRAINT_PRECHECK, f"CHECK ({RawStream()(expression)}) of domain {shown}"
        checks.append(Check(
            check_id=check_id, step=index, step_summary=step.summary(),
            target=TargetRef(kind="column", schema=state.schema, table=state.name, columns=(column,)),
            probe=RowsProbe(source=state.source(own_rows=True), predicate=predicate),
            fail=f"{{violations}} of {{totalRows}} rows of {state.label} have a value in {label} that breaks the "
            f"{what}; the step would fail. Fix those values first.",
            ok=f"every value of {label} satisfies the {what} ({{totalRows}} rows).",
            notes=state.history_notes()))
    return checks
