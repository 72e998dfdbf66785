"""The run: a stored migration, its gate and its phased apply.

- ``migration_run``: ``MigrationRun``, the façade a runbook uses (start, preflight, gate, remediate, apply);
- ``store``: the ``migration_run`` table and what it records; ``resume``: what a dead run left, continued;
- ``gate``: whether Apply may run, and why not;
- ``apply``: phases A (transactional DDL), B (concurrent index builds) and C (constraints after indexes), each
  statement under lock_timeout, recorded as it runs.

It may import everything below it (the read path, the checks, the rehearsal, the plan, the base), never the faces.
"""
