"""nbval runs the notebooks (notebooks/, the folder users open, holds only them and their sample migrations);
their run-to-run differences (timestamps, run ids, durations) are replaced by the patterns of
tests/nbval_sanitize.cfg before the outputs of cells tagged nbval-check-output are compared."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "nbval_sanitize_with") and not config.option.nbval_sanitize_with:
        config.option.nbval_sanitize_with = str(Path(__file__).parent / "tests" / "nbval_sanitize.cfg")
