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

from ..checks import human_bytes

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

    from ..report.contract import PreflightCheckResult, PreflightReport
    from ..run.gate import GateDecision
    from ..plan.phases import ApplyPhases
    from ..plan import MigrationPlan
    from ..run.store import RunRecord

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


def _parse(value: Any) -> Any:
    import datetime as dt

    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def frame_html(frame: pd.DataFrame, *, max_rows: int | None = SAMPLE_ROWS_SHOWN, null: str = "NULL") -> str:
    """A DataFrame as an escaped HTML table (pandas escapes cell values by default). ``null``: what a missing
    value shows: NULL in data (sample rows), nothing in a record where a field does not apply."""
    more = ""
    if max_rows is not None and len(frame) > max_rows:
        more = f"<div style='color:#6b7280'>… {len(frame) - max_rows:,} more rows</div>"
        frame = frame.head(max_rows)
    import pandas as pd

    shown = frame.astype(object).map(lambda v: null if _is_null(v) else shown_value(v))
    with pd.option_context("display.max_colwidth", None):  # whole values: SQL is never cut mid-word
        table = shown.to_html(index=False, border=0, classes="erd-table", escape=True)
    # pandas right-aligns the header row; the cells are left-aligned, and so are their headers
    table = table.replace('<tr style="text-align: right;">', "<tr>")
    return f"{_TABLE_STYLE}<div class='erd-wrap'>{table}</div>" + more


def shown_value(value: Any) -> Any:
    """A sample value as PostgreSQL shows it: NULL as the word NULL, a decimal with its scale, a timestamp with
    its zone."""
    import decimal

    import pandas as pd

    if _is_null(value):
        return "NULL"
    if isinstance(value, decimal.Decimal):
        return str(value)  # 16.75 stays 16.75, 2.50 stays 2.50
    if isinstance(value, pd.Timestamp):
        text = value.isoformat(sep=" ")
        return text.replace("+00:00", "+00") if value.tzinfo is not None else text
    if isinstance(value, float):
        return repr(value)
    return value


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


# What a checklist line shows of a check's counts; the rest of its stats are in the finding.
_TABLE_STYLE = ("<style>.erd-list{border-collapse:collapse;margin:2px 0;font-size:13px}"
                ".erd-list th{text-align:left;font-weight:600;padding:3px 12px 3px 0;border-bottom:1px solid #d1d5db;"
                "white-space:nowrap}.erd-list td{padding:3px 12px 3px 0;vertical-align:middle;white-space:nowrap}"
                ".erd-list tr.erd-skipped td{color:#9ca3af}.erd-bar{display:inline-block;width:60px;height:8px;"
                "background:#f3f4f6;border-radius:4px;vertical-align:middle;margin-left:6px;overflow:hidden}"
                ".erd-bar>span{display:block;height:8px}.erd-wrap{overflow-x:auto;max-width:100%}"
                ".erd-table{border-collapse:collapse}.erd-table th,.erd-table td{padding:2px 10px 2px 0;"
                "text-align:left !important;vertical-align:top}</style>")


def share_bar(violations: int | None, total: int | None, outcome: str) -> str:
    """A small bar: the share of rows that violate (at least a sliver when any does)."""
    if not violations or not total:
        return ""
    percent = max(100 * violations / total, 2.0)
    colour = MARKS.get(outcome, ("", "#7f1d1d", ""))[1]
    return (f"<span class='erd-bar' title='{100 * violations / total:.2f}% of rows'><span style='width:"
            f"{min(percent, 100):.1f}%;background:{colour}'></span></span>")


def _counts(stats: dict[str, Any], outcome: str) -> str:
    violations, total = stats.get("violations"), stats.get("totalRows")
    if outcome == "skipped":
        return "not run"
    if isinstance(violations, int) and isinstance(total, int):
        return f"{violations:,} of {total:,}{share_bar(violations, total, outcome)}"
    if isinstance(total, int):
        return f"{total:,} rows"
    return ""


