"""erd_preflight: data prechecks for PostgreSQL schema migrations, for notebooks.

    db = connect()                                  # embedded PostgreSQL, or a URL / SQLAlchemy Engine
    plan = MigrationPlan.from_sql(open("0042.sql").read())
    report = run_preflight(plan, db)
    report.status, report.findings_frame(), report.samples("UNIQUE_PRECHECK")
"""

from .checks import Check, PreflightOptions, checks_for, derive_checks
from .contract import (
    CheckRun,
    PreflightCheckResult,
    PreflightReport,
    TargetRef,
    report_json_schema,
)
from .db import Database, connect
from .errors import ConnectionFailed, PlanError, PreflightError
from .plan import (
    AddCheck,
    AddColumn,
    AddForeignKey,
    AddUnique,
    AlterColumnType,
    ColumnDefinition,
    CreateIndex,
    CreateTable,
    DropColumn,
    DropConstraint,
    DropIndex,
    DropNotNull,
    DropTable,
    MigrationPlan,
    RawSQL,
    SetNotNull,
    ValidateConstraint,
)
from .preflight import run_preflight

__version__ = "0.1.0"

__all__ = [
    "AddCheck",
    "AddColumn",
    "AddForeignKey",
    "AddUnique",
    "AlterColumnType",
    "Check",
    "CheckRun",
    "ColumnDefinition",
    "ConnectionFailed",
    "CreateIndex",
    "CreateTable",
    "Database",
    "DropColumn",
    "DropConstraint",
    "DropIndex",
    "DropNotNull",
    "DropTable",
    "MigrationPlan",
    "PlanError",
    "PreflightCheckResult",
    "PreflightError",
    "PreflightOptions",
    "PreflightReport",
    "RawSQL",
    "SetNotNull",
    "TargetRef",
    "ValidateConstraint",
    "checks_for",
    "connect",
    "derive_checks",
    "report_json_schema",
    "run_preflight",
]
