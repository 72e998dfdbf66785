"""Running a remediation, saying beforehand what it will touch, and putting back what it removed.

``preview`` counts the rows a remediation deletes or changes and, for each foreign key that references them, the
rows of the other table and what PostgreSQL does with them: block, cascade, set NULL or DEFAULT; or, where no
foreign key exists yet but the plan adds one, that they become orphans. A dedupe shows which row of each group it
keeps, by the rule the user chooses (``survivor``). ``run_remediation`` keeps every row it deletes or overwrites
(``keep``) unless told not to, and ``restore`` puts them back. All of it is recorded in ``applied_sql``.
"""

from __future__ import annotations

import contextlib
import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from ..catalog import Catalog
from ..checks.remediation import Remediation, RowChange, first_stored
from ..db import Database
from ..errors import RunStateError
from ..plan import AddForeignKey, MigrationPlan, display_name
from ..plan.phases import lock_settings
from ..read.preflight import json_value
from ..sqlparse import normalize_expression
from .apply import ApplyOptions
from .keep import (
    Dependent,
    KeepRefused,
    KeepTooLarge,
    RestoreRefused,
    TableFacts,
    dependents,
    drop_duplicates,
    keep_dependents,
    kept_statement,
    lock_rows,
    measure,
    measure_each,
    restore_rows,
    table_facts,
)
from .store import AppliedStatement, RunStore, now_text

if TYPE_CHECKING:
    import pandas as pd

FkAction = Literal["block", "cascade", "set null", "set default", "orphan"]
_ACTIONS: dict[str, FkAction] = {"a": "block", "r": "block", "c": "cascade", "n": "set null", "d": "set default"}
_PLAN_ACTIONS: dict[str, FkAction] = {"NO ACTION": "block", "RESTRICT": "block", "CASCADE": "cascade",
                                      "SET NULL": "set null", "SET DEFAULT": "set default"}


class ReferenceEffect(BaseModel):
    """The rows of another table that reference the rows a remediation deletes (or whose key it changes), and what
    happens to them."""

    model_config = ConfigDict(frozen=True)

    table: str
    constraint: str | None
    columns: list[str]
    action: FkAction
    rows: int
    step: int | None = None  # the plan step that adds the foreign key, for "orphan"
    depth: int = 1  # 1: references the remediation's rows; 2: references rows a cascade reaches; ...

    @property
    def sentence(self) -> str:
        what = {"block": "the remediation fails on them (the foreign key forbids it)",
                "cascade": "PostgreSQL deletes them too (ON DELETE CASCADE)",
                "set null": "PostgreSQL sets their key to NULL",
                "set default": "PostgreSQL sets their key to its DEFAULT",
                "orphan": f"they become orphans, which the foreign key step {self.step} adds will refuse"}[self.action]
        by = f"foreign key {display_name(self.constraint)}" if self.constraint else "the plan's foreign key"
        on = f" on {', '.join(self.columns)}" if self.columns else ""
        them = "them" if self.depth == 1 else f"rows the cascade reaches ({self.depth} tables away)"
        return f"{self.rows} rows of {self.table} reference {them} ({by}{on}): {what}."


class RemediationPreview(BaseModel):
    """What a remediation will touch, counted before it runs, read-only."""

    model_config = ConfigDict(frozen=True)

    kind: str
    table: str
    action: Literal["delete", "update"]
    rows: int
    keep_bytes: int  # what keeping those rows takes in remediation_rows
    keep_limit_bytes: int
    references: list[ReferenceEffect] = Field(default_factory=list)
    keep_refused: str | None = None  # why the run could not keep what it changes (then it runs only with keep=False)
    triggers: list[str] = Field(default_factory=list)  # triggers and rules that run on its rows: not kept
    survivor: str | None = None  # a dedupe's rule: which row of each group it keeps
    sample: list[dict[str, Any]] = Field(default_factory=list)  # rows it touches (a dedupe: whole groups, kept or not)

    @property
    def keeps(self) -> bool:
        return self.keep_refused is None and self.keep_bytes <= self.keep_limit_bytes

    def summary(self) -> str:
        verb = "deletes" if self.action == "delete" else "changes"
        lines = [f"{self.kind} {verb} {self.rows} rows of {self.table}"
                 + (f", keeping one row of each group: the {survivor_text(self.survivor)}" if self.survivor else "")
                 + "."]
        lines += [f"- {r.sentence}" for r in self.references if r.rows]
        if self.triggers and self.rows:
            lines.append(f"- {', '.join(self.triggers)} of {self.table} run on each row it {verb}: what "
                         "they change elsewhere is not kept.")
        lines.append(f"Keeps them on the run ({_size(self.keep_bytes)}), so run.restore(position) can put them back."
                     if self.keeps else f"Cannot keep them: {self.keep_refused}; it runs only with keep=False, and "
                     "then cannot be restored." if self.keep_refused else
                     f"Keeping them would take {_size(self.keep_bytes)}, above keep_limit_bytes "
                     f"({_size(self.keep_limit_bytes)}): it runs only with keep=False, and then cannot be restored.")
        return "\n".join(lines)

    def __repr__(self) -> str:  # one line: a saved notebook's plain text does not pin every sample value
        return (f"RemediationPreview({self.kind} {'deletes' if self.action == 'delete' else 'changes'} {self.rows} "
                f"rows of {self.table}; {sum(1 for r in self.references if r.rows)} foreign keys touched)")

    def sample_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.sample)

    def _repr_html_(self) -> str:
        body = "".join(f"<li>{html.escape(r.sentence)}</li>" for r in self.references if r.rows)
        head = html.escape(self.summary().splitlines()[0])
        table = self.sample_frame().to_html(index=False, max_rows=20) if self.sample else ""
        return f"<div><b>{head}</b><ul>{body}</ul><p>{html.escape(self.summary().splitlines()[-1])}</p>{table}</div>"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.1f} kB" if n >= 1024 else f"{n} bytes"