def checklist_html(report: PreflightReport) -> str:
    """The checklist, one line per check: mark, step, check, target, violations of rows with a bar for the
    share, and ms. Each check's message is in its finding (a pass's and a skip's in the report's data)."""
    rows = []
    for run in report.checks:
        fg, bg = MARKS.get(run.outcome, ("", "#374151", "#f3f4f6"))[1:]
        pill = (f"<span style='color:{fg};background:{bg};font-weight:600;padding:0 6px;border-radius:8px'>"
                f"{esc(mark(run.outcome))}</span>")
        target = run.target_ref.label() if run.target_ref else ""
        ms = "" if run.outcome == "skipped" or run.duration_ms is None else f"{run.duration_ms:,.1f}"
        rows.append(f"<tr class='erd-{esc(run.outcome)}' title='{esc(run.message)}'><td>{pill}</td><td>{run.step}</td>"
                    f"<td>{esc(run.check_id)}</td><td>{esc(target)}</td>"
                    f"<td style='text-align:right'>{_counts(run.stats or {}, run.outcome)}</td>"
                    f"<td style='text-align:right'>{ms}</td></tr>")
    return (f"{_TABLE_STYLE}<div class='erd-wrap'><table class='erd-list'><tr><th></th><th>step</th><th>check</th>"
            "<th>target</th><th style='text-align:right'>violations of rows</th><th style='text-align:right'>ms</th>"
            f"</tr>{''.join(rows)}</table></div>")


def finding_title(finding: PreflightCheckResult, step: int | None = None) -> str:
    """One line naming a finding: mark, check, step, target, and how many rows (plain text, for a title)."""
    stats = finding.stats or {}
    target = finding.target_ref.label() if finding.target_ref else ""
    counts = ""
    if isinstance(stats.get("violations"), int) and isinstance(stats.get("totalRows"), int):
        counts = f" · {stats['violations']:,} of {stats['totalRows']:,} rows"
    return (f"{mark(finding.severity)} {finding.check_id}" + (f" · step {step}" if step is not None else "")
            + (f" · {target}" if target else "") + counts)


def finding_html(finding: PreflightCheckResult, samples: pd.DataFrame | None = None, *, step: int | None = None,
                 collapsible: bool = True, open_: bool = True, plot: str | None = None) -> str:
    """One finding, said once: its title (the disclosure, when ``collapsible``), the message, the other
    counts, the first sample rows and, when given, a plot (an <img>)."""
    from ..report.frames import rows_frame

    if samples is None and finding.sample_rows:
        samples = rows_frame(finding.sample_rows, None)
    body = [f"<div style='margin:4px 0;max-width:80em'>{esc(finding.message)}</div>"]
    extra = {k: v for k, v in (finding.stats or {}).items() if k not in ("violations", "totalRows")}
    if extra:
        body.append(f"<div style='color:#6b7280'>{_stats_text(extra)}</div>")
    if samples is not None and len(samples):
        unit = "duplicate groups" if "duplicateGroups" in (finding.stats or {}) else "violating rows"
        shown = min(len(samples), SAMPLE_ROWS_SHOWN)
        body.append(f"<div style='margin-top:6px;color:#374151'>sample {unit}: the first {shown:,} of "
                    f"{len(samples):,} kept</div>")
        body.append(frame_html(samples))
    if plot:
        body.append(plot)
    inner = "".join(body)
    if not collapsible:
        return f"{_TABLE_STYLE}<div class='erd-finding'>{inner}</div>"
    fg = MARKS.get(finding.severity, ("", "#374151", ""))[1]
    return (f"<details class='erd-finding' {'open' if open_ else ''} style='margin:6px 0'><summary style='color:{fg};"
            f"font-weight:600'>{esc(finding_title(finding, step))}</summary><div style='margin-left:18px'>{inner}"
            "</div></details>")


