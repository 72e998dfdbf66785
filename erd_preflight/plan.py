"""The migration plan: typed steps as data, each rendering its own SQL with quoted identifiers.

A plan is built from typed steps or parsed from SQL (``MigrationPlan.from_sql``). Steps know their SQL
and the objects they touch; what runs them against a database lives elsewhere (``preflight``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pglast.keywords import RESERVED_KEYWORDS
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .contract import TargetRef
from .errors import PlanError
from .sqlparse import (
    normalize_column_constraint,
    normalize_expression,
    normalize_statement,
    normalize_table_constraint,
    normalize_type,
)

if TYPE_CHECKING:
    import pandas as pd

MAX_IDENTIFIER_BYTES = 63


def _check_identifier(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "":
        raise ValueError("an identifier cannot be empty")
    if "\x00" in value:
        raise ValueError("an identifier cannot contain a NUL character")
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"identifier {value!r} is {len(value.encode())} bytes; PostgreSQL keeps only "
            f"{MAX_IDENTIFIER_BYTES} and would silently truncate it: shorten the name"
        )
    return value


def _ident(*parts: str | None) -> sql.Identifier:
    return sql.Identifier(*[p for p in parts if p is not None])


def _idents(names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")


def display_name(*parts: str | None) -> str:
    """A name for people: quoted only where PostgreSQL would need quotes."""
    shown = []
    for p in parts:
        if p is None:
            continue
        plain = _PLAIN.match(p) and p not in RESERVED_KEYWORDS
        shown.append(p if plain else sql.Identifier(p).as_string())
    return ".".join(shown)


def _qualified_text(schema: str | None, name: str) -> str:
    return display_name(schema, name)


def plan_error(model: str, exc: ValidationError) -> PlanError:
    """A pydantic validation error as a PlanError naming each refused field, e.g. ``CreateTable.constraints[0]``."""
    problems = []
    for error in exc.errors():
        where = model
        for part in error["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return PlanError("; ".join(problems))


class _Refusing(BaseModel):
    """A model whose invalid input raises PlanError (naming the field), the error every plan source raises."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise plan_error(type(self).__name__, exc) from None


class Step(_Refusing):
    """Base of every plan step. ``sql()`` is the statement; ``summary()`` one line for people."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    kind: str
    # Identifier fields are validated once here, for every step type.
    _identifier_fields: ClassVar[tuple[str, ...]] = ()

    def composed(self) -> sql.Composable:
        raise NotImplementedError

    def sql(self) -> str:
        return self.composed().as_string()

    def summary(self) -> str:
        return self.sql()

    def target(self) -> TargetRef | None:
        return None

    def tables(self) -> tuple[tuple[str | None, str], ...]:
        """The (schema, table) pairs this step reads or changes."""
        return ()


class TableStep(Step):
    """A step on one table: ``schema`` (None: resolved by search_path) and ``table``."""

    schema_: str | None = Field(default=None, alias="schema")
    table: str

    @field_validator("schema_", "table")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return _check_identifier(value)

    @property
    def relation(self) -> sql.Identifier:
        return _ident(self.schema_, self.table)

    @property
    def qualified(self) -> str:
        return _qualified_text(self.schema_, self.table)

    def tables(self) -> tuple[tuple[str | None, str], ...]:
        return ((self.schema_, self.table),)

    def target(self) -> TargetRef:
        return TargetRef(kind="table", schema=self.schema_, table=self.table)

    def _alter(self, action: sql.Composable) -> sql.Composed:
        return sql.SQL("ALTER TABLE {} {}").format(self.relation, action)


def _default_clause(expression: str) -> sql.Composed:
    # DEFAULT takes PostgreSQL's restricted b_expr grammar (no IS NULL, no AND): parenthesise compound ones.
    # ``expression`` was parsed into one expression node and re-rendered by the step's validator.
    if " " in expression:
        return sql.SQL("DEFAULT ({})").format(sql.SQL(expression))
    return sql.SQL("DEFAULT {}").format(sql.SQL(expression))


def _each(normalize: Any) -> Any:
    """A validator for a tuple of SQL fragments: each parsed into exactly one node, and re-rendered."""
    return classmethod(lambda cls, value: tuple(normalize(v) for v in value))


def _names(value: Any) -> Any:
    if isinstance(value, str):
        value = (value,)
    return value


class ColumnDefinition(_Refusing):
    """A column of a CREATE TABLE: name, type, NOT NULL, default, other column constraints as SQL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: str
    not_null: bool = False
    default: str | None = None
    constraints: tuple[str, ...] = ()

    _name = field_validator("name")(classmethod(lambda cls, v: _check_identifier(v)))
    _type = field_validator("type")(classmethod(lambda cls, v: normalize_type(v)))
    _default = field_validator("default")(classmethod(lambda cls, v: None if v is None else normalize_expression(v)))
    _constraints = field_validator("constraints")(_each(normalize_column_constraint))

    def composed(self) -> sql.Composed:
        parts: list[sql.Composable] = [sql.Identifier(self.name), sql.SQL(self.type)]
        if self.not_null:
            parts.append(sql.SQL("NOT NULL"))
        if self.default is not None:
            parts.append(_default_clause(self.default))
        parts.extend(sql.SQL(c) for c in self.constraints)
        return sql.SQL(" ").join(parts)


