"""The apply gate (spec 1.1.04d): Apply opens only for a clear, fresh report of this exact plan, with every
confirmation it needs. Otherwise the decision lists each reason, and what to do about it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..checks import NON_CONCURRENT_INDEX_WARNING
from ..report.contract import ACKNOWLEDGE_STEP, PreflightReport, StatementLock
from ..checks.remediation import Remediation
from .store import Acknowledgement as Acknowledgement  # stored in migration_run.confirmations
from .store import Confirmation as Confirmation

if TYPE_CHECKING:
    import pandas as pd

ReasonCode = Literal[
    "NO_PREFLIGHT", "BLOCKED", "STALE_REPORT", "PLAN_CHANGED", "CONFIRMATION_REQUIRED", "ACKNOWLEDGEMENT_REQUIRED",
    "RUN_STATUS", "PHASE_ORDER", "APPLY_RUNNING",
]


class GateReason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    message: str
    finding: int | None = None


class ConfirmationRequest(BaseModel):
    """What the user must confirm, with what they are shown: a non-concurrent index build on a large table, or a
    step whose estimated write-blocking lock is held longer than ``ApplyOptions.max_blocking_lock``."""

    model_config = ConfigDict(frozen=True)

    table: str  # schema.table as shown, the name to type
    step: int
    step_summary: str
    estimated_rows: int
    total_bytes: int
    lock: str = "SHARE (writes wait for the whole build)"
    alternative: str | None = None
    confirmed: bool = False
    kind: Literal["non_concurrent_index", "lock_budget"] = "non_concurrent_index"
    hold_seconds: float | None = None  # the estimated hold shown (lock_budget)


class AcknowledgementRequest(BaseModel):
    """A step preflight cannot verify: a person acknowledges it before Apply opens."""

    model_config = ConfigDict(frozen=True)

    step: int
    step_summary: str
    finding: int  # index in the report's results
    message: str
    acknowledged: bool = False


class GateDecision(BaseModel):
    """Whether Apply may run, and if not, every reason and remediation."""

    model_config = ConfigDict(frozen=True)

    can_apply: bool
    run_id: int
    status: str
    reasons: list[GateReason] = Field(default_factory=list)
    remediations: list[Remediation] = Field(default_factory=list)
    confirmations_needed: list[ConfirmationRequest] = Field(default_factory=list)
    acknowledgements_needed: list[AcknowledgementRequest] = Field(default_factory=list)
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
        from ..notebook.display import gate_html

        return gate_html(self)


def _table_key(name: str) -> str:
    return name.replace('"', "").lower()


def confirmation_requests(report: PreflightReport, confirmed: set[str],
                          max_blocking_lock: float | None = None) -> list[ConfirmationRequest]:
    """One request per non-concurrent index build on a large table in ``report``, and one per step and table
    whose estimated write-blocking hold (``report.locks``) is above ``max_blocking_lock`` seconds."""
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
    if max_blocking_lock is None or report.locks is None:
        return requests
    summaries = {run.step: run.step_summary for run in report.checks}
    worst: dict[tuple[int, str], StatementLock] = {}
    for held in report.locks.statements:
        key = (held.step, held.relation)
        if held.blocks_writes and held.hold_seconds > max_blocking_lock and (
                key not in worst or held.hold_seconds > worst[key].hold_seconds):
            worst[key] = held
    for (step, relation), held in sorted(worst.items()):
        if any(r.step == step and _table_key(r.table) == _table_key(relation) for r in requests):
            continue  # its index build is confirmed already by that request
        requests.append(ConfirmationRequest(
            table=relation, step=step, step_summary=summaries.get(step, ""), estimated_rows=held.rows,
            total_bytes=0, kind="lock_budget", hold_seconds=held.hold_seconds,
            lock=f"{held.mode}: {held.blocks} wait ≈ {held.hold_seconds:.1f} s ({held.hold_low_seconds:.1f}–"
                 f"{held.hold_high_seconds:.1f} s), {held.work}",
            confirmed=_table_key(relation) in confirmed))
    return requests


def acknowledgement_requests(report: PreflightReport, acknowledged: set[int]) -> list[AcknowledgementRequest]:
    """One request per step that a finding of ``report`` names as not verifiable (its stats hold acknowledgeStep),
    in step order; several findings of one step are one request."""
    summaries = {run.step: run.step_summary for run in report.checks}
    requests: dict[int, AcknowledgementRequest] = {}
    for index, finding in enumerate(report.results):
        step = (finding.stats or {}).get(ACKNOWLEDGE_STEP)
        if finding.severity != "warning" or step is None or int(step) in requests:
            continue
        step = int(step)
        requests[step] = AcknowledgementRequest(step=step, step_summary=summaries.get(step, ""), finding=index,
                                                message=finding.message, acknowledged=step in acknowledged)
    return [requests[s] for s in sorted(requests)]


def acknowledged_steps(report: PreflightReport | None, confirmations: list[Acknowledgement | Confirmation]) -> set[int]:
    """The steps acknowledged against this very report (an acknowledgement of an older report does not count:
    the next preflight may say something else about the step)."""
    if report is None:
        return set()
    created = report.model_dump(mode="json", by_alias=True)["createdAt"]
    return {c.step for c in confirmations if isinstance(c, Acknowledgement) and c.report_created_at == created}


def matches_table(given: str, table: str) -> bool:
    """A typed confirmation names the table: ``schema.table``, or just ``table``."""
    given_key, table_key = _table_key(given.strip()), _table_key(table)
    return given_key == table_key or given_key == table_key.split(".", 1)[-1]


class GateFacts(BaseModel):
    """Everything the gate decides on, read by the run beforehand: ``decide`` reads nothing else."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    run_id: int
    status: str
    error: str | None = None
    report: PreflightReport | None = None
    plan_fingerprint: str  # of the plan in hand
    recorded_plan_fingerprint: str  # of the plan the run was created with
    report_fingerprint: str | None = None  # of the plan the report judged
    confirmations: list[Acknowledgement | Confirmation] = Field(default_factory=list)
    phase_error: str | None = None  # the PhaseOrderError compiling the phases raised, if any
    applies_running: list[str] = Field(default_factory=list)  # other sessions applying a plan, described
    previous_failures: list[tuple[int, str | None]] = Field(default_factory=list)  # (run id, error)
    max_report_age: float
    max_blocking_lock: float | None = None
    now: dt.datetime


