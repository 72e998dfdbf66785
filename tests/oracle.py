"""PostgreSQL as the oracle: does it accept these statements on these rows (in a transaction rolled back), and does
preflight's verdict agree?"""

from __future__ import annotations

import os
from typing import Any

import psycopg

# How many examples each hypothesis oracle test takes, before its share: what .ci/run affords on two cores with both
# servers side by side. A deeper run: ERD_PREFLIGHT_ORACLE_EXAMPLES=300 python -m pytest tests/test_dml_oracle.py
ORACLE_EXAMPLES = 60


def examples(share: int = 1) -> int:
    """The examples of an oracle test that takes 1/``share`` of ERD_PREFLIGHT_ORACLE_EXAMPLES (ORACLE_EXAMPLES by
    default): the slowest tests take a half or a third."""
    return max(5, int(os.environ.get("ERD_PREFLIGHT_ORACLE_EXAMPLES", str(ORACLE_EXAMPLES))) // share)


REFUSED: list[str] = []  # PostgreSQL's last refusal, for a failing assertion's message


def postgres_accepts(conninfo: str, statements: list[str]) -> bool:
    with psycopg.connect(conninfo) as conn:
        try:
            for statement in statements:
                conn.execute(statement)
            return True
        except psycopg.errors.DatabaseError as exc:
            REFUSED[:] = [f"{exc.sqlstate}: {exc}"]
            return False
        finally:
            conn.rollback()


def verdict(report: Any) -> str:
    """blocked; unverified (clear, but a step is left for a person to acknowledge); or clear."""
    if report.blocked:
        return "blocked"
    return "unverified" if any((r.stats or {}).get("acknowledgeStep") is not None for r in report.results) \
        else "clear"


def assert_agrees(report: Any, accepted: bool, *context: Any) -> str:
    """No false block, no false clear; a step left for a person promises neither way. Returns the verdict."""
    found = verdict(report)
    if found == "blocked":
        assert not accepted, ("false block", *context, report.summary())
    elif found == "clear":
        assert accepted, ("false clear", *context, report.summary())
    return found