def report_head(report: PreflightReport, run_id: int | None = None, note: str = "") -> str:
    """The report's one-line status: badge, counts, and (for a stored run) which run; ``note`` after it."""
    ran = [c for c in report.checks if c.outcome != "skipped"]
    skipped = len(report.checks) - len(ran)
    warnings = len(report.warnings)
    parts = [badge(report.headline, "warning" if report.status == "clear" and report.steps_to_acknowledge
                   else report.status)]
    if run_id is not None:
        parts.append(f"run {run_id}")
    parts.append(f"{len(ran)} of {len(report.checks)} {'check' if len(report.checks) == 1 else 'checks'} ran"
                 + (f" ({skipped} skipped after the first blocker)" if skipped else ""))
    parts.append(f"{len(report.blockers)} blocking · {warnings} {'warning' if warnings == 1 else 'warnings'}")
    return "<div>" + " · ".join(parts[:1]) + " " + " · ".join(parts[1:]) + note + "</div>"


def report_html(report: PreflightReport) -> str:
    """The whole report: status, counts, the checklist, then each finding with its sample rows."""
    created = esc(report.model_dump(mode="json", by_alias=True)["createdAt"])
    parts = [report_head(report, note=f" · created {created}")]
    if report.checks:
        parts.append("<h4 style='margin:8px 0 4px'>Checklist</h4>")
        parts.append(checklist_html(report))
    parts.append(locks_html(report))
    steps = {run.finding: run.step for run in report.checks if run.finding is not None}
    if report.results:
        parts.append("<h4 style='margin:8px 0 4px'>Findings</h4>")
        for index, finding in enumerate(report.results):
            samples = report.samples(index) if finding.sample_rows else None
            parts.append(finding_html(finding, samples, step=steps.get(index), open_=finding.severity == "blocking"))
    return f"<div class='erd-report'>{''.join(parts)}</div>"


def locks_html(report: PreflightReport) -> str:
    """The apply's locks on existing tables held 0.1 s or more, one line per step and table ("blocks writes on
    public.orders ≈ 40 s"), and every lock in a fold (``report.locks_frame()``); empty without a lock report."""
    from ..report.frames import LOCK_SHOWN_FROM, lock_lines

    if report.locks is None or not report.locks.statements:
        return ""
    lines = lock_lines(report, at_least=LOCK_SHOWN_FROM)
    online = report.locks.online_steps
    lead = (f"steps {', '.join(map(str, online))} run in their online form; " if online else "") + (
        "every other lock is held under 0.1 s" if lines else "no lock on an existing table is held 0.1 s or more")
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    frame = report.locks_frame().drop(columns=["sql"])
    return (f"<h4 style='margin:8px 0 4px'>Locks at apply (estimated on this database)</h4>"
            f"<ul style='margin:2px 0'>{items}</ul><div style='color:#6b7280'>{esc(lead)}</div>"
            f"<details><summary>every lock, statement by statement</summary>{frame_html(frame, max_rows=None)}"
            "</details>")


def over_time_html(frame: pd.DataFrame, title: str) -> str:
    """A finding's violations over time (``MigrationRun.violations_over_time``) as a bar chart (a PNG, drawn by
    matplotlib when it is installed) above the same counts as a table, which reads without it."""
    period, column = frame.attrs.get("period", "period"), frame.attrs.get("column", "")
    counted = frame.copy()
    counted["at"] = [("NULL" if _is_null(v) else v.strftime("%Y-%m-%d %H:%M" if period == "hour" else
                                                            "%Y-%m" if period == "month" else "%Y-%m-%d"))
                     for v in counted["at"]]
    image = ""
    try:
        image = _bar_chart_png(list(counted["at"]), list(counted["violations"]),
                               f"{title}: violating rows per {period} of {column}")
    except ImportError:
        image = "<div style='color:#6b7280'>(pip install 'erd_preflight[notebook]' to see this as a chart)</div>"
    table = counted.rename(columns={"at": f"{period} of {column}", "violations": "violating rows"})
    first = next((v for v, n in zip(counted["at"], counted["violations"]) if v != "NULL" and n), None)
    lead = (f"<div style='margin:4px 0'>violating rows per {esc(period)} of <b>{esc(column)}</b>"
            + (f": the first in the {esc(period)} of {esc(first)}" if first else "") + "</div>")
    return (f"<div class='erd-over-time'>{lead}{image}<details><summary>the counts</summary>"
            f"{frame_html(table, max_rows=None)}</details></div>")


