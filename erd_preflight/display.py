"""Rich notebook display: reports, findings, plans, phases, gate decisions and runs as HTML.

Everything here is plain HTML plus pandas Stylers, so a saved notebook (or its nbconvert HTML export) is a
readable audit record without any widget. Every piece of text that came from a database or a plan (table
names, messages, sample values) is HTML-escaped: identifiers are hostile input too.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .checks import human_bytes

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

    from .contract import PreflightCheckResult, PreflightReport
    from .gate import GateDecision
    from .phases import ApplyPhases
    from .plan import MigrationPlan
    from .store import RunRecord

# outcome / severity / status -> (mark, foreground, background)
MARKS: dict[str, tuple[str, str, str]] = {
    "pass": ("✓ pass", "#14532d", "#dcfce7"),
    "warning": ("⚠ warning", "#713f12", "#fef9c3"),
    "blocking": ("✖ blocking", "#7f1d1d", "#fee2e2"),
    "skipped": ("– skipped", "#374151", "#f3f4f6"),
}
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "clear": ("#14532d", "#dcfce7"),
    "applied": ("#14532d", "#dcfce7"),
    "blocked": ("#7f1d1d", "#fee2e2"),
    "failed": ("#7f1d1d", "#fee2e2"),
    "stale": ("#713f12", "#fef9c3"),
    "applying": ("#1e3a8a", "#dbeafe"),
    "draft": ("#374151", "#f3f4f6"),
}
SAMPLE_ROWS_SHOWN = 10


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def mark(outcome: str) -> str:
    """``✓ pass``, ``⚠ warning``, ``✖ blocking``, ``– skipped``: readable without colour too."""
    return MARKS.get(outcome, (outcome, "", ""))[0]


def badge(text: str, status: str) -> str:
    fg, bg = STATUS_COLOURS.get(status, MARKS.get(status, ("", "#374151", "#f3f4f6"))[1:])
    return (f'<span class="erd-badge" style="display:inline-block;padding:1px 8px;border-radius:10px;'
            f'font-weight:600;color:{fg};background:{bg}">{esc(text)}</span>')


def _uuid(kind: str, payload: Any) -> str:
    # Stylers put their CSS under a uuid: derive it from the content, so a re-run notebook renders the same
    # HTML (nbval compares it) while two different tables on one page never share CSS ids.
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"erd_{kind}_{digest}"


def _outcome_colours(column: pd.Series) -> list[str]:
    colours = []
    for value in column:
        key = next((k for k, (m, _, _) in MARKS.items() if m == value), None)
        colours.append(f"color:{MARKS[key][1]};background-color:{MARKS[key][2]};font-weight:600" if key else "")
    return colours


def outcome_styler(frame: pd.DataFrame, column: str, kind: str) -> Styler:
    """``frame`` with ``column`` (an outcome or severity) replaced by its mark and coloured."""
    shown = frame.copy()
    shown[column] = [mark(v) for v in shown[column]]
    styler = shown.style.hide(axis="index").apply(_outcome_colours, subset=[column])
    styler = styler.set_properties(subset=[column], **{"white-space": "nowrap"})
    styler = styler.format(escape="html", na_rep="", precision=1).set_uuid(_uuid(kind, shown.to_dict("split")))
    return styler.set_table_styles([
        {"selector": "th", "props": "text-align:left;"},
        {"selector": "td", "props": "text-align:left;vertical-align:top;"},
    ])


def checklist_styler(report: PreflightReport) -> Styler:
    """The checklist (every check, passes and skips included) with pass / warning / blocking marks."""
    frame = report.checklist_frame().drop(columns=["stepSummary"])
    return outcome_styler(frame, "outcome", "checklist")


def findings_styler(report: PreflightReport) -> Styler:
    return outcome_styler(report.findings_frame(), "severity", "findings")


def frame_html(frame: pd.DataFrame, *, max_rows: int | None = SAMPLE_ROWS_SHOWN) -> str:
    """A DataFrame as an escaped HTML table (pandas escapes cell values by default)."""
    more = ""
    if max_rows is not None and len(frame) > max_rows:
        more = f"<div style='color:#6b7280'>… {len(frame) - max_rows:,} more rows</div>"
        frame = frame.head(max_rows)
    shown = frame.astype(object).map(lambda v: "NULL" if _is_null(v) else v)
    return shown.to_html(index=False, border=0, classes="erd-table") + more


def _is_null(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(value is None or pd.isna(value))
    except (TypeError, ValueError):  # arrays and lists: not a scalar NULL
        return False


def _stats_text(stats: dict[str, Any] | None) -> str:
    if not stats:
        return ""
    return ", ".join(f"{esc(k)} {v:,}" if isinstance(v, int) else f"{esc(k)} {esc(v)}" for k, v in stats.items())


def finding_html(finding: PreflightCheckResult, samples: pd.DataFrame | None = None, *, index: int | None = None,
                 step: int | None = None, open_: bool = True) -> str:
    """One finding: its mark, target, message, counts and first sample rows."""
    from .frames import rows_frame

    if samples is None and finding.sample_rows:
        samples = rows_frame(finding.sample_rows, None)
    target = finding.target_ref.label() if finding.target_ref else ""
    head = (f"{badge(mark(finding.severity), finding.severity)} <b>{esc(finding.check_id)}</b>"
            + (f" · step {step}" if step is not None else "") + (f" · {esc(target)}" if target else "")
            + (f" <span style='color:#6b7280'>(finding {index})</span>" if index is not None else ""))
    body = [f"<div style='margin:4px 0'>{esc(finding.message)}</div>"]
    stats = _stats_text(finding.stats)
    if stats:
        body.append(f"<div style='color:#374151'>{stats}</div>")
    if samples is not None and len(samples):
        body.append(f"<div style='margin-top:4px'>sample violating rows ({len(samples)} kept):</div>")
        body.append(frame_html(samples))
    return (f"<details class='erd-finding' {'open' if open_ else ''} style='margin:6px 0'><summary>{head}</summary>"
            f"<div style='margin-left:18px'>{''.join(body)}</div></details>")


def report_html(report: PreflightReport) -> str:
    """The whole report: status, counts, the coloured checklist, then each finding with its sample rows."""
    ran = [c for c in report.checks if c.outcome != "skipped"]
    head = (f"<div>{badge('preflight ' + report.status.upper(), report.status)} "
            f"{len(ran)} of {len(report.checks)} checks ran · {len(report.blockers)} blocking · "
            f"{len(report.warnings)} warnings · created {esc(report.model_dump(mode='json', by_alias=True)['createdAt'])}"
            "</div>")
    parts = [head]
    if report.checks:
        parts.append("<h4 style='margin:8px 0 4px'>Checklist</h4>")
        parts.append(checklist_styler(report).to_html())
    steps = {run.finding: run.step for run in report.checks if run.finding is not None}
    if report.results:
        parts.append("<h4 style='margin:8px 0 4px'>Findings</h4>")
        for index, finding in enumerate(report.results):
            samples = report.samples(index) if finding.sample_rows else None
            parts.append(finding_html(finding, samples, index=index, step=steps.get(index),
                                      open_=finding.severity == "blocking"))
    return f"<div class='erd-report'>{''.join(parts)}</div>"


def plan_frame(plan: MigrationPlan) -> pd.DataFrame:
    """The plan's steps, each with the phase apply runs it in (compiled without a database)."""
    import pandas as pd

    from .errors import PhaseOrderError
    from .phases import compile_phases, phase_of

    phases: dict[int, list[str]] = {}
    try:
        for statement in compile_phases(plan).statements:
            seen = phases.setdefault(statement.step, [])
            if statement.phase not in seen:
                seen.append(statement.phase)
    except PhaseOrderError:  # each step's own phase; plan_html says why apply would refuse the order
        phases = {i: [phase_of(step, i in plan.outside_transaction)] for i, step in enumerate(plan.steps, start=1)}
    rows = [{"step": i, "phase": "+".join(phases.get(i, [])), "summary": step.summary(), "sql": step.sql()}
            for i, step in enumerate(plan.steps, start=1)]
    return pd.DataFrame(rows, columns=["step", "phase", "summary", "sql"])


