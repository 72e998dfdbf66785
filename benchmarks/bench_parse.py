"""How ``MigrationPlan.from_sql`` scales with the size of a migration file: time for N statements and for 4N,
with non-ASCII text (where pglast's own offset conversion is quadratic), and their ratio (4.0 is linear).

    python benchmarks/bench_parse.py --statements 4000
"""

from __future__ import annotations

import argparse
import time

import erd_preflight as ep


def migration(statements: int) -> str:
    lines = ["-- données de référence\n"]
    for i in range(statements):
        if i % 3 == 0:
            lines.append(f"ALTER TABLE t{i % 50} ADD COLUMN c{i} text DEFAULT 'é{i}';\n")
        elif i % 3 == 1:
            lines.append(f"UPDATE t{i % 50} SET c = 'ü{i}' WHERE id = {i};\n")
        else:
            lines.append(f"CREATE INDEX CONCURRENTLY ON t{i % 50} (c{i});\n")
    return "".join(lines)


def timed(statements: int) -> float:
    text = migration(statements)
    started = time.perf_counter()
    plan = ep.MigrationPlan.from_sql(text)
    elapsed = time.perf_counter() - started
    assert len(plan.steps) == statements
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=4000)
    n = parser.parse_args().statements
    small, large = timed(n), timed(4 * n)
    print(f"from_sql: {n:,} statements {small:.2f} s, {4 * n:,} statements {large:.2f} s, "
          f"ratio {large / small:.2f} (4.00 is linear, 16.00 quadratic)")


if __name__ == "__main__":
    main()
