"""The preflight result contract (spec 1.1.04a) as pydantic models.

The JSON of these models is the seed's TypeScript contract, key for key: ``checkId``, ``severity``,
``targetRef``, ``message``, ``sampleRows``, ``stats`` for a finding; ``status``, ``results``,
``createdAt`` for the report. Optional keys are left out of the JSON rather than written as null,
as TypeScript's ``key?: T`` expects. The report carries one additional key, ``checks``: every check
that ran (passes included) with its outcome, counts and duration, so a checklist can show passes too.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

PreflightStatus = Literal["clear", "blocked"]
Severity = Literal["warning", "blocking"]
Outcome = Literal["pass", "warning", "blocking", "skipped"]

DEFAULT_SAMPLE_CAP = 50
# A warning whose stats hold this key names a step preflight cannot verify: the gate opens only once a person
# acknowledges that step (``MigrationRun.acknowledge``, ``apply(acknowledge=[...])``, ``--acknowledge``).
ACKNOWLEDGE_STEP = "acknowledgeStep"

# The check ids of the contract's ``checkId`` (a step kind names the one that answers for it: PRIMARY_CHECK).
NOT_NULL_PRECHECK = "NOT_NULL_PRECHECK"
UNIQUE_PRECHECK = "UNIQUE_PRECHECK"
FK_VIOLATIONS_PRECHECK = "FK_VIOLATIONS_PRECHECK"
CAST_PRECHECK = "CAST_PRECHECK"
CHECK_CONSTRAINT_PRECHECK = "CHECK_CONSTRAINT_PRECHECK"
EXCLUSION_PRECHECK = "EXCLUSION_PRECHECK"
OBJECT_PRECHECK = "OBJECT_PRECHECK"
INVALID_INDEX_PRECHECK = "INVALID_INDEX_PRECHECK"
LARGE_TABLE_WARNING = "LARGE_TABLE_WARNING"
NON_CONCURRENT_INDEX_WARNING = "NON_CONCURRENT_INDEX_WARNING"
DESTRUCTIVE_CHANGE_WARNING = "DESTRUCTIVE_CHANGE_WARNING"
UNMODELLED_SQL_WARNING = "UNMODELLED_SQL_WARNING"
REHEARSAL_PRECHECK = "REHEARSAL_PRECHECK"  # PostgreSQL refused a statement on an empty copy of the schema
REHEARSAL_UNAVAILABLE_WARNING = "REHEARSAL_UNAVAILABLE_WARNING"


def _iso_utc(value: datetime) -> str:
    # The shape of JavaScript's Date.toISOString(): milliseconds and a literal Z.
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


IsoUtc = Annotated[datetime, PlainSerializer(_iso_utc, return_type=str, when_used="json")]


def utc_now() -> datetime:
    return _to_millis(datetime.now(timezone.utc))


def _to_millis(value: datetime) -> datetime:
    # The JSON keeps milliseconds; keeping no more in memory makes the JSON round-trip exact.
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class ContractModel(BaseModel):
    """camelCase JSON keys, snake_case attributes, optional keys omitted when empty."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    # TypeScript's ``key?: T`` means "absent", not null: optional keys are left out unless asked for.
    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("exclude_none", True)
        return super().model_dump(**kwargs)

    def model_dump_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("exclude_none", True)
        return super().model_dump_json(**kwargs)


class TargetRef(ContractModel):
    """What a check looks at: a table, a column or columns, a relationship (both ends), an index or constraint."""

    kind: Literal["table", "column", "relationship", "index", "constraint", "statement"]
    schema_: str | None = Field(default=None, alias="schema")
    table: str | None = None
    columns: tuple[str, ...] | None = None
    ref_schema: str | None = None
    ref_table: str | None = None
    ref_columns: tuple[str, ...] | None = None
    name: str | None = None

    def label(self) -> str:
        """A short human label such as ``public.orders(customer_id) → public.customers(id)``."""
        if self.kind == "statement":
            return self.name or "statement"
        table = ".".join(p for p in (self.schema_, self.table) if p)
        text = table
        if self.columns:
            text += "(" + ", ".join(self.columns) + ")"
        if self.ref_table:
            ref = ".".join(p for p in (self.ref_schema, self.ref_table) if p)
            text += " → " + ref + ("(" + ", ".join(self.ref_columns) + ")" if self.ref_columns else "")
        if self.name and self.kind in ("index", "constraint"):
            text = f"{self.name} on {text}" if text else self.name
        return text