def plan_html(plan: MigrationPlan) -> str:
    from .errors import PhaseOrderError
    from .phases import compile_phases

    head = (f"<div><b>plan {esc(plan.name or '')}</b> · {len(plan.steps)} steps · fingerprint "
            f"<code>{plan.fingerprint[:12]}</code></div>")
    notes = "".join(f"<div style='color:#6b7280'>note: {esc(n)}</div>" for n in plan.notes)
    try:
        compile_phases(plan)
    except PhaseOrderError as exc:
        notes += f"<div style='color:#7f1d1d'>apply would refuse this order: {esc(exc)}</div>"
    return f"<div class='erd-plan'>{head}{notes}{frame_html(plan_frame(plan), max_rows=None)}</div>"


def phases_html(phases: ApplyPhases) -> str:
    from .phases import PHASE_TITLES

    parts = []
    for name in ("A", "B", "C"):
        statements = phases.phase(name)  # type: ignore[arg-type]
        if not statements:
            continue
        rows = "".join(
            f"<tr><td>{s.step}</td><td>{'in ' + s.phase + str(s.unit) if s.transactional else 'alone'}</td>"
            f"<td><code>{esc(s.sql)}</code></td><td>{esc(s.purpose)}</td></tr>" for s in statements)
        parts.append(f"<h4 style='margin:8px 0 4px'>{esc(PHASE_TITLES[name])}</h4><table class='erd-table'>"
                     f"<tr><th>step</th><th>transaction</th><th>sql</th><th>purpose</th></tr>{rows}</table>")
    timeouts = ""
    if phases.lock_timeout is not None:
        timeouts = (f"<div style='color:#6b7280'>every statement: lock_timeout {phases.lock_timeout:g} s, "
                    f"statement_timeout {phases.statement_timeout:g} s</div>")
    return f"<div class='erd-phases'>{''.join(parts) or 'nothing to apply'}{timeouts}</div>"


