"""Waiting for something another process or the server does, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``condition`` until it returns something true, and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def acknowledging(run: Any) -> Any:
    """``run`` with every step its report names as not verifiable acknowledged: the person in these tests has
    reviewed the fault-injection statements (a pg_sleep, a raw index) the plans carry."""
    needed = run.gate().acknowledgements_needed
    if needed:
        run.acknowledge(*(ask.step for ask in needed), by="test")
    return run
