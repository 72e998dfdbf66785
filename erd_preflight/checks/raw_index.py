"""A CREATE INDEX the plan does not model (expressions, an operator class or collation, INCLUDE, ordering) still
fails on rows in known ways, each checked on the rows the index covers (its WHERE):

- an index expression that raises for some row (a cast, a division, a function) fails the build: every key is
  evaluated, and an error is PostgreSQL's own;
- a unique index fails on two rows with equal keys (rows with a NULL key are not compared unless NULLS NOT
  DISTINCT), grouped on the key values as the expressions compute them;
- a btree key wider than about 2,000 bytes may pass the index row limit (SQLSTATE 54000): such rows are named for
  a person to acknowledge, as are the uniqueness of keys under an operator class or a collation (whose equality
  may not be the type's).
"""

from __future__ import annotations

from pglast import ast
from psycopg import sql

from ..report.contract import TargetRef
from ..plan import RawSQL
from .model import (
    OBJECT_PRECHECK,
    WIDE_KEY,
    UNIQUE_PRECHECK,
    Check,
    DuplicatesProbe,
    RowsProbe,
    verdict,
)
from .expressions import index_keys
from .state import PlanContext


def index_statement(step: RawSQL) -> ast.IndexStmt | None:
    """The CREATE INDEX of a raw step, when it is one (on a table, not ONLY)."""
    if len(step.parsed) == 1 and isinstance(step.parsed[0], ast.IndexStmt) and step.parsed[0].relation.inh:
        return step.parsed[0]
    return None


def raw_index_checks(index: int, step: RawSQL, stmt: ast.IndexStmt, context: PlanContext) -> list[Check] | None:
    """The checks of a raw CREATE INDEX; None when its rows cannot be read here (then it is acknowledged)."""
    state = context.state(stmt.relation.schemaname, stmt.relation.relname)
    if state is None or state.unknown or state.added_by:
        return None
    if state.info is None:
        if state.inserted_by:
            return None
        return [verdict(OBJECT_PRECHECK, index, step, "pass", f"{state.label} is created by step "
                        f"{state.created_step} and is empty here: the index has no rows to build on.")]
    source = state.source(own_rows=True)  # an index of an inheritance parent covers its own rows
    keyed, names, keys = index_keys(stmt, source, f"index{index}")
    shown = ", ".join(keys)
    target = TargetRef(kind="index", schema=state.schema, table=state.name, name=stmt.idxname)
    every = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    checks = [Check(
        check_id=OBJECT_PRECHECK, step=index, step_summary=step.summary(), target=target,
        # num_nulls reads every key, so each expression is computed for each row (and never true below 0)
        probe=RowsProbe(source=keyed, predicate=sql.SQL("num_nulls({}) < 0").format(every)),
        fail="{violations:row|rows}", ok=f"every key ({shown}) of the index computes on the rows of {state.label} it covers "
        "({totalRows} rows).", notes=state.history_notes())]
    method = (stmt.accessMethod or "btree").lower()
    if method == "btree":
        checks.append(Check(
            check_id=OBJECT_PRECHECK, step=index, step_summary=step.summary(), target=target,
            probe=RowsProbe(source=keyed, predicate=sql.SQL("pg_column_size(ROW({})) > {}").format(
                every, sql.Literal(WIDE_KEY))), failure="warning", acknowledge=True,
            fail=f"cannot verify step {index} before apply: {{violations:row|rows}} of {state.label} {{violations:~has|have}} an index key "
            f"({shown}) wider than {WIDE_KEY:,} bytes, near btree's index row limit (2,704 bytes after "
            "compression; SQLSTATE 54000). Acknowledge this step, or index a hash of the value.",
            ok=f"no key ({shown}) is near btree's index row limit ({{totalRows}} rows).", notes=state.history_notes()))
    if stmt.unique:
        if any(p.opclass or p.collation for p in stmt.indexParams):
            checks.append(verdict(UNIQUE_PRECHECK, index, step, "warning",
                                  f"cannot verify step {index} before apply: the unique index compares ({shown}) under "
                                  "an operator class or collation whose equality preflight does not know. PostgreSQL "
                                  "checks it at apply; acknowledge this step.", target=target, acknowledge=True))
        else:
            nnd = bool(stmt.nulls_not_distinct)
            rule = "" if nnd else " (rows with a NULL in the key are not compared, as PostgreSQL does)"
            checks.append(Check(
                check_id=UNIQUE_PRECHECK, step=index, step_summary=step.summary(), target=target,
                probe=DuplicatesProbe(source=keyed, columns=names, nulls_not_distinct=nnd),
                fail=f"{{duplicateGroups:value|values}} of ({shown}) {{duplicateGroups:~occurs|occur}} more than once among the rows of {state.label} "
                f"the index covers, in {{violations:row|rows}}{rule}; the unique index would fail. Dedupe them first.",
                ok=f"({shown}) is unique among the rows of {state.label} the index covers ({{totalRows}} rows){rule}.",
                notes=state.history_notes()))
    return checks
