"""erd_preflight: data prechecks for PostgreSQL schema migrations, for notebooks.

    db = connect()                                  # embedded PostgreSQL, or a URL / SQLAlchemy Engine
    plan = MigrationPlan.from_sql(open("0042.sql").read())
    report = run_preflight(plan, db)
    report.status, report.findings_frame(), report.samples("UNIQUE_PRECHECK")

    run = MigrationRun.start(plan, db)              # stored in erd_preflight.migration_run
    run.preflight(); run.gate(); run.phases(); run.apply()
    runs(db)                                        # the audit trail
    PreflightPanel(plan, db)                        # the same, as an ipywidgets panel
"""

from .run.apply import ApplyOptions
from .checks import Check, PreflightOptions, checks_for, derive_checks
from .report.contract import (
    CheckRun,
    PreflightCheckResult,
    PreflightReport,
    ReplicaStamp,
    TargetRef,
    report_json_schema,
)
from .db import Database, connect
from .errors import (
    ApplyBlocked,
    ApplyFailed,
    CheckTimeout,
    ConcurrentApply,
    ConnectionFailed,
    CopyRefused,
    PhaseOrderError,
    PlanError,
    PreflightCancelled,
    PreflightError,
    ReplicaError,
    RunStateError,
    StoreError,
    StoreMissing,
)
from .run.gate import GateDecision
from .plan.phases import ApplyPhases, compile_phases
from .plan import MigrationPlan
from .plan import steps as _steps
from .plan.steps import *  # noqa: F403 (the step models: each kind is exported once, from plan.steps.__all__)
from .read.preflight import run_preflight
from .checks.remediation import Remediation
from .read.scan import Cancel, ScanProgress
from .run.keep import KeepRefused, KeepTooLarge, RestoreRefused
from .run.migration_run import MigrationRun
from .run.remediate import ReferenceEffect, RemediationPreview
from .run.store import RunRecord, runs
from .version import __version__ as __version__

_WIDGETS = ("PreflightPanel", "RunHistoryPanel")


def __getattr__(name: str) -> object:
    # The panels import ipywidgets: load them on first use, so scripts and the CLI start without it.
    if name in _WIDGETS:
        from .notebook import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'erd_preflight' has no attribute {name!r}")


__all__ = [
    "ApplyBlocked",
    "ApplyFailed",
    "ApplyOptions",
    "ApplyPhases",
    "Cancel",
    "Check",
    "CheckTimeout",
    "CheckRun",
    "ConcurrentApply",
    "ConnectionFailed",
    "KeepRefused",
    "KeepTooLarge",
    "CopyRefused",
    "Database",
    "GateDecision",
    "MigrationPlan",
    "MigrationRun",
    "PhaseOrderError",
    "PlanError",
    "PreflightCancelled",
    "PreflightCheckResult",
    "PreflightError",
    "PreflightOptions",
    "PreflightPanel",  # noqa: F405 (loaded on first use by __getattr__)
    "PreflightReport",
    "ReferenceEffect",
    "Remediation",
    "RemediationPreview",
    "ReplicaError",
    "ReplicaStamp",
    "RunHistoryPanel",  # noqa: F405
    "RestoreRefused",
    "RunRecord",
    "RunStateError",
    "ScanProgress",
    "StoreError",
    "StoreMissing",
    "TargetRef",
    "checks_for",
    "compile_phases",
    "connect",
    "derive_checks",
    "report_json_schema",
    "run_preflight",
    "runs",
    *(name for name in _steps.__all__ if name != "PlanStep"),
]