class CreateTable(TableStep):
    kind: Literal["create_table"] = "create_table"
    columns: tuple[ColumnDefinition, ...]
    constraints: tuple[str, ...] = ()
    if_not_exists: bool = False

    _constraints = field_validator("constraints")(_each(normalize_table_constraint))

    def composed(self) -> sql.Composed:
        elements = [c.composed() for c in self.columns] + [sql.SQL(c) for c in self.constraints]
        return sql.SQL("CREATE TABLE {}{} ({})").format(
            sql.SQL("IF NOT EXISTS ") if self.if_not_exists else sql.SQL(""),
            self.relation,
            sql.SQL(", ").join(elements),
        )

    def summary(self) -> str:
        return f"create table {self.qualified} ({len(self.columns)} columns)"


class ColumnStep(TableStep):
    column: str

    @field_validator("column")
    @classmethod
    def _column_identifier(cls, value: str) -> str:
        return _check_identifier(value)  # type: ignore[return-value]

    def target(self) -> TargetRef:
        return TargetRef(kind="column", schema=self.schema_, table=self.table, columns=(self.column,))

    @property
    def column_ident(self) -> sql.Identifier:
        return sql.Identifier(self.column)


class AddColumn(ColumnStep):
    kind: Literal["add_column"] = "add_column"
    type: str
    not_null: bool = False
    default: str | None = None
    if_not_exists: bool = False

    _type = field_validator("type")(classmethod(lambda cls, v: normalize_type(v)))
    _default = field_validator("default")(classmethod(lambda cls, v: None if v is None else normalize_expression(v)))

    def composed(self) -> sql.Composed:
        parts: list[sql.Composable] = [self.column_ident, sql.SQL(self.type)]
        if self.not_null:
            parts.append(sql.SQL("NOT NULL"))
        if self.default is not None:
            parts.append(_default_clause(self.default))
        return self._alter(
            sql.SQL("ADD COLUMN {}{}").format(
                sql.SQL("IF NOT EXISTS ") if self.if_not_exists else sql.SQL(""), sql.SQL(" ").join(parts)
            )
        )

    def summary(self) -> str:
        extra = (" NOT NULL" if self.not_null else "") + (f" DEFAULT {self.default}" if self.default else "")
        return f"add column {self.qualified}.{display_name(self.column)} {self.type}{extra}"


class SetNotNull(ColumnStep):
    kind: Literal["set_not_null"] = "set_not_null"

    def composed(self) -> sql.Composed:
        return self._alter(sql.SQL("ALTER COLUMN {} SET NOT NULL").format(self.column_ident))

    def summary(self) -> str:
        return f"set NOT NULL on {self.qualified}.{display_name(self.column)}"


class DropNotNull(ColumnStep):
    kind: Literal["drop_not_null"] = "drop_not_null"

    def composed(self) -> sql.Composed:
        return self._alter(sql.SQL("ALTER COLUMN {} DROP NOT NULL").format(self.column_ident))

    def summary(self) -> str:
        return f"drop NOT NULL on {self.qualified}.{display_name(self.column)}"


