"""Preflight evaluates the plan's expressions (CHECK, USING, DEFAULT, an index's WHERE, a simulated UPDATE's
SET and WHERE) on real rows. An expression may call a function that acts: it takes an advisory lock, opens a
dblink connection and writes, ends a backend. READ ONLY stops none of those. So before a check runs, every
function, operator and cast in the SQL it evaluates is looked up in ``pg_proc``: a volatile one is refused
unless it is known to be harmless, and the check does not run.

PostgreSQL's parser (pglast) finds the calls; PostgreSQL's catalog says what each one is.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import pglast
import psycopg
from pglast import ast
from pglast.parser import ParseError
from pglast.stream import RawStream

from .sqlparse import walk_ast

# Volatile only because they return a new value on each call: they read no table and change nothing.
HARMLESS_VOLATILE = frozenset({
    "random", "random_normal", "gen_random_uuid", "uuidv4", "uuidv7", "uuid_generate_v1", "uuid_generate_v1mc",
    "uuid_generate_v4", "clock_timestamp", "timeofday",
    # waits, and statement_timeout bounds the wait
    "pg_sleep", "pg_sleep_for",
})

_PROCS = """
SELECT n.nspname, p.proname, p.provolatile::text,
       (SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' LIMIT 1)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = ANY(%s)
"""


def _harmless(schema: str, name: str, extension: str | None) -> bool:
    """Only PostgreSQL's own functions (and uuid-ossp's) of those names: a function of yours called random()
    in another schema is judged as what it is."""
    if name not in HARMLESS_VOLATILE:
        return False
    return schema == "pg_catalog" or (extension == "uuid-ossp" and name.startswith("uuid_generate_"))

_OPERATORS = """
SELECT n.nspname, o.oprname, p.proname, p.provolatile::text
  FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace JOIN pg_proc p ON p.oid = o.oprcode
 WHERE o.oprname = ANY(%s) AND p.provolatile = 'v'
"""

_CASTS = """
SELECT format_type(c.casttarget, NULL), p.proname
  FROM pg_cast c JOIN pg_proc p ON p.oid = c.castfunc
 WHERE p.provolatile = 'v' AND c.casttarget = ANY(
       SELECT t FROM unnest(%s::text[]) AS n, LATERAL (SELECT to_regtype(n) AS t) r WHERE t IS NOT NULL)
"""


def calls_in(text: str) -> tuple[set[tuple[str | None, str]], set[tuple[str | None, str]], set[str]]:
    """The functions, operators and cast targets a SQL text uses, as (schema or None, name) pairs."""
    functions: set[tuple[str | None, str]] = set()
    operators: set[tuple[str | None, str]] = set()
    casts: set[str] = set()
    for node in walk_ast([raw.stmt for raw in pglast.parse_sql(text)]):
        if isinstance(node, ast.FuncCall):
            names = [n.sval for n in node.funcname]
            functions.add((names[-2] if len(names) > 1 else None, names[-1]))
        elif isinstance(node, ast.A_Expr) and node.name:
            names = [n.sval for n in node.name]
            if not names[-1].replace("_", "").isalpha():  # BETWEEN, LIKE... are spelled operators below them
                operators.add((names[-2] if len(names) > 1 else None, names[-1]))
        elif isinstance(node, ast.TypeCast):
            casts.add(RawStream()(node.typeName))
    return functions, operators, casts


# unsafe_calls' answers per catalog key (where, fingerprint, role, search_path: a cast's type name is resolved on
# the search_path) and text, kept by the text's digest (a check's SQL can be long, and 4,096 of them were kept
# whole): while the catalog has not changed, neither has the answer
_ANSWERS: OrderedDict[tuple[tuple[str, ...], bytes], list[str]] = OrderedDict()
_ANSWERS_LOCK = threading.Lock()


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def known_unsafe_calls(key: tuple[str, ...], text: str) -> list[str] | None:
    """The answer ``unsafe_calls`` gave for ``text`` under this catalog key, if it gave one."""
    with _ANSWERS_LOCK:
        found = _ANSWERS.get((key, _digest(text)))
    return list(found) if found is not None else None


def unsafe_calls(conn: psycopg.Connection[Any], text: str, *, key: tuple[str, ...] | None = None) -> list[str]:
    """The volatile functions (by operator or cast too) that ``text`` would call, other than the harmless
    ones; empty when everything it calls is immutable or stable. A function name is judged by every
    function of that name the catalog has (and the schema, when the call names one): PostgreSQL picks the
    overload at run time, so one volatile overload is enough to refuse. With the catalog's ``key``
    (``Catalog.key``), the answer is kept for ``known_unsafe_calls``."""
    answer = _unsafe_calls(conn, text)
    if key is not None:
        with _ANSWERS_LOCK:
            _ANSWERS[(key, _digest(text))] = answer
            while len(_ANSWERS) > 4096:
                _ANSWERS.popitem(last=False)
    return list(answer)


def _unsafe_calls(conn: psycopg.Connection[Any], text: str) -> list[str]:
    try:
        functions, operators, casts = calls_in(text)
    except ParseError:
        return []  # not parseable here: PostgreSQL will refuse it too, and the check reports that
    unsafe: set[str] = set()
    if functions:
        rows = conn.execute(_PROCS, (sorted({name for _, name in functions}),)).fetchall()
        for schema, name in functions:
            for found_schema, found_name, volatility, extension in rows:
                if found_name == name and (schema is None or schema == found_schema) and volatility == "v" \
                        and not _harmless(found_schema, found_name, extension):
                    unsafe.add(f"{name}()" if schema is None else f"{schema}.{name}()")
    if operators:
        rows = conn.execute(_OPERATORS, (sorted({name for _, name in operators}),)).fetchall()
        for schema, name in operators:
            for found_schema, found_name, function, _ in rows:
                if found_name == name and (schema is None or schema == found_schema) \
                        and function not in HARMLESS_VOLATILE:
                    unsafe.add(f"operator {name} ({function}())")
    if casts:
        for target, function in conn.execute(_CASTS, (sorted(casts),)).fetchall():
            if function not in HARMLESS_VOLATILE:
                unsafe.add(f"the cast to {target} ({function}())")
    return sorted(unsafe)
