"""``CREATE EXTENSION``, judged by the target's own catalog: whether its server has the extension (at that version)
among the extensions installed on its system, whether the database already has it, and whether what it requires is
there or comes with CASCADE.

The rehearsal cannot answer this: it runs the statement on the shadow's server, whose extensions are its own. An
extension the shadow's server has and the target's lacks would pass there and fail at apply; without a rehearsal
the statement changes the catalog only, so nothing else would look. The target answers here, in both modes. What
the step does once created (its schema, its rights) stays the rehearsal's to judge.
"""

from __future__ import annotations

from pglast import ast, enums

from ..plan import RawSQL
from .model import OBJECT_PRECHECK, Check, verdict
from .state import PlanContext

_EXTENSION = """
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = %(name)s),
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = %(name)s),
       (SELECT default_version FROM pg_available_extensions WHERE name = %(name)s),
       ARRAY(SELECT version FROM pg_available_extension_versions WHERE name = %(name)s ORDER BY version)
"""
_REQUIRES = "SELECT requires FROM pg_available_extension_versions WHERE name = %s AND version = %s"

_INSTALL = ("Install the extension's package on the database server (on a managed service: allow the extension), "
            "or remove the step.")


def extension_checks(index: int, step: RawSQL, context: PlanContext) -> list[Check] | None:
    """A blocking check when the target cannot create the extension; None otherwise (the step is then judged as any
    statement that changes the catalog only). A DROP EXTENSION is remembered, so a later CREATE is judged after it."""
    if len(step.parsed) != 1:
        return None
    stmt = step.parsed[0]
    if isinstance(stmt, ast.DropStmt) and stmt.removeType == enums.ObjectType.OBJECT_EXTENSION:
        checks = _drop_checks(index, step, stmt, context)
        for name in stmt.objects or ():
            context.plan_extensions[name.sval] = False
        return checks or None
    if not isinstance(stmt, ast.CreateExtensionStmt):
        return None
    name = stmt.extname
    options = {o.defname: o.arg for o in stmt.options or ()}
    version = options["new_version"].sval if isinstance(options.get("new_version"), ast.String) else None
    about = _about(context, name)
    if about[0]:
        if stmt.if_not_exists:
            return None
        where = "(an earlier step creates it)" if context.plan_extensions.get(name) else "in the target database"
        return [_blocks(index, step, f'extension "{name}" already exists {where} (SQLSTATE 42710). '
                        "Write CREATE EXTENSION IF NOT EXISTS, or remove the step.")]
    created = [name]  # and what CASCADE creates with it
    problem = _cannot_create(context, name, version, "cascade" in options, created, about)
    if problem is not None:
        return [_blocks(index, step, problem)]
    context.plan_extensions.update(dict.fromkeys(created, True))
    return None


_DEPENDENTS = """
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = %(name)s),
     members AS (SELECT classid, objid FROM pg_depend
                  WHERE refclassid = 'pg_extension'::regclass AND refobjid = (SELECT oid FROM ext) AND deptype = 'e')
SELECT DISTINCT pg_describe_object(d.classid, d.objid, 0)
  FROM pg_depend d
 WHERE d.deptype = 'n'
   AND ((d.refclassid, d.refobjid) IN (SELECT classid, objid FROM members)
        OR (d.refclassid = 'pg_extension'::regclass AND d.refobjid = (SELECT oid FROM ext)))
   AND (d.classid, d.objid) NOT IN (SELECT classid, objid FROM members)
 ORDER BY 1 LIMIT 6
"""


