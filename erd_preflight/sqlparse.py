"""PostgreSQL's own parser (pglast), below the plan: splitting a migration file into statements with their
lines, walking ASTs, and normalising every SQL fragment a user supplies into exactly one node of the expected
kind, re-rendered. Expressions and type names take pglast's deparsed form, so ``from_sql(step.sql())`` gives
the same step back and equal plans have equal fingerprints. (Statements → steps: ``plan.parse``.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from typing import Any

import pglast
from pglast import ast
from pglast.parser import ParseError, parse_sql_json
from pglast.stream import RawStream

from .errors import PlanError

def walk_ast(node: Any) -> Iterator[Any]:
    """Every AST node under ``node`` (a node, or a list or tuple of them), depth first, parents before their
    children; without recursion, so a deeply nested expression cannot overflow Python's stack."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, ast.Node):
            yield item
            stack.extend(reversed([getattr(item, name) for name in item]))


def _deparse(node: Any) -> str:
    return RawStream()(node)


def line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a 0-based character offset."""
    offset = max(0, min(offset, len(text)))
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return line, column


def read_sql_file(path: Any) -> str:
    """A migration file's text. Bytes that are not UTF-8 are refused with the file, line and column, as is a
    NUL byte (PostgreSQL's parser would stop reading there)."""
    from pathlib import Path

    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8", errors="replace")
        line, column = line_column(before, len(before))
        raise PlanError(f"{Path(path).name} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column "
                        f"{column} cannot be decoded. Save the file as UTF-8", line=line, column=column) from None
    refuse_nul(text, Path(path).name)
    return without_bom(text)


def without_bom(text: str) -> str:
    """``text`` without the UTF-8 byte-order mark that Windows editors put first in a file (psql and Flyway skip
    it; PostgreSQL's parser would read it as part of the first word)."""
    return text[1:] if text.startswith("\ufeff") else text


def refuse_nul(text: str, subject: str) -> None:
    """A NUL byte ends a C string: PostgreSQL's parser would silently ignore everything after it."""
    at = text.find("\x00")
    if at >= 0:
        line, column = line_column(text, at)
        raise PlanError(f"{subject} contains a NUL byte; PostgreSQL's parser would ignore everything after it. "
                        "Remove it", line=line, column=column)


def _parse(text: str, what: str) -> tuple[Any, ...]:
    refuse_nul(text, "the SQL text")
    try:
        return pglast.parse_sql(text)
    except ParseError as exc:
        message, offset = exc.args[0], exc.args[1] if len(exc.args) > 1 else 0
        line, column = line_column(text, offset)
        written = text.splitlines()[line - 1].strip() if 0 < line <= len(text.splitlines()) else ""
        if written.startswith("\\") and text.splitlines()[line - 1][column - 1:].startswith("\\"):
            raise PlanError(f'{what}: "{written.split()[0]}" at line {line} is a psql meta-command, not SQL: '
                            "preflight reads SQL, as PostgreSQL's server does, not psql scripts. Remove the line "
                            "(psql's \\set, \\connect, \\i run in psql only), or split the script where it "
                            "switches database", line=line, column=column) from None
        raise PlanError(f"{what}: {message}", line=line, column=column) from None


@dataclass(frozen=True)
class SourceStatement:
    """One statement of a migration file: its text exactly as written, its 1-based line, and its AST."""

    text: str
    line: int
    stmt: Any


def split_statements(text: str, what: str = "the migration SQL does not parse") -> list[SourceStatement]:
    """Every statement of ``text`` with its line, in time linear in the text.

    pglast converts statement offsets from bytes to characters once per statement, which is quadratic on a
    long file with non-ASCII text. So the whole file is parsed once to JSON (byte offsets, linear), each
    statement's bytes are decoded while walking forward, and each statement is parsed on its own."""
    refuse_nul(text, "the migration SQL")
    text = without_bom(text)
    try:
        tree = json.loads(parse_sql_json(text))
    except ParseError:
        _parse(text, what)  # the same error, with its offset in characters
        raise
    data = text.encode("utf-8")
    out: list[SourceStatement] = []
    line, last = 1, 0
    for raw in tree.get("stmts", ()):
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0) or len(data) - start
        piece = data[start:start + length].decode("utf-8")
        line += data.count(b"\n", last, start)
        last = start
        stripped = piece.strip().rstrip(";").strip()
        lead = piece[: len(piece) - len(piece.lstrip())]
        (stmt,) = _parse(stripped, what)
        out.append(SourceStatement(text=stripped, line=line + lead.count("\n"), stmt=stmt.stmt))
    return out


