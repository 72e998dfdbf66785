"""The typed steps of a plan: each a pydantic model that renders its own SQL with quoted identifiers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from psycopg import sql
from pydantic import ConfigDict, Field, field_validator, model_validator

from ..contract import TargetRef
from ..sqlparse import (
    normalize_column_constraint,
    normalize_expression,
    normalize_statement,
    normalize_table_constraint,
    normalize_type,
)

if TYPE_CHECKING:
    pass

from .names import Refusing, check_identifier, display_name, ident, idents, make_object_name, qualified_text


class Step(Refusing):
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
        return check_identifier(value)

    @property
    def relation(self) -> sql.Identifier:
        return ident(self.schema_, self.table)

    @property
    def qualified(self) -> str:
        return qualified_text(self.schema_, self.table)

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
        return check_identifier(value)  # type: ignore[return-value]

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
            check_identifier(v)
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

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))

    def composed(self) -> sql.Composed:
        if self.primary_key:
            body = sql.SQL("PRIMARY KEY ({})").format(idents(self.columns))
        else:
            nnd = sql.SQL("NULLS NOT DISTINCT ") if self.nulls_not_distinct else sql.SQL("")
            body = sql.SQL("UNIQUE {}({})").format(nnd, idents(self.columns))
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

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))
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
            head, name, self.relation, using, idents(self.columns), nnd, where
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

    _name = field_validator("name", "ref_schema", "ref_table")(classmethod(lambda cls, v: check_identifier(v)))
    _refs = field_validator("ref_columns", mode="before")(classmethod(lambda cls, v: _names(v)))

    @field_validator("ref_columns")
    @classmethod
    def _same_width(cls, value: tuple[str, ...], info: Any) -> tuple[str, ...]:
        for v in value:
            check_identifier(v)
        columns = info.data.get("columns")
        if columns is not None and len(columns) != len(value):
            raise ValueError(
                f"the foreign key has {len(columns)} referencing column(s) but {len(value)} referenced column(s)"
            )
        return value

    @property
    def ref_relation(self) -> sql.Identifier:
        return ident(self.ref_schema, self.ref_table)

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
                idents(self.columns),
                self.ref_relation,
                idents(self.ref_columns),
                sql.Composed(tail),
            )
        )

    def summary(self) -> str:
        ref = qualified_text(self.ref_schema, self.ref_table)
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

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))
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

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))

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

    _name = field_validator("name", "index")(classmethod(lambda cls, v: check_identifier(v)))

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

    _name = field_validator("name")(classmethod(lambda cls, v: check_identifier(v)))

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

    _name = field_validator("schema_", "name")(classmethod(lambda cls, v: check_identifier(v)))

    def composed(self) -> sql.Composed:
        return sql.SQL("DROP INDEX {}{}{}{}").format(
            sql.SQL("CONCURRENTLY ") if self.concurrently else sql.SQL(""),
            sql.SQL("IF EXISTS ") if self.if_exists else sql.SQL(""),
            ident(self.schema_, self.name),
            _drop_tail(self.cascade),
        )

    def summary(self) -> str:
        return f"drop index {qualified_text(self.schema_, self.name)}" + (" concurrently" if self.concurrently else "")

    def target(self) -> TargetRef:
        return TargetRef(kind="index", schema=self.schema_, name=self.name)


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
