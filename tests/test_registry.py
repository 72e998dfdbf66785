"""One home per step kind: every member of the step union declares, in its own module, what apply, preflight
and the parser need, and is registered once for its data checks. A kind added without one of these fails here,
never silently in a preflight that checks nothing."""

from __future__ import annotations

import typing

import pytest

import erd_preflight as ep
from erd_preflight.report import contract
from erd_preflight.checks import DATA_CHECKS
from erd_preflight.plan import MigrationPlan, PlanStep


def _kinds() -> dict[str, type]:
    union = typing.get_args(PlanStep)[0]
    return {cls.model_fields["kind"].default: cls for cls in typing.get_args(union)}


KINDS = _kinds()
CHECK_IDS = {v for k, v in vars(contract).items() if k.endswith(("_PRECHECK", "_WARNING"))}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_step_kind_declares_its_lock_and_an_example_in_its_own_class(kind):
    cls = KINDS[kind]
    assert "LOCK" in vars(cls), f"{cls.__name__} has no LOCK of its own"
    assert "EXAMPLE" in vars(cls), f"{cls.__name__} has no EXAMPLE of its own"
    lock, effect = cls.LOCK
    assert lock and effect


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_step_kinds_example_parses_into_that_kind_and_back(kind):
    """The parse rule lives with the kind: its EXAMPLE statement becomes one step of that kind, whose SQL
    parses back into the same step."""
    cls = KINDS[kind]
    plan = MigrationPlan.from_sql(cls.EXAMPLE)
    assert [type(s) for s in plan.steps] == [cls], plan.notes
    (step,) = plan.steps
    assert MigrationPlan.from_sql(step.sql()).steps == (step,)
    assert step.phase() in ("A", "B", "C")
    assert step.primary_check() in CHECK_IDS


def test_each_step_kind_is_registered_once_for_its_data_checks_and_exported():
    assert set(DATA_CHECKS) == set(KINDS)
    for cls in KINDS.values():
        assert cls.__name__ in ep.__all__ and getattr(ep, cls.__name__) is cls
