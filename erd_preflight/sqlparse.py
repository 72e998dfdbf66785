"""Migration SQL → plan steps, with PostgreSQL's own parser (pglast).

Every statement is parsed; the ones the plan models become typed steps, a multi-command ALTER TABLE
becomes one step per command, and anything else becomes a ``RawSQL`` step that says why.
Expressions and type names are normalised to pglast's deparsed form, so ``from_sql(step.sql())``
gives the same step back and equal plans have equal fingerprints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pglast
from pglast import ast, enums
from pglast.parser import ParseError, parse_sql_json
from pglast.stream import RawStream

from .errors import PlanError

if TYPE_CHECKING:
    from .plan import ColumnDefinition, Step


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
    return text


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


def _names(items: Any) -> tuple[str, ...]:
    return tuple(i.sval for i in items or ())


def _rel(rv: ast.RangeVar) -> dict[str, Any]:
    out: dict[str, Any] = {"table": rv.relname}
    if rv.schemaname:
        out["schema"] = rv.schemaname
    return out


_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


class _Unmodelled(Exception):
    """Raised inside the translation of one statement: it becomes a raw step with this reason."""


def _column_definition(cd: ast.ColumnDef) -> ColumnDefinition:
    from .plan import ColumnDefinition

    not_null, default, others = False, None, []
    for c in cd.constraints or ():
        if c.contype == enums.ConstrType.CONSTR_NOTNULL:
            not_null = True
        elif c.contype == enums.ConstrType.CONSTR_NULL:
            continue
        elif c.contype == enums.ConstrType.CONSTR_DEFAULT:
            default = _deparse(c.raw_expr)
        else:
            others.append(_deparse(c))
    if cd.collClause is not None:
        raise _Unmodelled("a column with COLLATE")
    return ColumnDefinition(
        name=cd.colname, type=_deparse(cd.typeName), not_null=not_null, default=default, constraints=tuple(others)
    )


def _create_table(stmt: ast.CreateStmt) -> list[Step]:
    from .plan import CreateTable

    if stmt.inhRelations or stmt.partbound or stmt.partspec or stmt.ofTypename or stmt.options or stmt.tablespacename:
        raise _Unmodelled("CREATE TABLE with inheritance, partitioning, OF type, storage options or tablespace")
    if stmt.relation.relpersistence != "p":
        raise _Unmodelled("a temporary or unlogged table")
    columns, constraints = [], []
    for elt in stmt.tableElts or ():
        if isinstance(elt, ast.ColumnDef):
            columns.append(_column_definition(elt))
        elif isinstance(elt, ast.Constraint):
            constraints.append(_deparse(elt))
        else:
            raise _Unmodelled("CREATE TABLE with LIKE")
    return [
        CreateTable(
            **_rel(stmt.relation),
            columns=tuple(columns),
            constraints=tuple(constraints),
            if_not_exists=bool(stmt.if_not_exists),
        )
    ]


def _add_constraint(rel: dict[str, Any], c: ast.Constraint) -> Step:
    from .plan import AddCheck, AddForeignKey, AddUnique, AddUniqueUsingIndex

    ct = enums.ConstrType
    if c.deferrable or c.initdeferred:
        raise _Unmodelled("a DEFERRABLE constraint")
    name = {"name": c.conname} if c.conname else {}
    if c.contype in (ct.CONSTR_UNIQUE, ct.CONSTR_PRIMARY) and c.indexname:
        return AddUniqueUsingIndex(**rel, **name, index=c.indexname,
                                   primary_key=c.contype == ct.CONSTR_PRIMARY)
    if c.contype in (ct.CONSTR_UNIQUE, ct.CONSTR_PRIMARY):
        if c.indexname or c.including or c.options or c.indexspace or c.without_overlaps:
            raise _Unmodelled("a unique constraint with USING INDEX, INCLUDE, WITH or WITHOUT OVERLAPS")
        return AddUnique(
            **rel,
            **name,
            columns=_names(c.keys),
            nulls_not_distinct=bool(c.nulls_not_distinct),
            primary_key=c.contype == ct.CONSTR_PRIMARY,
        )
    if c.contype == ct.CONSTR_FOREIGN:
        if c.fk_matchtype == "p" or c.fk_with_period or c.fk_del_set_cols:
            raise _Unmodelled("a foreign key with MATCH PARTIAL, PERIOD or ON DELETE SET (columns)")
        if not c.pk_attrs:
            raise _Unmodelled("a foreign key without its referenced columns")
        return AddForeignKey(
            **rel,
            **name,
            columns=_names(c.fk_attrs),
            **{("ref_" + k): v for k, v in _rel(c.pktable).items()},
            ref_columns=_names(c.pk_attrs),
            not_valid=bool(c.skip_validation),
            match_full=c.fk_matchtype == "f",
            on_delete=_FK_ACTIONS[c.fk_del_action or "a"],
            on_update=_FK_ACTIONS[c.fk_upd_action or "a"],
        )
    if c.contype == ct.CONSTR_CHECK:
        if c.is_no_inherit:
            raise _Unmodelled("a CHECK constraint with NO INHERIT")
        return AddCheck(**rel, **name, expression=_deparse(c.raw_expr), not_valid=bool(c.skip_validation))
    raise _Unmodelled(f"ADD CONSTRAINT of type {c.contype.name}")


def _alter_cmd(rel: dict[str, Any], cmd: ast.AlterTableCmd) -> Step:
    from .plan import AddColumn, AlterColumnType, DropColumn, DropConstraint, DropNotNull, SetNotNull, ValidateConstraint

    at = enums.AlterTableType
    cascade = cmd.behavior == enums.DropBehavior.DROP_CASCADE
    if cmd.subtype == at.AT_SetNotNull:
        return SetNotNull(**rel, column=cmd.name)
    if cmd.subtype == at.AT_DropNotNull:
        return DropNotNull(**rel, column=cmd.name)
    if cmd.subtype == at.AT_AddColumn:
        col = _column_definition(cmd.def_)
        if col.constraints:
            raise _Unmodelled("ADD COLUMN with a column constraint other than NOT NULL and DEFAULT")
        return AddColumn(
            **rel,
            column=col.name,
            type=col.type,
            not_null=col.not_null,
            default=col.default,
            if_not_exists=bool(cmd.missing_ok),
        )
    if cmd.subtype == at.AT_AlterColumnType:
        cd = cmd.def_
        if cd.collClause is not None:
            raise _Unmodelled("ALTER COLUMN TYPE with COLLATE")
        using = _deparse(cd.raw_default) if cd.raw_default is not None else None
        return AlterColumnType(**rel, column=cmd.name, type=_deparse(cd.typeName), using=using)
    if cmd.subtype == at.AT_AddConstraint:
        return _add_constraint(rel, cmd.def_)
    if cmd.subtype == at.AT_ValidateConstraint:
        return ValidateConstraint(**rel, name=cmd.name)
    if cmd.subtype == at.AT_DropColumn:
        return DropColumn(**rel, column=cmd.name, if_exists=bool(cmd.missing_ok), cascade=cascade)
    if cmd.subtype == at.AT_DropConstraint:
        return DropConstraint(**rel, name=cmd.name, if_exists=bool(cmd.missing_ok), cascade=cascade)
    raise _Unmodelled(f"ALTER TABLE {cmd.subtype.name.removeprefix('AT_')}")


def _alter_table(stmt: ast.AlterTableStmt) -> list[Step]:
    from .plan import RawSQL

    if stmt.objtype != enums.ObjectType.OBJECT_TABLE or stmt.missing_ok or not stmt.relation.inh:
        raise _Unmodelled("ALTER TABLE IF EXISTS / ONLY, or ALTER of something other than a table")
    rel = _rel(stmt.relation)
    steps: list[Step] = []
    for cmd in stmt.cmds:
        try:
            steps.append(_alter_cmd(rel, cmd))
        except _Unmodelled as why:
            # One unmodelled command of several stays a statement of its own, in its place.
            single = ast.AlterTableStmt(relation=stmt.relation, cmds=(cmd,), objtype=stmt.objtype)
            steps.append(RawSQL(statement=_deparse(single), reason=str(why)))
    return steps


def _create_index(stmt: ast.IndexStmt) -> list[Step]:
    from .plan import CreateIndex

    if stmt.indexIncludingParams or stmt.options or stmt.tableSpace or not stmt.relation.inh:
        raise _Unmodelled("CREATE INDEX with INCLUDE, WITH, TABLESPACE or ONLY")
    columns = []
    for p in stmt.indexParams:
        if p.name is None or p.collation or p.opclass or p.ordering or p.nulls_ordering:
            raise _Unmodelled("an expression index, or one with opclass, collation or ordering")
        columns.append(p.name)
    fields: dict[str, Any] = {}
    if stmt.idxname:
        fields["name"] = stmt.idxname
    if stmt.whereClause is not None:
        fields["where"] = _deparse(stmt.whereClause)
    return [
        CreateIndex(
            **_rel(stmt.relation),
            **fields,
            columns=tuple(columns),
            unique=bool(stmt.unique),
            concurrently=bool(stmt.concurrent),
            if_not_exists=bool(stmt.if_not_exists),
            nulls_not_distinct=bool(stmt.nulls_not_distinct),
            method=stmt.accessMethod or "btree",
        )
    ]


def _drop(stmt: ast.DropStmt) -> list[Step]:
    from .plan import DropIndex, DropTable

    ot = enums.ObjectType
    cascade = stmt.behavior == enums.DropBehavior.DROP_CASCADE
    if stmt.removeType not in (ot.OBJECT_TABLE, ot.OBJECT_INDEX):
        raise _Unmodelled(f"DROP {stmt.removeType.name.removeprefix('OBJECT_')}")
    steps: list[Step] = []
    for obj in stmt.objects:
        names = _names(obj)
        if len(names) > 2:
            raise _Unmodelled("a name qualified with a database")
        rel: dict[str, Any] = {"schema": names[0]} if len(names) == 2 else {}
        if stmt.removeType == ot.OBJECT_TABLE:
            steps.append(DropTable(**rel, table=names[-1], if_exists=bool(stmt.missing_ok), cascade=cascade))
        else:
            steps.append(
                DropIndex(
                    **rel,
                    name=names[-1],
                    if_exists=bool(stmt.missing_ok),
                    cascade=cascade,
                    concurrently=bool(stmt.concurrent),
                )
            )
    return steps


_TRANSLATORS = {
    ast.CreateStmt: _create_table,
    ast.AlterTableStmt: _alter_table,
    ast.IndexStmt: _create_index,
    ast.DropStmt: _drop,
}

# BEGIN/COMMIT in a migration file: the apply decides the transactions (phases), so these are dropped.
_TRANSACTION_KINDS = {
    enums.TransactionStmtKind.TRANS_STMT_BEGIN,
    enums.TransactionStmtKind.TRANS_STMT_START,
    enums.TransactionStmtKind.TRANS_STMT_COMMIT,
}


def parse_plan(text: str) -> tuple[list[Step], list[str]]:
    """Parse migration SQL into steps, and notes about what was skipped or left raw."""
    from .plan import RawSQL

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
        translate = _TRANSLATORS.get(type(stmt))
        try:
            if translate is None:
                raise _Unmodelled(f"{type(stmt).__name__} is not a statement erd_preflight models")
            steps.extend(translate(stmt))
        except _Unmodelled as why:
            notes.append(f"line {line}: kept as raw SQL ({why})")
            steps.append(RawSQL(statement=original, reason=str(why)))
    if not steps:
        raise PlanError("the migration SQL is empty: it has no statements besides comments and transaction control")
    return steps, notes
