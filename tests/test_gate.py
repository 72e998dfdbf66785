"""The gate's policy is a pure function of what the run read (``gate.decide(GateFacts)``): each rule is
proved here without a database; tests/test_apply.py proves the run reads the facts right."""

from __future__ import annotations

import datetime as dt

from erd_preflight.report.contract import PreflightCheckResult, PreflightReport, TargetRef
from erd_preflight.run.gate import GateFacts, decide
from erd_preflight.checks.remediation import Remediation
from erd_preflight.run.store import Confirmation

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


def _report(status: str = "clear", results: list | None = None, age: float = 10) -> PreflightReport:
    return PreflightReport(status=status, results=results or [], created_at=NOW - dt.timedelta(seconds=age))


def _facts(**changes) -> GateFacts:
    values = dict(run_id=7, status="clear", report=_report(), plan_fingerprint="aa", recorded_plan_fingerprint="aa",
                  report_fingerprint="aa", max_report_age=3600, now=NOW)
    values.update(changes)
    return GateFacts(**values)


def _codes(facts: GateFacts) -> list[str]:
    return [r.code for r in decide(facts).reasons]


def test_a_clear_fresh_report_of_this_plan_opens_the_gate():
    decision = decide(_facts())
    assert decision.can_apply and decision.reasons == [] and decision.report_age_seconds == 10


def test_each_reason_closes_the_gate_and_says_so():
    assert _codes(_facts(status="draft", report=None)) == ["NO_PREFLIGHT"]
    assert _codes(_facts(status="applied")) == ["RUN_STATUS"]
    assert _codes(_facts(report=_report(age=4000))) == ["STALE_REPORT"]
    assert _codes(_facts(status="stale")) == ["STALE_REPORT"]
    assert _codes(_facts(plan_fingerprint="bb")) == ["PLAN_CHANGED"]
    assert _codes(_facts(phase_error="step 2 depends on step 1")) == ["PHASE_ORDER"]
    assert _codes(_facts(applies_running=["pid 42 applies run 3"])) == ["APPLY_RUNNING"]
    for facts in (_facts(status="draft", report=None), _facts(plan_fingerprint="bb")):
        assert not decide(facts).can_apply


def test_a_blocked_report_lists_each_blocker_and_asks_for_remediations_only_then():
    blocker = PreflightCheckResult(check_id="UNIQUE_PRECHECK", severity="blocking", message="2 duplicates")
    asked: list[int] = []

    def remedies() -> list[Remediation]:
        asked.append(1)
        return [Remediation(kind="dedupe", title="delete duplicates", finding=0, check_id="UNIQUE_PRECHECK")]

    decision = decide(_facts(status="blocked", report=_report("blocked", [blocker])), remedies)
    assert [(r.code, r.finding) for r in decision.reasons] == [("BLOCKED", 0)]
    assert [r.kind for r in decision.remediations] == ["dedupe"] and asked == [1]
    decide(_facts(), remedies)
    assert asked == [1]


def test_a_large_non_concurrent_index_needs_a_confirmation_of_this_very_report():
    warning = PreflightCheckResult(check_id="NON_CONCURRENT_INDEX_WARNING", severity="warning", message="large",
                                   target_ref=TargetRef(kind="table", schema="s", table="big"),
                                   stats={"estimatedRows": 5_000_000, "totalBytes": 1 << 30})
    report = _report(results=[warning])
    assert _codes(_facts(report=report)) == ["CONFIRMATION_REQUIRED"]
    created = report.model_dump(mode="json", by_alias=True)["createdAt"]

    def confirmation(report_created_at: str) -> Confirmation:
        return Confirmation(table="s.big", step=1, what="index", estimated_rows=5_000_000, total_bytes=1 << 30,
                            confirmed_by="ana", db_user="postgres", confirmed_at=created,
                            report_created_at=report_created_at)

    assert decide(_facts(report=report, confirmations=[confirmation(created)])).can_apply
    assert _codes(_facts(report=report, confirmations=[confirmation("2020-01-01T00:00:00.000Z")])) == [
        "CONFIRMATION_REQUIRED"]


def test_earlier_failed_runs_of_the_plan_are_noted_without_closing_the_gate():
    decision = decide(_facts(previous_failures=[(3, "lock timeout")]))
    assert decision.can_apply and decision.notes == ["run 3 of this plan failed: lock timeout"]
