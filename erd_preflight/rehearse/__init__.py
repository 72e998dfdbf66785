"""The rehearsal: the plan's statements run by PostgreSQL on a copy, never on the target.

- ``shadow``: the schema-only copy (``pg_dump --schema-only`` of the whole database, restored into the embedded
  PostgreSQL or ``ERD_PREFLIGHT_SHADOW_URL``), the rehearsal of the plan there in apply's order, rolled back;
- ``shadow_catalog``: what PostgreSQL's catalog holds before and after each step (``CatalogSnapshot``);
- ``shadow_exact``, ``shadow_fidelity``: when the shadow's verdict is exact, and where the shadow is made to behave
  like the target (materialized views populated, sequences at the target's positions);
- ``rows_rehearsal``, ``copy_rehearsal``: the exact rehearsal on a copy of small tables' rows, and on a full copy
  (``rehearse_on``);
- ``lock_rehearsal``: each statement's locks, read from PostgreSQL while it runs.

It may import the plan and the base (db, catalog, errors, sqlparse, versions, report's contract), never the
checks, the read path, the run or the faces: the checks read what it found.
"""
