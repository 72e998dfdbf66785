"""After an interrupted apply, what is left of the plan: the rerun converges on the plan's end state.

Phase A and C statements are recorded as applied inside the transaction that applies them, so an earlier
run's record says exactly which of them took effect. Phase B (CONCURRENTLY) runs outside any transaction,
so its record may lag behind the catalog: there the catalog decides. Every object phases B and C create has
a deterministic name (``phases.compile_phases``), so the catalog is asked about exactly that name:

- a step whose statements are all recorded applied, or whose index or foreign key is there, valid and the
  same as the plan's, is already done ("already present");
- a foreign key added NOT VALID whose validation did not finish is validated;
- an INVALID index under the step's name is dropped (concurrently), then built again;
- nothing is ever created a second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast
from pglast.stream import RawStream

from ..catalog import Catalog
from ..plan.phases import compile_phases, phase_of
from ..plan import (
    AddForeignKey,
    CreateIndex,
    DropIndex,
    MigrationPlan,
    Step,
    ValidateConstraint,
    display_name,
    index_name,
)
from .store import RunRecord


@dataclass
class Remaining:
    """The steps still to apply, and what was decided about each step of the plan."""

    plan: MigrationPlan
    notes: list[str] = field(default_factory=list)


def _index_statement(definition: str) -> str:
    """An index definition in a comparable form: PostgreSQL's parser reads it, without its name, schema and
    CONCURRENTLY."""
    stmt = pglast.parse_sql(definition)[0].stmt
    assert isinstance(stmt, ast.IndexStmt)
    stmt.idxname = None
    stmt.concurrent = False
    stmt.if_not_exists = False
    stmt.relation.schemaname = None
    stmt.accessMethod = stmt.accessMethod or "btree"
    return RawStream()(stmt)


def _same_index(catalog_definition: str, step: CreateIndex) -> bool:
    try:
        return _index_statement(catalog_definition) == _index_statement(step.sql())
    except Exception:  # a definition the comparison cannot read is not adopted: it is rebuilt or refused
        return False


def remaining_steps(plan: MigrationPlan, interrupted: RunRecord, catalog: Catalog) -> Remaining:
    """What of ``plan`` is left after ``interrupted`` (a failed run of the same plan), judged by its record
    and by the catalog under each object's deterministic name."""
    phases = compile_phases(plan, catalog)
    applied = {(s.phase, s.step, s.sql) for s in interrupted.applied_sql if s.outcome == "applied"}
    out = Remaining(plan=plan)
    steps: list[Step] = []
    origins: list[str | None] = []

    def keep(position: int, *new: Step) -> None:
        steps.extend(new)
        origins.extend([plan.origin_of(position)] * len(new))

    for position, step in enumerate(plan.steps, start=1):
        mine = [s for s in phases.statements if s.step == position]
        if mine and all((s.phase, s.step, s.sql) in applied for s in mine):
            out.notes.append(f"step {position} was applied by run {interrupted.id}")
            continue
        if isinstance(step, CreateIndex) and phase_of(step) == "B":
            name = index_name(step)
            state = catalog.table(step.schema_, step.table)
            schema = state.schema if state is not None else step.schema_
            found = catalog.index_by_name(schema, name) if schema is not None else None
            named = step.model_copy(update={"name": name})
            if found is not None and found.valid and _same_index(found.definition, named):
                out.notes.append(f"step {position}: index {display_name(schema, name)} is already present (built "
                                 f"by run {interrupted.id}, valid, the same definition): adopted, not built again")
                continue
            if found is not None and not found.valid:
                out.notes.append(f"step {position}: index {display_name(schema, name)} was left INVALID by run "
                                 f"{interrupted.id}: it is dropped concurrently, then built again")
                keep(position, DropIndex(schema=schema, name=name, concurrently=True, if_exists=True), named)
                continue
            keep(position, named)
            continue
        if isinstance(step, AddForeignKey) and not step.not_valid:
            add = mine[0] if mine else None
            state = catalog.table(step.schema_, step.table)
            constraint_name = _constraint_name(add.sql) if add is not None else None
            found = state.constraints.get(constraint_name) if state is not None and constraint_name else None
            if found is not None and found.validated:
                out.notes.append(f"step {position}: foreign key {display_name(constraint_name)} is already present "
                                 "and valid: adopted")
                continue
            if found is not None and add is not None and (add.phase, add.step, add.sql) in applied:
                out.notes.append(f"step {position}: foreign key {display_name(constraint_name)} was added NOT VALID "
                                 f"by run {interrupted.id}; its validation is what is left")
                keep(position, ValidateConstraint(schema=step.schema_, table=step.table, name=constraint_name))
                continue
        keep(position, step)
    out.plan = MigrationPlan(
        steps=tuple(steps), name=plan.name, notes=plan.notes + tuple(out.notes),
        origins=tuple(origins) if plan.origins else (), nothing_pending=not steps, record_hint=plan.record_hint)
    return out


def _constraint_name(statement: str) -> str | None:
    stmt = pglast.parse_sql(statement)[0].stmt
    for cmd in getattr(stmt, "cmds", None) or ():
        definition: Any = getattr(cmd, "def_", None)
        if isinstance(definition, ast.Constraint):
            return definition.conname
    return None
