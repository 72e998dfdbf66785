"""The README's commands are run: the test command by .ci/run, the demo here (and by .ci/run)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_keeps_the_two_commands_ci_runs():
    text = (ROOT / "README.md").read_text()
    assert re.search(r"<!-- demo-command -->\n```bash\npython3 .*erd_preflight\.demo\n", text)
    assert re.search(r"<!-- test-command -->\n```bash\npython3 .*pytest --nbval-lax\n", text)


def test_demo_prints_a_blocked_report_with_sample_rows():
    env = dict(os.environ)
    args = [sys.executable, "-m", "erd_preflight.demo"]
    if env.get("ERD_PREFLIGHT_TEST_URL"):
        args.append(env["ERD_PREFLIGHT_TEST_URL"])
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "preflight BLOCKED" in done.stdout
    first = done.stdout.splitlines()[0]  # one friendly line, no percent-encoded socket path
    if env.get("ERD_PREFLIGHT_TEST_URL"):
        assert re.fullmatch(r"PostgreSQL \d+\.\d+ at .+, demo schema loaded in \d+\.\d s", first), first
    else:
        assert re.fullmatch(r"embedded PostgreSQL \d+\.\d+, started in \d+\.\d s, data in a temporary folder "
                            r"\(removed when the demo ends\)", first), first
    assert "%2F" not in done.stdout
    assert "10 of 1,000 rows of erd_preflight_demo.customers have NULL in email" in done.stdout
    assert "sample rows of FK_VIOLATIONS_PRECHECK" in done.stdout and "shared@example.com" in done.stdout
    # the runbook half: remediated, clear, applied in phases, recorded
    assert "remediation backfill (NOT_NULL_PRECHECK): 10 rows changed" in done.stdout
    assert "preflight CLEAR" in done.stdout and re.search(r"run \d+: applied", done.stdout)
    assert "[B          ] applied  CREATE INDEX CONCURRENTLY" in done.stdout
    assert "VALIDATE CONSTRAINT" in done.stdout and "0042_orders.sql  applied" in done.stdout
