"""How each kind of probe is run: duplicates (by hash when the key is wide), orphans, conversions (by the type's input function when a cast would not say which rows fail). A part of Executor."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from ..checks import (
    CastProbe,
    Check,
    DuplicatesProbe,
    OrphansProbe,
    WIDE_KEY,
    all_not_null,
    null_datum,
)
from ..report.contract import Outcome, SampleColumn
from ..plan import display_name


class CheckOutcome:
    """What one check found: its outcome, message, counts and sample rows."""

    def __init__(self, outcome: Outcome, message: str, stats: dict[str, int | float],
                 rows: list[dict[str, Any]] | None = None, columns: list[SampleColumn] | None = None,
                 acknowledge: bool = False) -> None:
        self.outcome, self.message, self.stats, self.rows, self.columns = outcome, message, stats, rows, columns
        # a warning about what preflight cannot verify: the gate needs a person to acknowledge the step
        self.acknowledge = acknowledge


# keys past which the hashes are sorted in parallel
PARALLEL_SORT_KEYS = 200_000
TEXT_OID, VARCHAR_OID = 25, 1043


class ProbeRuns:
    """A part of ``Executor``: its methods, in a module of their own."""

    def _duplicates(self, position: int, check: Check, probe: DuplicatesProbe) -> CheckOutcome:
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in probe.columns)
        # Grouping and counting needs the memory an index build would get (maintenance_work_mem).
        self.conn.execute("SELECT set_config('work_mem', %s, true)", (self.work_mem,))
        where = sql.SQL(" WHERE {}").format(probe.where) if probe.where is not None else sql.SQL("")
        if probe.nulls_not_distinct:
            dup = sql.SQL("n > 1")
            null_flag = sql.SQL("")
        else:
            # UNIQUE ignores rows with a NULL in the key: their groups never count as duplicates.
            dup = sql.SQL("n > 1 AND NOT has_null")
            null_flag = sql.SQL(", ({}) AS has_null").format(sql.SQL(" OR ").join(
                null_datum(sql.Identifier(c)) for c in probe.columns))
        fast = self._distinct_by_hash(probe, self._dup_counts.pop(position, None))
        if fast is not None:
            total, wide_keys = fast
            stats = {"violations": 0, "duplicateGroups": 0, "totalRows": total}
            if wide_keys:
                return self._wide_keys(check, probe, stats, wide_keys)
            return self._judge(check, stats, lambda: ([], []))
        wide = probe.wide if probe.wide is not None else sql.SQL("false")
        query = sql.SQL(
            "SELECT coalesce(sum(n), 0)::bigint, count(*) FILTER (WHERE {dup}), "
            "coalesce(sum(n) FILTER (WHERE {dup}), 0)::bigint, count(*) FILTER (WHERE wide) "
            "FROM (SELECT count(*) AS n, bool_or({wide}) AS wide{null_flag} FROM {src}{where} GROUP BY {keys}) AS g"
        ).format(dup=dup, null_flag=null_flag, src=probe.source.from_item(), where=where, keys=keys, wide=wide)
        total, groups, rows, wide_keys = self.conn.execute(query).fetchone()  # type: ignore[misc]
        stats = {"violations": int(rows), "duplicateGroups": int(groups), "totalRows": int(total)}
        if wide_keys and not rows:
            return self._wide_keys(check, probe, stats, int(wide_keys))
        count_name = "duplicate_rows"
        while count_name in probe.columns:
            count_name += "_"

        def sampler() -> Any:
            return self._samples(sql.SQL("{} ORDER BY count(*) DESC, {} LIMIT {}").format(
                probe.violations(count_name), keys, self._limit()))

        return self._judge(check, stats, sampler)

    def _distinct_by_hash(self, probe: DuplicatesProbe,
                          counted: tuple[int, int, int] | None = None) -> tuple[int, int] | None:
        """(rows, wide keys) when every key that counts is distinct, proved by sorting 8-byte hashes of the keys
        (no duplicate: as many distinct hashes as keys). None when that cannot prove it (a duplicate, a hash
        collision, a type without a hash function): the exact grouping decides. Sorting 8-byte values is about
        twice as fast as grouping the keys themselves, and a passing plan is the common case."""
        if self.conn.info.server_version < 140000:  # hash_record_extended is PostgreSQL 14+
            return None
        # all rows, the rows whose key counts, and the wide keys: counted by a shared scan of this snapshot, or here
        total, keyed, wide_keys = counted or self.conn.execute(probe.counted()).fetchone()  # type: ignore[misc]
        if probe.where is None:
            self._totals[probe.source.key] = int(total)
        self.conn.execute("SAVEPOINT erd_preflight_hash")
        try:
            if keyed > PARALLEL_SORT_KEYS:
                # a parallel sort (workers sort parts, the leader merges) is a sixth faster at 1M keys and a third
                # at 20M; the planner's default costs keep it to one process
                self.conn.execute("SELECT set_config('parallel_setup_cost', '0', true), "
                                  "set_config('parallel_tuple_cost', '0', true)")
            # One key of type text or varchar (as the result describes it: a domain is described by its base type):
            # its own hash function, a sixth faster than forming a record of it per row.
            types = [d.type_code for d in self.conn.execute(probe.key_types()).description or []]
            text_key = types in ([TEXT_OID], [VARCHAR_OID]) and not probe.nulls_not_distinct
            query = probe.distinct_text_hashes() if text_key else probe.distinct_hashes()
            distinct = self.conn.execute(query).fetchone()[0]  # type: ignore[index]
        except (pgerrors.UndefinedFunction, pgerrors.FeatureNotSupported):
            distinct = None  # no hash function agrees with the type's equality
        # undoes the settings above too: the other checks plan as they would
        self.conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_hash")
        self.conn.execute("RELEASE SAVEPOINT erd_preflight_hash")
        return (int(total), int(wide_keys)) if distinct == keyed else None

    def _wide_keys(self, check: Check, probe: DuplicatesProbe, stats: dict[str, Any], wide_keys: int) -> CheckOutcome:
        shown = ", ".join(display_name(c) for c in probe.columns)
        return CheckOutcome("warning", f"cannot verify step {check.step} before apply: {wide_keys:,} key"
                        f"{'s' if wide_keys != 1 else ''} ({shown}) of {display_name(probe.source.alias)} "
                        f"{'are' if wide_keys != 1 else 'is'} more than {WIDE_KEY:,} bytes as stored, near btree's "
                        "index row limit (2,704 bytes after compression; SQLSTATE 54000 past it). Acknowledge this "
                        "step, or index a hash of the value.", {**stats, "wideKeys": wide_keys}, acknowledge=True)

    # --- orphans ------------------------------------------------------------------------------------------

    def _orphans(self, check: Check, probe: OrphansProbe) -> CheckOutcome:
        found = "erd_preflight_found"
        parent_keys = sql.SQL(", ").join(sql.Identifier(r) for r in probe.ref_columns)
        # The count is probe.condition() as a hash anti-join, as PostgreSQL's own validation does: each table is
        # read once. The samples use the condition as written (the oracle tests hold the two together).
        known = self._totals.get(probe.child.key)
        if known is not None:
            # The child's rows were counted in this snapshot by another check's scan: only the orphans are counted,
            # by the condition itself (NOT EXISTS: a hash anti-join, which emits no row per matched child).
            orphans = self.conn.execute(sql.SQL("SELECT count(*) FROM {child} AS c WHERE {condition}").format(
                child=probe.child.relation, condition=probe.condition())).fetchone()[0]  # type: ignore[index]
            total = known
        else:
            query = sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE ({keyed} AND p.{found} IS NULL) OR {partial}) "
                "FROM {child} AS c LEFT JOIN (SELECT {pkeys}, true AS {found} FROM {parent}) AS p ON {on}"
            ).format(keyed=all_not_null(probe.columns, "c"), found=sql.Identifier(found), partial=probe.partial(),
                     child=probe.child.relation, pkeys=parent_keys, parent=probe.parent.from_item(), on=probe.matches())
            total, orphans = self.conn.execute(query).fetchone()  # type: ignore[misc]
            self._totals[probe.child.key] = int(total)
        stats = {"violations": int(orphans), "totalRows": int(total)}

        def sampler() -> Any:
            return self._samples(sql.SQL("{} LIMIT {}").format(probe.violations(), self._limit()))

        return self._judge(check, stats, sampler)

    # --- casts --------------------------------------------------------------------------------------------

    def _cast(self, position: int, check: Check, probe: CastProbe) -> CheckOutcome:
        converted, violation = probe.converted(), probe.violation()
        if position not in self._shared and len(self._group_of(position)) > 1:
            self._scan_group(position)
        if position in self._shared:  # every value converted in the shared scan
            counted = self._shared.pop(position)
            if isinstance(counted, BaseException):
                raise counted
            return self._judge_cast(check, probe, {**counted, "firstError": ""}, violation)
        self.conn.execute("SAVEPOINT erd_preflight_cast")
        try:
            # Evaluating the conversion for every row is PostgreSQL's own test: if this succeeds, so does the step.
            # count(expr) must evaluate expr for every row; a constant-folded predicate would not.
            total, _converted, bad = self.conn.execute(sql.SQL(
                "SELECT count(*), count({}), count(*) FILTER (WHERE {}) FROM {}"
            ).format(converted, violation, probe.source.from_item())).fetchone()  # type: ignore[misc]
            return self._judge_cast(check, probe, {"violations": int(bad), "totalRows": int(total), "firstError": ""},
                                    violation)
        # psycopg.DataError is SQLSTATE class 22: every data exception (bad text, out-of-range dates, overflow).
        except psycopg.DataError as exc:
            first_error = exc.diag.message_primary or str(exc)
            self.conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_cast")
        if probe.input_text is not None and self._input_function_converts(probe.type):
            return self._cast_by_input(check, probe, violation)
        return self._cast_rows(check, probe, converted, violation, first_error)

    def _input_function_converts(self, type_text: str) -> bool:
        """Whether text becomes ``type_text`` through that type's input function (PostgreSQL 16+ can then test
        each value with pg_input_is_valid): no cast function from text, no domain, not a string type."""
        if self.conn.info.server_version < 160000:
            return False
        row = self.conn.execute(
            "SELECT t.typtype <> 'd' AND t.typcategory <> 'S' AND NOT EXISTS (SELECT 1 FROM pg_cast c WHERE "
            "c.castsource = 'text'::regtype AND c.casttarget = t.oid) FROM pg_type t WHERE t.oid = to_regtype(%s)",
            (type_text,)).fetchone()
        return bool(row and row[0])

    def _cast_by_input(self, check: Check, probe: CastProbe, violation: sql.Composable) -> CheckOutcome:
        """Exact counts where some value does not convert, without raising: pg_input_is_valid() on each value's
        text; the values that do convert are then held to the column's other rules (NOT NULL, length)."""
        text = sql.SQL("CAST(({}) AS text)").format(probe.input_text)
        valid = sql.SQL("pg_input_is_valid({}, {})").format(text, sql.Literal(probe.type))
        # NULL converts to NULL (pg_input_is_valid of NULL is NULL): only the column's own rules judge it
        failing = sql.SQL("CASE WHEN {} IS NULL OR {} THEN {} ELSE true END").format(text, valid, violation)
        total, bad, first = self.conn.execute(sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE {failing}), "
            "(SELECT message FROM {source}, pg_input_error_info({text}, {type}) WHERE NOT {valid} LIMIT 1) FROM {source}"
        ).format(failing=failing, source=probe.source.from_item(), text=text, type=sql.Literal(probe.type),
                 valid=valid)).fetchone()  # type: ignore[misc]
        return self._judge_cast(check, probe, {"violations": int(bad), "totalRows": int(total),
                                               "firstError": f" (first error: {first})" if first else ""}, failing)

    def _judge_cast(self, check: Check, probe: CastProbe, stats: dict[str, Any], failing: sql.Composable) -> CheckOutcome:
        """A cast's verdict from its counts; its samples are the rows ``failing`` flags. ``firstError`` fills the
        message only, never the contract's numeric stats."""
        outcome = self._judge(check, stats, lambda: self._samples(sql.SQL("SELECT * FROM {} WHERE {} LIMIT {}").format(
            probe.source.from_item(), failing, self._limit())))
        outcome.stats.pop("firstError", None)
        return outcome

    def _cast_rows(self, check: Check, probe: CastProbe, converted: sql.Composable, violation: sql.Composable,
                   first_error: str, cap: int | None = None) -> CheckOutcome:
        """Some value fails to convert: count the failing rows one by one (a subtransaction per row)."""
        body_marker = "$erd_preflight$"
        source = probe.source
        text_of = sql.SQL("{} {}").format(converted, violation).as_string(self.conn)
        if source.derived or body_marker in text_of:
            # Rows of a derived relation have no ctid to revisit one by one: report the failure, not a count.
            return CheckOutcome("blocking", check.message(
                f"converting {display_name(source.alias, probe.column)} to {probe.type} fails for at least one "
                f"row (PostgreSQL: {first_error}); the step would fail. Fix those values or the USING expression.",
                {}), {"violations": 1})
        table = source.relation
        block = sql.SQL(
            "DO $erd_preflight$ DECLARE r record; bad bigint := 0; total bigint := 0; failed boolean; "
            "is_null boolean; ctids tid[] := '{{}}'; cap int := {cap}; BEGIN "
            "FOR r IN SELECT ctid AS erd_ctid FROM {table} LOOP total := total + 1; "
            "BEGIN SELECT {converted} IS NOT DISTINCT FROM NULL, {violation} INTO is_null, failed FROM {table} AS {alias} "
            "WHERE {alias}.ctid = r.erd_ctid; "
            "EXCEPTION WHEN OTHERS THEN failed := true; END; "
            "IF failed THEN bad := bad + 1; IF cardinality(ctids) < cap THEN ctids := ctids || r.erd_ctid; END IF; "
            "END IF; END LOOP; "
            "PERFORM set_config('erd_preflight.bad', bad::text, true), "
            "set_config('erd_preflight.total', total::text, true), "
            "set_config('erd_preflight.ctids', ctids::text, true); END $erd_preflight$"
        ).format(cap=sql.Literal(self.options.sample_cap if cap is None else cap), table=table, converted=converted, violation=violation,
                 alias=sql.Identifier(source.alias))
        self.conn.execute(block)
        bad, total, ctids = self.conn.execute(
            "SELECT current_setting('erd_preflight.bad')::bigint, current_setting('erd_preflight.total')::bigint, "
            "current_setting('erd_preflight.ctids')"
        ).fetchone()  # type: ignore[misc]
        stats = {"violations": int(bad), "totalRows": int(total), "firstError": f" (first error: {first_error})"}

        def sampler() -> Any:
            return self._samples(sql.SQL("SELECT * FROM {} WHERE ctid = ANY(%s::tid[]) ORDER BY ctid").format(
                source.from_item()), (ctids,))

        outcome = self._judge(check, stats, sampler)
        outcome.stats.pop("firstError", None)
        return outcome