class PreflightCheckResult(ContractModel):
    """One finding: a warning or a blocker. Passing checks are not findings; see ``CheckRun``."""

    check_id: str
    severity: Severity
    target_ref: TargetRef | None = None
    message: str
    sample_rows: list[dict[str, Any]] | None = None
    stats: dict[str, int | float] | None = None

    def _repr_html_(self) -> str:
        from ..notebook.display import finding_html

        return finding_html(self)


class SampleColumn(ContractModel):
    """A column of the sample rows, with its PostgreSQL type, so DataFrames get sensible dtypes."""

    name: str
    type: str


class CheckRun(ContractModel):
    """One entry of the checklist: a check that ran (or was skipped after an early stop)."""

    check_id: str
    step: int = Field(description="1-based index of the plan step this check belongs to")
    step_summary: str
    target_ref: TargetRef | None = None
    outcome: Outcome
    message: str
    stats: dict[str, int | float] = Field(default_factory=dict)
    duration_ms: float = 0.0
    sample_columns: list[SampleColumn] | None = None
    finding: int | None = Field(default=None, description="index of this check's finding in results")
    # Only on an early answer, which the progress callback gets before a long scan ends: a few violating rows.
    # The report's own checklist never holds it (the finding in results has the samples).
    sample_rows: list[dict[str, Any]] | None = None


class ReplicaStamp(ContractModel):
    """Where the data checks read when ``read_from`` named a hot standby, and how far behind the primary it was."""

    url: str
    replay_lsn: str = Field(description="pg_last_wal_replay_lsn() on the standby when its snapshot was taken")
    lag_bytes: int = Field(description="WAL the standby had not replayed yet (the primary's LSN minus replay_lsn)")
    lag_seconds: float = Field(description="seconds since the last transaction the standby replayed committed; 0 "
                                           "when it had replayed everything")
    snapshots: int = Field(default=1, description="snapshots the checks read: more than 1 after a recovery conflict")
    conflicts: int = Field(default=0, description="checks the standby cancelled to replay WAL, each run again")


class StatementLock(ContractModel):
    """A lock one statement of the apply takes on a relation that exists before the plan, as PostgreSQL took it in
    the rehearsal, and how long it is held on this target (estimated: see ``erd_preflight.read.locks``)."""

    step: int
    phase: str
    transaction: str = Field(description="the apply transaction it runs in (A1, C3), or none (a concurrent build)")
    sql: str
    relation: str
    mode: str = Field(description="the lock mode, as PostgreSQL's documentation names it: ACCESS EXCLUSIVE...")
    blocks: Literal["DDL", "writes", "reads and writes"]
    work: Literal["catalog", "scan", "index build", "rewrite"]
    rows: int = Field(description="the relation's estimated rows")
    hold_seconds: float = Field(description="estimated time the lock is held: this statement's work and that of "
                                            "every later statement of its transaction")
    hold_low_seconds: float
    hold_high_seconds: float
    measured: bool = Field(description="read from PostgreSQL in the rehearsal; false: the step kind's declared "
                                       "lock (rehearse=False)")
    timed: bool = Field(default=False, description="the holds are this statement's time, and that of the later "
                                                   "statements of its transaction, on a full copy of the target "
                                                   "(rehearse_on): not estimated")

    @property
    def blocks_writes(self) -> bool:
        return self.blocks != "DDL"


class LockReport(ContractModel):
    """What the apply does to the traffic: the steps that run in their online form, and every lock."""

    online_steps: list[int] = Field(default_factory=list)
    statements: list[StatementLock] = Field(default_factory=list)

    def write_blocking_hold(self, step: int) -> float:
        """The longest estimated hold of a lock of ``step`` that blocks writes (0: none)."""
        return max((s.hold_seconds for s in self.statements if s.step == step and s.blocks_writes), default=0.0)