def _bar_chart_png(labels: list[str], values: list[int], title: str) -> str:
    """A small bar chart as an inline <img> (PNG, base64): nothing to fetch, kept in the saved notebook."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display here: draw into a buffer
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 2.4), dpi=100)
    axes = figure.subplots()
    axes.bar(range(len(values)), values, color="#b91c1c")
    step = max(1, len(labels) // 12)
    axes.set_xticks(range(0, len(labels), step), [labels[i] for i in range(0, len(labels), step)], rotation=30,
                    ha="right", fontsize=8)
    axes.set_ylabel("rows", fontsize=8)
    axes.set_title(title, fontsize=9, loc="left")
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='{esc(title)}' src='data:image/png;base64,{data}' style='max-width:100%'/>"


def plan_frame(plan: MigrationPlan) -> pd.DataFrame:
    """The plan's steps, each with the phase apply runs it in (compiled without a database)."""
    import pandas as pd

    from ..errors import PhaseOrderError
    from ..plan.phases import compile_phases, phase_of

    phases: dict[int, list[str]] = {}
    try:
        for statement in compile_phases(plan).statements:
            seen = phases.setdefault(statement.step, [])
            if statement.phase not in seen:
                seen.append(statement.phase)
    except PhaseOrderError:  # each step's own phase; plan_html says why apply would refuse the order
        phases = {i: [phase_of(step)] for i, step in enumerate(plan.steps, start=1)}
    rows = [{"step": i, "phase": "+".join(phases.get(i, [])), "summary": step.summary(), "sql": step.sql()}
            for i, step in enumerate(plan.steps, start=1)]
    return pd.DataFrame(rows, columns=["step", "phase", "summary", "sql"])


def plan_html(plan: MigrationPlan) -> str:
    from ..errors import PhaseOrderError
    from ..plan.phases import compile_phases

    head = (f"<div><b>plan {esc(plan.name or '')}</b> · {len(plan.steps)} steps · fingerprint "
            f"<code>{plan.fingerprint[:12]}</code></div>")
    notes = "".join(f"<div style='color:#6b7280'>note: {esc(n)}</div>" for n in plan.notes)
    try:
        compile_phases(plan)
    except PhaseOrderError as exc:
        notes += f"<div style='color:#7f1d1d'>apply would refuse this order: {esc(exc)}</div>"
    return f"<div class='erd-plan'>{head}{notes}{frame_html(plan_frame(plan), max_rows=None)}</div>"


def phases_html(phases: ApplyPhases) -> str:
    from ..plan.phases import PHASE_TITLES

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


