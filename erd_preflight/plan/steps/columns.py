"""Step kinds on one column: ADD / DROP COLUMN, SET / DROP NOT NULL, ALTER COLUMN TYPE."""

from __future__ import annotations

from typing import Literal

from pglast import ast, enums
from psycopg import sql
from pydantic import field_validator

from ...report.contract import CAST_PRECHECK, NOT_NULL_PRECHECK
from ...sqlparse import normalize_expression, normalize_type
from ..names import display_name
from .base import ALTER_COMMANDS, ColumnStep, Rel, Unmodelled, default_clause, deparse, drop_tail, parses
from .tables import ColumnDefinition

_AT = enums.AlterTableType


class AddColumn(ColumnStep):
    kind: Literal["add_column"] = "add_column"
    type: str
    not_null: bool = False
    default: str | None = None
    if_not_exists: bool = False

    LOCK = ("ACCESS EXCLUSIVE", "no rewrite for a constant or non-volatile default (PostgreSQL 11+); "
            "a volatile default rewrites the table; NOT NULL without a default scans it")
    EXAMPLE = "ALTER TABLE t ADD COLUMN IF NOT EXISTS c integer NOT NULL DEFAULT 0"

    _type = field_validator("type")(classmethod(lambda cls, v: normalize_type(v)))
    _default = field_validator("default")(classmethod(lambda cls, v: None if v is None else normalize_expression(v)))

    def composed(self) -> sql.Composed:
        parts: list[sql.Composable] = [self.column_ident, sql.SQL(self.type)]
        if self.not_null:
            parts.append(sql.SQL("NOT NULL"))
        if self.default is not None:
            parts.append(default_clause(self.default))
        return self._alter(
            sql.SQL("ADD COLUMN {}{}").format(
                sql.SQL("IF NOT EXISTS ") if self.if_not_exists else sql.SQL(""), sql.SQL(" ").join(parts)
            )
        )

    def summary(self) -> str:
        extra = (" NOT NULL" if self.not_null else "") + (f" DEFAULT {self.default}" if self.default else "")
        return f"add column {self.qualified}.{display_name(self.column)} {self.type}{extra}"

    def primary_check(self) -> str:
        return NOT_NULL_PRECHECK if self.not_null else self.PRIMARY_CHECK


@parses(ALTER_COMMANDS, _AT.AT_AddColumn)
def _add_column(rel: Rel, cmd: ast.AlterTableCmd) -> AddColumn:
    col = ColumnDefinition.from_ast(cmd.def_)
    if col.constraints:
        raise Unmodelled("ADD COLUMN with a column constraint other than NOT NULL and DEFAULT")
    return AddColumn(**rel, column=col.name, type=col.type, not_null=col.not_null, default=col.default,
                     if_not_exists=bool(cmd.missing_ok))


class SetNotNull(ColumnStep):
    kind: Literal["set_not_null"] = "set_not_null"

    LOCK = ("ACCESS EXCLUSIVE", "a full scan to verify no NULLs, blocking reads and writes meanwhile")
    PRIMARY_CHECK = NOT_NULL_PRECHECK
    EXAMPLE = "ALTER TABLE t ALTER COLUMN c SET NOT NULL"

    def composed(self) -> sql.Composed:
        return self._alter(sql.SQL("ALTER COLUMN {} SET NOT NULL").format(self.column_ident))

    def summary(self) -> str:
        return f"set NOT NULL on {self.qualified}.{display_name(self.column)}"


@parses(ALTER_COMMANDS, _AT.AT_SetNotNull)
def _set_not_null(rel: Rel, cmd: ast.AlterTableCmd) -> SetNotNull:
    return SetNotNull(**rel, column=cmd.name)


class DropNotNull(ColumnStep):
    kind: Literal["drop_not_null"] = "drop_not_null"

    LOCK = ("ACCESS EXCLUSIVE", "a catalog change only, but it waits for and blocks all traffic")
    EXAMPLE = "ALTER TABLE t ALTER COLUMN c DROP NOT NULL"

    def composed(self) -> sql.Composed:
        return self._alter(sql.SQL("ALTER COLUMN {} DROP NOT NULL").format(self.column_ident))

    def summary(self) -> str:
        return f"drop NOT NULL on {self.qualified}.{display_name(self.column)}"


@parses(ALTER_COMMANDS, _AT.AT_DropNotNull)
def _drop_not_null(rel: Rel, cmd: ast.AlterTableCmd) -> DropNotNull:
    return DropNotNull(**rel, column=cmd.name)


class AlterColumnType(ColumnStep):
    kind: Literal["alter_column_type"] = "alter_column_type"
    type: str
    using: str | None = None

    LOCK = ("ACCESS EXCLUSIVE", "a rewrite of the table and its indexes unless the types are binary coercible")
    PRIMARY_CHECK = CAST_PRECHECK
    EXAMPLE = "ALTER TABLE t ALTER COLUMN c TYPE integer USING c::integer"

    _type = field_validator("type")(classmethod(lambda cls, v: normalize_type(v)))
    _using = field_validator("using")(classmethod(lambda cls, v: None if v is None else normalize_expression(v)))

    def composed(self) -> sql.Composed:
        using = sql.SQL(" USING ") + sql.SQL(self.using) if self.using is not None else sql.SQL("")
        return self._alter(sql.SQL("ALTER COLUMN {} TYPE {}{}").format(self.column_ident, sql.SQL(self.type), using))

    def summary(self) -> str:
        using = f" USING {self.using}" if self.using else ""
        return f"change type of {self.qualified}.{display_name(self.column)} to {self.type}{using}"


@parses(ALTER_COMMANDS, _AT.AT_AlterColumnType)
def _alter_column_type(rel: Rel, cmd: ast.AlterTableCmd) -> AlterColumnType:
    cd = cmd.def_
    if cd.collClause is not None:
        raise Unmodelled("ALTER COLUMN TYPE with COLLATE")
    using = deparse(cd.raw_default) if cd.raw_default is not None else None
    return AlterColumnType(**rel, column=cmd.name, type=deparse(cd.typeName), using=using)


class DropColumn(ColumnStep):
    kind: Literal["drop_column"] = "drop_column"
    if_exists: bool = False
    cascade: bool = False

    LOCK = ("ACCESS EXCLUSIVE", "a catalog change; the space is reclaimed by later rewrites")
    EXAMPLE = "ALTER TABLE t DROP COLUMN IF EXISTS c CASCADE"

    def composed(self) -> sql.Composed:
        return self._alter(
            sql.SQL("DROP COLUMN {}{}{}").format(
                sql.SQL("IF EXISTS ") if self.if_exists else sql.SQL(""), self.column_ident, drop_tail(self.cascade)
            )
        )

    def summary(self) -> str:
        return f"drop column {self.qualified}.{display_name(self.column)}"


@parses(ALTER_COMMANDS, _AT.AT_DropColumn)
def _drop_column(rel: Rel, cmd: ast.AlterTableCmd) -> DropColumn:
    return DropColumn(**rel, column=cmd.name, if_exists=bool(cmd.missing_ok),
                      cascade=cmd.behavior == enums.DropBehavior.DROP_CASCADE)
