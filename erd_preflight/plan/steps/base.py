"""What every step kind has, and the registries each kind enters once.

A step kind lives in one module of this package (its family): the pydantic model, the SQL it renders, the
phase apply runs it in, the lock it takes, the check that answers for it, and the parse rule that turns
PostgreSQL's AST into it. Its data checks are registered in ``checks`` (``checks.derive.data_checks``).
``tests/test_registry.py`` proves every member of the step union has each of these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql
from pydantic import ConfigDict, Field, field_validator, model_serializer

from ...report.contract import OBJECT_PRECHECK, TargetRef
from ..names import Refusing, check_identifier, display_name, ident, qualified_text

PhaseName = Literal["A", "B", "C"]
Lock = tuple[str, str]  # the lock a step takes, and what the statement does meanwhile


# Flags stored only when true: table_if_exists and only (TableStep), outside_transaction (every step).
_UNSET_WHEN_FALSE = ("table_if_exists", "only", "outside_transaction", "outsideTransaction")


def _drop_unset(data: dict[str, Any]) -> dict[str, Any]:
    for name in _UNSET_WHEN_FALSE:
        if data.get(name) is False:
            del data[name]
    return data


class Step(Refusing):
    """Base of every plan step. ``sql()`` is the statement; ``summary()`` one line for people.

    Each kind declares, next to its SQL: ``LOCK`` (PostgreSQL's documented lock level and what the statement
    does meanwhile), ``PRIMARY_CHECK`` (the check id that answers for it) and ``EXAMPLE`` (a statement the
    parser turns into this kind; the registry test parses it back). ``phase()`` is "A" unless the kind says
    otherwise."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    kind: str
    # A migration tool's directive runs this step outside any transaction (diesel run_in_transaction = false,
    # Atlas txmode none, Liquibase runInTransaction:false, a Django migration with atomic = False): apply runs
    # it alone, in phase B. Stored with the step (a run loaded later applies it the same way), only when set.
    outside_transaction: bool = Field(default=False, alias="outsideTransaction")
    LOCK: ClassVar[Lock]
    PRIMARY_CHECK: ClassVar[str] = OBJECT_PRECHECK
    EXAMPLE: ClassVar[str]

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

    def phase(self) -> PhaseName:
        """A: in the transaction of the plain DDL. B: outside any transaction (CONCURRENTLY). C: constraints
        that need the indexes of B."""
        return "A"

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: Any) -> dict[str, Any]:
        """Flags added after plans were first stored appear in the JSON only when set: a plan written before
        keeps its JSON, and so its fingerprint (the runs recorded with it still match)."""
        return _drop_unset(handler(self))

    def lock(self) -> Lock:
        return self.LOCK

    def primary_check(self) -> str:
        return self.PRIMARY_CHECK

    def object_name(self) -> str | None:
        """The name of the object the step makes or removes, when it has one: a later step using that name
        may not move before it."""
        return None


class TableStep(Step):
    """A step on one table: ``schema`` (None: resolved by search_path) and ``table``."""

    schema_: str | None = Field(default=None, alias="schema")
    table: str
    # ALTER TABLE IF EXISTS (a missing table makes the statement do nothing) and ALTER TABLE ONLY (the tables
    # that inherit from this one, or its partitions, are left out); for the ALTER TABLE kinds only
    table_if_exists: bool = False
    only: bool = False

    @field_validator("schema_", "table")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return check_identifier(value)

    def __repr_args__(self) -> Any:
        return [(k, v) for k, v in super().__repr_args__() if not (k in ("table_if_exists", "only") and v is False)]

    @model_serializer(mode="wrap")
    def _without_plain_forms(self, handler: Any) -> dict[str, Any]:
        """IF EXISTS and ONLY appear in the stored JSON only when set: a plan written before they were modelled
        keeps its JSON, and so its fingerprint (the runs recorded with it still match)."""
        return _drop_unset(handler(self))

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
        return sql.SQL("ALTER TABLE {}{}{} {}").format(
            sql.SQL("IF EXISTS ") if self.table_if_exists else sql.SQL(""), sql.SQL("ONLY ") if self.only else sql.SQL(""),
            self.relation, action)


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


def names_before(value: Any) -> Any:
    """A single column name may be given as a string."""
    if isinstance(value, str):
        value = (value,)
    return value


class ColumnsStep(TableStep):
    columns: tuple[str, ...] = Field(min_length=1)

    _columns = field_validator("columns", mode="before")(classmethod(lambda cls, v: names_before(v)))

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


def default_clause(expression: str) -> sql.Composed:
    # DEFAULT takes PostgreSQL's restricted b_expr grammar (no IS NULL, no AND): parenthesise compound ones.
    # ``expression`` was parsed into one expression node and re-rendered by the step's validator.
    if " " in expression:
        return sql.SQL("DEFAULT ({})").format(sql.SQL(expression))
    return sql.SQL("DEFAULT {}").format(sql.SQL(expression))


def each(normalize: Any) -> Any:
    """A validator for a tuple of SQL fragments: each parsed into exactly one node, and re-rendered."""
    return classmethod(lambda cls, value: tuple(normalize(v) for v in value))


def constraint_name(name: str | None) -> sql.Composable:
    return sql.SQL("CONSTRAINT {} ").format(sql.Identifier(name)) if name else sql.SQL("")


def drop_tail(cascade: bool) -> sql.Composable:
    return sql.SQL(" CASCADE") if cascade else sql.SQL("")


# ---------------------------------------------------------------------------------------------------------
# Parse rules: PostgreSQL's AST → steps. Each kind registers the nodes it reads; plan.parse drives them.


class Unmodelled(Exception):
    """Raised inside the translation of one statement: it becomes a raw step with this reason."""


Rel = dict[str, Any]
StatementRule = Callable[[Any], list[Step]]
CommandRule = Callable[[Rel, Any], Step]

STATEMENTS: dict[type[ast.Node], StatementRule] = {}
ALTER_COMMANDS: dict[enums.AlterTableType, CommandRule] = {}
ADD_CONSTRAINTS: dict[enums.ConstrType, CommandRule] = {}

_R = TypeVar("_R")


def parses(registry: dict[Any, _R], *keys: Any) -> Callable[[_R], _R]:
    """Register a parse rule under AST keys; a key registered twice fails at import."""

    def register(rule: _R) -> _R:
        for key in keys:
            if key in registry:
                raise RuntimeError(f"two parse rules for {key!r}")
            registry[key] = rule
        return rule

    return register


def deparse(node: Any) -> str:
    return RawStream()(node)


def rel_of(rv: ast.RangeVar) -> Rel:
    out: Rel = {"table": rv.relname}
    if rv.schemaname:
        out["schema"] = rv.schemaname
    return out


def names_of(items: Any) -> tuple[str, ...]:
    return tuple(i.sval for i in items or ())

# DROP <object> name, ...: one rule per object type, called per name with (schema, name, statement).
DropRule = Callable[[str | None, str, Any], Step]
DROP_OBJECTS: dict[enums.ObjectType, DropRule] = {}
