"""A migration run: the plan, its preflight, the gate, the phased apply, all recorded in ``migration_run``.

    run = MigrationRun.start(plan, db)      # a stored row, status "draft"
    run.preflight()                         # stores the report; status "blocked" or "clear"
    run.gate()                              # GateDecision: can_apply, reasons, remediations
    run.phases()                            # the compiled phases A/B/C, nothing executed
    run.apply(confirm_large_non_concurrent=["public.orders"])
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any


from .apply import (
    ApplyFailure,
    ApplyOptions,
    ApplyProgress,
    PhaseRunner,
    RunningApply,
    concurrent_apply_error,
    failure_message,
    release_apply_lock,
    running_applies,
    try_apply_lock,
)
from ..catalog import Catalog
from ..checks import Check, PreflightOptions, derive_checks
from ..report.contract import PreflightReport, utc_now
from ..db import Database, connect
from ..errors import ApplyBlocked, ApplyFailed, ConnectionFailed, PhaseOrderError, RunStateError
from .gate import (
    Acknowledgement,
    Confirmation,
    GateDecision,
    GateFacts,
    acknowledgement_requests,
    confirmation_requests,
    decide,
    matches_table,
)
from ..plan.phases import ApplyPhases, compile_phases
from ..plan import MigrationPlan
from ..read.scan import Cancel
from ..read.preflight import (
    ProgressCallback,
    catalog_session,
    run_preflight,
    time_columns,
    violating_rows,
    violations_over_time,
)
from ..checks.remediation import Remediation, remediations_for
from .resume import Remaining, remaining_steps
from .keep import kept_rows
from .remediate import RemediationPreview, preview, restore, run_remediation
from .store import DEFAULT_STORE_SCHEMA, RunRecord, RunStore, now_text

if TYPE_CHECKING:
    import pandas as pd


def _tool_version() -> str:
    from ..version import __version__

    return __version__


def recover_interrupted(db: Database, store: RunStore, *, holding_lock: bool = False,
                        except_run: int | None = None) -> list[RunRecord]:
    """Runs stored as ``applying`` while no apply holds the lock died mid-apply (a crash, a killed kernel):
    mark them ``failed`` with where they stopped. Returns the runs it marked."""
    marked: list[RunRecord] = []

    def mark() -> None:
        for record in store.applying():
            if record.id == except_run:
                continue
            where = record.where_it_stopped() or "before its first statement"
            message = (
                f"interrupted: the apply stopped without recording an end (its process or connection was lost), "
                f"at {where}. PostgreSQL rolled back any transaction that was open; statements marked applied "
                "stay applied. A CONCURRENTLY build may have left an INVALID index, which the next preflight "
                "reports with the DROP that clears it."
            )
            marked.append(store.transition(record.id, "failed", note=message, error=message))

    if holding_lock:
        mark()
        return marked
    if not store.applying():
        return marked
    with db.dedicated() as conn:
        if try_apply_lock(conn, None):
            try:
                mark()
            finally:
                release_apply_lock(conn)
    return marked


class MigrationRun:
    """One attempt to apply one plan, stored as a ``migration_run`` row from draft to applied or failed."""

    def __init__(self, db: Database, store: RunStore, record: RunRecord, plan: MigrationPlan,
                 options: ApplyOptions | None = None) -> None:
        self.db = db
        self.store = store
        self._record = record
        self.plan = plan
        self.options = options or ApplyOptions()
        self.preflight_options = PreflightOptions()
        self.resumes: list[int] = []  # the failed runs of this plan that this run continues
        self.running_applies: list[RunningApply] = []  # backends of earlier applies still running at start

    # --- creating and loading --------------------------------------------------------------------------

    @classmethod
    def start(cls, plan: MigrationPlan, db: Database | str | Any = None, *, name: str | None = None,
              store_schema: str = DEFAULT_STORE_SCHEMA, options: ApplyOptions | None = None) -> MigrationRun:
        """Store a new run of ``plan`` (status ``draft``). Earlier runs of the same plan are in
        ``previous_runs``; one that died mid-apply is marked failed, with where it stopped, first."""
        database = connect(db)
        store = RunStore(database, store_schema)
        recover_interrupted(database, store)
        running = running_applies(database)
        for backend in running:
            warnings.warn(backend.describe(), stacklevel=2)
        # A plan whose earlier run failed half-way continues from where that run stopped (and from where a
        # run that continued it stopped, and so on): no step applies twice, no object is built twice.
        resumed: list[tuple[RunRecord, Remaining]] = []
        current = plan
        while True:
            earlier = [r for r in store.runs(current.fingerprint) if r.status in ("failed", "applied")]
            # A run that started applying may have changed the database, even with nothing recorded applied: a
            # killed CONCURRENTLY build goes on in its backend. Its remaining steps are judged on the catalog.
            started = earlier and any(e.phase in ("A", "B", "C") for e in earlier[0].applied_sql)
            if not started or earlier[0].status == "applied" or any(r.id == earlier[0].id for r, _ in resumed):
                break
            with catalog_session(database, 60, f"reading what run {earlier[0].id} left behind") as conn:
                left = remaining_steps(current, earlier[0], Catalog(conn))
            resumed.append((earlier[0], left))
            current = left.plan
        payload = [s.model_dump(mode="json", by_alias=True) for s in current.steps]
        note = "run created"
        if resumed:
            notes = "; ".join(n for _, left in resumed for n in left.notes) or "nothing of it was applied"
            note = (f"run created; continues run {', '.join(str(r.id) for r, _ in resumed)} of this plan "
                    f"(fingerprint {plan.fingerprint[:12]}): {notes}")
        run_id = store.create(plan=payload, fingerprint=current.fingerprint, name=name or plan.name,
                              tool_version=_tool_version(), note=note)
        run = cls(database, store, store.get(run_id), current, options)
        run.resumes = [r.id for r, _ in resumed]
        run.running_applies = running
        if resumed:
            warnings.warn(
                f"run {resumed[-1][0].id} of this plan failed mid-apply; run {run_id} continues it with the "
                f"{len(current)} step(s) left ({'; '.join(resumed[-1][1].notes) or 'nothing of it was applied'}).",
                stacklevel=2)
        return run

    @classmethod
    def load(cls, run_id: int, db: Database | str | Any = None, *, store_schema: str = DEFAULT_STORE_SCHEMA,
             options: ApplyOptions | None = None) -> MigrationRun:
        """A stored run, with the plan it stored."""
        database = connect(db)
        store = RunStore(database, store_schema)
        record = store.get(run_id)
        plan = MigrationPlan(steps=tuple(record.plan), name=record.name)  # type: ignore[arg-type]
        return cls(database, store, record, plan, options)

    # --- state -------------------------------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self._record.id

    @property
    def record(self) -> RunRecord:
        return self._record

    def refresh(self) -> RunRecord:
        self._record = self.store.get(self.id)
        return self._record

    @property
    def status(self) -> str:
        return self.refresh().status

    @property
    def report(self) -> PreflightReport | None:
        data = self._record.preflight_report
        return PreflightReport.model_validate(data) if data else None

    @property
    def previous_runs(self) -> list[RunRecord]:
        """Earlier runs of the same plan (same fingerprint), newest first."""
        return [r for r in self.store.runs(self.plan.fingerprint) if r.id < self.id]

    def __repr__(self) -> str:
        return f"MigrationRun(id={self.id}, status={self._record.status!r}, steps={len(self.plan)})"

    def _repr_html_(self) -> str:
        from ..notebook.display import run_html

        return run_html(self._record)

    # --- preflight ---------------------------------------------------------------------------------------

    def preflight(self, *, explore: bool = False, progress: ProgressCallback | bool | None = None,
                  options: PreflightOptions | None = None, read_from: str | None = None,
                  rehearse_on: str | None = None, cancel: Cancel | None = None, **overrides: Any) -> PreflightReport:
        """Run the preflight (read-only) and store its report; the run becomes ``blocked`` or ``clear``."""
        record = self.refresh()
        if record.status in ("applying", "applied"):
            raise RunStateError(f"run {self.id} is {record.status}; start a new run to preflight this plan again.")
        if record.status == "failed" and not record.nothing_applied:
            raise RunStateError(
                f"run {self.id} failed after applying part of the plan ({record.error}); its plan no longer "
                "describes what is left to do. Write a plan for the remaining steps and start a new run.")
        opts = PreflightOptions(**{**(options or self.preflight_options).model_dump(),
                                   **({} if self.options.online else {"online": False}),
                                   **({"all_or_nothing": True} if self.options.all_or_nothing else {}), **overrides})
        self.preflight_options = opts
        report = run_preflight(self.plan, self.db, explore=explore, progress=progress, options=opts,
                               read_from=read_from, rehearse_on=rehearse_on, cancel=cancel)
        note = f"preflight {report.status}: {len(report.blockers)} blocking, {len(report.warnings)} warnings"
        self._record = self.store.transition(
            self.id, report.status, note=note,
            preflight_report=report.model_dump(mode="json", by_alias=True),
            preflight_fingerprint=self.plan.fingerprint, gate=None,
        )
        return report

    def update_plan(self, plan: MigrationPlan) -> None:
        """Replace the plan of a run not yet applied. Its old report no longer opens the gate."""
        record = self.refresh()
        if record.status in ("applying", "applied"):
            raise RunStateError(f"run {self.id} is {record.status}; its plan can no longer change.")
        payload = [s.model_dump(mode="json", by_alias=True) for s in plan.steps]
        self.store.update(self.id, plan=payload, plan_fingerprint=plan.fingerprint)
        self.plan = plan
        if record.status == "clear":
            self.store.transition(self.id, "stale", note="the plan changed after its preflight")
        self.refresh()

    # --- the gate ------------------------------------------------------------------------------------------

    def _derived_checks(self) -> list[Check]:
        with catalog_session(self.db, self.preflight_options.check_timeout, "reading the catalog") as conn:
            return derive_checks(self.plan, Catalog(conn), self.preflight_options)

    def _checks_of_findings(self, report: PreflightReport) -> dict[int, Check | None]:
        """Each finding's check, re-derived from the plan (same plan and catalog, same checks)."""
        by_key: dict[tuple[Any, ...], Check] = {}
        for check in self._derived_checks():
            by_key.setdefault((check.check_id, check.step, check.target), check)
        return {run.finding: by_key.get((run.check_id, run.step, run.target_ref))
                for run in report.checks if run.finding is not None}

    def check_of(self, finding: int | str) -> Check | None:
        """The check behind a finding of the stored report (by index in ``results`` or by ``checkId``)."""
        report = self.report
        if report is None:
            raise RunStateError(f"run {self.id} has no preflight report yet: run run.preflight() first.")
        return self._checks_of_findings(report).get(_finding_index(report, finding))

    def remediations(self) -> list[Remediation]:
        """What can be done about each blocking finding (and each unconfirmed large-table index)."""
        report = self.report
        if report is None:
            return []
        checks = self._checks_of_findings(report)
        out: list[Remediation] = []
        for index, finding in enumerate(report.results):
            out.extend(remediations_for(finding, index, checks.get(index), self.plan))
        return out

    def phases(self) -> ApplyPhases:
        """The phases apply would run, compiled against the database's catalog; nothing is executed."""
        with catalog_session(self.db, self.preflight_options.check_timeout, "compiling the phases") as conn:
            phases = compile_phases(self.plan, Catalog(conn), online=self.options.online,
                                    all_or_nothing=self.options.all_or_nothing)
        return phases.model_copy(update={"lock_timeout": self.options.lock_timeout,
                                         "statement_timeout": self.options.statement_timeout})

    def gate(self, *, confirm_large_non_concurrent: Iterable[str] = (), acknowledge: Iterable[int] = ()
             ) -> GateDecision:
        """Decide whether Apply may run, store the decision, and return it with reasons and remediations."""
        if confirm_large_non_concurrent:
            self.confirm_large_non_concurrent(*confirm_large_non_concurrent)
        if acknowledge:
            self.acknowledge(*acknowledge)
        decision = self._decide()
        record = self._record
        values: dict[str, Any] = {"gate": decision.model_dump(mode="json")}
        stale = any(r.code in ("STALE_REPORT", "PLAN_CHANGED") for r in decision.reasons)
        if record.status == "clear" and stale:
            self._record = self.store.transition(self.id, "stale", note="; ".join(
                r.message for r in decision.reasons if r.code in ("STALE_REPORT", "PLAN_CHANGED")), **values)
        else:
            self.store.update(self.id, **values)
            self.refresh()
        return decision

    def _decide(self) -> GateDecision:
        """Read what the gate needs (the record, the report, the phases, other applies), then let the gate's
        pure policy decide (``gate.decide``)."""
        record = self.refresh()
        try:
            self.phases()
            phase_error = None
        except PhaseOrderError as exc:
            phase_error = str(exc)
        facts = GateFacts(
            run_id=self.id, status=record.status, error=record.error, report=self.report,
            plan_fingerprint=self.plan.fingerprint, recorded_plan_fingerprint=record.plan_fingerprint,
            report_fingerprint=record.preflight_fingerprint, confirmations=record.confirmations,
            phase_error=phase_error,
            # this run's own apply session holds the lock while it asks the gate: not another apply
            applies_running=[b.describe() for b in running_applies(self.db) if b.run_id != self.id],
            previous_failures=[(p.id, p.error) for p in self.previous_runs[:3] if p.status == "failed"],
            max_report_age=self.options.max_report_age, max_blocking_lock=self.options.max_blocking_lock,
            now=utc_now(),
        )
        return decide(facts, self.remediations)

    # --- confirmations ---------------------------------------------------------------------------------

    def confirm_large_non_concurrent(self, *tables: str, by: str | None = None) -> list[Confirmation]:
        """Confirm, on each named table (``schema.table`` or ``table``), a non-concurrent index build on a large
        table or a lock blocking writes longer than ``ApplyOptions.max_blocking_lock``. Stored with who, when, and
        the estimate of the current report (rows, size, the hold shown)."""
        report = self.refresh() and self.report
        if report is None:
            raise RunStateError(f"run {self.id} has no preflight report to confirm against: run run.preflight().")
        requests = confirmation_requests(report, set(), self.options.max_blocking_lock)
        created = report.model_dump(mode="json", by_alias=True)["createdAt"]
        confirmations: list[Confirmation] = []
        for given in tables:
            matching = [r for r in requests if matches_table(given, r.table)]
            if not matching:
                needed = ", ".join(r.table for r in requests) or "none"
                raise ValueError(f"{given!r} does not name a table that needs a confirmation in this plan (a "
                                 "non-concurrent index build on a large table, or a lock held longer than "
                                 f"max_blocking_lock); the tables that need a confirmation are: {needed}.")
            for request in matching:
                confirmations.append(Confirmation(
                    table=request.table, step=request.step, what=request.step_summary,
                    estimated_rows=request.estimated_rows, total_bytes=request.total_bytes,
                    hold_seconds=request.hold_seconds, confirmed_by=by or self._record.os_user, db_user=self._record.db_user,
                    confirmed_at=now_text(), report_created_at=created,
                ))
        if confirmations:
            stored = [c.model_dump(mode="json") for c in [*self._record.confirmations, *confirmations]]
            self.store.update(self.id, confirmations=stored)
            self.refresh()
        return confirmations

    def acknowledge(self, *steps: int, by: str | None = None) -> list[Acknowledgement]:
        """Acknowledge each step (1-based) that the current report names as not verifiable before apply: you have
        reviewed it and accept that PostgreSQL alone checks it at apply. Stored with who, when, and the finding."""
        report = self.refresh() and self.report
        if report is None:
            raise RunStateError(f"run {self.id} has no preflight report to acknowledge against: run run.preflight().")
        requests = {r.step: r for r in acknowledgement_requests(report, set())}
        created = report.model_dump(mode="json", by_alias=True)["createdAt"]
        given: list[Acknowledgement] = []
        for step in steps:
            request = requests.get(int(step))
            if request is None:
                needed = ", ".join(str(s) for s in requests) or "none"
                raise ValueError(f"step {step} is not one this report names as not verifiable; the steps that need "
                                 f"an acknowledgement are: {needed}.")
            given.append(Acknowledgement(
                step=request.step, what=request.step_summary, finding=request.message,
                acknowledged_by=by or self._record.os_user, db_user=self._record.db_user,
                acknowledged_at=now_text(), report_created_at=created))
        if given:
            stored = [c.model_dump(mode="json") for c in [*self._record.confirmations, *given]]
            self.store.update(self.id, confirmations=stored)
            self.refresh()
        return given

    # --- remediation -------------------------------------------------------------------------------------

    def violations(self, finding: int | str, *, page: int = 0, page_size: int = 1000) -> pd.DataFrame:
        """Page ``page`` (0-based) of every violating row of a finding, as a DataFrame (read-only)."""
        from ..report.frames import rows_frame

        check = self.check_of(finding)
        if check is None:
            raise ValueError(f"finding {finding!r} is not a data check of this plan; its rows cannot be listed.")
        rows, columns = violating_rows(self.db, check, offset=page * page_size, limit=page_size,
                                       timeout=self.preflight_options.check_timeout)
        return rows_frame(rows, columns)

    def time_columns(self, finding: int | str) -> list[str]:
        """The timestamp and date columns of a finding's violating rows: what ``violations_over_time`` plots."""
        check = self.check_of(finding)
        return [] if check is None else time_columns(self.db, check, self.preflight_options.check_timeout)

    def violations_over_time(self, finding: int | str, column: str | None = None) -> pd.DataFrame:
        """A finding's violating rows counted per period of a timestamp or date ``column`` (default: the first
        of ``time_columns``), read-only: columns ``at`` and ``violations``; ``attrs`` holds the period and the
        column. It shows when the bad data started. ``frame.plot(x="at", y="violations")`` draws it."""
        import pandas as pd

        check = self.check_of(finding)
        if check is None:
            raise ValueError(f"finding {finding!r} is not a data check of this plan; its rows cannot be counted.")
        period, column, counted = violations_over_time(self.db, check, column,
                                                       timeout=self.preflight_options.check_timeout)
        frame = pd.DataFrame(counted, columns=["at", "violations"])
        frame["at"] = pd.to_datetime(frame["at"], utc=True)
        frame.attrs.update(period=period, column=column)
        return frame

    def _own(self, remediation: Remediation) -> Remediation:
        # What runs is this run's own remediation, rebuilt from the plan and the catalog as sql objects; the
        # one passed in only says which. A remediation whose text no longer matches is refused, not run.
        if not remediation.runnable or remediation.sql is None:
            raise ValueError(f"remediation {remediation.kind!r} is shown, not run: {remediation.title}")
        own = next((r for r in self.remediations() if r.kind == remediation.kind
                    and r.finding == remediation.finding), None)
        if own is None or own.sql != remediation.sql:
            raise ValueError(f"remediation {remediation.kind!r} of finding {remediation.finding} is not one of this "
                             f"run's current remediations (the report or the data changed since it was shown): take "
                             "it again from run.remediations() or run.gate().remediations.")
        return own

    def preview(self, remediation: Remediation, *, survivor: str = "first") -> RemediationPreview:
        """What ``remediation`` would delete or change, read-only: its rows, the rows of other tables that reference
        them and what each foreign key does with them (or that they become orphans, where the plan adds the key),
        a dedupe's kept row of each group (``survivor``: 'first', 'oldest:<column>', 'newest:<column>',
        'most_referenced'), and whether its rows fit ``keep_limit_bytes``."""
        return preview(self.db, self.plan, self._own(remediation), self.options, survivor=survivor,
                       timeout=self.preflight_options.check_timeout)

    def remediate(self, remediation: Remediation, *, value: Any = None, expression: str | None = None,
                  keep: bool = True, survivor: str = "first") -> int:
        """Run one runnable remediation (its own transaction, under lock_timeout) and record it. Returns the
        rows it changed. The report no longer describes the data: run the preflight again afterwards.

        Every row it deletes, and every row it overwrites as it was, is kept on the run in the same statement
        (``remediation_rows``), so ``restore(position)`` can put them back. Above ``keep_limit_bytes`` it refuses,
        unless ``keep=False`` (then nothing is kept, and the record says so).

        A backfill needs ``value`` (sent as a query parameter) or ``expression`` (SQL over the row's columns,
        e.g. ``"'unknown-' || id"``, checked by PostgreSQL's parser). A dedupe keeps the row ``survivor`` says."""
        own = self._own(remediation)
        record = self.refresh()
        if record.status in ("applying", "applied"):
            raise RunStateError(f"run {self.id} is {record.status}; remediations belong before the apply.")
        try:
            rows = run_remediation(self.db, self.store, self.id, self.plan, own, self.options, value=value,
                                   expression=expression, keep=keep, survivor=survivor)
        finally:
            self.refresh()  # the record says what became of it, refused or failed too
        if record.status == "clear":
            self.store.transition(self.id, "stale", note=f"data changed by remediation {remediation.kind}")
        self.refresh()
        return rows

    def kept_frame(self) -> pd.DataFrame:
        """Every row this run's remediations deleted or overwrote, as kept (``remediation_rows``): the statement's
        position, the table, its depth (0: the remediation's own table; 1, 2, ...: rows a foreign key's ON DELETE
        action reached), deleted or updated, the row's key, the row as it was, and when it was restored."""
        import pandas as pd

        with self.db.dedicated() as conn:
            rows = kept_rows(conn, self.store.schema, self.id)
        return pd.DataFrame(rows, columns=["position", "table_name", "depth", "action", "row_key", "old_row",
                                           "restored_at"])

    def restore(self, position: int) -> int:
        """Put back what the remediation at ``position`` of ``applied_sql`` deleted or overwrote, in one transaction,
        and record it. Refuses, changing nothing, where those rows have changed since or a constraint now forbids
        them. The report no longer describes the data: run the preflight again afterwards."""
        record = self.refresh()
        if record.status in ("applying", "applied"):
            raise RunStateError(f"run {self.id} is {record.status}: restore belongs before the apply (after it, the "
                                "plan may have changed the table; the kept rows stay in remediation_rows).")
        try:
            rows = restore(self.db, self.store, self.id, position, self.options)
        finally:
            self.refresh()
        if record.status == "clear":
            self.store.transition(self.id, "stale", note=f"data changed by the restore of statement {position}")
        self.refresh()
        return rows

    # --- apply -------------------------------------------------------------------------------------------

    def _record_failure(self, message: str) -> bool:
        """Mark the run failed; False when the server does not answer (the next start will mark it)."""
        try:
            self._record = self.store.transition(self.id, "failed", note=message, error=message)
        except ConnectionFailed:
            return False
        return True

    def apply(self, *, confirm_large_non_concurrent: Iterable[str] = (), acknowledge: Iterable[int] = (),
              options: ApplyOptions | None = None, progress: ApplyProgress | None = None,
              cancel: Cancel | None = None) -> RunRecord:
        """Apply the plan in phases if the gate allows it; otherwise raise ``ApplyBlocked`` with the reasons.
        ``cancel``: a ``Cancel`` whose ``cancel()`` (another thread, a panel's button) stops the apply before its
        next statement and cancels the running one on the server; the record says where it stopped, and a new
        apply continues from there.

        Holds the database's apply lock throughout (a second apply raises ``ConcurrentApply``). A failure
        raises ``ApplyFailed`` after recording what was applied and what was not."""
        opts = options or self.options
        self.options = opts
        with self.db.dedicated() as conn:
            if not try_apply_lock(conn, self.id):
                raise concurrent_apply_error(conn)
            try:
                recover_interrupted(self.db, self.store, holding_lock=True, except_run=self.id)
                decision = self.gate(confirm_large_non_concurrent=confirm_large_non_concurrent,
                                     acknowledge=acknowledge)
                if not decision.can_apply:
                    raise ApplyBlocked(decision, "Apply is blocked:\n" + "\n".join(
                        f"- {r.message}" for r in decision.reasons))
                phases = self.phases()
                self._record = self.store.transition(
                    self.id, "applying", note=f"apply started: {len(phases)} statements",
                    gate=decision.model_dump(mode="json"))
                runner = PhaseRunner(self.db, conn, self.store, self.id, opts, progress, cancel=cancel)
                try:
                    runner.run(phases)
                except ApplyFailure as failure:
                    message = failure_message(self.id, phases, runner, failure)
                    if not self._record_failure(message):
                        message += (f" The server does not answer, so the record still says 'applying': the next "
                                    f"MigrationRun.start (or erd-preflight apply) marks run {self.id} failed, with "
                                    "where it stopped, and continues the plan from there.")
                    raise ApplyFailed(message, run_id=self.id, phase=failure.phase) from failure
                except BaseException as exc:
                    message = (f"Apply of run {self.id} was interrupted ({type(exc).__name__}: {exc}). "
                               "PostgreSQL rolled back any open transaction; see applied_sql for what was applied.")
                    self._record_failure(message)
                    raise
                self._record = self.store.transition(
                    self.id, "applied", note=f"applied {len(phases)} statements in phases "
                    f"{', '.join(sorted({s.phase for s in phases.statements}))}")
            finally:
                release_apply_lock(conn)
        return self._record


def _finding_index(report: PreflightReport, finding: int | str) -> int:
    if isinstance(finding, int):
        if not 0 <= finding < len(report.results):
            raise IndexError(f"the report has {len(report.results)} findings; there is no finding {finding}")
        return finding
    for index, result in enumerate(report.results):
        if result.check_id == finding:
            return index
    raise KeyError(f"no finding with checkId {finding!r}; the findings are: "
                   f"{', '.join(r.check_id for r in report.results) or 'none'}")

