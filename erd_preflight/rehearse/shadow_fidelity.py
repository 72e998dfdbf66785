"""Where the shadow would behave unlike the target although no row of a table decides it, it is made to behave
like the target: what ``pg_dump --schema-only`` leaves out but a statement can see without reading a table's rows.

- A materialized view populated on the target is restored WITH NO DATA: ``REFRESH ... CONCURRENTLY`` (which needs a
  populated view) and a query of the view would fail in the shadow only. Each one populated on the target is
  refreshed once, after the restore; its tables are empty there, so it is cheap.
- A sequence starts again at 1: ``ALTER SEQUENCE s MAXVALUE`` or ``AS smallint`` below the target's position fails
  on the target only. The target's positions are copied before each rehearsal (one query on each side).

What cannot be made alike is returned, so the rehearsal does not take a refusal that comes from it as a verdict.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

# Materialized views populated on the target, in no particular order (the refresh retries in rounds).
_POPULATED_VIEWS = """
SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'm' AND c.relispopulated AND has_schema_privilege(n.oid, 'USAGE') ORDER BY c.oid
"""

# The position of each sequence the role may read (pg_sequences shows NULL for one it may not, or never called).
_POSITIONS = """
SELECT schemaname::text, sequencename::text, last_value FROM pg_sequences
 WHERE last_value IS NOT NULL AND has_schema_privilege(schemaname, 'USAGE')
"""


def populate_views(target: psycopg.Connection[Any], shadow_conninfo: str) -> tuple[tuple[str, ...], bool]:
    """Refreshes, in the shadow (``shadow_conninfo``: its database, as the role owning the views), every
    materialized view that is populated on the target. A view built on another is refreshed in a later round.
    Returns the views left unpopulated (their query fails on empty tables, or needs what the shadow lacks) and
    whether any view holds rows now (rows of empty tables' queries: not the target's)."""
    wanted = [(str(s), str(n)) for s, n in target.execute(_POPULATED_VIEWS).fetchall()]
    if not wanted:
        return (), False
    left = list(wanted)
    with psycopg.connect(shadow_conninfo, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '30s'")
        while left:
            failed = []
            for schema, name in left:
                try:
                    conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(schema, name)))
                except psycopg.Error:
                    failed.append((schema, name))
            if len(failed) == len(left):
                break
            left = failed
        done = [v for v in wanted if v not in left]
        rows = any(conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(*v))).fetchone()[0]
                   for v in done)
    return tuple(f"{s}.{n}" for s, n in left), rows


def sequence_positions(target: psycopg.Connection[Any]) -> tuple[list[str], list[int]]:
    """The target's sequences (qualified, quoted) and their positions, for ``set_positions``."""
    names, values = [], []
    for schema, name, value in target.execute(_POSITIONS).fetchall():
        names.append(sql.Identifier(schema, name).as_string(target))
        values.append(int(value))
    return names, values


def set_positions(conn: psycopg.Connection[Any], positions: tuple[list[str], list[int]]) -> None:
    """Each sequence of the shadow that the target has at the target's position (a sequence the shadow lacks, or
    one whose bounds refuse the value, keeps its own). ``setval`` is not undone by a rollback: the next rehearsal
    sets them again."""
    names, values = positions
    if not names:
        return
    conn.execute("""
        SELECT count(pg_catalog.setval(c.oid, p.value, true))
          FROM unnest(%s::text[], %s::int8[]) AS p(name, value)
          JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(p.name)
          JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
         WHERE c.relkind = 'S' AND p.value BETWEEN s.seqmin AND s.seqmax
           AND pg_catalog.has_sequence_privilege(c.oid, 'UPDATE')""", (names, values))
