"""Migration SQL → plan steps, with PostgreSQL's own parser (pglast).

Every statement is parsed; the ones the plan models become typed steps through the parse rules their kinds
register (``steps.base``: STATEMENTS, ALTER_COMMANDS, ADD_CONSTRAINTS, DROP_OBJECTS), a multi-command ALTER
TABLE becomes one step per command, and anything else becomes a ``RawSQL`` step that says why.
"""

from __future__ import annotations

from pglast import ast, enums

from ..errors import PlanError
from ..sqlparse import split_statements
from .steps import (
    ADD_CONSTRAINTS,
    ALTER_COMMANDS,
    DROP_OBJECTS,
    STATEMENTS,
    RawSQL,
    Rel,
    Step,
    Unmodelled,
    deparse,
    names_of,
    parses,
    rel_of,
)


@parses(ALTER_COMMANDS, enums.AlterTableType.AT_AddConstraint)
def _add_constraint(rel: Rel, cmd: ast.AlterTableCmd) -> Step:
    c = cmd.def_
    if c.deferrable or c.initdeferred:
        raise Unmodelled("a DEFERRABLE constraint")
    rule = ADD_CONSTRAINTS.get(c.contype)
    if rule is None:
        raise Unmodelled(f"ADD CONSTRAINT of type {c.contype.name}")
    return rule(rel, c)


@parses(STATEMENTS, ast.AlterTableStmt)
def _alter_table(stmt: ast.AlterTableStmt) -> list[Step]:
    if stmt.objtype != enums.ObjectType.OBJECT_TABLE:
        raise Unmodelled("ALTER of something other than a table")
    rel = rel_of(stmt.relation)
    if stmt.missing_ok:
        rel["table_if_exists"] = True
    if not stmt.relation.inh:
        rel["only"] = True
    steps: list[Step] = []
    for cmd in stmt.cmds:
        try:
            rule = ALTER_COMMANDS.get(cmd.subtype)
            if rule is None:
                raise Unmodelled(f"ALTER TABLE {cmd.subtype.name.removeprefix('AT_')}")
            steps.append(rule(rel, cmd))
        except Unmodelled as why:
            # One unmodelled command of several stays a statement of its own, in its place.
            single = ast.AlterTableStmt(relation=stmt.relation, cmds=(cmd,), objtype=stmt.objtype,
                                        missing_ok=stmt.missing_ok)
            steps.append(RawSQL(statement=deparse(single), reason=str(why)))
    return steps


@parses(STATEMENTS, ast.DropStmt)
def _drop(stmt: ast.DropStmt) -> list[Step]:
    rule = DROP_OBJECTS.get(stmt.removeType)
    if rule is None:
        raise Unmodelled(f"DROP {stmt.removeType.name.removeprefix('OBJECT_')}")
    steps: list[Step] = []
    for obj in stmt.objects:
        names = names_of(obj)
        if len(names) > 2:
            raise Unmodelled("a name qualified with a database")
        steps.append(rule(names[0] if len(names) == 2 else None, names[-1], stmt))
    return steps


# BEGIN/COMMIT in a migration file: the apply decides the transactions (phases), so these are dropped.
_TRANSACTION_KINDS = {
    enums.TransactionStmtKind.TRANS_STMT_BEGIN,
    enums.TransactionStmtKind.TRANS_STMT_START,
    enums.TransactionStmtKind.TRANS_STMT_COMMIT,
}


def parse_plan(text: str) -> tuple[list[Step], list[str]]:
    """Parse migration SQL into steps, and notes about what was skipped or left raw."""
    if not text.strip():
        raise PlanError("the migration SQL is empty: there is nothing to preflight")
    steps: list[Step] = []
    notes: list[str] = []
    for statement in split_statements(text):
        stmt, original, line = statement.stmt, statement.text, statement.line
        if isinstance(stmt, ast.TransactionStmt):
            if stmt.kind in _TRANSACTION_KINDS:
                notes.append(f"line {line}: {original} skipped: the apply runs each phase in its own transaction")
                continue
            raise PlanError(
                f"the migration uses {original!r}; remove it: the apply manages transactions itself",
                line=line,
                column=1,
            )
        translate = STATEMENTS.get(type(stmt))
        try:
            if translate is None:
                raise Unmodelled(f"{type(stmt).__name__} is not a statement erd_preflight models")
            steps.extend(translate(stmt))
        except Unmodelled as why:
            notes.append(f"line {line}: kept as raw SQL ({why})")
            steps.append(RawSQL(statement=original, reason=str(why)))
    if not steps:
        raise PlanError("the migration SQL is empty: it has no statements besides comments and transaction control")
    return steps, notes