class AlterColumnType(ColumnStep):
    kind: Literal["alter_column_type"] = "alter_column_type"
    type: str
    using: str | None = None

    _type = field_validator("type")(classmethod(lambda cls, v: normalize_type(v)))
    _using = field_validator("using")(classmethod(lambda cls, v: None if v is None else normalize_expression(v)))

    def composed(self) -> sql.Composed:
        using = sql.SQL(" USING ") + sql.SQL(self.using) if self.using is not None else sql.SQL("")
        return self._alter(sql.SQL("ALTER COLUMN {} TYPE {}{}").format(self.column_ident, sql.SQL(self.type), using))

    def summary(self) -> str:
        using = f" USING {self.using}" if self.using else ""
        return f"change type of {self.qualified}.{display_name(self.column)} to {self.type}{using}"


class ColumnsStep(TableStep):
    columns: tuple[str, ...] = Field(min_length=1)

    _columns = field_validator("columns", mode="before")(classmethod(lambda cls, v: _names(v)))

    @field_validator("columns")
    @classmethod
    def _column_identifiers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for v in value:
            _check_identifier(v)
        return value

    def target(self) -> TargetRef:
        return TargetRef(kind="column", schema=self.schema_, table=self.table, columns=self.columns)

    @property
    def columns_text(self) -> str:
        return ", ".join(display_name(c) for c in self.columns)


def _constraint_name(name: str | None) -> sql.Composable:
    return sql.SQL("CONSTRAINT {} ").format(sql.Identifier(name)) if name else sql.SQL("")


class AddUnique(ColumnsStep):
    """ADD [CONSTRAINT name] UNIQUE [NULLS NOT DISTINCT] (columns), or PRIMARY KEY (columns)."""

    kind: Literal["add_unique"] = "add_unique"
    name: str | None = None
    nulls_not_distinct: bool = False
    primary_key: bool = False

    _name = field_validator("name")(classmethod(lambda cls, v: _check_identifier(v)))

    def composed(self) -> sql.Composed:
        if self.primary_key:
            body = sql.SQL("PRIMARY KEY ({})").format(_idents(self.columns))
        else:
            nnd = sql.SQL("NULLS NOT DISTINCT ") if self.nulls_not_distinct else sql.SQL("")
            body = sql.SQL("UNIQUE {}({})").format(nnd, _idents(self.columns))
        return self._alter(sql.SQL("ADD {}{}").format(_constraint_name(self.name), body))

    def summary(self) -> str:
        what = "primary key" if self.primary_key else "unique constraint"
        return f"add {what} on {self.qualified}({self.columns_text})"


class CreateIndex(ColumnsStep):
    kind: Literal["create_index"] = "create_index"
    name: str | None = None
    unique: bool = False
    concurrently: bool = False
    if_not_exists: bool = False
    nulls_not_distinct: bool = False
    method: str = "btree"
    where: str | None = None

    _name = field_validator("name")(classmethod(lambda cls, v: _check_identifier(v)))
    _where = field_validator("where")(classmethod(lambda cls, v: None if v is None else normalize_expression(v)))

    @model_validator(mode="after")
    def _named_if_not_exists(self) -> CreateIndex:
        if self.if_not_exists and not self.name:
            raise ValueError("CREATE INDEX IF NOT EXISTS needs an index name: PostgreSQL requires one")
        return self

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"index method {value!r} is not a plain name such as btree, hash, gin, gist, brin")
        return value.lower()

    def composed(self) -> sql.Composed:
        head = sql.SQL("CREATE {}INDEX {}{}").format(
            sql.SQL("UNIQUE ") if self.unique else sql.SQL(""),
            sql.SQL("CONCURRENTLY ") if self.concurrently else sql.SQL(""),
            sql.SQL("IF NOT EXISTS ") if self.if_not_exists else sql.SQL(""),
        )
        name = sql.SQL("{} ").format(sql.Identifier(self.name)) if self.name else sql.SQL("")
        using = sql.SQL("USING {} ").format(sql.Identifier(self.method)) if self.method != "btree" else sql.SQL("")
        nnd = sql.SQL(" NULLS NOT DISTINCT") if self.nulls_not_distinct else sql.SQL("")
        where = sql.SQL(" WHERE ") + sql.SQL(self.where) if self.where else sql.SQL("")
        return sql.SQL("{}{}ON {} {}({}){}{}").format(
            head, name, self.relation, using, _idents(self.columns), nnd, where
        )

    def summary(self) -> str:
        how = ("unique " if self.unique else "") + ("index concurrently" if self.concurrently else "index")
        return f"create {how} on {self.qualified}({self.columns_text})"

    def target(self) -> TargetRef:
        return TargetRef(kind="index", schema=self.schema_, table=self.table, columns=self.columns, name=self.name)