def _single_select_target(text: str, wrapper: str, what: str) -> Any:
    stmts = _parse(wrapper.format(text), f"invalid {what} {text!r}")
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.SelectStmt):
        raise PlanError(f"{what} {text!r} must be a single {what}, not several statements")
    select = stmts[0].stmt
    extra = [
        select.fromClause,
        select.whereClause,
        select.groupClause,
        select.havingClause,
        select.sortClause,
        select.limitCount,
        select.withClause,
    ]
    extra += [select.intoClause, select.lockingClause, select.distinctClause, select.windowClause,
              select.valuesLists, select.limitOffset]
    if any(extra) or select.targetList is None or len(select.targetList) != 1 or select.targetList[0].name:
        raise PlanError(f"{what} {text!r} must be a single {what}")
    return select.targetList[0].val


def normalize_expression(text: str) -> str:
    """Validate a SQL expression (a DEFAULT, USING, CHECK or WHERE) and return its canonical text."""
    if not isinstance(text, str) or not text.strip():
        raise PlanError("an SQL expression cannot be empty")
    return _deparse(_single_select_target(text, "SELECT {}", "expression"))


def normalize_type(text: str) -> str:
    """Validate a type name such as ``bigint`` or ``numeric(12, 2)[]`` and return its canonical text."""
    if not isinstance(text, str) or not text.strip():
        raise PlanError("a type name cannot be empty")
    node = _single_select_target(text, "SELECT NULL::{}", "type name")
    if not isinstance(node, ast.TypeCast) or not isinstance(node.arg, ast.A_Const):
        raise PlanError(f"{text!r} is not a type name")
    return _deparse(node.typeName)


def _create_table_elements(text: str, template: str, what: str) -> tuple[Any, ...]:
    if not isinstance(text, str) or not text.strip():
        raise PlanError(f"a {what} cannot be empty")
    stmts = _parse(template.format(text), f"invalid {what} {text!r}")
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.CreateStmt):
        raise PlanError(f"{what} {text!r} must be exactly one {what}, not several statements")
    return stmts[0].stmt.tableElts or ()


def normalize_table_constraint(text: str) -> str:
    """Validate one table constraint (``CONSTRAINT c CHECK (...)``, ``UNIQUE (a)``, ``FOREIGN KEY ...``) and
    return PostgreSQL's parser's rendering of it: anything but exactly one constraint is refused."""
    elements = _create_table_elements(text, "CREATE TABLE erd_preflight_x ({})", "table constraint")
    if len(elements) != 1 or not isinstance(elements[0], ast.Constraint):
        raise PlanError(f"table constraint {text!r} must be exactly one constraint such as CHECK (...), "
                        "UNIQUE (...), PRIMARY KEY (...) or FOREIGN KEY (...) REFERENCES ...")
    return _deparse(elements[0])


_PROBE_COLUMN = "CREATE TABLE erd_preflight_x (erd_preflight_c integer {})"


def normalize_column_constraint(text: str) -> str:
    """Validate one column constraint (``CHECK (...)``, ``REFERENCES t (id)``, ``UNIQUE``, ``GENERATED ...``)
    and return its rendering: anything but exactly one constraint of one column is refused."""
    elements = _create_table_elements(text, _PROBE_COLUMN, "column constraint")
    column = elements[0] if len(elements) == 1 else None
    baseline = pglast.parse_sql(_PROBE_COLUMN.format(""))[0].stmt.tableElts[0]
    if (not isinstance(column, ast.ColumnDef) or len(column.constraints or ()) != 1
            or column.collClause is not None or column.colname != baseline.colname
            or _deparse(column.typeName) != _deparse(baseline.typeName)):
        raise PlanError(f"column constraint {text!r} must be exactly one constraint such as CHECK (...), "
                        "UNIQUE, REFERENCES t (id) or GENERATED ...; NOT NULL and DEFAULT have fields of their own")
    return _deparse(column.constraints[0])


