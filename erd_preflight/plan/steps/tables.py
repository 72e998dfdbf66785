"""Step kinds on whole tables: CREATE TABLE and DROP TABLE."""

from __future__ import annotations

from typing import Any, Literal

from pglast import ast, enums
from psycopg import sql
from pydantic import ConfigDict, field_validator

from ...sqlparse import normalize_column_constraint, normalize_expression, normalize_table_constraint, normalize_type
from ..names import Refusing, check_identifier
from .base import (
    DROP_OBJECTS,
    STATEMENTS,
    TableStep,
    Unmodelled,
    default_clause,
    deparse,
    drop_tail,
    each,
    parses,
    rel_of,
)


class ColumnDefinition(Refusing):
    """A column of a CREATE TABLE: name, type, NOT NULL, default, other column constraints as SQL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: str
    not_null: bool = False
    default: str | None = None
    constraints: tuple[str, ...] = ()

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))
    _type = field_validator("type")(classmethod(lambda cls, v: normalize_type(v)))
    _default = field_validator("default")(classmethod(lambda cls, v: None if v is None else normalize_expression(v)))
    _constraints = field_validator("constraints")(each(normalize_column_constraint))

    def composed(self) -> sql.Composed:
        parts: list[sql.Composable] = [sql.Identifier(self.name), sql.SQL(self.type)]
        if self.not_null:
            parts.append(sql.SQL("NOT NULL"))
        if self.default is not None:
            parts.append(default_clause(self.default))
        parts.extend(sql.SQL(c) for c in self.constraints)
        return sql.SQL(" ").join(parts)

    @classmethod
    def from_ast(cls, cd: ast.ColumnDef) -> ColumnDefinition:
        not_null, default, others = False, None, []
        for c in cd.constraints or ():
            if c.contype == enums.ConstrType.CONSTR_NOTNULL:
                not_null = True
            elif c.contype == enums.ConstrType.CONSTR_NULL:
                continue
            elif c.contype == enums.ConstrType.CONSTR_DEFAULT:
                default = deparse(c.raw_expr)
            else:
                others.append(deparse(c))
        if cd.collClause is not None:
            raise Unmodelled("a column with COLLATE")
        return cls(name=cd.colname, type=deparse(cd.typeName), not_null=not_null, default=default,
                   constraints=tuple(others))


class CreateTable(TableStep):
    kind: Literal["create_table"] = "create_table"
    columns: tuple[ColumnDefinition, ...]
    constraints: tuple[str, ...] = ()
    if_not_exists: bool = False

    LOCK = ("none on existing tables", "a new, empty table; a REFERENCES clause takes SHARE ROW EXCLUSIVE "
            "on the table it references")
    EXAMPLE = "CREATE TABLE t (id bigint NOT NULL, note text DEFAULT 'x', PRIMARY KEY (id))"

    _constraints = field_validator("constraints")(each(normalize_table_constraint))

    def composed(self) -> sql.Composed:
        elements = [c.composed() for c in self.columns] + [sql.SQL(c) for c in self.constraints]
        return sql.SQL("CREATE TABLE {}{} ({})").format(
            sql.SQL("IF NOT EXISTS ") if self.if_not_exists else sql.SQL(""),
            self.relation,
            sql.SQL(", ").join(elements),
        )

    def summary(self) -> str:
        return f"create table {self.qualified} ({len(self.columns)} columns)"


@parses(STATEMENTS, ast.CreateStmt)
def _create_table(stmt: ast.CreateStmt) -> list[Any]:
    if stmt.inhRelations or stmt.partbound or stmt.partspec or stmt.ofTypename or stmt.options or stmt.tablespacename:
        raise Unmodelled("CREATE TABLE with inheritance, partitioning, OF type, storage options or tablespace")
    if stmt.relation.relpersistence != "p":
        raise Unmodelled("a temporary or unlogged table")
    columns, constraints = [], []
    for elt in stmt.tableElts or ():
        if isinstance(elt, ast.ColumnDef):
            columns.append(ColumnDefinition.from_ast(elt))
        elif isinstance(elt, ast.Constraint):
            constraints.append(deparse(elt))
        else:
            raise Unmodelled("CREATE TABLE with LIKE")
    return [CreateTable(**rel_of(stmt.relation), columns=tuple(columns), constraints=tuple(constraints),
                        if_not_exists=bool(stmt.if_not_exists))]


class DropTable(TableStep):
    kind: Literal["drop_table"] = "drop_table"
    if_exists: bool = False
    cascade: bool = False

    LOCK = ("ACCESS EXCLUSIVE", "the table and its data are removed")
    EXAMPLE = "DROP TABLE IF EXISTS s.t CASCADE"

    def composed(self) -> sql.Composed:
        return sql.SQL("DROP TABLE {}{}{}").format(
            sql.SQL("IF EXISTS ") if self.if_exists else sql.SQL(""), self.relation, drop_tail(self.cascade)
        )

    def summary(self) -> str:
        return f"drop table {self.qualified}"


@parses(DROP_OBJECTS, enums.ObjectType.OBJECT_TABLE)
def _drop_table(schema: str | None, name: str, stmt: ast.DropStmt) -> DropTable:
    return DropTable(schema=schema, table=name, if_exists=bool(stmt.missing_ok),
                     cascade=stmt.behavior == enums.DropBehavior.DROP_CASCADE)