def _list(items: Iterable[str]) -> str:
    rows = "".join(f"<li>{item}</li>" for item in items)
    return f"<ul style='margin:4px 0'>{rows}</ul>" if rows else ""


def gate_html(decision: GateDecision, *, remediations: bool = True) -> str:
    """Apply allowed or blocked, every reason, the confirmations needed, the remediations and notes."""
    verdict = "Apply allowed" if decision.can_apply else "Apply blocked"
    parts = [f"<div>{badge(verdict, 'clear' if decision.can_apply else 'blocked')} run {decision.run_id} · "
             f"status {esc(decision.status)}</div>"]
    parts.append(_list(f"<b>{esc(r.code)}</b>: {esc(r.message)}" for r in decision.reasons))
    if decision.confirmations_needed:
        rows = "".join(
            f"<tr><td>{esc(q.table)}</td><td>{q.step}</td><td>{q.estimated_rows:,}</td>"
            f"<td>{human_bytes(q.total_bytes)}</td><td>{esc(q.lock)}</td>"
            f"<td>{'✓ confirmed' if q.confirmed else 'needed'}</td></tr>" for q in decision.confirmations_needed)
        parts.append("<div>large-table index builds without CONCURRENTLY:</div><table class='erd-table'><tr>"
                     "<th>table</th><th>step</th><th>estimated rows</th><th>size</th><th>lock</th>"
                     f"<th>confirmation</th></tr>{rows}</table>")
    if decision.acknowledgements_needed:
        rows = "".join(
            f"<tr><td>{q.step}</td><td>{esc(q.step_summary)}</td><td>{q.finding}</td>"
            f"<td>{'✓ acknowledged' if q.acknowledged else 'needed'}</td></tr>"
            for q in decision.acknowledgements_needed)
        parts.append("<div>steps preflight cannot verify (a person acknowledges each):</div><table class='erd-table'>"
                     f"<tr><th>step</th><th>summary</th><th>finding</th><th>acknowledgement</th></tr>{rows}</table>")
    if remediations and decision.remediations:
        parts.append("<div>what to do:</div>")
        parts.append(_list(
            f"{esc(r.title)}" + (f"<pre style='margin:2px 0'>{esc(r.sql)}</pre>" if r.sql else "")
            for r in decision.remediations))
    parts.append(_list(f"note: {esc(n)}" for n in decision.notes))
    return f"<div class='erd-gate'>{''.join(parts)}</div>"


def statements_frame(record: RunRecord) -> pd.DataFrame:
    import pandas as pd

    columns = ["phase", "step", "attempt", "outcome", "rows", "sql", "error", "started", "finished"]
    frame = pd.DataFrame([{c: getattr(s, c) for c in columns} for s in record.applied_sql], columns=columns)
    return frame.astype({"step": "Int64", "attempt": "Int64", "rows": "Int64"})


def run_html(record: RunRecord) -> str:
    """A stored run: status, who and where, the status history, every statement applied, confirmations."""
    parts = [f"<div>{badge(record.status, record.status)} <b>run {record.id}</b> {esc(record.name or '')} · "
             f"{len(record.plan)} steps · plan <code>{record.plan_fingerprint[:12]}</code> · "
             f"db user {esc(record.db_user)} · os user {esc(record.os_user)} · server {esc(record.server_version)}"
             "</div>"]
    if record.error:
        parts.append(f"<pre style='color:#7f1d1d;white-space:pre-wrap'>{esc(record.error)}</pre>")
    if record.status_history:
        items = (f"{esc(h.at)} <b>{esc(h.status)}</b> {esc(h.note or '')}"
                 for h in record.status_history)
        parts.append("<div>status history:</div>" + _list(items))
    if record.confirmations:
        items = (f"step {c.step} acknowledged by {esc(c.acknowledged_by)} at {esc(c.acknowledged_at)}: "
                 f"{esc(c.finding)}" if c.get("kind") == "acknowledgement" else
                 f"{esc(c.table)} confirmed by {esc(c.confirmed_by)} at {esc(c.confirmed_at)} "
                 f"(~{c.estimated_rows:,} rows shown)" for c in record.confirmations)
        parts.append("<div>confirmations and acknowledgements:</div>" + _list(items))
    if record.applied_sql:
        parts.append("<div>statements run:</div>" + frame_html(statements_frame(record), max_rows=None))
    return f"<div class='erd-run'>{''.join(parts)}</div>"