class AddForeignKey(ColumnsStep):
    kind: Literal["add_foreign_key"] = "add_foreign_key"
    name: str | None = None
    ref_schema: str | None = None
    ref_table: str
    ref_columns: tuple[str, ...] = Field(min_length=1)
    not_valid: bool = False
    match_full: bool = False
    on_delete: Literal["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"] = "NO ACTION"
    on_update: Literal["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"] = "NO ACTION"

    _name = field_validator("name", "ref_schema", "ref_table")(classmethod(lambda cls, v: _check_identifier(v)))
    _refs = field_validator("ref_columns", mode="before")(classmethod(lambda cls, v: _names(v)))

    @field_validator("ref_columns")
    @classmethod
    def _same_width(cls, value: tuple[str, ...], info: Any) -> tuple[str, ...]:
        for v in value:
            _check_identifier(v)
        columns = info.data.get("columns")
        if columns is not None and len(columns) != len(value):
            raise ValueError(
                f"the foreign key has {len(columns)} referencing column(s) but {len(value)} referenced column(s)"
            )
        return value

    @property
    def ref_relation(self) -> sql.Identifier:
        return _ident(self.ref_schema, self.ref_table)

    def composed(self) -> sql.Composed:
        tail: list[sql.Composable] = []
        if self.match_full:
            tail.append(sql.SQL(" MATCH FULL"))
        if self.on_update != "NO ACTION":
            tail.append(sql.SQL(" ON UPDATE " + self.on_update))
        if self.on_delete != "NO ACTION":
            tail.append(sql.SQL(" ON DELETE " + self.on_delete))
        if self.not_valid:
            tail.append(sql.SQL(" NOT VALID"))
        return self._alter(
            sql.SQL("ADD {}FOREIGN KEY ({}) REFERENCES {} ({}){}").format(
                _constraint_name(self.name),
                _idents(self.columns),
                self.ref_relation,
                _idents(self.ref_columns),
                sql.Composed(tail),
            )
        )

    def summary(self) -> str:
        ref = _qualified_text(self.ref_schema, self.ref_table)
        nv = " NOT VALID" if self.not_valid else ""
        return f"add foreign key {self.qualified}({self.columns_text}) → {ref}({', '.join(display_name(c) for c in self.ref_columns)}){nv}"

    def target(self) -> TargetRef:
        return TargetRef(
            kind="relationship",
            schema=self.schema_,
            table=self.table,
            columns=self.columns,
            ref_schema=self.ref_schema,
            ref_table=self.ref_table,
            ref_columns=self.ref_columns,
            name=self.name,
        )

    def tables(self) -> tuple[tuple[str | None, str], ...]:
        return ((self.schema_, self.table), (self.ref_schema, self.ref_table))


class AddCheck(TableStep):
    kind: Literal["add_check"] = "add_check"
    name: str | None = None
    expression: str
    not_valid: bool = False

    _name = field_validator("name")(classmethod(lambda cls, v: _check_identifier(v)))
    _expr = field_validator("expression")(classmethod(lambda cls, v: normalize_expression(v)))

    def composed(self) -> sql.Composed:
        nv = sql.SQL(" NOT VALID") if self.not_valid else sql.SQL("")
        return self._alter(
            sql.SQL("ADD {}CHECK ({}){}").format(_constraint_name(self.name), sql.SQL(self.expression), nv)
        )

    def summary(self) -> str:
        return f"add check ({self.expression}) on {self.qualified}" + (" NOT VALID" if self.not_valid else "")

    def target(self) -> TargetRef:
        return TargetRef(kind="constraint", schema=self.schema_, table=self.table, name=self.name)


