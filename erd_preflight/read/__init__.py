"""The read path: preflight itself, read-only on the target.

- ``preflight``: ``run_preflight``, the pipeline (plan, rehearsal, checks, execution, report);
- ``executor``: each check run in step order, in one REPEATABLE READ READ ONLY snapshot, stopping at the first
  blocker, with runtime and sample caps;
- ``scan``: a large table's checks read in pieces by several connections; ``progress``: what the user sees of it;
- ``replica``: the checks read from a hot standby;
- ``locks``: the lock each statement takes and how long it holds it on this database.

It may import the checks, the rehearsal, the plan and the base, never the run or the faces.
"""
