"""The parts the panels are made of: an error box, a finding's section (samples, every violation paged, its
remediations with a Run button), a large-table confirmation and a step's acknowledgement."""

from __future__ import annotations

from typing import TYPE_CHECKING

import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import ipywidgets as widgets

from ..report.contract import PreflightReport
from .display import (
    acknowledgement_request_html,
    badge,
    esc,
    confirmation_request_html,
    error_html,
    finding_html,
    finding_title,
    frame_html,
    over_time_html,
    remediation_sql_html,
)
from ..run.gate import AcknowledgementRequest, ConfirmationRequest, matches_table
from ..checks.remediation import Remediation
from ..run.migration_run import MigrationRun

if TYPE_CHECKING:
    from .widgets import PreflightPanel

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


def guarded(errors: ErrorBox, action: str, work: Callable[[], T], *, reraise: bool) -> T | None:
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

        guarded(self.errors, "listing the violating rows", load, reraise=False)


class RemediationControl(widgets.VBox):
    """One remediation: its SQL on demand, a Preview of what it will touch (rows, the rows of other tables that
    reference them and what each foreign key does, a dedupe's kept rows, by the rule picked), and (if runnable) a
    Run button, with a value box for a backfill."""

    def __init__(self, remediation: Remediation, on_run: Callable[[RemediationControl], None],
                 on_preview: Callable[[RemediationControl], None] | None = None) -> None:
        self.remediation = remediation
        self.preview_button = widgets.Button(description="Preview", icon="eye", tooltip="what it will delete or "
                                             "change, and what happens to the rows that reference them")
        self.survivor = widgets.Combobox(value="first", options=["first", "most_referenced", "oldest:<column>",
                                                                 "newest:<column>"],
                                         description="keep", layout=widgets.Layout(width="260px"),
                                         tooltip="which row of each duplicate group the dedupe keeps")
        self.preview = widgets.HTML()
        if on_preview is not None:
            self.preview_button.on_click(lambda _: on_preview(self))
        self.show_button = widgets.Button(description=short_title(remediation), tooltip=remediation.title,
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
            if remediation.kind == "dedupe":
                row.append(self.survivor)
            if remediation.change is not None and on_preview is not None:
                row.append(self.preview_button)
            row.append(self.run_button)
        super().__init__([widgets.HBox(row), self.sql, self.preview, self.result])

    def toggle_sql(self) -> None:
        if self.sql.value:
            self.sql.value = ""
        else:
            self.sql.value = remediation_sql_html(self.remediation)

    def _update(self) -> None:
        if self.remediation.needs_value:
            self.run_button.disabled = not self.value.value.strip()

    def arguments(self) -> dict[str, Any]:
        if self.remediation.kind == "dedupe":
            return {"survivor": self.survivor.value.strip() or "first"}
        if not self.remediation.needs_value:
            return {}
        return {"expression": self.value.value} if self.as_expression.value else {"value": self.value.value}


class KeptRows(widgets.VBox):
    """The remediations of the run's record that kept rows, each with a Restore button (or that it was restored)."""

    def __init__(self, on_restore: Callable[[int], None]) -> None:
        self.on_restore = on_restore
        self.buttons: dict[int, widgets.Button] = {}
        super().__init__([])

    def show(self, record: Any) -> None:
        restored = {e.model_extra.get("restores") for e in record.applied_sql
                    if e.phase == "restore" and e.outcome == "applied" and e.model_extra}
        rows: list[widgets.Widget] = []
        self.buttons = {}
        for position, entry in enumerate(record.applied_sql):
            extra = entry.model_extra or {}
            if entry.phase != "remediation" or entry.outcome != "applied" or not extra.get("kept"):
                continue
            what = (f"statement {position}: {extra.get('remediation', 'remediation')} changed {entry.rows} rows, "
                    f"kept on the run")
            if position in restored:
                rows.append(widgets.HTML(f"{esc(what)} · {badge('restored', 'clear')}"))
                continue
            if record.status in ("applying", "applied"):  # the plan may have changed the table since
                rows.append(widgets.HTML(f"{esc(what)} (in remediation_rows; restore belongs before the apply)"))
                continue
            button = widgets.Button(description=f"Restore {position}", icon="undo", button_style="warning",
                                    tooltip="put back what this remediation deleted or overwrote (refused, changing "
                                    "nothing, where those rows changed since)")
            button.on_click(lambda _, p=position: self.on_restore(p))
            self.buttons[position] = button
            rows.append(widgets.HBox([widgets.HTML(esc(what)), button]))
        self.children = tuple(rows)


def short_title(r: Remediation) -> str:
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
        self.remediations = [RemediationControl(r, panel._run_remediation, panel._preview_remediation)
                             for r in remediations
                             if r.kind != "open_violations"]
        has_rows = any(r.kind == "open_violations" for r in remediations)
        rows: list[widgets.Widget] = [self.details]
        if has_rows:
            rows += [self.violations_button, self.violations]
        # violations over time: when the rows have a timestamp or date column (the user picks which)
        columns = (guarded(panel.error_box, "listing the timestamp columns",
                            lambda: panel.run.time_columns(index) if panel.run else [], reraise=False) or [])
        self.time_picker = widgets.Dropdown(options=columns, value=columns[0] if columns else None,
                                            description="over time of", layout=widgets.Layout(width="auto"))
        self.plot_button = widgets.Button(description="Plot violations over time", icon="bar-chart",
                                          layout=widgets.Layout(width="auto"))
        self.plot = widgets.HTML()
        self.plot_button.on_click(lambda _: guarded(panel.error_box, "plotting violations over time",
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


class TypedConfirmation(widgets.VBox):
    """A person's explicit yes: read ``info``, tick the box and type ``expected``; the button then calls back."""

    def __init__(self, info: str, tick: str, expected: str, width: str, button: str, done: str, is_done: bool,
                 on_click: Callable[[Any], None]) -> None:
        self.expected = expected
        self.info = widgets.HTML(info)
        self.tick = widgets.Checkbox(value=False, indent=False, description=tick, layout=widgets.Layout(width="auto"))
        self.typed = widgets.Text(placeholder=f"type {expected} to {button.lower()}", layout=widgets.Layout(width=width))
        self.button = widgets.Button(description=button, button_style="warning", disabled=True)
        self.state = widgets.HTML(badge(f"✓ {done}", "clear") if is_done else "")
        self.tick.observe(lambda _: self._update(), names="value")
        self.typed.observe(lambda _: self._update(), names="value")
        self.button.on_click(lambda _: on_click(self))
        controls = [] if is_done else [self.tick, widgets.HBox([self.typed, self.button])]
        super().__init__([self.info, *controls, self.state],
                         layout=widgets.Layout(border="1px solid #fcd34d", padding="4px", margin="4px 0"))

    def matches(self, typed: str) -> bool:
        return typed.strip() == self.expected

    @property
    def ready(self) -> bool:
        return bool(self.tick.value) and self.matches(self.typed.value)

    def _update(self) -> None:
        self.button.disabled = not self.ready


class LargeTableConfirmation(TypedConfirmation):
    """Confirm one non-concurrent index build on a large table: tick the box and type the table's name."""

    def __init__(self, request: ConfirmationRequest, alternative: str | None,
                 on_confirm: Callable[[LargeTableConfirmation], None]) -> None:
        self.request = request
        super().__init__(confirmation_request_html(request, alternative),
                         f"I accept that writes to {request.table} wait for the whole build", request.table, "320px",
                         "Confirm", "confirmed", request.confirmed, on_confirm)
        self.confirm_button = self.button

    def matches(self, typed: str) -> bool:
        return matches_table(typed, self.request.table)


class StepAcknowledgement(TypedConfirmation):
    """Acknowledge one step preflight cannot verify: tick the box and type the step's number."""

    def __init__(self, request: AcknowledgementRequest, on_acknowledge: Callable[[StepAcknowledgement], None]) -> None:
        self.request = request
        super().__init__(acknowledgement_request_html(request),
                         f"I reviewed step {request.step}; PostgreSQL alone checks it at apply", str(request.step),
                         "220px", "Acknowledge", "acknowledged", request.acknowledged, on_acknowledge)
        self.acknowledge_button = self.button
