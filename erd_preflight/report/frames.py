"""pandas views of a report: findings, the checklist, and each finding's sample rows with real dtypes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from .contract import PreflightReport, SampleColumn

# Both spellings: format_type() says "bigint", psycopg's type_display says "int8".
_INTEGER = ("smallint", "integer", "bigint", "oid", "int2", "int4", "int8")
_FLOAT = ("real", "double precision", "float4", "float8")
_TEXT = ("text", "character varying", "character", "varchar", "bpchar", "name", "uuid", "citext")


def _dtype_series(values: pd.Series, pg_type: str) -> pd.Series:
    base = pg_type.split("(")[0].strip()
    if pg_type.endswith("[]"):
        return values
    if base in _INTEGER:
        return values.astype("Int64")
    if base in _FLOAT:
        return values.astype("Float64")
    if base == "numeric":
        import decimal

        return values.map(lambda v: None if v is None else decimal.Decimal(v)).astype(object)
    if base in ("boolean", "bool"):
        return values.astype("boolean")
    if base in _TEXT:
        return values.astype("string")
    if base.startswith("timestamp"):
        return pd.to_datetime(values, utc=base == "timestamptz" or "with time zone" in base, format="ISO8601")
    if base == "date":
        return pd.to_datetime(values, format="ISO8601")
    return values


def rows_frame(rows: list[dict[str, Any]], columns: list[SampleColumn] | None) -> pd.DataFrame:
    names = [c.name for c in columns] if columns else (list(rows[0]) if rows else [])
    frame = pd.DataFrame.from_records([[r.get(n) for n in names] for r in rows], columns=names)
    for column in columns or []:
        try:
            frame[column.name] = _dtype_series(frame[column.name].astype(object), column.type)
        except (ValueError, TypeError):
            pass  # keep the values as they are rather than lose a sample
    return frame


def findings_frame(report: PreflightReport) -> pd.DataFrame:
    rows = []
    steps = {run.finding: run.step for run in report.checks if run.finding is not None}
    for index, finding in enumerate(report.results):
        stats = finding.stats or {}
        rows.append({
            "step": steps.get(index),
            "checkId": finding.check_id,
            "severity": finding.severity,
            "target": finding.target_ref.label() if finding.target_ref else "",
            "message": finding.message,
            "violations": stats.get("violations"),
            "totalRows": stats.get("totalRows"),
            "samples": len(finding.sample_rows or []),
        })
    frame = pd.DataFrame(rows, columns=["step", "checkId", "severity", "target", "message", "violations",
                                        "totalRows", "samples"])
    return frame.astype({"step": "Int64", "violations": "Int64", "totalRows": "Int64", "samples": "Int64"})


def checklist_frame(report: PreflightReport) -> pd.DataFrame:
    rows = [
        {
            "step": run.step,
            "stepSummary": run.step_summary,
            "checkId": run.check_id,
            "outcome": run.outcome,
            "target": run.target_ref.label() if run.target_ref else "",
            "violations": run.stats.get("violations"),
            "totalRows": run.stats.get("totalRows"),
            "ms": run.duration_ms,
            "message": run.message,
        }
        for run in report.checks
    ]
    frame = pd.DataFrame(rows, columns=["step", "stepSummary", "checkId", "outcome", "target", "violations",
                                        "totalRows", "ms", "message"])
    return frame.astype({"step": "Int64", "violations": "Int64", "totalRows": "Int64", "ms": "Float64"})


def samples_frame(report: PreflightReport, check: str | int) -> pd.DataFrame:
    """The sample rows of the finding at index ``check``, or of every finding with that checkId
    (several findings are stacked with a ``step`` column first)."""
    columns_of = {run.finding: run for run in report.checks if run.finding is not None}
    if isinstance(check, int):
        if not 0 <= check < len(report.results):
            raise IndexError(f"the report has {len(report.results)} findings; there is no finding {check}")
        indexes = [check]
    else:
        indexes = [i for i, r in enumerate(report.results) if r.check_id == check]
        if not indexes:
            known = sorted({r.check_id for r in report.results}) or ["none"]
            raise KeyError(f"no finding with checkId {check!r}; the findings are: {', '.join(known)}")
    frames = []
    for i in indexes:
        run = columns_of.get(i)
        frame = rows_frame(report.results[i].sample_rows or [], run.sample_columns if run else None)
        if len(indexes) > 1:
            frame.insert(0, "step", run.step if run else None)
        frames.append(frame)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# The checklist's marks in plain text (terminals, logs): same width, readable without colour.
TEXT_MARKS = {"pass": "ok  ", "warning": "WARN", "blocking": "FAIL", "skipped": "skip"}


def summary_text(report: PreflightReport) -> str:
    ran = [c for c in report.checks if c.outcome != "skipped"]
    lines = [f"{report.headline}: {len(ran)} of {len(report.checks)} checks ran, "
             f"{len(report.blockers)} blocking, {len(report.warnings)} warnings"]
    for run in report.checks:
        mark = TEXT_MARKS[run.outcome]
        lines.append(f"  [{mark}] step {run.step} {run.check_id}: {run.message}")
    held = lock_lines(report, at_least=LOCK_SHOWN_FROM)
    if held:
        lines.append("  the apply's locks on existing tables (held ≥ 0.1 s, estimated on this database):")
        lines += [f"    {line}" for line in held]
    return "\n".join(lines)


LOCK_SHOWN_FROM = 0.1  # seconds: a shorter hold is not worth a line (locks_frame() has every one)


def partitions_frame(report: PreflightReport, check: str | int) -> pd.DataFrame:
    """partition, rows, violations: the per-partition counts of a finding (empty when its table was read whole)."""
    index = check if isinstance(check, int) else next(
        (i for i, r in enumerate(report.results) if r.check_id == check), None)
    if index is None or not 0 <= index < len(report.results):
        raise KeyError(f"no finding {check!r} in the report")
    stats = report.results[index].stats or {}
    names = [key[5:-1] for key in stats if key.startswith("rows[") and key.endswith("]")]
    return pd.DataFrame({"partition": names, "rows": [int(stats[f"rows[{n}]"]) for n in names],
                         "violations": [int(stats.get(f"violations[{n}]", 0)) for n in names]},
                        columns=["partition", "rows", "violations"])


def plot_violations(report: PreflightReport, ax: Any = None) -> Any:
    """Violating rows per step, one bar per finding (``step N CHECK_ID``), drawn by pandas with matplotlib
    (``pip install 'erd_preflight[notebook]'``). Returns the matplotlib Axes."""
    frame = findings_frame(report)
    frame = frame[frame["violations"].notna()]
    labels = [f"step {s} {c}" for s, c in zip(frame["step"], frame["checkId"])]
    shown = pd.DataFrame({"violating rows": frame["violations"].astype(float).to_numpy()}, index=labels)
    colours = ["#b91c1c" if v == "blocking" else "#ca8a04" for v in frame["severity"]]
    axes = shown.iloc[::-1].plot.barh(ax=ax, legend=False, color=colours[::-1],
                                      title="violating rows per step", figsize=(7, 0.4 * len(shown) + 1))
    axes.set_xlabel("rows")
    return axes


LOCK_COLUMNS = ["step", "phase", "transaction", "relation", "mode", "blocks", "work", "rows", "hold_seconds",
                "hold_low_seconds", "hold_high_seconds", "measured", "timed", "sql"]


def locks_frame(report: PreflightReport) -> pd.DataFrame:
    """One row per statement of the apply and relation it locks (``report.locks``)."""
    rows = [s.model_dump() for s in report.locks.statements] if report.locks else []
    return pd.DataFrame([{c: r.get(c) for c in LOCK_COLUMNS} for r in rows], columns=LOCK_COLUMNS)


def lock_lines(report: PreflightReport, *, at_least: float = 0.0) -> list[str]:
    """A line per step whose apply blocks writes or reads on an existing table, worst first within the step:
    "step 2: blocks writes on public.orders ≈ 40 s (20-80 s): SHARE, index build"."""
    if report.locks is None:
        return []
    lines: list[str] = []
    seen: set[tuple[int, str]] = set()
    for s in sorted(report.locks.statements, key=lambda s: (s.step, -s.hold_seconds)):
        if s.blocks == "DDL" or (s.step, s.relation) in seen or s.hold_seconds < at_least:
            continue
        seen.add((s.step, s.relation))
        if s.timed:
            lines.append(f"step {s.step}: blocks {s.blocks} on {s.relation} for {_seconds(s.hold_seconds)} "
                         f"(timed on the copy): {s.mode}, {s.work}")
            continue
        lines.append(f"step {s.step}: blocks {s.blocks} on {s.relation} ≈ {_seconds(s.hold_seconds)} "
                     f"({_seconds(s.hold_low_seconds)}–{_seconds(s.hold_high_seconds)}): {s.mode}, {s.work}"
                     + ("" if s.measured else " (declared, not measured)"))
    return lines


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 60 else f"{value / 60:.1f} min"
