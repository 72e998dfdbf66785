"""ipywidgets panels for notebooks, built only on the public API (``MigrationRun``, ``runs``).

- ``PreflightPanel(plan, db)``: the plan's steps with their phase, "Run preflight" with a progress bar per
  check, the checklist, one accordion section per finding with its sample rows and remediations, the
  gate's reasons, large-table confirmations, and an Apply button that is disabled unless the gate allows it.
- its parts (``parts``): a finding's section, ``LargeTableConfirmation`` (tick a box and type the table's name to
  confirm a non-concurrent index build), a step's acknowledgement;
- ``RunHistoryPanel(db)``: the ``migration_run`` audit trail, with each stored report a click away.

Every handler shows its error in the panel (message, and the traceback under "details") and keeps it in
``panel.errors``; the methods a notebook calls directly (``run_preflight()``, ``apply()``) also raise it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..run.apply import ApplyOptions
from ..checks import PreflightOptions
from ..report.contract import CheckRun, PreflightReport
from ..db import Database, connect
from .display import (
    apply_log_html,
    badge,
    checklist_html,
    locks_html,
    esc,
    gate_html,
    mark,
    note_html,
    plan_html,
    remediated_html,
    report_head,
    report_html,
    run_html,
    runs_html,
)
from ..run.gate import GateDecision
from ..plan.phases import PhaseStatement
from ..plan import MigrationPlan
from ..errors import PreflightCancelled
from ..checks.remediation import Remediation
from ..read.scan import Cancel, ScanProgress
from ..run.migration_run import MigrationRun
from ..run.store import DEFAULT_STORE_SCHEMA, AppliedStatement, RunStore, runs
from .parts import (
    ErrorBox, FindingView, KeptRows, LargeTableConfirmation, RemediationControl, StepAcknowledgement,
    guarded,
)



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
        self.kept = KeptRows(self.restore)
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
            widgets.HTML(section("Findings")), self.findings, self.kept,
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
        guarded(self.error_box, label, action, reraise=False)

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

        result = guarded(self.error_box, "preflight", work, reraise=True)
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
        self.kept.show(self.run.record)
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

        guarded(self.error_box, f"confirming {row.request.table}", work, reraise=False)

    def _acknowledge(self, row: StepAcknowledgement) -> None:
        def work() -> None:
            if not row.ready:
                raise ValueError(f"tick the box and type {row.request.step} to acknowledge step {row.request.step}")
            assert self.run is not None
            self.run.acknowledge(row.request.step, by=self.confirmed_by)
            self.refresh_gate()

        guarded(self.error_box, f"acknowledging step {row.request.step}", work, reraise=False)

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

        guarded(self.error_box, f"remediation {control.remediation.kind}", work, reraise=False)

    def _preview_remediation(self, control: RemediationControl) -> None:
        def work() -> None:
            assert self.run is not None
            control.preview.value = self.run.preview(control.remediation,
                                                     **{k: v for k, v in control.arguments().items()
                                                        if k == "survivor"})._repr_html_()

        guarded(self.error_box, f"previewing remediation {control.remediation.kind}", work, reraise=False)

    def restore(self, position: int) -> int | None:
        """What a Restore button does: put back what the remediation at ``position`` of the record removed."""
        def work() -> int:
            assert self.run is not None
            try:
                rows = self.run.restore(position)
            finally:
                self.kept.show(self.run.record)
            self.refresh_gate()
            if self.report is not None:
                self._show_report(self.report, f" · {badge('stale', 'stale')} the data changed since")
            self.status.value += remediated_html(f"Restored statement {position}", rows)
            return rows

        return guarded(self.error_box, f"restoring statement {position}", work, reraise=False)

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

        return guarded(self.error_box, "apply", work, reraise=True)

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
        guarded(self.error_box, "reading the gate", self.refresh_gate, reraise=False)
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
        self.open_button.on_click(lambda _: guarded(self.error_box, "opening the run", self.open_run, reraise=False))
        self.refresh_button.on_click(lambda _: guarded(self.error_box, "refresh", self.refresh, reraise=False))
        super().__init__([self.table, widgets.HBox([self.picker, self.open_button, self.refresh_button]),
                          self.error_box, self.detail])
        guarded(self.error_box, "loading the runs", self.refresh, reraise=False)

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