def normalize_statement(text: str) -> str:
    """Validate raw SQL: exactly one statement, and not transaction control (the apply owns transactions).
    Returns it as written, without a trailing semicolon."""
    if not isinstance(text, str) or not text.strip():
        raise PlanError("a raw SQL statement cannot be empty")
    stmts = _parse(text, "invalid raw SQL")
    if len(stmts) != 1:
        raise PlanError(f"raw SQL must be exactly one statement; this has {len(stmts)}: split it into one "
                        "RawSQL step per statement (MigrationPlan.from_sql does that)")
    if isinstance(stmts[0].stmt, ast.TransactionStmt):
        raise PlanError("raw SQL cannot be transaction control (BEGIN, COMMIT, SAVEPOINT...): the apply runs each "
                        "phase in its own transaction")
    return text.strip().rstrip(";").strip()


def inline_ctes(stmt: Any) -> Any | None:
    """A data statement (INSERT, UPDATE, DELETE) whose WITH holds only plain queries, as the same statement without
    its WITH: each reference to a query of it (also from a later one) replaced by that query as a subquery, under
    the name it was referenced by. What PostgreSQL itself does with a non-recursive WITH query that is referenced
    once; one referenced twice is evaluated twice, which differs only for a volatile function, which preflight
    never evaluates. A copy: ``stmt`` is left as it is. None for what cannot be said that way (RECURSIVE, a WITH that
    changes rows, a WITH inside a subquery, FOR UPDATE)."""
    import copy

    if stmt.withClause is None:
        return stmt
    if stmt.withClause.recursive:
        return None
    ctes: dict[str, Any] = {}
    for cte in stmt.withClause.ctes or ():
        query = cte.ctequery
        if not isinstance(query, ast.SelectStmt) or any(isinstance(n, ast.WithClause) or
                                                        (isinstance(n, ast.SelectStmt) and n.lockingClause)
                                                        for n in walk_ast(query)):
            return None
        if cte.ctename in ctes:
            return None
        ctes[cte.ctename] = (_with_ctes_inlined(copy.deepcopy(query), ctes), cte.aliascolnames)
    body = copy.deepcopy(stmt)
    body.withClause = None
    if any(isinstance(n, ast.WithClause) for n in walk_ast(body)):
        return None
    target = body.relation
    body.relation = None  # the statement's own table is never a WITH query
    body = _with_ctes_inlined(body, ctes)
    body.relation = target
    return body


def _with_ctes_inlined(node: Any, ctes: dict[str, Any]) -> Any:
    """``node`` with every RangeVar that names a query of ``ctes`` (no schema) replaced by that query."""
    import copy

    def cte_query(read: ast.RangeVar) -> Any:
        if read.schemaname is not None or read.relname not in ctes:
            return None
        query, columns = ctes[read.relname]
        return subquery_for(read, copy.deepcopy(query), columns)

    return relations_replaced(node, cte_query)


def subquery_for(read: ast.RangeVar, query: Any, columns: Any) -> ast.RangeSubselect:
    """``query`` in the place of the relation ``read`` names, under the name it is read by, with the column names
    it is read by (its alias's, else ``columns``: a tuple of ``ast.String``)."""
    alias = read.alias
    return ast.RangeSubselect(lateral=False, subquery=query, alias=ast.Alias(
        aliasname=alias.aliasname if alias else read.relname,
        colnames=(alias.colnames if alias and alias.colnames else columns)))


def relations_replaced(node: Any, replace: Callable[[ast.RangeVar], ast.Node | None]) -> Any:
    """``node`` (changed in place) with each relation it reads replaced by what ``replace`` gives for it (None:
    left as it is)."""
    if isinstance(node, ast.RangeVar):
        new = replace(node)
        return node if new is None else new
    if isinstance(node, ast.Node):
        for name in type(node).__slots__:
            value = getattr(node, name, None)
            new = relations_replaced(value, replace)
            if new is not value:
                setattr(node, name, new)
        return node
    if isinstance(node, (list, tuple)):
        items = [relations_replaced(v, replace) for v in node]
        return type(node)(items) if any(a is not b for a, b in zip(items, node)) else node
    return node
