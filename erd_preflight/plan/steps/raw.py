"""The step kind for every statement the plan does not model: applied as written; preflight warns about it,
and the rehearsal runs it."""

from __future__ import annotations

import functools
from typing import Any, Literal

import pglast
from pglast import ast, enums
from psycopg import sql
from pydantic import Field, field_validator

from ...report.contract import TargetRef
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


# Statements that cannot fail on the rows of a table: what they do depends on the catalog only, which the
# rehearsal proves on a copy of the schema. Anything not listed here is treated as reading or writing rows.
_CATALOG_ONLY: tuple[type[ast.Node], ...] = (
    ast.CommentStmt, ast.GrantStmt, ast.GrantRoleStmt, ast.AlterDefaultPrivilegesStmt, ast.VariableSetStmt,
    ast.RenameStmt, ast.AlterObjectSchemaStmt, ast.AlterOwnerStmt, ast.CreateFunctionStmt, ast.AlterFunctionStmt,
    ast.ViewStmt, ast.CreateTrigStmt, ast.CreateEnumStmt, ast.AlterEnumStmt, ast.CompositeTypeStmt,
    ast.CreateDomainStmt, ast.CreateSeqStmt, ast.AlterSeqStmt, ast.CreateSchemaStmt, ast.DefineStmt,
    ast.CreateCastStmt, ast.CreateOpClassStmt, ast.CreateOpFamilyStmt, ast.CreateRangeStmt, ast.CreateExtensionStmt,
    ast.CreatePolicyStmt, ast.AlterPolicyStmt, ast.CreateStatsStmt, ast.CreateEventTrigStmt, ast.RuleStmt,
    ast.CreatePublicationStmt, ast.AlterPublicationStmt, ast.CreateForeignTableStmt, ast.CreateFdwStmt,
    ast.CreateForeignServerStmt, ast.CreateUserMappingStmt, ast.CreateRoleStmt, ast.AlterRoleStmt, ast.DropRoleStmt,
    ast.DropStmt, ast.LockStmt, ast.VacuumStmt, ast.ClusterStmt, ast.CreateConversionStmt, ast.AlterTSConfigurationStmt,
    ast.AlterTSDictionaryStmt, ast.CreatePLangStmt, ast.AlterStatsStmt, ast.AlterCollationStmt,
    ast.CreateTransformStmt, ast.SecLabelStmt, ast.CreateAmStmt, ast.AlterOperatorStmt, ast.AlterTypeStmt,
)

_AT = enums.AlterTableType
# ALTER TABLE commands that change the catalog only: defaults, names, storage, owners, triggers, row security...
_CATALOG_ONLY_COMMANDS = {
    _AT.AT_ColumnDefault, _AT.AT_CookedColumnDefault, _AT.AT_SetStatistics, _AT.AT_SetOptions, _AT.AT_ResetOptions,
    _AT.AT_SetStorage, _AT.AT_SetCompression, _AT.AT_ChangeOwner, _AT.AT_ClusterOn, _AT.AT_DropCluster,
    _AT.AT_SetLogged, _AT.AT_SetUnLogged, _AT.AT_SetRelOptions, _AT.AT_ResetRelOptions, _AT.AT_ReplaceRelOptions,
    _AT.AT_EnableTrig, _AT.AT_EnableAlwaysTrig, _AT.AT_EnableReplicaTrig, _AT.AT_DisableTrig, _AT.AT_EnableTrigAll,
    _AT.AT_DisableTrigAll, _AT.AT_EnableTrigUser, _AT.AT_DisableTrigUser, _AT.AT_EnableRule, _AT.AT_EnableAlwaysRule,
    _AT.AT_EnableReplicaRule, _AT.AT_DisableRule, _AT.AT_EnableRowSecurity, _AT.AT_DisableRowSecurity,
    _AT.AT_ForceRowSecurity, _AT.AT_NoForceRowSecurity, _AT.AT_ReplicaIdentity, _AT.AT_GenericOptions,
    _AT.AT_DropConstraint, _AT.AT_DropColumn, _AT.AT_DropNotNull, _AT.AT_DropIdentity, _AT.AT_SetIdentity,
    _AT.AT_DropExpression, _AT.AT_DropInherit, _AT.AT_DropOf, _AT.AT_DetachPartition, _AT.AT_DetachPartitionFinalize,
    _AT.AT_SetTableSpace, _AT.AT_SetAccessMethod, _AT.AT_AddIdentity, _AT.AT_AlterConstraint,
}
# ALTER DOMAIN: a default, or dropping a constraint or NOT NULL, reads no value
_CATALOG_ONLY_DOMAIN = {"T", "X", "N"}


def data_dependence(stmt: ast.Node) -> str | None:
    """Why ``stmt`` can fail on the rows of a table (what it reads or writes), or None when it changes the catalog
    only, so that the rehearsal on an empty copy of the schema is PostgreSQL's whole verdict on it."""
    if isinstance(stmt, _CATALOG_ONLY):
        return None
    if isinstance(stmt, ast.CreateStmt):
        # a new table is empty; a partition's bound is checked against the rows of its parent's default partition
        return "it creates a partition, whose bound is checked against the rows of a default partition" \
            if stmt.partbound is not None else None
    if isinstance(stmt, ast.CreateTableAsStmt):
        return None if stmt.into is not None and stmt.into.skipData else "it fills a relation with a query's rows"
    if isinstance(stmt, ast.AlterTableStmt):
        for cmd in stmt.cmds or ():
            if cmd.subtype in _CATALOG_ONLY_COMMANDS:
                continue
            if cmd.subtype == _AT.AT_AddConstraint and cmd.def_.skip_validation:
                continue  # NOT VALID: no row is checked now
            return f"ALTER TABLE {cmd.subtype.name.removeprefix('AT_')} reads or rewrites the table's rows"
        return None
    if isinstance(stmt, ast.AlterDomainStmt):
        if stmt.subtype in _CATALOG_ONLY_DOMAIN or (stmt.subtype == "C" and stmt.def_.skip_validation):
            return None
        return "ALTER DOMAIN checks every value of the domain's columns"
    if isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.CopyStmt, ast.TruncateStmt)):
        return "it changes rows"
    if isinstance(stmt, ast.DoStmt):
        return "a DO block runs code that may read and write rows"
    if isinstance(stmt, ast.IndexStmt):
        return "building the index evaluates its expressions on every row"
    if isinstance(stmt, ast.RefreshMatViewStmt):
        return "it runs the materialized view's query"
    return f"{type(stmt).__name__} may read or write rows"


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

    @property
    def data_dependence(self) -> str | None:
        """Why the statement can fail on rows (None: it changes the catalog only; see ``data_dependence``)."""
        for stmt in self.parsed:
            why = data_dependence(stmt)
            if why is not None:
                return why
        return None

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