def confirmed_tables(report: PreflightReport | None, confirmations: list[Acknowledgement | Confirmation]) -> set[str]:
    """The tables confirmed against this very report (a confirmation of an older report does not count)."""
    if report is None:
        return set()
    created = report.model_dump(mode="json", by_alias=True)["createdAt"]
    return {_table_key(c.table) for c in confirmations
            if isinstance(c, Confirmation) and c.report_created_at == created}


def decide(facts: GateFacts, remediations: Callable[[], list[Remediation]] = list) -> GateDecision:
    """The gate's policy, a pure function of ``facts``: Apply opens only for a clear, fresh report of this
    exact plan, with every confirmation it needs, when no other apply runs. ``remediations`` is called only
    when there is something to remedy."""
    report, status = facts.report, facts.status
    reasons: list[GateReason] = []
    age = (facts.now - report.created_at).total_seconds() if report else None
    if status == "draft" or report is None:
        reasons.append(GateReason(code="NO_PREFLIGHT", message="no preflight has run for this plan: run "
                                  "run.preflight() first."))
    elif status == "applied":
        reasons.append(GateReason(code="RUN_STATUS", message=f"run {facts.run_id} is already applied."))
    elif status == "applying":
        reasons.append(GateReason(code="RUN_STATUS", message=f"run {facts.run_id} is being applied right now."))
    elif status == "failed":
        reasons.append(GateReason(code="RUN_STATUS", message=f"run {facts.run_id} failed: {facts.error} Run the "
                                  "preflight again before another apply."))
    if report is not None and report.blocked:
        for index, finding in enumerate(report.results):
            if finding.severity == "blocking":
                reasons.append(GateReason(code="BLOCKED", finding=index,
                                          message=f"{finding.check_id}: {finding.message}"))
    fingerprints = {facts.recorded_plan_fingerprint, facts.plan_fingerprint}
    if report is not None and (facts.report_fingerprint not in fingerprints or len(fingerprints) > 1):
        reasons.append(GateReason(code="PLAN_CHANGED", message="the plan changed after its preflight "
                                  f"(report for {str(facts.report_fingerprint)[:12]}, plan is "
                                  f"{facts.plan_fingerprint[:12]}): run the preflight again."))
    if age is not None and age > facts.max_report_age and status in ("clear", "stale", "blocked"):
        reasons.append(GateReason(code="STALE_REPORT", message=f"the report is {age:.0f} s old, older than "
                                  f"max_report_age {facts.max_report_age:g} s: the data may have "
                                  "changed; run the preflight again."))
    elif status == "stale" and not any(r.code == "PLAN_CHANGED" for r in reasons):
        reasons.append(GateReason(code="STALE_REPORT", message="the report is stale (data was changed by a "
                                  "remediation, or the plan changed): run the preflight again."))
    requests = confirmation_requests(report, confirmed_tables(report, facts.confirmations),
                                     facts.max_blocking_lock) if report else []
    for request in requests:
        if not request.confirmed and request.kind == "lock_budget":
            reasons.append(GateReason(
                code="CONFIRMATION_REQUIRED",
                message=f"step {request.step} holds {request.lock} on {request.table} (~{request.estimated_rows:,} "
                        f"rows), longer than max_blocking_lock {facts.max_blocking_lock:g} s (estimated on this "
                        f"database): confirm with apply(confirm_large_non_concurrent=[{request.table!r}]), or apply "
                        "it when writers can wait, or in a form that does not block them (a rewrite: expand and "
                        "contract, see docs/locks.md)."))
        elif not request.confirmed:
            reasons.append(GateReason(
                code="CONFIRMATION_REQUIRED",
                message=f"step {request.step} builds an index on large table {request.table} "
                        f"(~{request.estimated_rows:,} rows) without CONCURRENTLY, blocking writes for the whole "
                        f"build: confirm with apply(confirm_large_non_concurrent=[{request.table!r}]) or build "
                        "it CONCURRENTLY."))
    acknowledgements = acknowledgement_requests(report, acknowledged_steps(report, facts.confirmations)) \
        if report and not report.blocked else []
    for ask in acknowledgements:
        if not ask.acknowledged:
            reasons.append(GateReason(
                code="ACKNOWLEDGEMENT_REQUIRED", finding=ask.finding,
                message=f"preflight cannot verify step {ask.step} ({ask.step_summary}): finding {ask.finding} says why. "
                        f"Review the step, then acknowledge it: apply(acknowledge=[{ask.step}]), or --acknowledge "
                        f"{ask.step} in the CLI."))
    if facts.phase_error is not None:
        reasons.append(GateReason(code="PHASE_ORDER", message=facts.phase_error))
    unconfirmed = any(not r.confirmed for r in requests)
    remedies: list[Remediation] = []
    if report is not None and (report.blocked or unconfirmed):
        remedies = [r for r in remediations() if r.kind != "use_concurrently" or unconfirmed]
    reasons += [GateReason(code="APPLY_RUNNING", message=text) for text in facts.applies_running]
    notes = [f"run {run_id} of this plan failed: {error}" for run_id, error in facts.previous_failures]
    return GateDecision(
        can_apply=not reasons and status == "clear", run_id=facts.run_id, status=status, reasons=reasons,
        remediations=remedies, confirmations_needed=requests, acknowledgements_needed=acknowledgements, notes=notes,
        plan_fingerprint=facts.plan_fingerprint, report_fingerprint=facts.report_fingerprint,
        report_created_at=report.created_at if report else None,
        report_age_seconds=round(age, 3) if age is not None else None,
        max_report_age_seconds=facts.max_report_age, decided_at=facts.now,
    )
