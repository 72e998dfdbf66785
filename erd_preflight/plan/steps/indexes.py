"""Step kinds on indexes: CREATE [UNIQUE] INDEX [CONCURRENTLY] and DROP INDEX [CONCURRENTLY]."""

from __future__ import annotations

from typing import Any, Literal

from pglast import ast, enums
from psycopg import sql
from pydantic import Field, field_validator, model_validator

from ...report.contract import UNIQUE_PRECHECK, TargetRef
from ...sqlparse import normalize_expression
from ..names import check_identifier, ident, idents, make_object_name, qualified_text
from .base import (
    DROP_OBJECTS,
    STATEMENTS,
    ColumnsStep,
    Lock,
    PhaseName,
    Step,
    Unmodelled,
    deparse,
    drop_tail,
    parses,
    rel_of,
)


class CreateIndex(ColumnsStep):
    kind: Literal["create_index"] = "create_index"
    name: str | None = None
    unique: bool = False
    concurrently: bool = False
    if_not_exists: bool = False
    nulls_not_distinct: bool = False
    method: str = "btree"
    where: str | None = None

    LOCK = ("SHARE", "a full scan and sort; writes wait until it ends")
    EXAMPLE = "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx ON t (a, b) WHERE a > 0"

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

    def phase(self) -> PhaseName:
        return "B" if self.concurrently else "A"

    def lock(self) -> Lock:
        return ("SHARE UPDATE EXCLUSIVE", "two scans; reads and writes go on") if self.concurrently else self.LOCK

    def primary_check(self) -> str:
        return UNIQUE_PRECHECK if self.unique else self.PRIMARY_CHECK

    def object_name(self) -> str | None:
        return index_name(self) if self.concurrently else self.name


@parses(STATEMENTS, ast.IndexStmt)
def _create_index(stmt: ast.IndexStmt) -> list[Any]:
    if stmt.indexIncludingParams or stmt.options or stmt.tableSpace or not stmt.relation.inh:
        raise Unmodelled("CREATE INDEX with INCLUDE, WITH, TABLESPACE or ONLY")
    columns = []
    for p in stmt.indexParams:
        if p.name is None or p.collation or p.opclass or p.ordering or p.nulls_ordering:
            raise Unmodelled("an expression index, or one with opclass, collation or ordering")
        columns.append(p.name)
    fields: dict[str, Any] = {}
    if stmt.idxname:
        fields["name"] = stmt.idxname
    if stmt.whereClause is not None:
        fields["where"] = deparse(stmt.whereClause)
    return [CreateIndex(**rel_of(stmt.relation), **fields, columns=tuple(columns), unique=bool(stmt.unique),
                        concurrently=bool(stmt.concurrent), if_not_exists=bool(stmt.if_not_exists),
                        nulls_not_distinct=bool(stmt.nulls_not_distinct), method=stmt.accessMethod or "btree")]


class DropIndex(Step):
    kind: Literal["drop_index"] = "drop_index"
    schema_: str | None = Field(default=None, alias="schema")
    name: str
    concurrently: bool = False
    if_exists: bool = False
    cascade: bool = False

    LOCK = ("ACCESS EXCLUSIVE on its table", "a catalog change, but it waits for and blocks all traffic on "
            "the table; DROP INDEX CONCURRENTLY does not")
    EXAMPLE = "DROP INDEX CONCURRENTLY IF EXISTS s.t_a_idx"

    _name = field_validator("schema_", "name")(classmethod(lambda cls, v: check_identifier(v)))

    def composed(self) -> sql.Composed:
        return sql.SQL("DROP INDEX {}{}{}{}").format(
            sql.SQL("CONCURRENTLY ") if self.concurrently else sql.SQL(""),
            sql.SQL("IF EXISTS ") if self.if_exists else sql.SQL(""),
            ident(self.schema_, self.name),
            drop_tail(self.cascade),
        )

    def summary(self) -> str:
        return f"drop index {qualified_text(self.schema_, self.name)}" + (" concurrently" if self.concurrently else "")

    def target(self) -> TargetRef:
        return TargetRef(kind="index", schema=self.schema_, name=self.name)

    def phase(self) -> PhaseName:
        return "B" if self.concurrently else "A"

    def lock(self) -> Lock:
        if self.concurrently:
            return ("SHARE UPDATE EXCLUSIVE", "waits for transactions using the index; reads and writes go on")
        return self.LOCK

    def object_name(self) -> str | None:
        return self.name


@parses(DROP_OBJECTS, enums.ObjectType.OBJECT_INDEX)
def _drop_index(schema: str | None, name: str, stmt: ast.DropStmt) -> DropIndex:
    return DropIndex(schema=schema, name=name, if_exists=bool(stmt.missing_ok), concurrently=bool(stmt.concurrent),
                     cascade=stmt.behavior == enums.DropBehavior.DROP_CASCADE)


def index_name(step: CreateIndex) -> str:
    """The name of an index: its own, or the one PostgreSQL's ChooseIndexName would pick first
    (``table_col1_col2_idx``). Apply always names it explicitly, so a rerun after a crash finds the index a
    killed build left (to adopt or to rebuild) instead of building a second copy under ``..._idx1``."""
    return step.name or make_object_name(step.table, "_".join(step.columns), "idx")


def drop_index_concurrently(schema: str | None, name: str) -> sql.Composed:
    """``DROP INDEX CONCURRENTLY IF EXISTS schema.name``: the one way erd_preflight clears an INVALID index."""
    return DropIndex(schema=schema, name=name, concurrently=True, if_exists=True).composed()
