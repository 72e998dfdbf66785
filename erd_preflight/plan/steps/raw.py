"""The step kind for every statement the plan does not model: applied as written; preflight warns about it,
and the rehearsal runs it."""

from __future__ import annotations

import functools
from typing import Any, Literal

import pglast
from pglast import ast, enums
from psycopg import sql
from pydantic import Field, field_validator

from ...contract import TargetRef
from ...sqlparse import normalize_statement
from .base import PhaseName, Step


def outside_transaction(statement: str) -> bool:
    """Whether PostgreSQL refuses to run this statement inside a transaction block."""
    try:
        parsed = pglast.parse_sql(statement)
    except pglast.parser.ParseError:
        return False
    for raw in parsed:
        stmt = raw.stmt
        if isinstance(stmt, (ast.IndexStmt, ast.DropStmt)) and stmt.concurrent:
            return True
        if isinstance(stmt, ast.ReindexStmt) and any(p.defname == "concurrently" for p in stmt.params or ()):
            return True
        if isinstance(stmt, (ast.VacuumStmt, ast.CreatedbStmt, ast.DropdbStmt, ast.AlterSystemStmt,
                             ast.CreateTableSpaceStmt, ast.DropTableSpaceStmt)):
            return True
        if isinstance(stmt, ast.AlterTableStmt):
            for cmd in stmt.cmds or ():
                if cmd.subtype == enums.AlterTableType.AT_DetachPartition and getattr(cmd.def_, "concurrent", False):
                    return True
    return False


class RawSQL(Step):
    """A statement the plan does not model: it is applied as written, and preflight warns about it."""

    kind: Literal["raw"] = "raw"
    statement: str = Field(min_length=1)
    reason: str = "not a statement erd_preflight models"

    LOCK = ("unknown", "an unmodelled statement")
    EXAMPLE = "CREATE VIEW v AS SELECT 1 AS one"

    # Exactly one statement, checked by PostgreSQL's parser: a second one can't ride along.
    _statement = field_validator("statement")(classmethod(lambda cls, v: normalize_statement(v)))

    @functools.cached_property
    def parsed(self) -> tuple[Any, ...]:
        """The statement's AST, parsed once (it parsed when the step was made). Read it, never change it."""
        return tuple(raw.stmt for raw in pglast.parse_sql(self.statement))

    def composed(self) -> sql.Composable:
        return sql.SQL(self.statement)

    def sql(self) -> str:
        return self.statement

    def summary(self) -> str:
        first = " ".join(self.statement.split())
        return "raw SQL: " + (first if len(first) <= 80 else first[:77] + "...")

    def target(self) -> TargetRef:
        return TargetRef(kind="statement", name=self.summary())

    def phase(self) -> PhaseName:
        return "B" if outside_transaction(self.statement) else "A"
