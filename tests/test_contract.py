import json
import re

import jsonschema

import erd_preflight as ep
from erd_preflight.report.contract import CheckRun, SampleColumn


def _report() -> ep.PreflightReport:
    finding = ep.PreflightCheckResult(
        check_id="UNIQUE_PRECHECK",
        severity="blocking",
        target_ref=ep.TargetRef(kind="column", schema="public", table="users", columns=("email",)),
        message="2 values occur more than once",
        sample_rows=[{"email": "a@x", "duplicate_rows": 2}],
        stats={"violations": 4, "duplicateGroups": 2, "totalRows": 10},
    )
    warning = ep.PreflightCheckResult(check_id="LARGE_TABLE_WARNING", severity="warning", message="large")
    run = CheckRun(check_id="UNIQUE_PRECHECK", step=1, step_summary="add unique", outcome="blocking", message="m",
                   finding=0, sample_columns=[SampleColumn(name="email", type="text")])
    return ep.PreflightReport(status="blocked", results=[finding, warning], checks=[run])


def test_contract_json_has_exactly_the_typescript_keys():
    data = json.loads(_report().model_dump_json(by_alias=True))
    assert set(data) == {"status", "results", "createdAt", "checks"}
    assert set(data["results"][0]) == {"checkId", "severity", "targetRef", "message", "sampleRows", "stats"}
    # Optional keys (TypeScript `key?:`) are absent, not null.
    assert set(data["results"][1]) == {"checkId", "severity", "message"}


def test_created_at_is_iso8601_utc_like_to_iso_string():
    created = json.loads(_report().contract_json())["createdAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created)


def test_report_round_trips_through_contract_json():
    report = _report()
    assert ep.PreflightReport.model_validate_json(report.model_dump_json(by_alias=True)) == report


def test_exported_json_schema_validates_contract_json_and_rejects_bad_severity():
    schema = ep.report_json_schema()
    data = json.loads(_report().contract_json())
    jsonschema.validate(data, schema)
    data["results"][0]["severity"] = "fatal"
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("a severity outside warning/blocking must not validate")


def test_snake_case_attributes_are_accepted_as_input_too():
    finding = ep.PreflightCheckResult(checkId="X", severity="warning", message="m")
    assert finding.check_id == "X"
