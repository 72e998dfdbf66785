"""The apply gate (spec 1.1.04d): Apply opens only for a clear, fresh report of this exact plan, with every
confirmation it needs. Otherwise the decision lists each reason, and what to do about it."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from .checks import NON_CONCURRENT_INDEX_WARNING
from .contract import PreflightReport
from .remediation import Remediation

if TYPE_CHECKING:
    import pandas as pd

ReasonCode = Literal[
    "NO_PREFLIGHT", "BLOCKED", "STALE_REPORT", "PLAN_CHANGED", "CONFIRMATION_REQUIRED", "RUN_STATUS", "PHASE_ORDER",
    "APPLY_RUNNING",
]


class GateReason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    message: str
    finding: int | None = None


class ConfirmationRequest(BaseModel):
    """A non-concurrent index build on a large table: what the user must confirm, with what they are shown."""

    model_config = ConfigDict(frozen=True)

    table: str  # schema.table as shown, the name to type
    step: int
    step_summary: str
    estimated_rows: int
    total_bytes: int
    lock: str = "SHARE (writes wait for the whole build)"
    alternative: str | None = None
    confirmed: bool = False


class Confirmation(BaseModel):
    """A stored confirmation: who, when, what, and the estimate they saw."""

    model_config = ConfigDict(frozen=True)

    table: str
    step: int
    what: str
    estimated_rows: int
    total_bytes: int
    confirmed_by: str | None
    db_user: str | None
    confirmed_at: str
    report_created_at: str | None


class GateDecision(BaseModel):
    """Whether Apply may run, and if not, every reason and remediation."""

    model_config = ConfigDict(frozen=True)

    can_apply: bool
    run_id: int
    status: str
    reasons: list[GateReason] = Field(default_factory=list)
    remediations: list[Remediation] = Field(default_factory=list)
    confirmations_needed: list[ConfirmationRequest] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    plan_fingerprint: str
    report_fingerprint: str | None = None
    report_created_at: dt.datetime | None = None
    report_age_seconds: float | None = None
    max_report_age_seconds: float
    decided_at: dt.datetime

    def summary(self) -> str:
        head = f"run {self.run_id}: Apply {'allowed' if self.can_apply else 'blocked'} (status {self.status})"
        lines = [head]
        lines += [f"  - {r.code}: {r.message}" for r in self.reasons]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def reasons_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([r.model_dump() for r in self.reasons], columns=["code", "message", "finding"])

    def remediations_frame(self) -> pd.DataFrame:
        import pandas as pd

        columns = ["finding", "check_id", "kind", "title", "sql", "runnable"]
        return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in self.remediations], columns=columns)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        from .display import gate_html

        return gate_html(self)


def _table_key(name: str) -> str:
    return name.replace('"', "").lower()


def confirmation_requests(report: PreflightReport, confirmed: set[str]) -> list[ConfirmationRequest]:
    """One request per non-concurrent index build on a large table in ``report``."""
    requests = []
    steps = {run.finding: run for run in report.checks if run.finding is not None}
    for index, finding in enumerate(report.results):
        if finding.check_id != NON_CONCURRENT_INDEX_WARNING or finding.target_ref is None:
            continue
        ref = finding.target_ref
        table = ".".join(p for p in (ref.schema_, ref.table) if p)
        run = steps.get(index)
        stats = finding.stats or {}
        requests.append(ConfirmationRequest(
            table=table, step=run.step if run else 0, step_summary=run.step_summary if run else "",
            estimated_rows=int(stats.get("estimatedRows", 0)), total_bytes=int(stats.get("totalBytes", 0)),
            confirmed=_table_key(table) in confirmed,
        ))
    return requests


def matches_table(given: str, table: str) -> bool:
    """A typed confirmation names the table: ``schema.table``, or just ``table``."""
    given_key, table_key = _table_key(given.strip()), _table_key(table)
    return given_key == table_key or given_key == table_key.split(".", 1)[-1]
