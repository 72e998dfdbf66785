"""CI only: let the second test server (this machine's own PostgreSQL service) accept replication connections from
127.0.0.1, so the tests that start a real streaming standby of it run there too instead of skipping.

    python .ci/allow_replication.py postgresql://postgres@127.0.0.1:5432/test

It adds one rule to the server's pg_hba.conf, ``host replication all 127.0.0.1/32 trust`` (the same trust the
service already gives every local TCP connection), and reloads the server's configuration. It changes nothing when
the server already takes a replication connection from here, and says why and exits 1 when it cannot (no superuser,
wal_level minimal, no WAL senders, a file it may not write, a server still refusing after the reload). The tests
skip the standby then, as before.
"""

from __future__ import annotations

import os
import sys
import time

import psycopg

RULE = "host replication all 127.0.0.1/32 trust"


def replication_allowed(url: str) -> bool:
    """Whether the server takes a physical replication connection (a walsender) from here, as pg_basebackup
    opens one."""
    try:
        psycopg.connect(url, replication="true", connect_timeout=5).close()
    except psycopg.OperationalError:
        return False
    return True


def main(url: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            print(f"== {url}: not a superuser here, so its pg_hba.conf stays as it is")
            return 1
        wal_level, senders, hba_file = conn.execute(
            "SELECT current_setting('wal_level'), current_setting('max_wal_senders')::int, "
            "current_setting('hba_file')").fetchone()
        if wal_level == "minimal" or senders == 0:
            print(f"== {url}: wal_level {wal_level}, max_wal_senders {senders}: no standby can stream from it")
            return 1
        if replication_allowed(url):
            print(f"== {url}: it already takes replication connections from here")
            return 0
        if not os.access(hba_file, os.W_OK):
            print(f"== {url}: {hba_file} is not writable here")
            return 1
        with open(hba_file, encoding="utf-8") as f:
            text = f.read()
        with open(hba_file, "a", encoding="utf-8") as f:
            f.write(("" if text.endswith("\n") else "\n") +
                    "# added by erd_preflight's CI (.ci/allow_replication.py): its standby tests\n" + RULE + "\n")
        if not conn.execute("SELECT pg_reload_conf()").fetchone()[0]:
            print(f"== {url}: the server did not reload its configuration")
            return 1
        for _ in range(50):  # the postmaster reloads a moment after the signal
            time.sleep(0.1)
            if replication_allowed(url):
                print(f"== {url}: added '{RULE}' to {hba_file} and reloaded")
                return 0
        print(f"== {url}: added '{RULE}' to {hba_file}, but it still refuses replication connections")
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
