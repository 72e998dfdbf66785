"""Names as PostgreSQL treats them: identifiers (63 bytes at most), quoting for people, the names PostgreSQL
picks itself (makeObjectName), and the base of every model that refuses bad input with a PlanError."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pglast.keywords import RESERVED_KEYWORDS
from psycopg import sql
from pydantic import BaseModel, ValidationError

from ..errors import PlanError

if TYPE_CHECKING:
    pass


MAX_IDENTIFIER_BYTES = 63


def check_identifier(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "":
        raise ValueError("an identifier cannot be empty")
    if "\x00" in value:
        raise ValueError("an identifier cannot contain a NUL character")
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"identifier {value!r} is {len(value.encode())} bytes; PostgreSQL keeps only "
            f"{MAX_IDENTIFIER_BYTES} and would silently truncate it: shorten the name"
        )
    return value


def ident(*parts: str | None) -> sql.Identifier:
    return sql.Identifier(*[p for p in parts if p is not None])


def idents(names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")


def display_name(*parts: str | None) -> str:
    """A name for people: quoted only where PostgreSQL would need quotes."""
    shown = []
    for p in parts:
        if p is None:
            continue
        plain = _PLAIN.match(p) and p not in RESERVED_KEYWORDS
        shown.append(p if plain else sql.Identifier(p).as_string())
    return ".".join(shown)


def qualified_text(schema: str | None, name: str) -> str:
    return display_name(schema, name)


def plan_error(model: str, exc: ValidationError) -> PlanError:
    """A pydantic validation error as a PlanError naming each refused field, e.g. ``CreateTable.constraints[0]``."""
    problems = []
    for error in exc.errors():
        where = model
        for part in error["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return PlanError("; ".join(problems))


class Refusing(BaseModel):
    """A model whose invalid input raises PlanError (naming the field), the error every plan source raises."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise plan_error(type(self).__name__, exc) from None


NAMEDATALEN = 64


def clip_bytes(text: str, limit: int) -> str:
    """At most ``limit`` bytes of ``text``, never cutting a character (pg_mbcliplen)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore")


def make_object_name(name1: str, name2: str | None, label: str) -> str:
    """PostgreSQL's makeObjectName: ``name1_name2_label``, shortening the longer part until it fits 63 bytes."""
    overhead = len(label) + 1 + (1 if name2 else 0)
    avail = NAMEDATALEN - 1 - overhead
    n1, n2 = len(name1.encode()), len((name2 or "").encode())
    while n1 + n2 > avail:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    parts = [clip_bytes(name1, n1)] + ([clip_bytes(name2, n2)] if name2 else []) + [label]
    return "_".join(parts)
