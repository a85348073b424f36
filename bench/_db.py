"""Shared setup for the database benchmarks: Django on a dedicated PostgreSQL database.

`setup()` points Django at `bulwark_bench` (created if missing), with the test settings, and
migrates it quietly. The test settings generate random secrets per process with
`os.environ.setdefault`; the benchmarks need the same secrets in every process (writers spawned
by one run) *and* across runs (1M chained events are generated once and reused, and verify only
under the AUDIT_HMAC_KEY that chained them). So the bench database keeps its own secrets in a
scratch table, `bench_secret`, and `bench_env()` copies them into `os.environ` in the parent
before anything is spawned; children inherit that environment (and would read the same values
from the table anyway).

Never point this at a database that matters: `truncate_audit()` empties the audit tables.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

BENCH_DB = "bulwark_bench"
SERVER_URL = "postgres://postgres@127.0.0.1:5432"
BENCH_URL = f"{SERVER_URL}/{BENCH_DB}"
# The events table refuses DELETE (a row trigger); TRUNCATE is not covered by it.
AUDIT_TABLES = (
    "audit_auditevent",
    "audit_pendingevent",
    "audit_checkpoint",
    "audit_verifiedhead",
    "audit_actorpseudonym",
)


def _connect(dbname: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(f"{SERVER_URL}/{dbname}", autocommit=True)


def ensure_database() -> None:
    """CREATE DATABASE bulwark_bench unless it exists."""
    from psycopg import sql

    with _connect("postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))


def bench_secrets() -> dict[str, str]:
    """The bench database's own secrets (generated and stored on first use)."""
    from apps.core.secrets.required import REQUIRED_SECRETS

    with _connect(BENCH_DB) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_secret (name text PRIMARY KEY, value text NOT NULL)"
        )
        for spec in REQUIRED_SECRETS:
            conn.execute(
                "INSERT INTO bench_secret (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [spec.name, spec.generate()],
            )
        rows = conn.execute("SELECT name, value FROM bench_secret").fetchall()
    return dict(rows)


def bench_env() -> dict[str, str]:
    """Set the benchmark environment in this process (before django.setup()) and return it,
    for children that are not started with multiprocessing (which inherits os.environ)."""
    ensure_database()
    os.environ["DATABASE_URL"] = BENCH_URL
    os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.test_settings"
    os.environ["BULWARK_DOTENV"] = os.devnull
    os.environ.setdefault("LOG_LEVEL", "warning")
    # Long-lived connections in every process: reconnecting would be measured otherwise.
    os.environ["DATABASE_CONN_MAX_AGE"] = "3600"
    os.environ.update(bench_secrets())
    return dict(os.environ)


def setup(*, migrate: bool = True) -> None:
    """Configure Django for the benchmark database; migrate it unless told not to (children
    started by a parent that already migrated)."""
    import django

    if os.environ.get("DATABASE_URL") != BENCH_URL:
        bench_env()
    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def truncate_audit() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(AUDIT_TABLES)} RESTART IDENTITY")


def audit_counts() -> tuple[int, int, int]:
    """(chained events, pending events, highest seq)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM audit_auditevent),"
            " (SELECT count(*) FROM audit_pendingevent),"
            " (SELECT coalesce(max(seq), 0) FROM audit_auditevent)"
        )
        chained, pending, last = cursor.fetchone()
    return chained, pending, last


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    """One line about where this ran, for the top of every table."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        sync = cursor.fetchone()[0]
        cursor.execute("SHOW shared_buffers")
        buffers = cursor.fetchone()[0]
    return (
        f"{os.cpu_count()} cores, PostgreSQL {version} (synchronous_commit={sync}, "
        f"shared_buffers={buffers}), database {BENCH_DB}"
    )
