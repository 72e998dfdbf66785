"""The migration plan: typed steps as data, each rendering its own SQL with quoted identifiers.

A plan is built from typed steps or parsed from SQL (``MigrationPlan.from_sql``). Steps know their SQL
and the objects they touch; what runs them against a database lives elsewhere (``preflight``).

Layers, each importing only those below it: ``phases`` (the plan compiled into apply's phases: the rehearsal, the
checks and the apply all read it, so it lives with the plan) → ``model`` (MigrationPlan) → the sources
(``migration_dirs``, ``alembic_source``, ``tools``) → ``parse`` → ``steps`` (one module per family of kinds) →
``names``. The plan may import the base and the report's contract, never what judges or runs it.
"""

from .model import MigrationPlan
from .names import (
    MAX_IDENTIFIER_BYTES,
    NAMEDATALEN,
    Refusing,
    check_identifier,
    clip_bytes,
    display_name,
    ident,
    idents,
    make_object_name,
    plan_error,
    qualified_text,
)
from . import steps as _steps
from .steps import *  # noqa: F403 (the step models, each listed once: in plan.steps.__all__)
from .steps import ColumnsStep as ColumnsStep
from .steps import ColumnStep as ColumnStep
from .steps import Lock as Lock
from .steps import PhaseName as PhaseName
from .steps import Step as Step
from .steps import TableStep as TableStep
from .steps import drop_index_concurrently as drop_index_concurrently
from .steps import index_name as index_name
from .steps import ONLINE_KINDS as ONLINE_KINDS
from .steps import OnlinePiece as OnlinePiece
from .steps import add_check_online as add_check_online
from .steps import add_unique_online as add_unique_online
from .steps import not_null_check_name as not_null_check_name
from .steps import not_null_constraint_name as not_null_constraint_name
from .steps import set_not_null_online_18 as set_not_null_online_18
from .steps import set_not_null_online as set_not_null_online

__all__ = [
    "ColumnStep",
    "ColumnsStep",
    "Lock",
    "MAX_IDENTIFIER_BYTES",
    "MigrationPlan",
    "ONLINE_KINDS",
    "OnlinePiece",
    "add_check_online",
    "add_unique_online",
    "not_null_check_name",
    "not_null_constraint_name",
    "set_not_null_online",
    "set_not_null_online_18",
    "NAMEDATALEN",
    "PhaseName",
    "Refusing",
    "Step",
    "TableStep",
    "check_identifier",
    "clip_bytes",
    "display_name",
    "drop_index_concurrently",
    "ident",
    "idents",
    "index_name",
    "make_object_name",
    "plan_error",
    "qualified_text",
    *_steps.__all__,
]
