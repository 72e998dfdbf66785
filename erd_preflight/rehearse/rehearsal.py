"""The rehearsal: the plan's statements run on the shadow in apply's order, in one transaction rolled back, as a role
without superuser rights, on the search_path of the role that applies. PostgreSQL's catalog is read before and
after each statement (``shadow_catalog``), with the locks it took and the rows it touched; a statement PostgreSQL
refuses is the step's failure, with its own error. What the shadow cannot decide (an extension it lacks, a
statement only a newer server accepts, a statement whose rows decide) stops the rehearsal there and says why."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pglast
import psycopg
from pglast import ast, enums
from pglast.stream import RawStream

from ..errors import classify
from .shadow_exact import (
    Exactness,
    differs,
    candidate,
    counted,
    exact_after_failure,
    functions_differ,
    runs_own_code,
    taint_after,
)
from .shadow_fidelity import sequence_positions, set_positions
from .shadow_catalog import (
    CatalogSnapshot,
    ImpactReader,
    LOCK_MODES,
    LockHeld,
    Rehearsal,
    RehearsalFailure,
    RelationFile,
    StatementImpact,
    read_relation_files,
    read_snapshot,
)
from ..sqlparse import walk_ast
from ..versions import called_functions, created_functions, missing_built_ins, newer_syntax
from .shadow import (
    REHEARSAL_STATEMENT_TIMEOUT, Shadow, ShadowUnavailable, apply_search_path, shadow_for, shadow_lock, shadow_session,
    statement_node,
)


def plain_form(statement: str) -> str | None:
    """The statement as it can run inside the rehearsal's transaction: CONCURRENTLY dropped (the build is the
    same on empty tables), None for what has no meaning there (VACUUM, ALTER SYSTEM, databases, tablespaces)."""
    try:
        (raw,) = pglast.parse_sql(statement)
    except (pglast.parser.ParseError, ValueError):
        return statement
    stmt = raw.stmt
    if isinstance(stmt, (ast.VacuumStmt, ast.CreatedbStmt, ast.DropdbStmt, ast.AlterSystemStmt,
                         ast.CreateTableSpaceStmt, ast.DropTableSpaceStmt)):
        return None
    if isinstance(stmt, (ast.IndexStmt, ast.DropStmt)) and stmt.concurrent:
        stmt.concurrent = False
        return RawStream()(stmt)
    if isinstance(stmt, ast.ReindexStmt):
        return None
    if isinstance(stmt, ast.AlterTableStmt):
        for cmd in stmt.cmds or ():
            if cmd.subtype == enums.AlterTableType.AT_DetachPartition and getattr(cmd.def_, "concurrent", False):
                cmd.def_.concurrent = False
                return RawStream()(stmt)
    return statement


def rehearse(target: psycopg.Connection[Any], statements: list[tuple[int, str]], *, catalog: str | None = None,
             search_path: str | None = None, end: bool = False) -> Rehearsal:
    """Run ``statements`` (step, SQL), in the order apply runs them, on the shadow of ``target``, in one
    transaction that is rolled back, with the target session's search_path (``apply_search_path``), and read the
    shadow's catalog after each statement that can change it. The first statement PostgreSQL refuses ends it
    (``failure``). Raises ShadowUnavailable when there is no shadow; a statement that cannot be judged on empty
    tables (too long, rights the rehearsal does not take, rows it reads) ends it with ``stopped`` saying why.
    ``catalog``: the target's fingerprint, when the caller has it; ``search_path``: the target session's setting;
    ``end``: read the catalog after the last statement too (``Rehearsal.end``)."""
    shadow = shadow_for(target, catalog)
    search_path = apply_search_path(target, search_path)
    # The target's sequence positions, where a statement may depend on one: the shadow's start at 1.
    positions = sequence_positions(target) if any(_SEQUENCE_WORDS.search(t) for _, t in statements) else None
    key = (shadow, tuple(statements), search_path, end,
           None if positions is None else (tuple(positions[0]), tuple(positions[1])))
    with shadow_lock:
        known = _rehearsals.get(key)
        if known is not None:
            _rehearsals.move_to_end(key)
            return known
    rehearsal = _rehearse_on(shadow, target, statements, search_path, end, positions)
    if rehearsal.stopped is None and all(repeatable(text) for _, text in statements):
        with shadow_lock:
            _rehearsals[key] = rehearsal
            while len(_rehearsals) > _REHEARSALS_MAX:
                _rehearsals.popitem(last=False)
    return rehearsal


# A statement that may read or change a sequence's position (or the type its values must fit).
_SEQUENCE_WORDS = re.compile(r"sequence|nextval|currval|setval|identity|serial|\btype\b", re.IGNORECASE)


# One element of a search_path setting: a double-quoted name (with "" inside) or a bare word.
# Rehearsals by (shadow, statements, search_path), in this process. A shadow is rebuilt under a new fingerprint
# whenever the target's catalog (or its server version) changes, so the same key means the same statements run on
# the same empty schema: PostgreSQL's answer does not change. Kept only for statements whose answer depends on
# nothing else (see repeatable) and for rehearsals that ran to a verdict; callers only read what they get.
_rehearsals: OrderedDict[tuple[Any, ...], Rehearsal] = OrderedDict()
_REHEARSALS_MAX = 16  # each holds the catalog snapshots of its steps


def repeatable(statement: str) -> bool:
    """Whether rehearsing ``statement`` on the same empty schema always gives the same answer: DDL, which evaluates
    no expression on tables without rows. Not a data statement, procedural code or a relation made from a query
    (what runs may read the clock or chance), not CREATE EXTENSION (the answer also reads which extensions the
    servers have available, which no catalog fingerprint covers)."""
    text = plain_form(statement)
    if text is None:
        return True
    stmt = statement_node(text)
    return stmt is not None and not isinstance(stmt, _UNREPEATABLE)


# SelectStmt covers SELECT ... INTO, so with CreateTableAsStmt, DoStmt and CallStmt every statement _may_fill names
_UNREPEATABLE = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.SelectStmt, ast.DoStmt,
                 ast.CallStmt, ast.CreateTableAsStmt, ast.CreateExtensionStmt, ast.AlterExtensionStmt,
                 ast.ExplainStmt, ast.CopyStmt)


def _rehearse_on(shadow: Shadow, target: psycopg.Connection[Any], statements: list[tuple[int, str]],
                 search_path: str, end: bool = False,
                 positions: tuple[list[str], list[int]] | None = None) -> Rehearsal:
    with shadow_session(shadow) as conn:  # one transaction, rolled back: the shadow stays pristine
        if positions is not None:
            set_positions(conn, positions)  # not transactional: committed before the rehearsal's transaction
            conn.commit()
        conn.execute("SELECT set_config('search_path', %s, true), "
                     "set_config('standard_conforming_strings', 'on', true), "
                     "set_config('statement_timeout', %s, true), set_config('lock_timeout', '10s', true)",
                     (search_path, f"{int(REHEARSAL_STATEMENT_TIMEOUT * 1000)}ms"))
        rehearsal = Rehearsal(start=_start_snapshot(conn, shadow), adapted=shadow.adapted)
        impacts = ImpactReader(_files_of(conn, shadow))
        impacts.start(conn)
        kept: set[int] = set()  # relations holding rows exact statements wrote (kept: apply writes the same)
        # what exists before the plan, read in this very transaction (views included: they have no file)
        exactness = Exactness(existing=frozenset(int(r[0]) for r in conn.execute(
            "SELECT oid::int8 FROM pg_class WHERE oid >= 16384", prepare=True)))
        gap = _version_gap(statements, target, conn)
        lacking = list(shadow.lacks)
        members = _members(target, lacking)
        latest = rehearsal.start
        # whether a statement may have left rows in the copy (a DO block, CREATE TABLE AS; an event trigger's code
        # runs with every DDL statement and may write rows)
        filled = shadow.event_triggers or shadow.filled_views
        # The statement's notices that it skipped an object (a Diagnostic lives only in its callback): PostgreSQL's
        # own carry a duplicate_* SQLSTATE, a RAISE NOTICE of procedural code 00000.
        notices: list[str] = []

        def heard(diag: psycopg.errors.Diagnostic) -> None:
            if diag.severity_nonlocalized == "NOTICE" and (diag.sqlstate or "").startswith("42") \
                    and (diag.message_primary or "").endswith(", skipping"):
                notices.append(diag.message_primary or "")

        conn.add_notice_handler(heard)
        skips: dict[int, list[str | None]] = {}  # by step: each statement's "skipping" notice, or None
        try:
            for position, (step, statement) in enumerate(statements):
                rehearsal.before.setdefault(step, latest)
                text = plain_form(statement)
                extension = _extension_created(text) if text is not None else None
                if extension is not None and _lacks(conn, target, extension):
                    lacking.append(extension)  # the target can create it, the shadow cannot: not a verdict
                    members = None  # what the extension brings is not known: a missing object may be its
                    text = None
                if text is None:
                    rehearsal.after[step] = latest
                    skips.setdefault(step, []).append(None)
                    rehearsal.impacts.append(StatementImpact(step=step, statement=statement, locks=(),
                                                             measured=False))
                    continue
                # Each statement in a subtransaction of its own: the catalog rows it writes carry an xmin of their own,
                # which is how the next snapshot finds what changed (and a data statement can be undone alone).
                conn.execute("SAVEPOINT erd_preflight_step")
                notices.clear()
                # a statement that may be exact, or that runs the database's own code on the rows it writes (a
                # trigger): what it reads on its way is counted, so that its failure can be told apart (reading
                # every sequence's position locks them: before what this statement locks is noted)
                maybe_exact = candidate(conn, text, exactness)
                own_code = not _may_change_catalog(text) and runs_own_code(conn, text)
                counts = counted(conn) if maybe_exact or own_code else None
                exactness.start(conn)
                try:
                    rehearsal.failure = _run_statement(
                        conn, step, statement, text, lacking, members, filled, shadow.unpopulated,
                        None if counts is None else lambda: exact_after_failure(conn, text, exactness, counts),
                        maybe_exact, own_code)
                    skips.setdefault(step, []).append(_skip_notice(text, notices))
                except _RowsDecide as exc:
                    # A data statement PostgreSQL stopped on a key of rows the copy does not have: not a verdict.
                    # It changes no catalog, so the rehearsal goes on without it.
                    conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_step")
                    rehearsal.unjudged[step] = str(exc)
                    rehearsal.exact.pop(step, None)
                    rehearsal.inexact.add(step)
                    taint_after(conn, text, exactness, set())
                    filled = filled or bool(kept & exactness.tainted) or (bool(kept) and exactness.all_tainted)
                    rehearsal.after[step] = latest
                    skips.setdefault(step, []).append(None)
                    impacts.undone()
                    rehearsal.impacts.append(StatementImpact(step=step, statement=statement, locks=(),
                                                             measured=False))
                    continue
                except ShadowUnavailable as exc:
                    rehearsal.stopped = str(exc)
                    rehearsal.after.pop(step, None)  # a step half rehearsed is not rehearsed
                    break
                if rehearsal.failure is not None:
                    rehearsal.after.pop(step, None)
                    break
                # what it locked and did, read before a data statement is undone (which releases its locks)
                rehearsal.impacts.append(as_applied(impacts.after(conn, step, statement), statement, text))
                read, written = exactness.touched(conn)
                inexact = [o for o in read | written if not exactness.faithful(o)]
                why = differs(text) or (None if inexact else functions_differ(conn, text, written))
                if inexact or why is not None:
                    rehearsal.exact.pop(step, None)
                    rehearsal.inexact.add(step)
                    taint_after(conn, text, exactness, written)
                elif step not in rehearsal.inexact:
                    rehearsal.exact[step] = tuple(sorted({*rehearsal.exact.get(step, ()), *_names(conn, read)}))
                    if written and not _may_change_catalog(text):
                        # its rows are the very rows apply writes: kept, for the statements after it that read them
                        kept |= written
                        conn.execute("RELEASE SAVEPOINT erd_preflight_step")
                        rehearsal.after[step] = latest
                        continue
                if not _may_change_catalog(text):
                    # A plain data statement changes no catalog: undone, so the copy stays without rows and a later
                    # statement's data error on it stays a verdict on structure (an upsert's row would not be there).
                    conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_step")
                    impacts.undone()
                # rows kept in a relation an inexact statement then wrote are no longer the rows apply meets
                filled = filled or _may_fill(text) or bool(kept & exactness.tainted) or (
                    bool(kept) and exactness.all_tainted)
                conn.execute("RELEASE SAVEPOINT erd_preflight_step")
                # After the last statement only an added column's own check reads the catalog (what PostgreSQL filled in)
                if _may_change_catalog(text) and (position + 1 < len(statements) or end or _read_after(text)):
                    latest = read_snapshot(conn, latest, deleted=latest.deleted)
                rehearsal.after[step] = latest
        finally:
            conn.remove_notice_handler(heard)
    # A step whose every statement PostgreSQL skipped (IF NOT EXISTS of what exists, IF EXISTS of what does not)
    # changes nothing, whatever the rows: it needs no data check.
    if end and rehearsal.failure is None and rehearsal.stopped is None:
        rehearsal.end = latest
    rehearsal.skipped = {step: "; ".join(n for n in found if n) for step, found in skips.items()
                         if step in rehearsal.after and found and all(found)}
    if gap is not None and (rehearsal.failure is None or gap.step < rehearsal.failure.step):
        rehearsal.failure = gap  # the target's older PostgreSQL refuses it, though the shadow's accepts it
        rehearsal.after = {s: c for s, c in rehearsal.after.items() if s < gap.step}
    return rehearsal


_starts: dict[Shadow, CatalogSnapshot] = {}  # the shadow's catalog before any statement, read once per shadow
_files: dict[Shadow, dict[int, RelationFile]] = {}  # its relations' files before any statement, read once too


def _names(conn: psycopg.Connection[Any], oids: set[int]) -> list[str]:
    """The relations ``oids`` (an index as its table), as PostgreSQL names them on the search_path."""
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT coalesce(i.indrelid, c.oid)::regclass::text FROM pg_class c "
        "LEFT JOIN pg_index i ON i.indexrelid = c.oid WHERE c.oid = ANY(%s::oid[]) AND c.relkind <> 't'",
        (sorted(oids),)).fetchall()]


def _files_of(conn: psycopg.Connection[Any], shadow: Shadow) -> dict[int, RelationFile]:
    return _once_per_shadow(_files, shadow, lambda: read_relation_files(conn))[0]


def _once_per_shadow(cache: dict[Shadow, Any], shadow: Shadow, read: Any) -> tuple[Any, bool]:
    """What ``read()`` returns for ``shadow``, read once per shadow (a rebuilt shadow database drops what its old
    one had), and whether it was read just now."""
    with shadow_lock:
        known = cache.get(shadow)
    if known is not None:
        return known, False
    value = read()
    with shadow_lock:
        for old in [s for s in cache if s.template == shadow.template]:
            del cache[old]  # the shadow database was rebuilt: what its old catalog held is gone
        cache[shadow] = value
    return value, True


def as_applied(impact: StatementImpact, statement: str, text: str) -> StatementImpact:
    """The impact of ``statement`` as apply runs it: rehearsed without CONCURRENTLY (``plain_form``), a concurrent
    index build or drop takes SHARE UPDATE EXCLUSIVE (reads and writes go on) where the plain form took more."""
    stmt = statement_node(statement)
    if isinstance(stmt, ast.TruncateStmt):
        # a new, empty file, not rows written again: a catalog change
        return dataclasses.replace(impact, locks=tuple(dataclasses.replace(x, work="catalog") for x in impact.locks))
    if text == statement or not (isinstance(stmt, (ast.IndexStmt, ast.DropStmt)) and stmt.concurrent):
        return impact
    weaker = "ShareUpdateExclusiveLock"

    def concurrent(lock: LockHeld) -> LockHeld:
        strong = lock.mode in LOCK_MODES and LOCK_MODES.index(lock.mode) > LOCK_MODES.index(weaker)
        return dataclasses.replace(lock, mode=weaker) if strong else lock

    return dataclasses.replace(impact, locks=tuple(concurrent(x) for x in impact.locks))


def _start_snapshot(conn: psycopg.Connection[Any], shadow: Shadow) -> CatalogSnapshot:
    start, fresh = _once_per_shadow(_starts, shadow, lambda: read_snapshot(conn))
    if fresh:
        return start
    # the same catalog; only the session's search_path may differ
    row = conn.execute("SELECT current_schemas(false)::text[]").fetchone()
    return dataclasses.replace(start, search_path=tuple(row[0]) if row else (), _by_name={})


def _version_gap(statements: list[tuple[int, str]], target: psycopg.Connection[Any],
                 shadow: psycopg.Connection[Any]) -> RehearsalFailure | None:
    """The first statement the target's older major version refuses though the shadow's accepts it: a form of
    newer syntax, or a built-in function the target does not have."""
    version = target.info.server_version
    if version // 10000 >= shadow.info.server_version // 10000:
        return None
    own = set().union(*(created_functions(text) for _, text in statements)) if statements else set()
    for step, text in statements:
        newer = newer_syntax(text, version)
        if newer is not None:
            since, what = newer
            return RehearsalFailure(step=step, statement=text, sqlstate="42601", message=what, detail=None, hint=None,
                                    needs_version=since)
        missing = missing_built_ins(called_functions(text) - own, shadow, target)
        if missing:
            names = ", ".join(f"{m}()" for m in sorted(missing))
            return RehearsalFailure(step=step, statement=text, sqlstate="42883", message=f"the function {names}",
                                    detail=None, hint=None, needs_version=shadow.info.server_version // 10000)
    return None


def _extension_created(statement: str) -> str | None:
    stmt = statement_node(statement)
    return stmt.extname if isinstance(stmt, ast.CreateExtensionStmt) else None


def _lacks(conn: psycopg.Connection[Any], target: psycopg.Connection[Any], extension: str) -> bool:
    """Whether the target's server has ``extension`` and the shadow's does not."""
    query = "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = %s)"
    here = conn.execute(query, (extension,)).fetchone()
    there = target.execute(query, (extension,)).fetchone()
    return bool(there and there[0]) and not (here and here[0])


# What PostgreSQL says when an object is missing: in a shadow without an extension, that may be the extension's.
_UNDEFINED = {"42704", "42883", "42P01", "42703", "3F000", "42P02"}


def _members(target: psycopg.Connection[Any], extensions: list[str]) -> set[str] | None:
    """The names of what ``extensions`` bring on the target (functions, types, operators, relations), or None
    when one of them is not installed there (what it brings is then not known)."""
    if not extensions:
        return set()
    installed = {r[0] for r in target.execute("SELECT extname FROM pg_extension WHERE extname = ANY(%s)",
                                              (extensions,))}
    if installed != set(extensions):
        return None
    return {r[0] for r in target.execute(_MEMBERS, (extensions,)) if r[0]}


_MEMBERS = """
SELECT coalesce(p.proname, t.typname, c.relname, o.oprname)::text
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
  LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
  LEFT JOIN pg_type t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  LEFT JOIN pg_operator o ON d.classid = 'pg_operator'::regclass AND o.oid = d.objid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = ANY(%s)
