"""Deterministic checks per plan step (spec 1.1.04b): each a small piece of data naming the SQL it runs.

``derive_checks(plan, catalog, options, rehearsal)`` walks the plan in order and asks ``checks_for(step,
context)`` for each step, then lets the context absorb the step and follow what the rehearsal's catalog says
it did. The context knows what earlier steps did to each table (a table created in the plan is empty; a column
added with a default has that value; a renamed table is read under its real name; a simple backfill UPDATE
changes the rows it matches), so checks read the table *as it will be* at their step. Execution lives in
``preflight``; nothing here touches table data.

Modules, each importing only those below it in this list: ``model`` (ids, options, probes, a check, locks),
``expressions``; ``tables`` (a table's rows in layers), ``new_tables``, ``views``, ``upsert``; ``simulate`` (the data
statements simulated); ``state`` (the plan's effect on each table, step by step); ``structure``, ``data``, ``dml``
and the other kinds' checks; ``derive`` (the order, and the registry of each step kind's data checks); then
``rehearsed`` (the checks derived with the rehearsal, as preflight runs them) and ``remediation`` (the SQL that
fixes what a check found).

It may import the rehearsal's catalog snapshots, the plan and the base, never the read path, the run or the faces.
"""

from .derive import DATA_CHECKS, checks_for, derive_checks
from .expressions import all_not_null
from .model import WIDE_KEY, evaluated_sql, null_datum, unsafe_message
from .model import (
    CAST_PRECHECK,
    CHECK_CONSTRAINT_PRECHECK,
    DESTRUCTIVE_CHANGE_WARNING,
    FK_VIOLATIONS_PRECHECK,
    INVALID_INDEX_PRECHECK,
    LARGE_TABLE_WARNING,
    NON_CONCURRENT_INDEX_WARNING,
    NOT_NULL_PRECHECK,
    OBJECT_PRECHECK,
    REHEARSAL_PRECHECK,
    REHEARSAL_UNAVAILABLE_WARNING,
    UNIQUE_PRECHECK,
    UNMODELLED_SQL_WARNING,
    CastProbe,
    Check,
    DuplicatesProbe,
    OrphansProbe,
    PreflightOptions,
    RowsProbe,
    Source,
    Verdict,
    human_bytes,
    lock_of,
)
from .state import PlanContext, TableState

__all__ = [
    "CAST_PRECHECK", "CHECK_CONSTRAINT_PRECHECK", "DATA_CHECKS", "DESTRUCTIVE_CHANGE_WARNING", "FK_VIOLATIONS_PRECHECK",
    "INVALID_INDEX_PRECHECK", "LARGE_TABLE_WARNING", "NON_CONCURRENT_INDEX_WARNING", "NOT_NULL_PRECHECK",
    "OBJECT_PRECHECK", "REHEARSAL_PRECHECK", "REHEARSAL_UNAVAILABLE_WARNING", "UNIQUE_PRECHECK", "WIDE_KEY",
    "UNMODELLED_SQL_WARNING", "CastProbe", "Check", "DuplicatesProbe", "OrphansProbe", "PlanContext",
    "PreflightOptions", "RowsProbe", "Source", "TableState", "Verdict", "all_not_null", "checks_for",
    "derive_checks", "evaluated_sql", "human_bytes", "lock_of", "null_datum", "unsafe_message",
]
