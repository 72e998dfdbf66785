"""The apply's locks, transaction by transaction, as PostgreSQL takes them: the apply's statements run on a scratch
copy of the shadow (``shadow.scratch_database``), each apply transaction committed there, so a lock one transaction
took is gone when the next begins, as at apply. (In the schema-only rehearsal every statement runs in one
transaction: a lock taken early is still held later, and a later statement that needs a weaker one cannot be told
apart.) Used when the apply has more than one transaction touching an existing relation; a plan that is one
transaction reads its locks from the rehearsal itself."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import psycopg

from ..plan.phases import ApplyPhases
from .shadow import REHEARSAL_ROLE, REHEARSAL_STATEMENT_TIMEOUT, ShadowUnavailable, scratch_database, shadow_for
from .rehearsal import as_applied, plain_form, repeatable
from .shadow_catalog import ImpactReader, StatementImpact, read_relation_files


def needs_own_transactions(phases: ApplyPhases) -> bool:
    """Whether the apply runs in more than one transaction (phases B and C, or several A transactions)."""
    return len(phases.units()) > 1


def rehearse_locks(target: psycopg.Connection[Any], phases: ApplyPhases, *, catalog: str | None,
                   search_path: str) -> list[StatementImpact]:
    """Each statement's impact (locks, work) as it runs in its own apply transaction on a scratch copy of the
    shadow. Raises ShadowUnavailable when the copy cannot be made or a statement fails there."""
    shadow = shadow_for(target, catalog)
    key = (shadow, tuple((s.phase, s.unit, s.sql) for s in phases.statements), search_path)
    with _lock:
        known = _measured.get(key)
    if known is not None:
        return known
    out = _measure(shadow, phases, search_path)
    if all(repeatable(s.sql) for s in phases.statements):  # DDL on the same empty schema: the same answer
        with _lock:
            _measured[key] = out
            while len(_measured) > 16:
                _measured.pop(next(iter(_measured)))
    return out


# Measured applies by (shadow, statements, search_path), in this process (a new shadow for a changed catalog).
_measured: dict[tuple[Any, ...], list[StatementImpact]] = {}
_lock = threading.Lock()


def _measure(shadow: Any, phases: ApplyPhases, search_path: str) -> list[StatementImpact]:
    out: list[StatementImpact] = []
    with scratch_database(shadow, f"erd_locks_{uuid.uuid4().hex[:12]}") as url, \
            psycopg.connect(psycopg.conninfo.make_conninfo(url, user=REHEARSAL_ROLE), autocommit=True) as conn:
        conn.execute("SELECT set_config('search_path', %s, false), set_config('standard_conforming_strings', 'on', "
                     "false), set_config('statement_timeout', %s, false), set_config('lock_timeout', '10s', false)",
                     (search_path, f"{int(REHEARSAL_STATEMENT_TIMEOUT * 1000)}ms"))
        for group in phases.units():
            files = read_relation_files(conn)  # what earlier transactions made exists now, as at apply
            if conn.info.server_version >= 150000:
                conn.execute("SELECT pg_stat_force_next_flush()")  # counts start at 0 in each transaction
            conn.execute("BEGIN")
            reader = ImpactReader(files)
            reader.start(conn)
            try:
                for statement in group:
                    text = plain_form(statement.sql)  # a concurrent build runs in the transaction, as in the rehearsal
                    if text is None:
                        out.append(StatementImpact(step=statement.step, statement=statement.sql, locks=(),
                                                   measured=False))
                        continue
                    conn.execute(text)
                    out.append(as_applied(reader.after(conn, statement.step, statement.sql), statement.sql, text))
            except psycopg.Error as exc:
                conn.execute("ROLLBACK")
                raise ShadowUnavailable(f"step {group[0].step} failed on the copy the locks are read on "
                                        f"({' '.join(str(exc).split())})") from exc
            conn.execute("COMMIT")
    return out
