"""The embedded server's lifecycle: a notebook kernel killed without running atexit leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

KILLED_CHILD = """
import os, signal
from erd_preflight.db import _embedded, embedded_url
embedded_url()
server = _embedded["server"]
print(server.get_pid(), server.pgdata, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_embedded_server_whose_process_was_killed_is_stopped_and_removed():
    child = subprocess.run([sys.executable, "-c", KILLED_CHILD], capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    pid_text, pgdata = child.stdout.split()
    pid = int(pid_text)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (alive(pid) or Path(pgdata).exists()):
        time.sleep(0.5)
    assert not alive(pid), f"the postmaster {pid} of a killed process is still running"
    assert not Path(pgdata).exists(), f"{pgdata} was left behind"