def _drop_checks(index: int, step: RawSQL, stmt: ast.DropStmt, context: PlanContext) -> list[Check]:
    """DROP EXTENSION judged by the target's catalog: an extension the database lacks (without IF EXISTS) fails; so
    does one that other objects depend on (without CASCADE), which the rehearsal often cannot try (only the
    extension's owner may drop it). Those objects are read as they are now: on the first step that is exact; after
    earlier steps, which may drop them, it is the rehearsal's call, or without one a person's."""
    checks: list[Check] = []
    for node in stmt.objects or ():
        name = node.sval
        if not _about(context, name)[0]:
            if not stmt.missing_ok:
                checks.append(_blocks(index, step, f'extension "{name}" does not exist (SQLSTATE 42704). '
                                      "Write DROP EXTENSION IF EXISTS, or remove the step."))
            continue
        if stmt.behavior == enums.DropBehavior.DROP_CASCADE or context.plan_extensions.get(name):
            continue  # what the plan's own CREATE brought along is the plan's: the rehearsal judges that
        if index > 1 and context.rehearsal is not None:
            continue  # after earlier steps, the rehearsal's call: the catalog now may not be the one at apply
        dependents = [r[0] for r in context.catalog.conn.execute(_DEPENDENTS, {"name": name})]
        if not dependents:
            continue
        listed = "; ".join(dependents[:5]) + (" and more" if len(dependents) > 5 else "")
        message = (f'cannot drop extension "{name}" because other objects depend on it (SQLSTATE 2BP01): {listed}.')
        if index == 1:  # nothing ran before it: the catalog now is the catalog at apply
            checks.append(_blocks(index, step, message + " Drop them first, or write DROP EXTENSION ... CASCADE "
                                  "once you have read what it drops."))
        else:
            checks.append(verdict(OBJECT_PRECHECK, index, step, "warning",
                                  f"step {index} may fail at apply: in the target database now, {message} An earlier "
                                  "step may drop them; without a rehearsal preflight cannot tell. Rehearse the plan, "
                                  "or acknowledge this step.", acknowledge=True))
    return checks


def _blocks(index: int, step: RawSQL, message: str) -> Check:
    return verdict(OBJECT_PRECHECK, index, step, "blocking", f"step {index} would fail at apply: {message}")


def _about(context: PlanContext, name: str) -> tuple[bool, bool, str | None, list[str]]:
    """In one query: whether the database has the extension when this step runs (as an earlier step left it, or as
    it is now), whether its server has it, its default version, and every version the server can install."""
    row = context.catalog.conn.execute(_EXTENSION, {"name": name}).fetchone()
    assert row is not None
    installed, available, default, versions = row
    return context.plan_extensions.get(name, bool(installed)), bool(available), default, list(versions)


def _cannot_create(context: PlanContext, name: str, version: str | None, cascade: bool, created: list[str],
                   about: tuple[bool, bool, str | None, list[str]]) -> str | None:
    """Why the target's server cannot create ``name`` (at ``version``, or its default), with what it requires; None
    when it can. ``about`` is ``_about(context, name)``; ``created`` gathers what the statement creates.
    PostgreSQL's own catalog views list what its server has, versions reached by update scripts included."""
    _, available, default, versions = about
    if not available:
        return (f'extension "{name}" is not available on the target server: it is not among the extensions installed '
                "on the server's system (pg_available_extensions), so PostgreSQL cannot open its control file. "
                f"{_INSTALL}")
    wanted = version or default
    if wanted not in versions:
        return (f'extension "{name}" has no installation script nor update path for version "{wanted}" on the '
                f"target server (SQLSTATE 22023); it has {', '.join(versions) or 'none'}. Ask for one of those, or "
                "install that version's package on the server.")
    row = context.catalog.conn.execute(_REQUIRES, (name, wanted)).fetchone()
    for required in (row[0] if row and row[0] else ()):
        if required in created:
            continue
        required_about = _about(context, required)
        if required_about[0]:
            continue
        if not cascade:
            return (f'required extension "{required}" is not installed in the target database (SQLSTATE 42704). '
                    f'Create it in an earlier step, or write CREATE EXTENSION "{name}" CASCADE.')
        created.append(required)
        problem = _cannot_create(context, required, None, True, created, required_about)
        if problem is not None:
            return f'"{name}" requires it: {problem}'
    return None
