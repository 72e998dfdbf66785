"""What a preflight reports as it goes: a callback per check, and a tqdm bar for terminals and notebooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..report.contract import CheckRun
from .scan import ScanProgress

ProgressCallback = Callable[[CheckRun, int, int], None]
"""Called after each check with (its checklist entry, checks done, checks in all); also early, with the first
blocking answer of a long scan. A callable that also has a ``scan`` method gets each ``ScanProgress``."""


class _ProgressBar:
    """A tqdm bar per check (on ``stream``, default stderr; a notebook widget under Jupyter); a long scan shows
    its rows done of rows in all with an ETA, and its first blocking answer as a line of its own."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.bar: Any = None

    def _open(self, total: int) -> Any:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="preflight", unit="check", leave=True, file=self.stream)
        return self.bar

    def __call__(self, run: CheckRun, done: int, total: int) -> None:
        bar = self._open(total)
        if "countedRows" in run.stats and done < total and run.finding is None and run.sample_rows is not None:
            bar.write(f"step {run.step} {run.check_id}: {run.outcome} (found early): {run.message}", file=self.stream)
            return
        bar.set_postfix_str(f"{run.check_id} {run.outcome}", refresh=False)
        bar.update(max(done - bar.n, 0))
        if done == total or run.outcome == "blocking":
            bar.close()

    def scan(self, progress: ScanProgress) -> None:
        if self.bar is not None and not getattr(self.bar, "disable", False):
            self.bar.set_postfix_str(progress.line())


def progress_bar(stream: Any = None) -> ProgressCallback:
    """A tqdm bar (on ``stream``, default stderr; a notebook widget under Jupyter) advancing per check, with the
    rows of a long scan and its ETA."""
    return _ProgressBar(stream)
