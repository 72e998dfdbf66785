"""A query read through the views it names: each view replaced by its own query, as the rehearsal's catalog holds it.

A view reads its tables when it is read. A query over a view the plan has just made again (lemmy drops and
recreates ``post_aggregates_view``, then fills a materialized view from it) reads the target's tables, through a
definition only the rehearsal's catalog knows. Replaced by its definition (``pg_get_viewdef``, parsed by pglast),
the query names tables only, so preflight can ask of each whether the plan has changed it, and run the query on the
target as it will run at apply. PostgreSQL's planner does the same: a view is a subquery of its definition.
"""

from __future__ import annotations

import copy
from typing import Any

import pglast
from pglast import ast

from ..rehearse.shadow_catalog import CatalogSnapshot
from ..sqlparse import relations_replaced, subquery_for, walk_ast

_DEPTH = 16  # views over views deeper than this are left as they are (the query is then not decided)


def views_inlined(query: ast.Node, snapshot: CatalogSnapshot) -> ast.Node | None:
    """A copy of ``query`` with every view it reads replaced by the view's query (recursively); ``query`` itself when
    it reads no view. None when a view cannot be read that way (its definition does not parse as one query, views
    nest deeper than 16, or the query has a WITH, whose names may hide a view's)."""
    if not any(isinstance(n, ast.RangeVar) and _view(n, snapshot) is not None for n in walk_ast(query)):
        return query
    if any(isinstance(n, ast.WithClause) for n in walk_ast(query)):
        return None
    try:
        return _inlined(copy.deepcopy(query), snapshot, 0)
    except _Unreadable:
        return None


class _Unreadable(Exception):
    pass


def _view(node: ast.RangeVar, snapshot: CatalogSnapshot) -> Any:
    relation = snapshot.resolve(node.schemaname, node.relname)
    return relation if relation is not None and relation.kind == "v" else None


def _inlined(node: Any, snapshot: CatalogSnapshot, depth: int) -> Any:
    def view_query(read: ast.RangeVar) -> ast.Node | None:
        relation = _view(read, snapshot)
        if relation is None:
            return None
        if depth >= _DEPTH or not relation.definition:
            raise _Unreadable
        try:
            (raw,) = pglast.parse_sql(relation.definition)
        except (pglast.parser.ParseError, ValueError) as exc:
            raise _Unreadable from exc
        if not isinstance(raw.stmt, ast.SelectStmt) or any(isinstance(n, ast.WithClause) for n in walk_ast(raw.stmt)):
            raise _Unreadable
        return as_subquery(read, _inlined(raw.stmt, snapshot, depth + 1), [c.name for c in relation.columns])

    return relations_replaced(node, view_query)


def as_subquery(read: ast.RangeVar, query: ast.Node, columns: list[str]) -> ast.RangeSubselect:
    """``query`` in the place of the relation ``read`` names, under the name and column names it is read by."""
    return subquery_for(read, query, tuple(ast.String(sval=c) for c in columns))
