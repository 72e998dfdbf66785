"""ipywidgets panels for notebooks, built only on the public API (``MigrationRun``, ``runs``).

- ``PreflightPanel(plan, db)``: the plan's steps with their phase, "Run preflight" with a progress bar per
  check, the checklist, one accordion section per finding with its sample rows and remediations, the
  gate's reasons, large-table confirmations, and an Apply button that is disabled unless the gate allows it.
- ``LargeTableConfirmation``: tick a box and type the table's name to confirm a non-concurrent index build.
- ``RunHistoryPanel(db)``: the ``migration_run`` audit trail, with each stored report a click away.

Every handler shows its error in the panel (message, and the traceback under "details") and keeps it in
``panel.errors``; the methods a notebook calls directly (``run_preflight()``, ``apply()``) also raise it.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import ipywidgets as widgets

from ..run.apply import ApplyOptions
from ..checks import PreflightOptions
from ..report.contract import CheckRun, PreflightReport
from ..db import Database, connect
from .display import (
    acknowledgement_request_html,
    apply_log_html,
    badge,
    checklist_html,
    locks_html,
    confirmation_request_html,
    error_html,
    esc,
    finding_html,
    finding_title,
    frame_html,
    gate_html,
    mark,
    note_html,
    over_time_html,
    plan_html,
    remediated_html,
    remediation_sql_html,
    report_head,
    report_html,
    run_html,
    runs_html,
)
from ..run.gate import AcknowledgementRequest, ConfirmationRequest, GateDecision, matches_table
from ..plan.phases import PhaseStatement
from ..plan import MigrationPlan
from ..errors import PreflightCancelled
from ..checks.remediation import Remediation
from ..read.scan import Cancel, ScanProgress
from ..run.migration_run import MigrationRun
from ..run.store import DEFAULT_STORE_SCHEMA, AppliedStatement, RunStore, runs

T = TypeVar("T")
VIOLATIONS_PAGE_SIZE = 100


class ErrorBox(widgets.HTML):
    """Where a panel shows what went wrong: the message, what to do, and the traceback folded away."""

    def __init__(self) -> None:
        super().__init__(value="")
        self.errors: list[str] = []

    def show(self, action: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        self.errors.append(message)
        self.value = error_html(action, message, "".join(traceback.format_exception(exc)))

    def clear(self) -> None:
        self.value = ""


def _guarded(errors: ErrorBox, action: str, work: Callable[[], T], *, reraise: bool) -> T | None:
    errors.clear()
    try:
        return work()
    except Exception as exc:  # shown in the panel, kept in errors, and re-raised for notebook calls
        if not getattr(exc, "_erd_shown", False):  # a button handler around a method: show it once
            errors.show(action, exc)
            exc._erd_shown = True  # type: ignore[attr-defined]
        if reraise:
            raise
        return None


class ViolationsPager(widgets.VBox):
    """Every violating row of one finding, a page at a time (read-only queries)."""

    def __init__(self, run: MigrationRun, finding: int, errors: ErrorBox,
                 page_size: int = VIOLATIONS_PAGE_SIZE) -> None:
        self.run, self.finding, self.errors, self.page_size = run, finding, errors, page_size
        self.page = 0
        self.table = widgets.HTML()
        self.label = widgets.Label()
        self.previous_button = widgets.Button(description="◀ previous", disabled=True)
        self.next_button = widgets.Button(description="next ▶")
        self.previous_button.on_click(lambda _: self.show(self.page - 1))
        self.next_button.on_click(lambda _: self.show(self.page + 1))
        super().__init__([widgets.HBox([self.previous_button, self.next_button, self.label]), self.table])
        self.frame = None
        self.show(0)

    def show(self, page: int) -> None:
        def load() -> None:
            frame = self.run.violations(self.finding, page=max(page, 0), page_size=self.page_size)
            self.page, self.frame = max(page, 0), frame
            first = self.page * self.page_size
            self.label.value = (f"rows {first + 1:,}–{first + len(frame):,}" if len(frame)
                                else "no more violating rows")
            self.table.value = frame_html(frame, max_rows=None)
            self.previous_button.disabled = self.page == 0
            self.next_button.disabled = len(frame) < self.page_size

        _guarded(self.errors, "listing the violating rows", load, reraise=False)


class RemediationControl(widgets.VBox):
    """One remediation: its SQL on demand, and (if runnable) a Run button, with a value box for a backfill."""

    def __init__(self, remediation: Remediation, on_run: Callable[[RemediationControl], None]) -> None:
        self.remediation = remediation
        self.show_button = widgets.Button(description=_short(remediation), tooltip=remediation.title,
                                          layout=widgets.Layout(width="auto"))
        self.sql = widgets.HTML()
        self.value = widgets.Text(placeholder="value for the NULLs", layout=widgets.Layout(width="260px"))
        self.as_expression = widgets.Checkbox(value=False, description="SQL expression (e.g. 'x-' || id)",
                                              indent=False)
        self.run_button = widgets.Button(description=f"Run {remediation.kind}", button_style="warning",
                                         disabled=remediation.needs_value)
        self.result = widgets.HTML()
        self.show_button.on_click(lambda _: self.toggle_sql())
        self.run_button.on_click(lambda _: on_run(self))
        self.value.observe(lambda _: self._update(), names="value")
        row: list[widgets.Widget] = [self.show_button]
        if remediation.runnable:
            if remediation.needs_value:
                row += [self.value, self.as_expression]
            row.append(self.run_button)
        super().__init__([widgets.HBox(row), self.sql, self.result])

    def toggle_sql(self) -> None:
        if self.sql.value:
            self.sql.value = ""
        else:
            self.sql.value = remediation_sql_html(self.remediation)

    def _update(self) -> None:
        if self.remediation.needs_value:
            self.run_button.disabled = not self.value.value.strip()

    def arguments(self) -> dict[str, Any]:
        if not self.remediation.needs_value:
            return {}
        return {"expression": self.value.value} if self.as_expression.value else {"value": self.value.value}


def _short(r: Remediation) -> str:
    return {
        "open_violations": "all violations (SQL)", "backfill": "backfill SQL", "dedupe": "dedupe SQL",
        "delete_orphans": "delete orphans SQL", "null_orphans": "NULL the orphans SQL",
        "insert_parents": "insert parents SQL", "use_concurrently": "CONCURRENTLY instead",
        "drop_invalid_index": "drop INVALID index SQL",
    }.get(r.kind, r.kind)


class FindingView(widgets.VBox):
    """One finding, said once (its title is the accordion's): message, counts, sample rows, violations over
    time when its rows have a timestamp or date column, and what can be done about it."""

    def __init__(self, panel: PreflightPanel, report: PreflightReport, index: int,
                 remediations: list[Remediation]) -> None:
        finding = report.results[index]
        step = next((c.step for c in report.checks if c.finding == index), None)
        samples = report.samples(index) if finding.sample_rows else None
        self.title = finding_title(finding, step)
        self.details = widgets.HTML(finding_html(finding, samples, step=step, collapsible=False))
        self.violations_button = widgets.Button(description="All violations (paged)", icon="table",
                                                layout=widgets.Layout(width="auto"))
        self.violations = widgets.VBox()
        self.pager: ViolationsPager | None = None
        self.violations_button.on_click(lambda _: self.open_violations())
        self.panel, self.index = panel, index
        self.remediations = [RemediationControl(r, panel._run_remediation) for r in remediations
                             if r.kind != "open_violations"]
        has_rows = any(r.kind == "open_violations" for r in remediations)
        rows: list[widgets.Widget] = [self.details]
        if has_rows:
            rows += [self.violations_button, self.violations]
        # violations over time: when the rows have a timestamp or date column (the user picks which)
        columns = (_guarded(panel.error_box, "listing the timestamp columns",
                            lambda: panel.run.time_columns(index) if panel.run else [], reraise=False) or [])
        self.time_picker = widgets.Dropdown(options=columns, value=columns[0] if columns else None,
                                            description="over time of", layout=widgets.Layout(width="auto"))
        self.plot_button = widgets.Button(description="Plot violations over time", icon="bar-chart",
                                          layout=widgets.Layout(width="auto"))
        self.plot = widgets.HTML()
        self.plot_button.on_click(lambda _: _guarded(panel.error_box, "plotting violations over time",
                                                     self.plot_over_time, reraise=False))
        if columns:
            rows += [widgets.HBox([self.plot_button, self.time_picker]), self.plot]
        rows += self.remediations
        super().__init__(rows)

    def plot_over_time(self) -> str:
        """What "Plot violations over time" does: count the violating rows per period of the picked column."""
        if self.panel.run is None or self.time_picker.value is None:
            raise ValueError("this finding's rows have no timestamp or date column to plot over")
        frame = self.panel.run.violations_over_time(self.index, self.time_picker.value)
        self.plot.value = over_time_html(frame, self.title)
        return self.plot.value

    def open_violations(self) -> ViolationsPager | None:
        if self.panel.run is None:
            return None
        self.pager = ViolationsPager(self.panel.run, self.index, self.panel.error_box)
        self.violations.children = (self.pager,)
        return self.pager

    def control(self, kind: str) -> RemediationControl:
        for control in self.remediations:
            if control.remediation.kind == kind:
                return control
        raise KeyError(f"finding {self.index} has no {kind!r} remediation; it has: "
                       f"{', '.join(c.remediation.kind for c in self.remediations) or 'none'}")


class LargeTableConfirmation(widgets.VBox):
    """Confirm one non-concurrent index build on a large table: tick the box and type the table's name."""

    def __init__(self, request: ConfirmationRequest, alternative: str | None,
                 on_confirm: Callable[[LargeTableConfirmation], None]) -> None:
        self.request = request
        self.info = widgets.HTML(confirmation_request_html(request, alternative))
        self.tick = widgets.Checkbox(value=False, indent=False,
                                     description=f"I accept that writes to {request.table} wait for the whole build",
                                     layout=widgets.Layout(width="auto"))
        self.typed = widgets.Text(placeholder=f"type {request.table} to confirm",
                                  layout=widgets.Layout(width="320px"))
        self.confirm_button = widgets.Button(description="Confirm", button_style="warning", disabled=True)
        self.state = widgets.HTML(badge("✓ confirmed", "clear") if request.confirmed else "")
        self.tick.observe(lambda _: self._update(), names="value")
        self.typed.observe(lambda _: self._update(), names="value")
        self.confirm_button.on_click(lambda _: on_confirm(self))
        controls = [] if request.confirmed else [self.tick, widgets.HBox([self.typed, self.confirm_button])]
        super().__init__([self.info, *controls, self.state],
                         layout=widgets.Layout(border="1px solid #fcd34d", padding="4px", margin="4px 0"))

    @property
    def ready(self) -> bool:
        return self.tick.value and matches_table(self.typed.value, self.request.table)

    def _update(self) -> None:
        self.confirm_button.disabled = not self.ready


class StepAcknowledgement(widgets.VBox):
    """Acknowledge one step preflight cannot verify: tick the box and type the step's number."""

    def __init__(self, request: AcknowledgementRequest, on_acknowledge: Callable[[StepAcknowledgement], None]) -> None:
        self.request = request
        self.info = widgets.HTML(acknowledgement_request_html(request))
        self.tick = widgets.Checkbox(value=False, indent=False, layout=widgets.Layout(width="auto"),
                                     description=f"I reviewed step {request.step}; PostgreSQL alone checks it at apply")
        self.typed = widgets.Text(placeholder=f"type {request.step} to acknowledge",
                                  layout=widgets.Layout(width="220px"))
        self.acknowledge_button = widgets.Button(description="Acknowledge", button_style="warning", disabled=True)
        self.state = widgets.HTML(badge("✓ acknowledged", "clear") if request.acknowledged else "")
        self.tick.observe(lambda _: self._update(), names="value")
        self.typed.observe(lambda _: self._update(), names="value")
        self.acknowledge_button.on_click(lambda _: on_acknowledge(self))
        controls = [] if request.acknowledged else [self.tick, widgets.HBox([self.typed, self.acknowledge_button])]
        super().__init__([self.info, *controls, self.state],
                         layout=widgets.Layout(border="1px solid #fcd34d", padding="4px", margin="4px 0"))

    @property
    def ready(self) -> bool:
        return bool(self.tick.value) and self.typed.value.strip() == str(self.request.step)

    def _update(self) -> None:
        self.acknowledge_button.disabled = not self.ready


class _PanelProgress:
    """The panel's progress callback: each check, a long scan's rows and ETA, its early blocking answer."""

    def __init__(self, panel: PreflightPanel) -> None:
        self.panel = panel

    def __call__(self, run: CheckRun, done: int, total: int) -> None:
        self.panel._on_check(run, done, total)

    def scan(self, progress: ScanProgress) -> None:
        self.panel._on_scan(progress)


class PreflightPanel(widgets.VBox):
    """Preflight, gate and apply one plan from a notebook; every action is stored on its ``MigrationRun``.

    The run is created by the first "Run preflight" (pass ``run=`` to continue a stored one)."""

    def __init__(self, plan: MigrationPlan, db: Database | str | Any = None, *, run: MigrationRun | None = None,
                 name: str | None = None, store_schema: str = DEFAULT_STORE_SCHEMA,
                 options: ApplyOptions | None = None, preflight_options: PreflightOptions | None = None,
                 explore: bool = False, confirmed_by: str | None = None) -> None:
        self.plan = plan
        self.db = connect(db) if run is None else run.db
        self.run = run
        self.name = name or plan.name
        self.store_schema = store_schema
        self.options = options
        self.preflight_options = preflight_options
        self.confirmed_by = confirmed_by
        self.report: PreflightReport | None = run.report if run else None
        self.decision: GateDecision | None = None

        self.error_box = ErrorBox()
        self.plan_view = widgets.HTML(plan_html(plan))
        self.explore = widgets.Checkbox(value=explore, description="explore: run every check", indent=False)
        self.preflight_button = widgets.Button(description="Run preflight", button_style="primary", icon="play")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True,
                                            tooltip="stop the preflight; its query is cancelled on the server")
        self._cancel: Cancel | None = None
        self.worker: threading.Thread | None = None
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="checks",
                                            layout=widgets.Layout(width="50%"))
        self.progress_label = widgets.Label("")
        self.status = widgets.HTML(note_html("no preflight yet: click Run preflight"))
        self.checklist = widgets.HTML()
        self.findings = widgets.Accordion()
        self.finding_views: list[FindingView] = []
        self.gate_view = widgets.HTML()
        self.confirmations = widgets.VBox()
        self.confirmation_rows: list[LargeTableConfirmation] = []
        self.acknowledgement_rows: list[StepAcknowledgement] = []
        self.apply_button = widgets.Button(description="Apply", button_style="danger", icon="check", disabled=True,
                                           tooltip="enabled when the gate allows it")
        self.apply_log = widgets.HTML()
        self.final_status = widgets.HTML()
        self._applied: list[tuple[PhaseStatement, AppliedStatement]] = []

        # The preflight runs in a thread: the kernel stays free, progress streams in, and Cancel can stop it.
        self.preflight_button.on_click(lambda _: self._in_background(self.run_preflight))
        self.cancel_button.on_click(lambda _: self.cancel())
        self.apply_button.on_click(lambda _: self._in_background(self.apply))
        section = "<h4 style='margin:10px 0 2px'>{}</h4>".format
        super().__init__([
            self.plan_view,
            widgets.HBox([self.preflight_button, self.cancel_button, self.explore]),
            widgets.HBox([self.progress, self.progress_label]),
            self.error_box,
            self.status, self.checklist,
            widgets.HTML(section("Findings")), self.findings,
            widgets.HTML(section("Gate")), self.gate_view, self.confirmations,
            self.apply_button, self.apply_log, self.final_status,
        ])
        if self.report is not None and self.run is not None:
            self._show_report(self.report)
            self._click(self.refresh_gate)

    @property
    def errors(self) -> list[str]:
        return self.error_box.errors

    def _in_background(self, action: Callable[[], Any]) -> None:
        if self.worker is not None and self.worker.is_alive():
            return
        self.worker = threading.Thread(target=self._click, args=(action,), name="erd-preflight-panel", daemon=True)
        self.worker.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the preflight or apply a button started in the background (a script or a test clicking it)."""
        if self.worker is not None:
            self.worker.join(timeout)

    def cancel(self) -> None:
        """What the Cancel button does: stop the running preflight (its query is cancelled on the server)."""
        if self._cancel is not None:
            self.progress_label.value = "cancelling…"
            self._cancel.cancel()

    def _click(self, action: Callable[[], Any]) -> None:
        """A button handler: the error goes to the panel (a callback's exception would reach no one)."""
        label = getattr(action, "__name__", "action").replace("_", " ")
        _guarded(self.error_box, label, action, reraise=False)

    # --- preflight -----------------------------------------------------------------------------------------

    def run_preflight(self) -> PreflightReport:
        """What the "Run preflight" button does: create the run if needed, preflight it, show the result."""
        def work() -> PreflightReport:
            self.preflight_button.disabled = True
            self.apply_button.disabled = True
            try:
                if self.run is None:
                    self.run = MigrationRun.start(self.plan, self.db, name=self.name,
                                                  store_schema=self.store_schema, options=self.options)
                self.progress.value, self.progress.bar_style = 0, ""
                self.progress_label.value = "deriving checks from the plan and the catalog…"
                self._cancel = Cancel()
                self.cancel_button.disabled = False
                report = self.run.preflight(explore=self.explore.value, progress=_PanelProgress(self),
                                            options=self.preflight_options, cancel=self._cancel)
            except PreflightCancelled:
                self.progress.bar_style = "warning"
                self.progress_label.value = "cancelled: nothing was changed, and no query is left running"
                raise
            finally:
                self.preflight_button.disabled = False
                self.cancel_button.disabled = True
                self._cancel = None
            ran = sum(1 for c in report.checks if c.outcome != "skipped")
            self.progress.max = max(len(report.checks), 1)
            self.progress.value = ran
            self.progress.bar_style = "danger" if report.blocked else "success"
            skipped = len(report.checks) - ran
            stopped = next((c.step for c in report.checks if c.outcome == "blocking"), None)
            self.progress_label.value = (
                f"stopped at the first blocker (step {stopped}): {ran} of {len(report.checks)} checks ran, "
                f"{skipped} skipped" if skipped else f"{ran} of {len(report.checks)} checks ran")
            self._show_report(report)
            self.refresh_gate()
            return report

        result = _guarded(self.error_box, "preflight", work, reraise=True)
        assert result is not None
        return result

    def _on_check(self, run: CheckRun, done: int, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = done
        if run.sample_rows is not None and run.finding is None:  # a long scan's first blocking answer
            self.progress.bar_style = "danger"
            self.progress_label.value = (f"step {run.step} {run.check_id}: {mark(run.outcome)} found early, "
                                         f"{run.stats.get('violations', 0):,} so far; counting the rest…")
            return
        self.progress_label.value = f"{done}/{total} · step {run.step} {run.check_id}: {mark(run.outcome)}"

    def _on_scan(self, progress: ScanProgress) -> None:
        self.progress_label.value = progress.line()

    def _show_report(self, report: PreflightReport, note: str = "") -> None:
        self.report = report
        self.status.value = report_head(report, self.run.id if self.run else None, note)
        self.checklist.value = (checklist_html(report) if report.checks else "") + locks_html(report)

    def _show_findings(self, report: PreflightReport, remediations: list[Remediation]) -> None:
        views = [FindingView(self, report, i, [r for r in remediations if r.finding == i])
                 for i in range(len(report.results))]
        self.finding_views = views
        self.findings.children = tuple(views)
        for i, view in enumerate(views):
            self.findings.set_title(i, view.title)
        blocking = [i for i, f in enumerate(report.results) if f.severity == "blocking"]
        self.findings.selected_index = blocking[0] if blocking else None

    # --- the gate ----------------------------------------------------------------------------------------

    def refresh_gate(self) -> GateDecision | None:
        """Ask the gate again (after a remediation, a confirmation, or time passing); Apply follows it."""
        if self.run is None:
            return None
        decision = self.run.gate()
        self.decision = decision
        report = self.run.report
        if report is not None:
            remediations = decision.remediations or self.run.remediations()
            self._show_findings(report, remediations)
        self.gate_view.value = gate_html(decision, remediations=False, report=report)
        alternatives = {r.finding: r.sql for r in decision.remediations if r.kind == "use_concurrently"}
        findings_of = {c.step: c.finding for c in (report.checks if report else [])
                       if c.check_id == "NON_CONCURRENT_INDEX_WARNING"}
        self.confirmation_rows = [
            LargeTableConfirmation(q, alternatives.get(findings_of.get(q.step)), self._confirm)
            for q in decision.confirmations_needed]
        self.acknowledgement_rows = [StepAcknowledgement(q, self._acknowledge)
                                     for q in decision.acknowledgements_needed]
        self.confirmations.children = tuple([*self.acknowledgement_rows, *self.confirmation_rows])
        self.apply_button.disabled = not decision.can_apply
        self.apply_button.tooltip = ("the gate allows Apply" if decision.can_apply
                                     else "; ".join(r.message for r in decision.reasons)[:500])
        return decision

    def _confirm(self, row: LargeTableConfirmation) -> None:
        def work() -> None:
            if not row.ready:
                raise ValueError(f"tick the box and type {row.request.table} to confirm")
            assert self.run is not None
            self.run.confirm_large_non_concurrent(row.request.table, by=self.confirmed_by)
            self.refresh_gate()

        _guarded(self.error_box, f"confirming {row.request.table}", work, reraise=False)

    def _acknowledge(self, row: StepAcknowledgement) -> None:
        def work() -> None:
            if not row.ready:
                raise ValueError(f"tick the box and type {row.request.step} to acknowledge step {row.request.step}")
            assert self.run is not None
            self.run.acknowledge(row.request.step, by=self.confirmed_by)
            self.refresh_gate()

        _guarded(self.error_box, f"acknowledging step {row.request.step}", work, reraise=False)

    def _run_remediation(self, control: RemediationControl) -> None:
        def work() -> None:
            assert self.run is not None
            control.run_button.disabled = True  # one click, one run; enabled again if it fails
            try:
                changed = self.run.remediate(control.remediation, **control.arguments())
            finally:
                control.run_button.disabled = False
                control._update()
            self.refresh_gate()
            if self.report is not None:  # the report no longer describes the data: it says so where it is shown
                self._show_report(self.report, f" · {badge('stale', 'stale')} the data changed since")
            self.status.value += remediated_html(control.remediation.title, changed)

        _guarded(self.error_box, f"remediation {control.remediation.kind}", work, reraise=False)

    # --- apply -------------------------------------------------------------------------------------------

    def apply(self) -> Any:
        """What the Apply button does: the gated, phased apply, each statement shown as it runs."""
        def work() -> Any:
            if self.run is None:
                raise RuntimeError("run the preflight first: Apply needs a clear report of this plan")
            self.apply_button.disabled = True
            self.preflight_button.disabled = True
            self._applied = []
            self.apply_log.value = note_html("applying…")
            self._cancel = Cancel()
            self.cancel_button.disabled = False
            self.cancel_button.tooltip = "stop the apply before its next statement; the running one is cancelled"
            try:
                record = self.run.apply(progress=self._on_statement, cancel=self._cancel)
            except Exception:
                record = self.run.refresh()
                self._show_final(record)
                raise
            finally:
                self.preflight_button.disabled = False
                self.cancel_button.disabled = True
                self._cancel = None
            self._show_final(record)
            return record

        return _guarded(self.error_box, "apply", work, reraise=True)

    def _on_statement(self, statement: PhaseStatement, entry: AppliedStatement) -> None:
        for i, (seen, _) in enumerate(self._applied):
            if seen == statement:
                self._applied[i] = (statement, entry)
                break
        else:
            self._applied.append((statement, entry))
        self.apply_log.value = apply_log_html(self._applied)

    def _show_final(self, record: Any) -> None:
        self.final_status.value = run_html(record)
        if self.report is not None:  # the report stays; the run's state is said next to it, and in the gate
            self._show_report(self.report, f" · {badge(record.status, record.status)} run {record.id} is "
                                           f"{esc(record.status)}")
        _guarded(self.error_box, "reading the gate", self.refresh_gate, reraise=False)
        self.apply_button.disabled = True


class RunHistoryPanel(widgets.VBox):
    """Past ``migration_run`` rows, newest first; pick one to open its record and stored report."""

    def __init__(self, db: Database | str | Any = None, *, store_schema: str = DEFAULT_STORE_SCHEMA,
                 limit: int = 50) -> None:
        self.db = connect(db)
        self.store_schema, self.limit = store_schema, limit
        self.error_box = ErrorBox()
        self.table = widgets.HTML()
        self.picker = widgets.Dropdown(description="run", options=[], layout=widgets.Layout(width="60%"))
        self.open_button = widgets.Button(description="Open report", icon="folder-open")
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.detail = widgets.HTML()
        self.open_button.on_click(lambda _: _guarded(self.error_box, "opening the run", self.open_run, reraise=False))
        self.refresh_button.on_click(lambda _: _guarded(self.error_box, "refresh", self.refresh, reraise=False))
        super().__init__([self.table, widgets.HBox([self.picker, self.open_button, self.refresh_button]),
                          self.error_box, self.detail])
        _guarded(self.error_box, "loading the runs", self.refresh, reraise=False)

    @property
    def errors(self) -> list[str]:
        return self.error_box.errors

    def refresh(self) -> None:
        frame = runs(self.db, store_schema=self.store_schema, limit=self.limit)
        self.frame = frame
        self.table.value = runs_html(frame) if len(frame) else note_html("no migration runs stored yet")
        options = [(f"run {i} · {row['name'] or ''} · {row['status']}", int(i)) for i, row in frame.iterrows()]
        picked = self.picker.value
        self.picker.options = options
        ids = [value for _, value in options]
        self.picker.value = picked if picked in ids else (ids[0] if ids else None)

    def open_run(self, run_id: int | None = None) -> None:
        """Show run ``run_id`` (default: the picked one): its record, then its stored report."""
        chosen = run_id if run_id is not None else self.picker.value
        if chosen is None:
            raise ValueError("no run picked: choose one in the list")
        record = RunStore(self.db, self.store_schema, create=False).get(int(chosen))
        report = PreflightReport.model_validate(record.preflight_report) if record.preflight_report else None
        self.detail.value = run_html(record) + (report_html(report) if report else
                                                note_html("this run has no stored preflight report"))