class ValidateConstraint(TableStep):
    kind: Literal["validate_constraint"] = "validate_constraint"
    name: str

    _name = field_validator("name")(classmethod(lambda cls, v: _check_identifier(v)))

    def composed(self) -> sql.Composed:
        return self._alter(sql.SQL("VALIDATE CONSTRAINT {}").format(sql.Identifier(self.name)))

    def summary(self) -> str:
        return f"validate constraint {display_name(self.name)} on {self.qualified}"

    def target(self) -> TargetRef:
        return TargetRef(kind="constraint", schema=self.schema_, table=self.table, name=self.name)


class AddUniqueUsingIndex(TableStep):
    """ADD CONSTRAINT name UNIQUE | PRIMARY KEY USING INDEX index: turns an existing unique index (built
    CONCURRENTLY beforehand) into a constraint, a catalog change without a scan (a primary key also sets
    NOT NULL, which scans unless the columns are NOT NULL already). The index takes the constraint's name."""

    kind: Literal["add_unique_using_index"] = "add_unique_using_index"
    index: str
    name: str | None = None
    primary_key: bool = False

    _name = field_validator("name", "index")(classmethod(lambda cls, v: _check_identifier(v)))

    @property
    def constraint_name(self) -> str:
        """Without a name, PostgreSQL names the constraint after the index."""
        return self.name or self.index

    def composed(self) -> sql.Composed:
        what = sql.SQL("PRIMARY KEY") if self.primary_key else sql.SQL("UNIQUE")
        return self._alter(sql.SQL("ADD {}{} USING INDEX {}").format(
            _constraint_name(self.name), what, sql.Identifier(self.index)))

    def summary(self) -> str:
        what = "primary key" if self.primary_key else "unique constraint"
        return f"add {what} {display_name(self.constraint_name)} on {self.qualified} using index " \
            f"{display_name(self.index)}"

    def target(self) -> TargetRef:
        return TargetRef(kind="constraint", schema=self.schema_, table=self.table, name=self.constraint_name)


def _drop_tail(cascade: bool) -> sql.Composable:
    return sql.SQL(" CASCADE") if cascade else sql.SQL("")


class DropColumn(ColumnStep):
    kind: Literal["drop_column"] = "drop_column"
    if_exists: bool = False
    cascade: bool = False

    def composed(self) -> sql.Composed:
        return self._alter(
            sql.SQL("DROP COLUMN {}{}{}").format(
                sql.SQL("IF EXISTS ") if self.if_exists else sql.SQL(""), self.column_ident, _drop_tail(self.cascade)
            )
        )

    def summary(self) -> str:
        return f"drop column {self.qualified}.{display_name(self.column)}"


class DropTable(TableStep):
    kind: Literal["drop_table"] = "drop_table"
    if_exists: bool = False
    cascade: bool = False

    def composed(self) -> sql.Composed:
        return sql.SQL("DROP TABLE {}{}{}").format(
            sql.SQL("IF EXISTS ") if self.if_exists else sql.SQL(""), self.relation, _drop_tail(self.cascade)
        )

    def summary(self) -> str:
        return f"drop table {self.qualified}"


class DropConstraint(TableStep):
    kind: Literal["drop_constraint"] = "drop_constraint"
    name: str
    if_exists: bool = False
    cascade: bool = False

    _name = field_validator("name")(classmethod(lambda cls, v: _check_identifier(v)))

    def composed(self) -> sql.Composed:
        return self._alter(
            sql.SQL("DROP CONSTRAINT {}{}{}").format(
                sql.SQL("IF EXISTS ") if self.if_exists else sql.SQL(""),
                sql.Identifier(self.name),
                _drop_tail(self.cascade),
            )
        )

    def summary(self) -> str:
        return f"drop constraint {display_name(self.name)} on {self.qualified}"

    def target(self) -> TargetRef:
        return TargetRef(kind="constraint", schema=self.schema_, table=self.table, name=self.name)


