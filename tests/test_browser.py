"""One real browser: JupyterLab serves the quickstart notebook on localhost, Debian's headless Chromium (driven by
Playwright, no browser download) runs it up to its panel, clicks "Run preflight", and sees the checklist with
the blocking finding and a disabled Apply. The screenshot is saved under test-output/.

Chromium comes from Debian's package (`apt-get install chromium`, which `.ci/run` does). Without it the test is
skipped with that hint, unless ERD_PREFLIGHT_REQUIRE_BROWSER=1 (CI), where a missing browser fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ERD_PREFLIGHT_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_DIR = ROOT / "test-output"
# As the machine's own probe starts it: no background connections to a network that is not there.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _browser_or_skip() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser test"
    if os.environ.get("ERD_PREFLIGHT_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on localhost serving a copy of the quickstart notebook; yields the notebook's URL."""
    shutil.copy(ROOT / "notebooks" / "01_quickstart.ipynb", tmp_path / "01_quickstart.ipynb")
    port, token = _free_port(), "erd-preflight-browser-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / ".runtime"), "HOME": str(tmp_path)}
    log = open(tmp_path / "jupyterlab.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         "--allow-root", f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text())
                time.sleep(0.5)
        yield f"{base}/lab/tree/01_quickstart.ipynb?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def shot(locator, name: str) -> Path:
    """A screenshot of one element, saved under test-output/ for a person to look at."""
    path = SCREENSHOT_DIR / name
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path))
    assert path.stat().st_size > 5_000, f"{name} is empty"
    return path


def test_quickstart_in_jupyterlab_run_preflight_shows_the_checklist_and_apply_stays_disabled_then_run_all_applies(
        jupyterlab):
    """Walks the quickstart as a new user: the blocked panel, its open finding, the finding's violations over
    time, then Run All to the apply log and the run history; one screenshot of each in test-output/."""
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOT_DIR.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        try:
            page.goto(jupyterlab, timeout=90_000)
            # JupyterLab asks once whether to fetch its news (there is no network here): answer it, as a user would
            news = page.get_by_role("button", name="No", exact=True)
            with contextlib.suppress(Exception):
                news.first.click(timeout=15_000)
            # The panel's cell: select it, run every cell above it (what a new user runs before the panel: start
            # the embedded database, load the sample data, parse the plan), then the panel's cell itself.
            panel_cell = page.locator(".jp-Notebook .jp-CodeCell").filter(has_text="ep.PreflightPanel(plan, db")
            panel_cell.first.wait_for(timeout=90_000)
            expect(page.locator(".jp-Notebook-ExecutionIndicator, .jp-Toolbar-kernelStatus").first).to_be_visible(
                timeout=90_000)
            panel_cell.first.locator(".jp-InputPrompt").click()
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Above Selected Cell", exact=True).click()
            panel_cell.first.locator(".jp-InputPrompt").click()
            page.keyboard.press("Control+Enter")

            run_button = panel_cell.first.locator("button", has_text="Run preflight")
            expect(run_button).to_be_visible(timeout=120_000)
            apply_button = panel_cell.first.locator("button", has_text="Apply")
            expect(apply_button).to_be_disabled()
            run_button.click()

            output = panel_cell.first.locator(".jp-OutputArea")
            expect(output.get_by_text("preflight BLOCKED").first).to_be_visible(timeout=120_000)
            checklist = output.locator("table.erd-list").first
            expect(checklist).to_be_visible()
            expect(checklist).to_contain_text("✖ blocking")
            expect(checklist).to_contain_text("– skipped")
            expect(checklist).to_contain_text("10 of 1,000")
            expect(output.get_by_text("stopped at the first blocker (step 1): 1 of 4 checks ran, 3 skipped")
                   ).to_be_visible()
            expect(apply_button).to_be_disabled()
            assert "erd-error" not in output.inner_html()
            shot(panel_cell.first, "1-quickstart-preflight-blocked.png")

            # the blocking finding is open: said once, its samples, and its violations over time
            finding = output.locator(".erd-finding").first
            expect(finding).to_contain_text("10 of 1,000 rows of quickstart.customers have NULL in email")
            assert output.get_by_text("(finding 0)").count() == 0
            section = finding.locator("xpath=ancestor::*[contains(@class, 'widget-vbox')][1]")
            plot_button = section.locator("button", has_text="Plot violations over time")
            expect(plot_button).to_be_visible()
            shot(section, "2-quickstart-open-finding.png")
            plot_button.click()
            plot = section.locator(".erd-over-time")
            expect(plot).to_contain_text("violating rows per week of signed_up_at: the first in the week of 2026-03-02",
                                         timeout=60_000)
            expect(plot.locator("img")).to_be_visible()
            shot(plot, "3-quickstart-violations-over-time.png")

            # Then the rest, as a new user would: Run All reaches the applied migration and its record. The
            # saved outputs are cleared first, so what is asserted below is what this run printed.
            page.get_by_role("menuitem", name="Edit", exact=True).click()
            page.get_by_text("Clear Outputs of All Cells", exact=True).click()
            expect(page.locator(".jp-Notebook .jp-OutputArea-output")).to_have_count(0)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            apply_cell = page.locator(".jp-Notebook .jp-CodeCell").filter(has_text="record = panel.apply()")
            apply_cell.first.scroll_into_view_if_needed()
            expect(apply_cell.first.locator(".jp-OutputArea-output").first).to_contain_text("applied",
                                                                                            timeout=180_000)
            # the panel above shows the apply log and says the run is applied, in its status and its gate
            panel_output = panel_cell.first.locator(".jp-OutputArea")
            expect(panel_output.get_by_text("nothing left to apply").first).to_be_visible(timeout=60_000)
            assert panel_output.get_by_text("Apply allowed").count() == 0
            log = panel_output.get_by_text("Phase A: transactional DDL, one transaction").first
            expect(log).to_be_visible()
            shot(log.locator("xpath=ancestor::*[contains(@class, 'widget-html')][1]"), "4-quickstart-apply-log.png")
            # the dedupe said, before it ran, which rows it deletes and that their orders would become orphans
            preview_cell = page.locator(".jp-Notebook .jp-CodeCell").filter(has_text="run.preview(dedupe)")
            preview_cell.first.scroll_into_view_if_needed()
            preview = preview_cell.first.locator(".jp-OutputArea")
            expect(preview).to_contain_text("they become orphans", timeout=60_000)
            expect(preview).to_contain_text("dedupe deletes 8 rows of quickstart.customers")
            shot(preview, "6-quickstart-dedupe-preview.png")
            history_cell = page.locator(".jp-Notebook .jp-CodeCell").filter(has_text="ep.RunHistoryPanel(db)")
            history_cell.first.scroll_into_view_if_needed()
            open_button = history_cell.first.locator("button", has_text="Open report")
            expect(open_button).to_be_visible(timeout=60_000)
            open_button.click()
            expect(history_cell.first.get_by_text("status history").first).to_be_visible(timeout=60_000)
            shot(history_cell.first.locator(".jp-OutputArea"), "5-quickstart-run-history.png")
            expect(page.locator(".jp-Notebook .jp-OutputArea-output", has_text="Traceback")).to_have_count(0)
        except Exception:
            page.screenshot(path=str(SCREENSHOT_DIR / "quickstart-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    print(f"screenshots: {SCREENSHOT_DIR}")
