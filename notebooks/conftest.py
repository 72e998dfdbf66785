"""nbval runs the notebooks in this folder; their run-to-run differences (timestamps, run ids, durations) are
replaced by the patterns of nbval_sanitize.cfg before outputs are compared."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "nbval_sanitize_with") and not config.option.nbval_sanitize_with:
        config.option.nbval_sanitize_with = str(Path(__file__).with_name("nbval_sanitize.cfg"))