class DropIndex(Step):
    kind: Literal["drop_index"] = "drop_index"
    schema_: str | None = Field(default=None, alias="schema")
    name: str
    concurrently: bool = False
    if_exists: bool = False
    cascade: bool = False

    _name = field_validator("schema_", "name")(classmethod(lambda cls, v: _check_identifier(v)))

    def composed(self) -> sql.Composed:
        return sql.SQL("DROP INDEX {}{}{}{}").format(
            sql.SQL("CONCURRENTLY ") if self.concurrently else sql.SQL(""),
            sql.SQL("IF EXISTS ") if self.if_exists else sql.SQL(""),
            _ident(self.schema_, self.name),
            _drop_tail(self.cascade),
        )

    def summary(self) -> str:
        return f"drop index {_qualified_text(self.schema_, self.name)}" + (" concurrently" if self.concurrently else "")

    def target(self) -> TargetRef:
        return TargetRef(kind="index", schema=self.schema_, name=self.name)


NAMEDATALEN = 64


def clip_bytes(text: str, limit: int) -> str:
    """At most ``limit`` bytes of ``text``, never cutting a character (pg_mbcliplen)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore")


def make_object_name(name1: str, name2: str | None, label: str) -> str:
    """PostgreSQL's makeObjectName: ``name1_name2_label``, shortening the longer part until it fits 63 bytes."""
    overhead = len(label) + 1 + (1 if name2 else 0)
    avail = NAMEDATALEN - 1 - overhead
    n1, n2 = len(name1.encode()), len((name2 or "").encode())
    while n1 + n2 > avail:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    parts = [clip_bytes(name1, n1)] + ([clip_bytes(name2, n2)] if name2 else []) + [label]
    return "_".join(parts)


def index_name(step: CreateIndex) -> str:
    """The name of an index: its own, or the one PostgreSQL's ChooseIndexName would pick first
    (``table_col1_col2_idx``). Apply always names it explicitly, so a rerun after a crash finds the index a
    killed build left (to adopt or to rebuild) instead of building a second copy under ``..._idx1``."""
    return step.name or make_object_name(step.table, "_".join(step.columns), "idx")


def drop_index_concurrently(schema: str | None, name: str) -> sql.Composed:
    """``DROP INDEX CONCURRENTLY IF EXISTS schema.name``: the one way erd_preflight clears an INVALID index."""
    return DropIndex(schema=schema, name=name, concurrently=True, if_exists=True).composed()


class RawSQL(Step):
    """A statement the plan does not model: it is applied as written, and preflight warns about it."""

    kind: Literal["raw"] = "raw"
    statement: str = Field(min_length=1)
    reason: str = "not a statement erd_preflight models"

    # Exactly one statement, checked by PostgreSQL's parser: a second one can't ride along.
    _statement = field_validator("statement")(classmethod(lambda cls, v: normalize_statement(v)))

    def composed(self) -> sql.Composable:
        return sql.SQL(self.statement)

    def sql(self) -> str:
        return self.statement

    def summary(self) -> str:
        first = " ".join(self.statement.split())
        return "raw SQL: " + (first if len(first) <= 80 else first[:77] + "...")

    def target(self) -> TargetRef:
        return TargetRef(kind="statement", name=self.summary())


PlanStep = Annotated[
    Union[
        CreateTable,
        AddColumn,
        SetNotNull,
        DropNotNull,
        AlterColumnType,
        AddUnique,
        AddUniqueUsingIndex,
        CreateIndex,
        AddForeignKey,
        AddCheck,
        ValidateConstraint,
        DropColumn,
        DropTable,
        DropConstraint,
        DropIndex,
        RawSQL,
    ],
    Field(discriminator="kind"),
]


