"""The rehearsal's place in a preflight: the plan's statements run on the shadow (``rehearsal.rehearse``) in
apply's order, the checks derived from the catalog it leaves after each step, and PostgreSQL's refusal of a
statement as a blocking check of its step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..catalog import Catalog
from . import REHEARSAL_PRECHECK, REHEARSAL_UNAVAILABLE_WARNING, Check, PreflightOptions, Verdict, derive_checks
from ..errors import PlanError
from ..plan import MigrationPlan

if TYPE_CHECKING:
    from ..rehearse.shadow import Adaptation
    from ..rehearse.shadow_catalog import Rehearsal, RelationSnapshot


def plan_statements(plan: MigrationPlan, catalog: Catalog, online: bool = False,
                    all_or_nothing: bool = False) -> list[tuple[int, str]]:
    """The plan's statements (step, SQL) in the order apply runs them (plan order when apply would refuse it).
    ``online``: with the online form of the steps apply runs in it, whose statements interleave with other steps';
    the checks are derived from each step whole (``online=False``), which ``prove_online`` shows ends the same."""
    from ..plan.phases import compile_phases

    try:
        return [(s.step, s.sql) for s in compile_phases(plan, catalog, online=online,
                                                        all_or_nothing=all_or_nothing).statements]
    except PlanError:  # a phase order apply refuses: the gate says so; rehearse in plan order meanwhile
        return [(i, step.sql()) for i, step in enumerate(plan.steps, start=1)]


def rehearsed_checks(plan: MigrationPlan, catalog: Catalog, options: PreflightOptions,
                     statements: list[tuple[int, str]] | None = None,
                     kept: list[Rehearsal] | None = None) -> list[Check]:
    """The plan's checks, derived from PostgreSQL's own catalog as the rehearsal leaves it after each step (the
    plan's statements run in the order apply runs them on an empty copy of the schema). The first statement
    PostgreSQL refuses is a blocking check of its step, placed before that step's data checks. A shadow that
    cannot be built asks a person to acknowledge each step it would have judged; a rehearsal that stops early,
    the step where it stopped. Neither blocks, and neither is a silent clear."""
    from ..rehearse.shadow import ShadowUnavailable
    from ..rehearse.rehearsal import rehearse

    if statements is None:
        statements = plan_statements(plan, catalog, all_or_nothing=options.all_or_nothing)
    order = [step for step, _ in statements]  # apply's order: each step is judged on what runs before it
    if not options.rehearse or not plan.steps:
        return derive_checks(plan, catalog, options, order=order)
    try:
        rehearsal = rehearse(catalog.conn, statements, catalog=catalog.fingerprint, search_path=catalog.key[3],
                             end=True)
    except ShadowUnavailable as exc:
        checks = derive_checks(plan, catalog, options, order=order)
        return _unrehearsed(plan, checks, statements, str(exc))
    if kept is not None:
        kept.append(rehearsal)  # for the caller: the locks each statement took
    checks = derive_checks(plan, catalog, options, rehearsal=rehearsal, order=order)
    if rehearsal.failure is None and rehearsal.stopped is None:
        differs = prove_online(plan, catalog, rehearsal, options) if options.online else None
        if differs is not None:
            step, why = differs
            checks.append(Check(
                check_id=REHEARSAL_PRECHECK, step=step, step_summary=plan.steps[step - 1].summary(),
                target=plan.steps[step - 1].target(),
                probe=Verdict("blocking", f"the online form of step {step}, which apply runs by default to keep "
                              f"writers going, does not end where the step as written does ({why}). Apply it as "
                              "written: ApplyOptions(online=False), or --no-online in the CLI.")))
            checks.sort(key=lambda c: c.step)
    if rehearsal.stopped:
        # Stopped at a step: from there on, PostgreSQL has not said whether the statements run, so a person
        # acknowledges that step.
        stopped = next((step for step in order if not rehearsal.passed(step) and step not in rehearsal.unjudged),
                       None)
        checks.append(Check(
            check_id=REHEARSAL_UNAVAILABLE_WARNING, step=stopped or len(plan.steps),
            step_summary=plan.steps[stopped - 1].summary() if stopped else "the whole plan", target=None,
            probe=Verdict("warning", f"the rehearsal on a copy of the schema stopped early: {rehearsal.stopped}. Where "
                          "it did not reach, structural failures are found only by the checks' own model of each "
                          "statement; PostgreSQL re-checks at apply"
                          + (f"; acknowledge step {stopped} once you have reviewed it." if stopped else "."),
                          acknowledge=stopped is not None),
            failure="warning"))
        checks.sort(key=lambda c: c.step)  # stable: the warning goes after its step's own checks
    # What the shadow holds in another form comes first: the report says it, whatever blocks after it.
    adapted = [_adapted_warning(plan, rehearsal.adapted)] if rehearsal.adapted else []
    failure = rehearsal.failure
    if failure is None:
        return adapted + checks
    if any(c.step == failure.step and isinstance(c.probe, Verdict) and c.probe.outcome == "blocking"
           for c in checks):
        return adapted + checks  # the step's own structural check already says it fails (and what to do)
    step = plan.steps[failure.step - 1]
    origin = plan.origin_of(failure.step)
    where = f" (from {origin})" if origin else ""
    if failure.needs_version is not None:
        major = catalog.server_version // 10000
        message = (f"step {failure.step}{where} uses {failure.message}, which PostgreSQL has from version "
                   f"{failure.needs_version} on; the target runs PostgreSQL {major}, so the step would fail at apply "
                   f"(SQLSTATE {failure.sqlstate}). Write it in a form PostgreSQL {major} accepts, or upgrade the "
                   "server first.")
    elif failure.exact_rows:
        message = (f"PostgreSQL refuses step {failure.step}{where} when the plan is rehearsed: {failure.describe()}. "
                   "The step reads and writes only rows the plan itself makes, so these are the very rows it meets at "
                   "apply, where it fails the same way: change the step (or the rows the plan writes before it).")
    else:
        message = (f"PostgreSQL refuses step {failure.step}{where} when the plan is rehearsed on an empty copy of the "
                   f"schema: {failure.describe()}. It would fail at apply the same way, whatever the data: change "
                   "the step.")
    verdict = Check(check_id=REHEARSAL_PRECHECK, step=failure.step, step_summary=step.summary(), target=step.target(),
                    probe=Verdict("blocking", message))
    at = next((i for i, c in enumerate(checks) if c.step >= failure.step), len(checks))
    return [*adapted, *checks[:at], verdict, *checks[at:]]


def _unrehearsed(plan: MigrationPlan, checks: list[Check], statements: list[tuple[int, str]], why: str) -> list[Check]:
    """No shadow (it cannot be built or restored): each step whose verdict the rehearsal gives is acknowledged by
    a person, told why and how to get the rehearsal back. Never a clear on a structural question nobody answered."""
    from ..rehearse.rehearsal import plain_form

    rehearsed = [step for step, text in statements if plain_form(text) is not None]  # not VACUUM and the like
    asked: list[Check] = []
    for step in dict.fromkeys(rehearsed):
        asked.append(Check(
            check_id=REHEARSAL_UNAVAILABLE_WARNING, step=step, step_summary=plan.steps[step - 1].summary(),
            target=None, failure="warning",
            probe=Verdict("warning", f"cannot verify step {step} before apply: the plan was not rehearsed on a copy "
                          f"of the schema ({why}), so whether PostgreSQL accepts the statement (a view or a foreign "
                          "key that depends on it, a publication, an object it names) was not asked. Fix the shadow "
                          "(ERD_PREFLIGHT_SHADOW_URL can name a scratch PostgreSQL with the target's extensions and "
                          "collations), or acknowledge this step once you have reviewed it; rehearse=False "
                          "(--no-rehearse) relies on the checks' own model alone.", acknowledge=True)))
    return sorted([*checks, *asked], key=lambda c: c.step)  # stable: each after its step's own checks


def _adapted_warning(plan: MigrationPlan, adapted: tuple[Adaptation, ...]) -> Check:
    """The report says what the shadow holds in another form; where that may change PostgreSQL's verdict (a
    nondeterministic collation), the first step is acknowledged by a person."""
    unsure = [a for a in adapted if a.may_change_verdict]
    text = "; ".join(a.describe() for a in adapted)
    if unsure:
        fixes = "; or ".join(dict.fromkeys(a.fix for a in unsure if a.fix))
        message = (f"cannot verify step 1 before apply as PostgreSQL would: the copy of the schema the plan is "
                   f"rehearsed on differs from the target ({text}), so a statement PostgreSQL refuses only because "
                   f"of that difference is not found there. Review the plan and acknowledge step 1"
                   + (f"; or {fixes}." if fixes else "."))
    else:
        message = (f"the copy of the schema the plan is rehearsed on holds some objects in another form ({text}); "
                   "no statement on empty tables tells the difference.")
    return Check(check_id=REHEARSAL_UNAVAILABLE_WARNING, step=1, step_summary=plan.steps[0].summary(), target=None,
                 failure="warning", probe=Verdict("warning", message, acknowledge=bool(unsure)))


def prove_online(plan: MigrationPlan, catalog: Catalog, rehearsal: Rehearsal,
                 options: PreflightOptions) -> tuple[int, str] | None:
    """Whether apply's statements, with the online form of the steps it runs so, end in the catalog the plan as
    written ends in (``rehearsal``, read to its end): both rehearsed by PostgreSQL on the shadow. None when they do
    (or no step runs online), else the first online step whose table differs, and how."""
    from ..plan.phases import compile_phases
    from ..rehearse.rehearsal import rehearse

    try:
        phases = compile_phases(plan, catalog, online=True, all_or_nothing=options.all_or_nothing)
    except PlanError:  # a phase order apply refuses: the gate says so
        return None
    online = phases.online_steps
    if not online or rehearsal.end is None:
        return None
    as_written = rehearsal  # the checks' own rehearsal: each step whole, in apply's order
    mine = rehearse(catalog.conn, [(s.step, s.sql) for s in phases.statements], catalog=catalog.fingerprint,
                    search_path=catalog.key[3], end=True)
    if mine.end is None:
        why = mine.failure.describe() if mine.failure else mine.stopped
        return online[0], f"PostgreSQL did not run it to its end on the copy of the schema: {why}"
    for step in online:
        what = plan.steps[step - 1]
        found = as_written.start.resolve(getattr(what, "schema_", None), getattr(what, "table", ""))
        if found is None:
            continue
        left, right = as_written.end.relations.get(found.oid), mine.end.relations.get(found.oid)
        difference = _difference(left, right)
        if difference:
            return step, difference
    return None


def _difference(left: RelationSnapshot | None, right: RelationSnapshot | None) -> str | None:
    """How two snapshots of one table differ where a constraint step acts: columns (type, NOT NULL, default),
    constraints (name, kind, validity), indexes (name, definition, validity). None: they do not."""
    if left is None or right is None:
        return "the table is missing from one of them"

    def shape(r: RelationSnapshot) -> dict[str, object]:
        return {"columns": sorted((c.name, c.type, c.not_null, c.default) for c in r.columns),
                "constraints": sorted(k for k in r.constraints if not k[0].endswith("_online_not_null")),
                "indexes": sorted((ix.name, ix.unique, ix.valid, ix.partial, ix.expressions, ix.columns,
                                   bool(ix.nulls_not_distinct)) for ix in r.indexes)}

    a, b = shape(left), shape(right)
    for part in ("columns", "constraints", "indexes"):
        if a[part] != b[part]:
            return f"its {part}: as written {a[part]}, online {b[part]}"
    return None
