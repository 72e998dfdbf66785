"""``INSERT … ON CONFLICT DO NOTHING``: which of the rows an INSERT proposes PostgreSQL adds, read from the rows.

PostgreSQL's order (``ExecInsert``): each proposed row is converted to the table's types, then NOT NULL and CHECK
are checked on it, conflicting or not (a conflicting row that breaks a CHECK fails the statement); then the
arbiter indexes are probed, and a row whose key is already there (an old row, or a row this INSERT added before
it) is skipped; only the rows added fire the foreign keys' checks and the other unique indexes.

With several arbiter keys and one proposed row (a seed row: ``INSERT INTO "User" (...) VALUES (...) ON CONFLICT DO
NOTHING``), the row is added when no key conflicts. With one arbiter key (the conflict target's, or the table's
only unique key), the rows added are, exactly: those
with a NULL in the key (NULLS DISTINCT: they never conflict), and the first of the proposed rows with each key
that no old row has. The first in the INSERT's own order, which is known for a VALUES list (PostgreSQL reads it in
the order written) and not for a query: so a query's rows are modelled only where no two of them can share a key
(the table has no arbiter), and anything else (several arbiters, a partial or expression unique index, an
exclusion constraint, DO UPDATE) is left to the caller to name for a person.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast import ast, enums
from psycopg import sql

from ..rehearse.shadow_catalog import RelationSnapshot

__all__ = ["Arbiter", "arbiter_of", "kept_rows"]


@dataclass(frozen=True)
class Arbiter:
    """The key whose conflicts an ``ON CONFLICT DO NOTHING`` skips (no columns: the table has none to conflict on)."""

    columns: tuple[str, ...]
    nulls_not_distinct: bool = False
    # the other keys a lone proposed row must also find free (several arbiters, one row: no order of skips)
    others: tuple[tuple[tuple[str, ...], bool], ...] = ()


def arbiter_of(conflict: ast.OnConflictClause, relation: RelationSnapshot, values: bool,
               lone: bool = False) -> Arbiter | None:
    """The arbiter of ``conflict`` on ``relation`` as the rehearsal's catalog has it before the INSERT, or None
    when the rows it adds cannot be told exactly (``values``: the rows come from a VALUES list, in a known order;
    ``lone``: a VALUES list of one row, which several arbiter keys skip when any of them conflicts)."""
    if conflict.action != enums.OnConflictAction.ONCONFLICT_NOTHING:
        return None
    if any(kind == "x" for _, kind, _ in relation.constraints):
        return None  # an exclusion constraint: its conflicts are not equality of a key
    uniques = [ix for ix in relation.indexes if ix.unique]
    if any(ix.partial or ix.expressions or not ix.valid for ix in uniques):
        return None
    infer = conflict.infer
    if infer is not None:
        if infer.whereClause is not None:
            return None
        if infer.conname:
            chosen = [ix for ix in uniques if ix.name == infer.conname]
        else:
            elems = infer.indexElems or ()
            if any(not isinstance(e, ast.IndexElem) or e.name is None or e.collation or e.opclass for e in elems):
                return None
            wanted = {e.name for e in elems}
            chosen = [ix for ix in uniques if set(ix.columns) == wanted]
        if not chosen:
            return None  # PostgreSQL refuses it (no unique index matches): the rehearsal says so
    else:
        chosen = uniques
    keys = {(ix.columns, ix.nulls_not_distinct) for ix in chosen}
    if not keys:
        return Arbiter(())
    if len({columns for columns, _ in keys}) != 1:
        if lone:  # one proposed row: it is skipped when any key conflicts, whatever the order
            first, *rest = sorted(keys)
            return Arbiter(first[0], first[1], others=tuple(rest))
        return None  # several keys: which rows are skipped depends on the order of the skips
    if not values:
        return None
    columns = next(iter(keys))[0]
    return Arbiter(columns, any(nnd for _, nnd in keys))


def kept_rows(proposed: sql.Composable, before: sql.Composable, columns: list[str], arbiter: Arbiter) -> sql.Composable:
    """The rows of ``proposed`` (a relation of the table's ``columns``, in the INSERT's order) that PostgreSQL adds
    to the table whose rows are ``before``: a relation of the same columns."""
    listed = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    if not arbiter.columns:
        return sql.SQL("(SELECT {} FROM {} AS erd_proposed)").format(listed, proposed)
    if arbiter.others:
        free = sql.SQL(" AND ").join(_free(before, columns, nnd) for columns, nnd in
                                     ((arbiter.columns, arbiter.nulls_not_distinct), *arbiter.others))
        return sql.SQL("(SELECT {} FROM {} AS erd_first WHERE {})").format(listed, proposed, free)
    key = sql.SQL(", ").join(sql.Identifier(c) for c in arbiter.columns)
    equal = sql.SQL("IS NOT DISTINCT FROM" if arbiter.nulls_not_distinct else "=")
    same = sql.SQL(" AND ").join(sql.SQL("erd_old.{c} {op} erd_first.{c}").format(c=sql.Identifier(c), op=equal)
                                 for c in arbiter.columns)
    never = sql.SQL("false") if arbiter.nulls_not_distinct else sql.SQL(" OR ").join(
        sql.SQL("erd_first.{} IS NULL").format(sql.Identifier(c)) for c in arbiter.columns)
    return sql.SQL(
        "(SELECT {listed} FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY erd_order) AS erd_nth "
        "FROM (SELECT *, row_number() OVER () AS erd_order FROM {proposed} AS erd_proposed) AS erd_ordered) "
        "AS erd_first WHERE ({never}) OR (erd_nth = 1 AND NOT EXISTS (SELECT 1 FROM {before} AS erd_old "
        "WHERE {same})))").format(listed=listed, key=key, proposed=proposed, never=never, before=before, same=same)


def _free(before: sql.Composable, columns: tuple[str, ...], nulls_not_distinct: bool) -> sql.Composable:
    """A proposed row (erd_first) does not conflict on this key: a NULL in it (NULLS DISTINCT), or no old row has it."""
    equal = sql.SQL("IS NOT DISTINCT FROM" if nulls_not_distinct else "=")
    same = sql.SQL(" AND ").join(sql.SQL("erd_old.{c} {op} erd_first.{c}").format(c=sql.Identifier(c), op=equal)
                                 for c in columns)
    absent = sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS erd_old WHERE {})").format(before, same)
    if nulls_not_distinct:
        return sql.SQL("({})").format(absent)
    nulls = sql.SQL(" OR ").join(sql.SQL("erd_first.{} IS NULL").format(sql.Identifier(c)) for c in columns)
    return sql.SQL("({} OR {})").format(nulls, absent)