class MigrationPlan(_Refusing):
    """An ordered list of typed steps. The same steps always give the same fingerprint and checks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: tuple[PlanStep, ...]
    name: str | None = None
    notes: tuple[str, ...] = Field(default=(), description="what parsing had to say, e.g. skipped BEGIN/COMMIT")
    nothing_pending: bool = Field(
        default=False, description="no steps because the migration tool's history table says every migration is "
        "applied; any other plan without steps is refused, never reported clear")
    origins: tuple[str | None, ...] = Field(
        default=(), description="where each step came from (a file, an Alembic revision); empty: not recorded. "
        "Not part of the fingerprint: the same steps are the same plan wherever they were written.")

    @model_validator(mode="after")
    def _one_origin_per_step(self) -> MigrationPlan:
        if self.nothing_pending and self.steps:
            raise ValueError("a plan with steps is not 'nothing pending'")
        if self.origins and len(self.origins) != len(self.steps):
            raise ValueError(f"origins has {len(self.origins)} entries for {len(self.steps)} steps")
        return self

    @classmethod
    def from_sql(cls, text: str, *, name: str | None = None, origin: str | None = None) -> MigrationPlan:
        """Parse a migration with PostgreSQL's own parser (pglast) into typed steps.

        Statements it does not model become ``RawSQL`` steps, which preflight reports as warnings.
        A syntax error raises ``PlanError`` with line and column (and ``origin``, when given, names the file).
        """
        from .sqlparse import parse_plan

        try:
            steps, notes = parse_plan(text)
        except PlanError as exc:
            if origin is None:
                raise
            raise PlanError(f"{origin}: {exc.args[0]}") from exc
        if origin is not None:
            notes = [f"{origin}: {note}" for note in notes]
        return cls(steps=tuple(steps), name=name, notes=tuple(notes),
                   origins=(origin,) * len(steps) if origin is not None else ())

    @classmethod
    def concat(cls, plans: list[MigrationPlan], *, name: str | None = None,
               notes: tuple[str, ...] = ()) -> MigrationPlan:
        """One plan running ``plans`` in order, each step keeping its origin."""
        origins: tuple[str | None, ...] = ()
        if any(p.origins for p in plans):
            origins = tuple(o for p in plans for o in (p.origins or (None,) * len(p.steps)))
        return cls(steps=tuple(s for p in plans for s in p.steps), name=name,
                   notes=tuple(notes) + tuple(n for p in plans for n in p.notes), origins=origins)

    @classmethod
    def from_dir(cls, path: str | Path, *, db: Any = None, history: bool = True) -> MigrationPlan:
        """The pending migrations of a folder, in the order its tool applies them (Flyway ``V3__x.sql``,
        dbmate / golang-migrate timestamps and ``.up.sql``, sqitch's ``sqitch.plan``).

        With ``db`` (a URL, Engine or Database) and ``history=True``, files that the tool's history table
        (``flyway_schema_history``, ``schema_migrations``) lists as applied are skipped, read read-only."""
        from .migration_dirs import plan_from_dir

        return plan_from_dir(cls, Path(path), db=db, history=history)

    @classmethod
    def from_alembic(cls, config_or_ini_path: Any, revision_range: str = "current:head", *,
                     db: Any = None) -> MigrationPlan:
        """The pending revisions of an Alembic project, rendered by Alembic's offline mode (``--sql``) and
        parsed; nothing runs. ``current`` is read from ``alembic_version`` in ``db`` (read-only). Each step
        remembers its revision (``origins``), and findings name it."""
        from .alembic_source import plan_from_alembic

        return plan_from_alembic(cls, config_or_ini_path, revision_range, db=db)

    def origin_of(self, step: int) -> str | None:
        """Where step ``step`` (1-based) came from, if recorded."""
        return self.origins[step - 1] if self.origins and 0 < step <= len(self.origins) else None

    def canonical_json(self) -> str:
        """The steps as canonical JSON: sorted keys, no whitespace. The fingerprint hashes this."""
        payload = [s.model_dump(mode="json", by_alias=True) for s in self.steps]
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the steps: equal plans, equal fingerprints."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def sql(self) -> str:
        """The whole plan as a SQL script, one statement per step."""
        return "".join(s.sql() + ";\n" for s in self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def steps_frame(self) -> pd.DataFrame:
        """One row per step: its number, the phase apply runs it in, a summary and its SQL."""
        from .display import plan_frame

        return plan_frame(self)

    def _repr_html_(self) -> str:
        from .display import plan_html

        return plan_html(self)