def gate_html(decision: GateDecision, *, remediations: bool = True, report: PreflightReport | None = None) -> str:
    """Apply allowed or blocked (or the run applied), every reason, the confirmations needed, the remediations
    and notes. With ``report``, a reason about a finding names it in one line; its message is in the finding."""
    if decision.status == "applied":
        head = f"{badge('Applied', 'applied')} run {decision.run_id} is applied: nothing left to apply"
    elif decision.status == "applying":
        head = f"{badge('Applying', 'applying')} run {decision.run_id} is being applied"
    else:
        verdict = "Apply allowed" if decision.can_apply else "Apply blocked"
        head = (f"{badge(verdict, 'clear' if decision.can_apply else 'blocked')} run {decision.run_id} · status "
                f"{esc(decision.status)}")
    parts = [f"<div>{head}</div>"]
    steps = {run.finding: run.step for run in report.checks if run.finding is not None} if report else {}

    def reason(r: Any) -> str:
        if report is not None and r.finding is not None and r.finding < len(report.results):
            return f"<b>{esc(r.code)}</b>: {esc(finding_title(report.results[r.finding], steps.get(r.finding)))} " \
                   "(see its finding)"
        return f"<b>{esc(r.code)}</b>: {esc(r.message)}"

    if decision.status != "applied":
        parts.append(_list(reason(r) for r in decision.reasons))
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

    # A remediation's sql as it reads; what ran (its rows kept in the same statement) is the record's entry.sql
    columns = ["phase", "step", "attempt", "outcome", "rows", "kept", "sql", "error", "started", "finished"]
    frame = pd.DataFrame([{**{c: getattr(s, c, None) for c in columns}, "kept": (s.model_extra or {}).get("kept"),
                           "sql": (s.model_extra or {}).get("as_shown", s.sql)} for s in record.applied_sql],
                         columns=columns)
    return frame.astype({"step": "Int64", "attempt": "Int64", "rows": "Int64", "kept": "Int64"})


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
        frame = statements_frame(record)
        started = [_parse(v) for v in frame["started"]]
        finished = [_parse(v) for v in frame["finished"]]
        frame["ms"] = [round((b - a).total_seconds() * 1000, 1) if a and b else None for a, b in zip(started, finished)]
        frame["started"] = [a.strftime("%H:%M:%S.%f")[:-3] if a else "" for a in started]
        columns = ["phase", "step", "outcome", "rows", *(["kept"] if frame["kept"].notna().any() else []), "sql",
                   "started", "ms"]
        if frame["error"].notna().any():
            columns.insert(5, "error")
        parts.append("<div>statements run (UTC):</div>" + frame_html(frame[columns], max_rows=None, null=""))
    return f"<div class='erd-run'>{''.join(parts)}</div>"


def runs_styler(frame: pd.DataFrame) -> Styler:
    """The audit trail (``runs(db)``) with its status column coloured."""
    def colour(column: pd.Series) -> list[str]:
        return [f"color:{STATUS_COLOURS.get(v, ('', ''))[0]};background-color:{STATUS_COLOURS.get(v, ('', ''))[1]};"
                "font-weight:600" if v in STATUS_COLOURS else "" for v in column]

    styler = frame.style.apply(colour, subset=["status"]).format(escape="html", na_rep="")
    styler = styler.set_table_styles([{"selector": "td, th", "props": "padding:2px 10px 2px 0;text-align:left;"
                                                                      "white-space:nowrap"}])
    return styler.set_uuid(_uuid("runs", frame.reset_index().to_dict("split")))


def runs_html(frame: pd.DataFrame) -> str:
    """The audit trail as a panel shows it: when (to the second, UTC), name, status, counts, and an error column
    only when a run failed; it scrolls sideways rather than being cut off at the right edge."""
    shown = frame.copy()
    shown["created_at"] = [_short_time(v) for v in shown["created_at"]]
    columns = ["created_at", "name", "status", "steps", "blocking", "warnings", "applied_statements"]
    if shown["error"].notna().any():
        columns.append("error")
    shown = shown[columns].rename(columns={"created_at": "created (UTC)", "applied_statements": "applied"})
    return f"<div class='erd-wrap' style='overflow-x:auto;max-width:100%'>{runs_styler(shown).to_html()}</div>"


def _short_time(value: Any) -> str:
    """A stored time to the second, in UTC: 2026-11-27 06:47:00."""
    import pandas as pd

    if _is_null(value):
        return ""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_convert("UTC") if stamp.tzinfo is not None else stamp
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


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
    why = ("its lock blocks writes longer than the lock budget (ApplyOptions.max_blocking_lock)"
           if getattr(request, "kind", "") == "lock_budget" else "an index built without CONCURRENTLY on a large table")
    return (f"<div><b>step {request.step}</b>: {esc(request.step_summary)}</div>"
            f"<table class='erd-table'><tr><th>why</th><td>{esc(why)}</td></tr>"
            f"<tr><th>table</th><td>{esc(request.table)}</td></tr>"
            f"<tr><th>estimated rows</th><td>{request.estimated_rows:,}</td></tr>"
            + (f"<tr><th>size</th><td>{human_bytes(request.total_bytes)}</td></tr>" if request.total_bytes else "")
            + f"<tr><th>lock</th><td>{esc(request.lock)}</td></tr>"
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
    from ..plan.phases import PHASE_TITLES

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