def survivor_text(survivor: str | None) -> str:
    rule, _, column = (survivor or "first").partition(":")
    return {"first": "first stored (lowest ctid)", "oldest": f"oldest by {column}", "newest": f"newest by {column}",
            "most_referenced": "one the most rows of other tables reference"}.get(rule, rule)


@dataclass(frozen=True)
class _Reference:
    constraint: str | None
    child: sql.Identifier
    child_label: str
    columns: tuple[str, ...]
    ref_columns: tuple[str, ...]
    action: FkAction
    step: int | None = None


def references(conn: psycopg.Connection[Any], facts: TableFacts, plan: MigrationPlan | None,
               deleting: bool) -> list[_Reference]:
    """The foreign keys that reference the table (their ON DELETE, or ON UPDATE when ``deleting`` is False), and
    the ones the plan adds to it from tables that exist."""
    found = [_Reference(key.name, sql.Identifier(key.schema, key.table), display_name(key.schema, key.table),
                        key.columns, key.ref_columns,
                        _ACTIONS.get(key.on_delete if deleting else key.on_update, "block"))
             for key in Catalog(conn).referencing(facts.oid) if not key.inherited]
    for number, step in enumerate(plan.steps if plan else [], start=1):
        if not isinstance(step, AddForeignKey) or step.ref_table != facts.name \
                or step.ref_schema not in (None, facts.schema):
            continue
        row = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE c.oid = to_regclass(%s)", (step.relation.as_string(conn),)).fetchone()
        if row is None:
            continue  # a table the plan creates: no rows reference anything yet
        child = sql.Identifier(row[0], row[1])
        if any(r.child_label == display_name(*row) and r.columns == step.columns for r in found):
            continue  # already there (the plan adds it again, or the catalog has it from an earlier run)
        found.append(_Reference(step.name, child, display_name(*row), step.columns, step.ref_columns, "orphan",
                                number))
    return found


def _matches(ref: _Reference, child: str, parent: str) -> sql.Composable:
    return sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(child, c), sql.Identifier(parent, p))
                                 for c, p in zip(ref.columns, ref.ref_columns))


def _referencing_rows(conn: psycopg.Connection[Any], ref: _Reference, change: RowChange,
                      order: sql.Composable | None) -> int:
    """The rows of ``ref``'s table that reference a row the remediation deletes or changes."""
    row = conn.execute(sql.SQL(
        "SELECT count(*) FROM {} AS erd_ref WHERE EXISTS (SELECT 1 FROM {} AS {} WHERE {} AND {})").format(
        ref.child, change.relation, sql.Identifier(change.alias), change.condition(order),
        _matches(ref, "erd_ref", change.alias))).fetchone()
    return int(row[0]) if row else 0


