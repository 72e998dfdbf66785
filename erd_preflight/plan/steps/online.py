"""The online form of the step kinds that would block writes while they scan: the same end state, reached with
brief locks and scans that let reads and writes go on. Each recipe is a list of ``OnlinePiece``: a step of an
existing kind, the phase it runs in, and why. ``phases.compile_phases`` chooses where to use them; the preflight
proves each one equivalent to the step as written by rehearsing both (``rehearsal.prove_online``).

- ``SET NOT NULL``: on PostgreSQL 18, the NOT NULL constraint itself added ``NOT VALID`` (under the name
  ``SET NOT NULL`` gives it), then ``VALIDATE`` (a scan under SHARE UPDATE EXCLUSIVE). Before 18: ``CHECK (col IS
  NOT NULL) NOT VALID``, ``VALIDATE``, then ``SET NOT NULL``, which PostgreSQL 12+ does without a scan thanks to
  the valid check, and the check goes.
- ``ADD UNIQUE`` / ``PRIMARY KEY``: ``CREATE UNIQUE INDEX CONCURRENTLY`` under the constraint's name, then
  ``ADD CONSTRAINT … USING INDEX``; a primary key first gets its NOT NULLs in their online form.
- ``ADD CHECK``: ``NOT VALID``, then ``VALIDATE``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from psycopg import sql

from ..names import make_object_name
from .base import PhaseName, Step
from .columns import SetNotNull
from .constraints import AddCheck, AddUnique, AddUniqueUsingIndex, DropConstraint, ValidateConstraint
from .indexes import CreateIndex
from .raw import RawSQL

ONLINE_KINDS = (SetNotNull, AddUnique, AddCheck)


class OnlinePiece(NamedTuple):
    phase: PhaseName
    step: Step
    purpose: str
    together: bool = False  # in the same transaction as the piece before it


def not_null_check_name(table: str, column: str) -> str:
    """The helper check of an online SET NOT NULL: named apart from what PostgreSQL names itself."""
    return make_object_name(table, column, "online_not_null")


def not_null_constraint_name(table: str, column: str) -> str:
    """The name PostgreSQL 18 gives the NOT NULL constraint of ``SET NOT NULL``: ``table_column_not_null``."""
    return make_object_name(table, column, "not_null")


def set_not_null_online_18(step: SetNotNull, name: str) -> list[OnlinePiece]:
    """PostgreSQL 18: the NOT NULL constraint added NOT VALID (a brief lock, no scan), then validated."""
    relation = sql.Identifier(*[p for p in (step.schema_, step.table) if p])
    added = sql.SQL("ALTER TABLE {}{} ADD CONSTRAINT {} NOT NULL {} NOT VALID").format(
        sql.SQL("ONLY ") if step.only else sql.SQL(""), relation, sql.Identifier(name), sql.Identifier(step.column))
    rel = {"schema": step.schema_, "table": step.table, "only": step.only}
    return [
        OnlinePiece("C", RawSQL(statement=added.as_string()),
                    "online SET NOT NULL, 1/2: the NOT NULL constraint added NOT VALID: a brief lock, no scan"),
        OnlinePiece("C", ValidateConstraint(**rel, name=name),
                    "online SET NOT NULL, 2/2: validated: a scan under SHARE UPDATE EXCLUSIVE, reads and writes go on"),
    ]


def set_not_null_online(step: SetNotNull, check: str) -> list[OnlinePiece]:
    rel = {"schema": step.schema_, "table": step.table, "only": step.only}
    expression = f"{sql.Identifier(step.column).as_string()} IS NOT NULL"
    return [
        OnlinePiece("C", AddCheck(**rel, name=check, expression=expression, not_valid=True),
                    "online SET NOT NULL, 1/3: a check added NOT VALID: a brief lock, no scan"),
        OnlinePiece("C", ValidateConstraint(**rel, name=check),
                    "online SET NOT NULL, 2/3: the check validated: a scan under SHARE UPDATE EXCLUSIVE, reads and "
                    "writes go on"),
        OnlinePiece("C", step, "online SET NOT NULL, 3/3: no scan, the valid check proves it; then the check goes"),
        OnlinePiece("C", DropConstraint(**rel, name=check), "the helper check goes", together=True),
    ]


def add_unique_online(step: AddUnique, name: str, nullable: tuple[str, ...],
                      not_null: Any = None) -> list[OnlinePiece]:
    """``name``: the constraint's (its own, or the one PostgreSQL would give it); ``nullable``: a primary key's
    columns that are not NOT NULL yet, each made so first by ``not_null(SetNotNull)`` (the online SET NOT NULL)."""
    pieces: list[OnlinePiece] = []
    for column in nullable:
        column_step = SetNotNull(schema=step.schema_, table=step.table, column=column)
        pieces += not_null(column_step) if not_null is not None else \
            set_not_null_online(column_step, not_null_check_name(step.table, column))
    index = CreateIndex(schema=step.schema_, table=step.table, columns=step.columns, name=name, unique=True,
                        concurrently=True, nulls_not_distinct=step.nulls_not_distinct)
    what = "primary key" if step.primary_key else "unique constraint"
    pieces.append(OnlinePiece("B", index, f"online {what}, 1/2: its unique index built concurrently: reads and "
                                          "writes go on"))
    pieces.append(OnlinePiece("C", AddUniqueUsingIndex(schema=step.schema_, table=step.table, index=name, name=name,
                                                       primary_key=step.primary_key),
                              f"online {what}, 2/2: the index becomes the constraint: a brief lock, no scan"))
    return pieces


def add_check_online(step: AddCheck, name: str) -> list[OnlinePiece]:
    rel = {"schema": step.schema_, "table": step.table, "only": step.only}
    return [
        OnlinePiece("C", step.model_copy(update={"name": name, "not_valid": True}),
                    "online CHECK, 1/2: added NOT VALID: a brief lock, no scan"),
        OnlinePiece("C", ValidateConstraint(**rel, name=name),
                    "online CHECK, 2/2: validated: a scan under SHARE UPDATE EXCLUSIVE, reads and writes go on"),
    ]