class PreflightReport(ContractModel):
    """The outcome of a preflight: ``status``, the findings in ``results``, ``createdAt``, and the checklist."""

    status: PreflightStatus
    results: list[PreflightCheckResult]
    created_at: IsoUtc = Field(default_factory=utc_now)
    checks: list[CheckRun] = Field(default_factory=list)
    replica: ReplicaStamp | None = None
    locks: LockReport | None = None

    def locks_frame(self) -> pd.DataFrame:
        """One row per statement of the apply and relation it locks: the mode, what it blocks, the work, the
        estimated hold (range) on this target."""
        from .frames import locks_frame

        return locks_frame(self)

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _to_millis(value)

    def __repr__(self) -> str:
        # one line in a notebook's plain-text output and a log; the whole report is contract_json() and the HTML
        created = self.model_dump(mode="json", by_alias=True)["createdAt"]
        return (f"PreflightReport(status={self.status!r}, checks={len(self.checks)}, findings={len(self.results)}, "
                f"blocking={len(self.blockers)}, warnings={len(self.warnings)}, created_at={created!r})")

    @property
    def blocked(self) -> bool:
        return self.status == "blocked"

    @property
    def blockers(self) -> list[PreflightCheckResult]:
        return [r for r in self.results if r.severity == "blocking"]

    @property
    def warnings(self) -> list[PreflightCheckResult]:
        return [r for r in self.results if r.severity == "warning"]

    def contract_json(self, *, indent: int | None = None) -> str:
        """Exactly the contract JSON (camelCase keys), the same as ``model_dump_json(by_alias=True)``."""
        return self.model_dump_json(by_alias=True, indent=indent)

    def findings_frame(self) -> pd.DataFrame:
        from .frames import findings_frame

        return findings_frame(self)

    def checklist_frame(self) -> pd.DataFrame:
        from .frames import checklist_frame

        return checklist_frame(self)

    def samples(self, check: str | int) -> pd.DataFrame:
        """Sample violating rows of a finding, by its ``checkId`` or its index in ``results``."""
        from .frames import samples_frame

        return samples_frame(self, check)

    def partitions_frame(self, check: str | int) -> pd.DataFrame:
        """Rows and violating rows per partition of a finding whose table was checked partition by partition."""
        from .frames import partitions_frame

        return partitions_frame(self, check)

    @property
    def steps_to_acknowledge(self) -> list[int]:
        """The steps a finding names as not verifiable before apply: apply needs a person's acknowledgement of
        each (the status stays ``clear``, as the contract defines it)."""
        return sorted({int(step) for r in self.results if (step := (r.stats or {}).get(ACKNOWLEDGE_STEP)) is not None})

    @property
    def headline(self) -> str:
        """The status as a person reads it: "preflight CLEAR, but step 2 needs your acknowledgement before apply"
        where a step is left for a person."""
        head = f"preflight {self.status.upper()}"
        steps = self.steps_to_acknowledge
        if self.status == "clear" and steps:
            many = len(steps) > 1
            head += (f", but step{'s' if many else ''} {', '.join(map(str, steps))} need{'' if many else 's'} your "
                     "acknowledgement before apply")
        return head

    def summary(self) -> str:
        """A few plain lines: the status and each finding with its counts."""
        from .frames import summary_text

        return summary_text(self)

    def checklist_styler(self) -> Styler:
        """The checklist as a pandas Styler: pass / warning / blocking marks, coloured."""
        from ..notebook.display import checklist_styler

        return checklist_styler(self)

    def findings_styler(self) -> Styler:
        from ..notebook.display import findings_styler

        return findings_styler(self)

    def plot_violations(self, ax: Any = None) -> Any:
        """Violating rows per step, one bar per finding (matplotlib through pandas); returns the Axes."""
        from .frames import plot_violations

        return plot_violations(self, ax)

    def _repr_html_(self) -> str:
        from ..notebook.display import report_html

        return report_html(self)


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema of the contract JSON of a ``PreflightReport`` (camelCase keys)."""
    return PreflightReport.model_json_schema(by_alias=True, mode="serialization")


def report_json_schema_text() -> str:
    return json.dumps(report_json_schema(), indent=2, sort_keys=True)


def json_value(value: Any) -> Any:
    """A sample value as JSON can hold it; the DataFrame restores dtypes from the column types."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)