def survivor_order(conn: psycopg.Connection[Any], facts: TableFacts, refs: list[_Reference], survivor: str
                   ) -> sql.Composable:
    """The ORDER BY of a dedupe's window over the rows (``erd_g``): the first row of each group is kept."""
    rule, _, column = survivor.partition(":")
    tail = first_stored("erd_g")
    if rule == "first" and not column:
        return tail
    if rule in ("oldest", "newest") and column:
        if column not in facts.writable:
            raise ValueError(f"survivor {survivor!r}: {facts.label} has no column {column!r} (it has "
                             f"{', '.join(facts.writable)})")
        direction = sql.SQL("ASC" if rule == "oldest" else "DESC")
        return sql.SQL("{} {} NULLS LAST, {}").format(sql.Identifier("erd_g", column), direction, tail)
    if rule == "most_referenced" and not column:
        counts = [sql.SQL("(SELECT count(*) FROM {} AS erd_ref WHERE {})").format(
            r.child, _matches(r, "erd_ref", "erd_g")) for r in refs]
        return sql.SQL("{} DESC, {}").format(sql.SQL(" + ").join(counts), tail) if counts else tail
    raise ValueError(f"survivor {survivor!r}: say 'first', 'oldest:<column>', 'newest:<column>' or 'most_referenced'")


def preview(db: Database, plan: MigrationPlan | None, remediation: Remediation, options: ApplyOptions, *,
            survivor: str = "first", timeout: float = 60.0) -> RemediationPreview:
    """What ``remediation`` would delete or change, and what the foreign keys do with the rows that reference
    those; read-only."""
    change = _change_of(remediation)
    if survivor != "first" and not callable(change.where):
        raise ValueError(f"survivor= chooses which row of each duplicate group a dedupe keeps; {remediation.kind!r} "
                         "is not a dedupe")
    with db.dedicated() as conn:
        conn.execute("BEGIN TRANSACTION READ ONLY")
        try:
            conn.execute(lock_settings(timeout, timeout, local=True))
            facts = table_facts(conn, change.schema, change.table)
            refs = references(conn, facts, plan, deleting=change.sets is None)
            order = survivor_order(conn, facts, refs, survivor) if callable(change.where) else None
            rows, size = measure(conn, change, order)
            effects = []
            for ref in refs:
                if change.sets is not None and not set(ref.ref_columns) & set(change.columns):
                    continue  # an update that leaves the referenced key alone
                effects.append(ReferenceEffect(table=ref.child_label, constraint=ref.constraint,
                                               columns=list(ref.columns), action=ref.action,
                                               rows=_referencing_rows(conn, ref, change, order), step=ref.step))
            refused = None
            if change.sets is None:
                try:
                    reached = dependents(conn, facts, change.alias, change.condition(order))
                except KeepRefused as exc:
                    refused, reached = str(exc), []
                for d, (count, bytes_kept) in zip(reached, measure_each(conn, reached)):
                    size += bytes_kept
                    if d.depth >= 2:  # depth 1 is said by the foreign key that references the remediation's rows
                        effects.append(ReferenceEffect(table=d.facts.label, constraint=d.constraint, columns=[],
                                                       action="cascade" if d.action == "deleted" else "set null",
                                                       rows=count, depth=d.depth))
            sample = _sample(conn, change, order)
            triggers = triggers_of(conn, facts, deleting=change.sets is None)
        finally:
            conn.execute("ROLLBACK")
    return RemediationPreview(kind=remediation.kind, table=facts.label, action="delete" if change.sets is None
                              else "update", rows=rows, keep_bytes=size, keep_limit_bytes=options.keep_limit_bytes,
                              references=effects, keep_refused=refused, triggers=triggers,
                              survivor=survivor if callable(change.where) else None,
                              sample=sample)


def _sample(conn: psycopg.Connection[Any], change: RowChange, order: sql.Composable | None) -> list[dict[str, Any]]:
    alias = sql.Identifier(change.alias)
    if change.partition is not None and order is not None:  # a dedupe: whole groups, the kept row first
        keys, grouped = change.partition
        query = sql.SQL(
            "SELECT erd_n = 1, erd_row FROM (SELECT to_jsonb(erd_g.*) AS erd_row, row_number() OVER (PARTITION BY "
            "{keys} ORDER BY {order}) AS erd_n, count(*) OVER (PARTITION BY {keys}) AS erd_c, dense_rank() OVER "
            "(ORDER BY {keys}) AS erd_group FROM {rel} AS erd_g{where}) AS erd_s WHERE erd_c > 1 "
            "ORDER BY erd_group, erd_n LIMIT 20").format(keys=keys, order=order, rel=change.relation, where=grouped)
        return [{"this row": "kept" if keep else "deleted", **row} for keep, row in conn.execute(query)]
    query = sql.SQL("SELECT to_jsonb({}.*) FROM {} AS {} WHERE {} LIMIT 20").format(
        alias, change.relation, alias, change.condition(order))
    return [row for (row,) in conn.execute(query)]