"""

# The object a "does not exist" error names: a quoted name, or a function before its argument list.
_MISSING_NAME = re.compile(r'^(?:\w+ )*?(?:"(?P<quoted>[^"]+)"|(?P<function>[\w.]+)\()')


def _may_be_the_extensions(message: str, members: set[str] | None) -> bool:
    """Whether an object PostgreSQL says is missing could be one a lacking extension brings."""
    if members is None:
        return True
    match = _MISSING_NAME.match(message)
    if match is None:
        return True
    name = (match["quoted"] or match["function"]).rsplit(".", 1)[-1]
    return name in members


def _run_statement(conn: psycopg.Connection[Any], step: int, statement: str, text: str,
                   lacking: list[str], members: set[str] | None, filled: bool = False,
                   unpopulated: tuple[str, ...] = (),
                   read_only_plan: Callable[[], bool] | None = None, maybe_exact: bool = False,
                   own_code: bool = False) -> RehearsalFailure | None:
    try:
        conn.execute(text)
    except psycopg.errors.QueryCanceled as exc:
        raise ShadowUnavailable(f"step {step} ran longer than {REHEARSAL_STATEMENT_TIMEOUT:g} s on an empty "
                                "copy of the schema, so the rehearsal stopped there") from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        # The rehearsal role is no superuser on purpose: what it may not do is not PostgreSQL's verdict.
        raise ShadowUnavailable(f"step {step} needs rights the rehearsal does not take "
                                f"({exc.diag.message_primary})") from exc
    except psycopg.Error as exc:
        if conn.broken or classify(exc) in ("connection", "lock", "timeout") or (exc.sqlstate or "")[:2] == "53":
            # The shadow's session or server failed (terminated, out of resources, a lock): that says
            # nothing about the statement.
            raise ShadowUnavailable(f"the rehearsal's session failed at step {step} "
                                    f"({' '.join(str(exc).split())})") from exc
        diag = exc.diag
        state = exc.sqlstate or ""
        if state == "55P04":
            # An enum value added earlier in this transaction: at apply, a tool's folder commits each migration,
            # so a value an earlier migration added is usable; the rehearsal, one transaction, cannot tell.
            raise ShadowUnavailable(
                f"step {step} uses an enum value an earlier statement adds ({diag.message_primary}); the rehearsal "
                "runs the plan in one transaction, where PostgreSQL refuses that, while apply commits each "
                "migration of a tool's folder on its own (where the value is usable): the rehearsal stopped there. "
                "If both are in one migration, PostgreSQL refuses it at apply too") from exc
        if lacking and state in _UNDEFINED and _may_be_the_extensions(diag.message_primary or "", members):
            raise ShadowUnavailable(
                f"step {step} needs an object the shadow may lack ({diag.message_primary}): its PostgreSQL has no "
                f"{', '.join(dict.fromkeys(lacking))} extension, which the target has, so the rehearsal stopped "
                "there") from exc
        if state in ("0A000", "55000") and unpopulated and "populated" in (diag.message_primary or ""):
            raise ShadowUnavailable(
                f"step {step} needs a populated materialized view ({diag.message_primary}), and the shadow could not "
                f"populate {', '.join(unpopulated)} as the target has it: the rehearsal stopped there") from exc
        rows_may_decide = state[:2] in ("21", "22", "23") or state.startswith("P0")
        if rows_may_decide:
            conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_step")  # the catalog as before it, to ask about it
        # on its way to the error it read and wrote only the plan's rows (and ran no code that asks what differs)
        only_plan = rows_may_decide and read_only_plan is not None and read_only_plan()
        if maybe_exact and only_plan:
            # every input is made by the plan: the rows it failed on are the rows apply meets
            return RehearsalFailure(step=step, statement=statement, sqlstate=state,
                                    message=diag.message_primary or str(exc), detail=diag.message_detail,
                                    hint=diag.message_hint, exact_rows=True)
        if rows_may_decide and own_code and not only_plan:
            raise _RowsDecide(f"{diag.message_primary} on the empty copy, from code that runs on the rows it writes (a "
                              "trigger, or a function a constraint calls), which may read the real rows")
        if state in _KEYS_OF_ROWS and not _may_change_catalog(text):
            raise _RowsDecide(f"{diag.message_primary} on the empty copy; on the real rows it depends on them")
        if (state[:2] in ("22", "23") or state == "P0001") and filled:
            raise ShadowUnavailable(
                f"step {step} fails on the copy of the schema ({diag.message_primary}) where code that ran before it "
                "(an earlier step, an event trigger of the database) may have left rows, so whether it fails on the "
                "real rows depends on them: the rehearsal stopped there") from exc
        if (state[:2] in ("22", "23") or state == "P0001") and not _reads_no_rows(statement):
            # On empty tables a statement that reads rows (INSERT ... SELECT, a DO block that checks
            # the data) may fail where the real rows would not: that is not a verdict on structure.
            raise ShadowUnavailable(
                f"step {step} fails on the empty copy ({diag.message_primary}), but it reads rows, so "
                "whether it fails on the real ones depends on them: the rehearsal stopped there") from exc
        return RehearsalFailure(step=step, statement=statement, sqlstate=exc.sqlstate or "",
                                message=diag.message_primary or str(exc), detail=diag.message_detail,
                                hint=diag.message_hint)
    return None


def _skip_notice(statement: str, notices: list[str]) -> str | None:
    """PostgreSQL's notice that it skipped the whole of ``statement`` (IF NOT EXISTS of an object that exists), or
    None. Only a statement that makes or changes one object is skipped whole by one notice (an ALTER TABLE of one
    command). A DROP ... IF EXISTS is not taken: the shadow lacks what pg_dump leaves out (an INVALID index), so its
    skip there may be a drop on the target, and a drop has no data check to spare anyway."""
    stmt = statement_node(statement)
    if isinstance(stmt, ast.AlterTableStmt):
        single = len(stmt.cmds or ()) == 1
    else:
        single = isinstance(stmt, (ast.IndexStmt, ast.CreateStmt, ast.CreateTableAsStmt, ast.CreateSeqStmt,
                                   ast.CreateSchemaStmt, ast.CreateExtensionStmt))
    if not single:
        return None
    return notices[0] if len(notices) == 1 else None


# Unique, foreign key and exclusion violations compare a row with other rows: on the empty copy they say nothing.
_KEYS_OF_ROWS = {"23505", "23503", "23P01"}


class _RowsDecide(Exception):
    """A data statement failed on the empty copy in a way the real rows decide."""


@functools.lru_cache(maxsize=256)
def _read_after(statement: str) -> bool:
    """Whether the step's own checks read the catalog after it: an added column (what PostgreSQL filled in), a
    partition's bound (the constraint its rows must satisfy), a relation made from a query (its columns)."""
    stmt = statement_node(statement)
    if stmt is None:
        return True
    if isinstance(stmt, ast.CreateStmt):
        return stmt.partbound is not None
    if isinstance(stmt, ast.CreateTableAsStmt):
        return True  # the columns of the relation its query fills
    return isinstance(stmt, ast.AlterTableStmt) and any(
        cmd.subtype in (enums.AlterTableType.AT_AddColumn, enums.AlterTableType.AT_AttachPartition)
        for cmd in stmt.cmds or ())


