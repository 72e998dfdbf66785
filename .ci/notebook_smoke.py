"""The notebook as a user without test tools has it: `pip install 'erd_preflight[embedded]' ipykernel nbclient`
(the setup of a VS Code notebook, no Jupyter server). Runs the quickstart through nbclient, then drives the
panel's Run preflight and checks that it shows the checklist and the findings. Any missing runtime dependency
(jinja2 for every pandas Styler, say) fails here, where the test extra cannot hide it."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

root = Path(__file__).resolve().parent.parent
notebook = nbformat.read(root / "notebooks" / "01_quickstart.ipynb", as_version=4)
NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(root / "notebooks")}}
               ).execute()
errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
assert not errors, f"the quickstart raised: {errors[0]['ename']}: {errors[0]['evalue']}"

import erd_preflight as ep  # noqa: E402

db = ep.connect()
with db.connection() as conn:
    conn.execute("DROP TABLE IF EXISTS smoke_users; CREATE TABLE smoke_users (id int, email text); "
                 "INSERT INTO smoke_users VALUES (1, NULL), (2, 'a')")
panel = ep.PreflightPanel(ep.MigrationPlan.from_sql("ALTER TABLE smoke_users ALTER COLUMN email SET NOT NULL"), db)
panel.preflight_button.click()  # the preflight runs in a thread: wait for it, as a user watches the panel
panel.wait(timeout=300)
assert panel.errors == [], panel.errors
assert panel.report is not None and panel.report.status == "blocked"
assert "✖" in panel.checklist.value, "the checklist is empty"
assert len(panel.findings.children) == 1, "the Findings box is empty"
assert panel.apply_button.disabled
print(f"notebook smoke: quickstart ran ({len(notebook.cells)} cells), the panel shows {panel.report.status}",
      file=sys.stderr)