def triggers_of(conn: psycopg.Connection[Any], facts: TableFacts, deleting: bool) -> list[str]:
    """The enabled user triggers and rules of the table that fire on DELETE (or UPDATE)."""
    return [name for (name,) in conn.execute(
        """SELECT 'trigger ' || quote_ident(t.tgname) FROM pg_trigger t
            WHERE t.tgrelid = %(oid)s AND NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgtype & %(bit)s <> 0
           UNION ALL
           SELECT 'rule ' || quote_ident(r.rulename) FROM pg_rewrite r
            WHERE r.ev_class = %(oid)s AND r.ev_type = %(event)s ORDER BY 1""",
        {"oid": facts.oid, "bit": 8 if deleting else 16, "event": "4" if deleting else "2"})]


def _reached(conn: psycopg.Connection[Any], facts: TableFacts, change: RowChange, order: sql.Composable | None,
             plan: MigrationPlan | None) -> list[Dependent]:
    """The rows of other tables the remediation's foreign keys' actions delete or overwrite, locked behind the
    remediation's own rows; ``KeepRefused`` where the run could not give them back."""
    if change.sets is None:
        lock_rows(conn, change, order)
        return dependents(conn, facts, change.alias, change.condition(order))
    for ref in references(conn, facts, plan, deleting=False):  # ON UPDATE actions on the columns it sets
        if ref.action in ("cascade", "set null", "set default") and set(ref.ref_columns) & set(change.columns):
            count = _referencing_rows(conn, ref, change, order)
            if count:
                raise KeepRefused(f"foreign key {display_name(ref.constraint)} of {ref.child_label} is ON UPDATE "
                                  f"{ref.action.upper()}: the remediation would change {count} of its rows, which "
                                  "the run does not keep")
    return []


def _change_of(remediation: Remediation) -> RowChange:
    if remediation.change is None:
        raise ValueError(f"remediation {remediation.kind!r} deletes or changes no row: there is nothing to preview "
                         "or keep")
    return remediation.change


def run_remediation(db: Database, store: RunStore, run_id: int, plan: MigrationPlan, own: Remediation,
                    options: ApplyOptions, *, value: Any = None, expression: str | None = None, keep: bool = True,
                    survivor: str = "first") -> int:
    """Run ``own`` (the run's own remediation) in its transaction, keeping the rows it deletes or overwrites in the
    same statement; record it. Returns the rows it changed."""
    params: list[Any] | None = None
    value_sql: sql.Composable | None = None
    if own.needs_value:
        if (value is None) == (expression is None):
            raise ValueError(f"remediation {own.kind!r} needs a value: remediate(r, value=...) or "
                             f"remediate(r, expression='SQL expression'). It runs {own.sql}")
        if expression is not None:
            # One expression node, re-rendered by PostgreSQL's own parser; parenthesised as a whole.
            value_sql = sql.SQL("({})").format(sql.SQL(normalize_expression(expression)))
        else:
            value_sql, params = sql.SQL("$1"), [value]
    change = own.change
    if survivor != "first" and (change is None or not callable(change.where)):
        raise ValueError(f"survivor= chooses which row of each duplicate group a dedupe keeps; {own.kind!r} is not a "
                         "dedupe")
    entry = AppliedStatement(phase="remediation", sql=own.sql or "", started=now_text(),
                             **({"params": {"$1": json_value(value)}} if params else {}))
    position = store.append_statement(run_id, entry)
    rows, kept, extra_kept, shown, fired = -1, None, 0, own.sql or "", []
    ran = shown
    try:
        with db.dedicated() as conn:
            # DROP INDEX CONCURRENTLY cannot run in a transaction block; everything else runs in one.
            with conn.transaction() if own.transactional else contextlib.nullcontext():
                conn.execute(lock_settings(options.lock_timeout, options.statement_timeout, local=own.transactional))
                if change is None:
                    composed = own.statement(value_sql)
                else:
                    facts = table_facts(conn, change.schema, change.table)
                    fired = triggers_of(conn, facts, deleting=change.sets is None)
                    order = survivor_order(conn, facts, references(conn, facts, plan, deleting=True), survivor) \
                        if callable(change.where) else None
                    if keep:
                        reached = _reached(conn, facts, change, order, plan)
                        count, size = measure(conn, change, order)
                        each = measure_each(conn, reached)
                        more, more_size = sum(n for n, _ in each), sum(b for _, b in each)
                        if size + more_size > options.keep_limit_bytes:
                            also = f" (and {more} rows of other tables its foreign keys reach)" if more else ""
                            raise KeepTooLarge(
                                f"{own.kind} would delete or change {count} rows of {facts.label}{also}, and keeping "
                                f"them takes {_size(size + more_size)}, above keep_limit_bytes "
                                f"({_size(options.keep_limit_bytes)}). Raise it (ApplyOptions(keep_limit_bytes=...)), "
                                "or run it with keep=False: then the rows are not kept and cannot be restored. "
                                "Nothing was changed.")
                        keep_dependents(conn, reached, store.schema, run_id, position)
                        composed = kept_statement(change, facts, store.schema, run_id, position, value=value_sql,
                                                  order=order)
                    else:
                        composed = change.statement(value_sql, order)
                    shown = change.statement(value_sql, order).as_string(conn)
                ran = composed.as_string(conn)
                # A raw cursor sends $1 as a server-side parameter and never scans the text for %
                # placeholders, so no identifier (a column named %(value)s) can turn into one.
                rows = psycopg.RawCursor(conn).execute(composed, params).rowcount
                if change is not None and keep:
                    kept = max(rows, 0)
                    extra_kept = drop_duplicates(conn, store.schema, run_id, position)
    except KeepTooLarge as exc:
        store.update_statement(run_id, position, outcome="rolled_back", finished=now_text(), error=str(exc))
        raise
    except KeepRefused as exc:
        message = (f"{exc}. Run it with keep=False to change them without keeping them (then it cannot be "
                   "restored), or change those rows first. Nothing was changed.")
        store.update_statement(run_id, position, outcome="rolled_back", finished=now_text(), error=message)
        raise KeepRefused(message) from exc
    except psycopg.Error as exc:
        message = getattr(exc.diag, "message_primary", None) or str(exc)
        store.update_statement(run_id, position, outcome="failed", finished=now_text(), error=message)
        raise RunStateError(f"the remediation failed and was rolled back: {message}") from exc
    except Exception as exc:  # a bad survivor column, ...: rolled back before it ran, and the record says so
        store.update_statement(run_id, position, outcome="rolled_back", finished=now_text(), error=str(exc))
        raise
    extra: dict[str, Any] = {"remediation": own.kind, **({"kept": kept} if kept is not None else {})}
    if extra_kept:
        extra["kept_reached"] = extra_kept  # rows of other tables its foreign keys' actions deleted or overwrote
    if change is not None and not keep:
        extra["not_kept"] = True
    if survivor != "first":
        extra["survivor"] = survivor
    if fired:
        extra["triggers_not_kept"] = fired  # what they changed elsewhere is not in remediation_rows
    if ran != shown:
        extra["as_shown"] = shown  # the remediation as it reads; ``sql`` is the statement that ran, keeping included
    store.update_statement(run_id, position, outcome="applied", finished=now_text(), rows=max(rows, 0), sql=ran,
                           **extra)
    return max(rows, 0)