def _may_change_catalog(statement: str) -> bool:
    """False for plain data statements (their catalog is the one before them); anything else may change it."""
    stmt = statement_node(statement)
    if stmt is None:
        return True
    if isinstance(stmt, ast.SelectStmt):
        return stmt.intoClause is not None
    return not isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.CopyStmt))


def _may_fill(statement: str) -> bool:
    """Whether a statement that changes the catalog may also leave rows in the copy: procedural code, a relation
    made from a query."""
    stmt = statement_node(statement)
    if stmt is None or isinstance(stmt, (ast.DoStmt, ast.CallStmt, ast.CreateTableAsStmt)):
        return True
    return isinstance(stmt, ast.SelectStmt) and stmt.intoClause is not None


def _reads_no_rows(statement: str) -> bool:
    """Whether the statement's outcome cannot depend on rows: no table or subquery is read (INSERT ... VALUES
    of constants, DDL). A DO block or a function call may read anything."""
    stmt = statement_node(statement)
    if stmt is None:
        return False
    if isinstance(stmt, (ast.DoStmt, ast.CallStmt)):
        return False
    if isinstance(stmt, ast.InsertStmt):
        stmt = stmt.selectStmt
    elif not isinstance(stmt, ast.SelectStmt):
        return not isinstance(stmt, (ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt))
    nodes = list(walk_ast(stmt))
    return not any(isinstance(n, (ast.RangeVar, ast.SubLink, ast.RangeFunction, ast.FuncCall)) for n in nodes)
