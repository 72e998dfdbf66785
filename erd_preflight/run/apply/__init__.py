"""Phased apply (spec 1.1.04e): ``runner`` runs the compiled phases and records every statement, ``lock`` keeps
it to one apply per database, ``watch`` shows what it waits on."""

from .lock import (
    ApplyOptions,
    ApplyProgress,
    RunningApply,
    apply_lock_holder,
    concurrent_apply_error,
    release_apply_lock,
    run_of,
    running_applies,
    try_apply_lock,
)
from .runner import ApplyFailure, PhaseRunner, failure_message
from .watch import Blocker, IndexBuildWatch, LockWatch, describe_build, holders_of

__all__ = [
    "ApplyFailure",
    "ApplyOptions",
    "ApplyProgress",
    "Blocker",
    "IndexBuildWatch",
    "LockWatch",
    "PhaseRunner",
    "RunningApply",
    "apply_lock_holder",
    "concurrent_apply_error",
    "describe_build",
    "failure_message",
    "holders_of",
    "release_apply_lock",
    "run_of",
    "running_applies",
    "try_apply_lock",
]