def restore(db: Database, store: RunStore, run_id: int, position: int, options: ApplyOptions) -> int:
    """Put back what the remediation at ``position`` of ``applied_sql`` deleted or overwrote, in one transaction,
    and record it; returns the rows put back. Refuses (``RestoreRefused``), changing nothing, where the rows have
    changed since or a constraint forbids them now."""
    record = store.get(run_id)
    if not 0 <= position < len(record.applied_sql):
        raise RestoreRefused(f"run {run_id} has no statement {position} (it has {len(record.applied_sql)})")
    entry = record.applied_sql[position]
    if entry.phase != "remediation" or entry.outcome != "applied":
        raise RestoreRefused(f"statement {position} of run {run_id} is not an applied remediation ({entry.phase}, "
                             f"{entry.outcome}): only what a remediation removed can be restored")
    if entry.model_extra and entry.model_extra.get("not_kept"):
        raise RestoreRefused(f"statement {position} of run {run_id} ran with keep=False: its rows were not kept")
    mark = store.append_statement(run_id, AppliedStatement(phase="restore", sql=f"-- restore of statement {position}",
                                                           started=now_text(), restores=position))
    try:
        with db.dedicated() as conn, conn.transaction():
            conn.execute(lock_settings(options.lock_timeout, options.statement_timeout, local=True))
            done, ran = restore_rows(conn, store.schema, run_id, position)
    except (RestoreRefused, psycopg.Error) as exc:
        message = str(exc) if isinstance(exc, RestoreRefused) else \
            getattr(exc.diag, "message_primary", None) or str(exc)
        store.update_statement(run_id, mark, outcome="rolled_back", finished=now_text(), error=message)
        if isinstance(exc, RestoreRefused):
            raise
        raise RestoreRefused(f"the restore failed and was rolled back: {message}") from exc
    store.update_statement(run_id, mark, outcome="applied", finished=now_text(), rows=done, sql=ran)
    return done