def runs_styler(frame: pd.DataFrame) -> Styler:
    """The audit trail (``runs(db)``) with its status column coloured."""
    def colour(column: pd.Series) -> list[str]:
        return [f"color:{STATUS_COLOURS.get(v, ('', ''))[0]};background-color:{STATUS_COLOURS.get(v, ('', ''))[1]};"
                "font-weight:600" if v in STATUS_COLOURS else "" for v in column]

    styler = frame.style.apply(colour, subset=["status"]).format(escape="html", na_rep="")
    return styler.set_uuid(_uuid("runs", frame.reset_index().to_dict("split")))


# ---------------------------------------------------------------------------------------------------------
# The panel's pieces (widgets.py holds no HTML of its own).


def note_html(text: str) -> str:
    """A quiet line where there is nothing to show yet."""
    return f"<i>{esc(text)}</i>"


def error_html(action: str, message: str, details: str) -> str:
    return ("<div class='erd-error' style='border:1px solid #fca5a5;background:#fef2f2;color:#7f1d1d;"
            f"padding:6px 10px;border-radius:4px'><b>{esc(action)} failed</b><pre style='white-space:pre-wrap;"
            f"margin:4px 0'>{esc(message)}</pre><details><summary>details</summary><pre>{esc(details)}</pre>"
            "</details></div>")


def remediation_sql_html(remediation: Any) -> str:
    return (f"<div>{esc(remediation.title)}</div><pre style='margin:2px 0'>{esc(remediation.sql)}</pre>"
            + ("" if remediation.runnable else "<div style='color:#6b7280'>shown, not run by this tool</div>"))


def confirmation_request_html(request: Any, alternative: str | None) -> str:
    return (f"<div><b>step {request.step}</b>: {esc(request.step_summary)}</div>"
            f"<table class='erd-table'><tr><th>table</th><td>{esc(request.table)}</td></tr>"
            f"<tr><th>estimated rows</th><td>{request.estimated_rows:,}</td></tr>"
            f"<tr><th>size</th><td>{human_bytes(request.total_bytes)}</td></tr>"
            f"<tr><th>lock</th><td>{esc(request.lock)}</td></tr>"
            + (f"<tr><th>CONCURRENTLY alternative</th><td><pre style='margin:0'>{esc(alternative)}</pre></td></tr>"
               if alternative else "") + "</table>")


def acknowledgement_request_html(request: Any) -> str:
    return (f"<div><b>step {request.step}</b>: {esc(request.step_summary)}</div>"
            f"<div style='color:#713f12'>{esc(request.message)}</div>")


def remediated_html(title: str, changed: int) -> str:
    return (f"<div>{badge('remediated', 'stale')} {esc(title)}: {changed:,} rows changed. "
            "Run the preflight again.</div>")


_OUTCOME_COLOURS = {"applied": "#14532d", "failed": "#7f1d1d", "rolled_back": "#7f1d1d", "lock_timeout": "#713f12"}


def apply_log_html(applied: list[tuple[Any, Any]]) -> str:
    """The apply log: each statement (PhaseStatement, AppliedStatement) under its phase's title, with its outcome
    and, for a CONCURRENTLY build still running, its progress."""
    from .phases import PHASE_TITLES

    lines, phase = [], None
    for s, e in applied:
        if s.phase != phase:
            phase = s.phase
            lines.append(f"<div style='margin-top:4px'><b>{esc(PHASE_TITLES[s.phase])}</b></div>")
        colour = _OUTCOME_COLOURS.get(e.outcome, "#1e3a8a")
        lines.append(f"<div><span style='color:{colour};font-weight:600'>[{esc(e.outcome)}]</span> step "
                     f"{s.step} (try {e.attempt}): <code>{esc(s.sql)}</code></div>")
        progress = getattr(e, "progress", None)
        if progress and e.outcome == "running":
            # a CONCURRENTLY build: its phase, blocks done of total, and whom it waits for
            lines.append(f"<div style='margin-left:2em;color:#475569'>{esc(progress)}</div>")
    return "".join(lines)
