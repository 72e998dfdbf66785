"""The rehearsal's place in a preflight: the plan's statements run on the shadow (``shadow.rehearse``) in
apply's order, the checks derived from the catalog it leaves after each step, and PostgreSQL's refusal of a
statement as a blocking check of its step."""

from __future__ import annotations

from typing import Any

import pglast
import psycopg

from .catalog import Catalog
from .checks import REHEARSAL_PRECHECK, REHEARSAL_UNAVAILABLE_WARNING, Check, PreflightOptions, Verdict, derive_checks
from .errors import PlanError
from .plan import MigrationPlan
from .sqlparse import walk_ast


def plan_statements(plan: MigrationPlan, catalog: Catalog) -> list[tuple[int, str]]:
    """The plan's statements (step, SQL) in the order apply runs them (plan order when apply would refuse it)."""
    from .phases import compile_phases

    try:
        return [(s.step, s.sql) for s in compile_phases(plan, catalog).statements]
    except PlanError:  # a phase order apply refuses: the gate says so; rehearse in plan order meanwhile
        return [(i, step.sql()) for i, step in enumerate(plan.steps, start=1)]


def rehearsed_checks(plan: MigrationPlan, catalog: Catalog, options: PreflightOptions,
                     statements: list[tuple[int, str]] | None = None) -> list[Check]:
    """The plan's checks, derived from PostgreSQL's own catalog as the rehearsal leaves it after each step (the
    plan's statements run in the order apply runs them on an empty copy of the schema). The first statement
    PostgreSQL refuses is a blocking check of its step, placed before that step's data checks. A shadow that
    cannot be built, or a rehearsal that stops early, is a warning and the checks fall back on their own model
    of each statement from there; it never blocks."""
    from .shadow import ShadowUnavailable, rehearse

    if statements is None:
        statements = plan_statements(plan, catalog)
    order = [step for step, _ in statements]  # apply's order: each step is judged on what runs before it
    if not options.rehearse or not plan.steps:
        return derive_checks(plan, catalog, options, order=order)
    try:
        rehearsal = rehearse(catalog.conn, statements, schemas_of(plan, catalog.conn), catalog=catalog.fingerprint,
                             search_path=catalog.key[3])
    except ShadowUnavailable as exc:
        unavailable: str | None = f"the plan was not rehearsed on a copy of the schema: {exc}"
        rehearsal = None
    else:
        unavailable = rehearsal.stopped and f"the rehearsal on a copy of the schema stopped early: {rehearsal.stopped}"
    checks = derive_checks(plan, catalog, options, rehearsal=rehearsal, order=order)
    if unavailable:
        # Stopped at a step: from there on, PostgreSQL has not said whether the statements run, so a person
        # acknowledges that step. No shadow at all: the checks' own model judges every step, as it always did.
        stopped = next((step for step in order if rehearsal is not None and not rehearsal.passed(step)
                        and step not in rehearsal.unjudged), None)
        checks.append(Check(
            check_id=REHEARSAL_UNAVAILABLE_WARNING, step=stopped or len(plan.steps),
            step_summary=plan.steps[stopped - 1].summary() if stopped else "the whole plan", target=None,
            probe=Verdict("warning", f"{unavailable}. Where it did not reach, structural failures are found only by "
                          "the checks' own model of each statement; PostgreSQL re-checks at apply"
                          + (f"; acknowledge step {stopped} once you have reviewed it." if stopped else "."),
                          acknowledge=stopped is not None),
            failure="warning"))
        checks.sort(key=lambda c: c.step)  # stable: the warning goes after its step's own checks
    failure = rehearsal.failure if rehearsal is not None else None
    if failure is None:
        return checks
    if any(c.step == failure.step and isinstance(c.probe, Verdict) and c.probe.outcome == "blocking"
           for c in checks):
        return checks  # the step's own structural check already says it fails (and what to do)
    step = plan.steps[failure.step - 1]
    origin = plan.origin_of(failure.step)
    where = f" (from {origin})" if origin else ""
    if failure.needs_version is not None:
        major = catalog.server_version // 10000
        message = (f"step {failure.step}{where} uses {failure.message}, which PostgreSQL has from version "
                   f"{failure.needs_version} on; the target runs PostgreSQL {major}, so the step would fail at apply "
                   f"(SQLSTATE {failure.sqlstate}). Write it in a form PostgreSQL {major} accepts, or upgrade the "
                   "server first.")
    else:
        message = (f"PostgreSQL refuses step {failure.step}{where} when the plan is rehearsed on an empty copy of the "
                   f"schema: {failure.describe()}. It would fail at apply the same way, whatever the data: change "
                   "the step.")
    verdict = Check(check_id=REHEARSAL_PRECHECK, step=failure.step, step_summary=step.summary(), target=step.target(),
                    probe=Verdict("blocking", message))
    at = next((i for i, c in enumerate(checks) if c.step >= failure.step), len(checks))
    return [*checks[:at], verdict, *checks[at:]]


def schemas_of(plan: MigrationPlan, conn: psycopg.Connection[Any]) -> tuple[str, ...]:
    """The schemas a plan can reach: its search_path's and every schema it names, those that exist."""
    named: set[str] = set()
    for step in plan.steps:
        named.update(s for s, _ in step.tables() if s)
        named.update(s for s in (getattr(step, "ref_schema", None), getattr(step, "schema_", None)) if s)
        if step.kind == "raw":
            try:
                tree = [raw.stmt for raw in pglast.parse_sql(step.sql())]
            except pglast.parser.ParseError:
                continue
            named.update(n.schemaname for n in walk_ast(tree) if isinstance(n, pglast.ast.RangeVar) and n.schemaname)
    rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(current_schemas(false)) "
                        "OR nspname = ANY(%s)", (sorted(named),)).fetchall()
    return tuple(sorted(r[0] for r in rows))
