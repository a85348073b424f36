"""Before any test: are PostgreSQL and Redis there? If not, one sentence and stop."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def postgres_problem(url: str) -> str | None:
    import psycopg

    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    try:
        with psycopg.connect(
            host=parts.hostname or "localhost",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password or None,
            dbname="postgres",
            connect_timeout=3,
        ) as connection:
            may = connection.execute(
                "SELECT rolsuper OR (rolcreaterole AND rolcreatedb) FROM pg_roles"
                " WHERE rolname = current_user"
            ).fetchone()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL is not reachable at {where} ({reason}). Start it with `{PG_START}` "
            "or point DATABASE_URL at a running server."
        )
    if not (may and may[0]):
        # tests/controlplane/test_database_roles.py sets up production's two roles itself.
        return (
            f"DATABASE_URL's role {parts.username or 'postgres'} may not create roles and "
            "databases: the tests need one that may (the cluster's superuser, postgres)."
        )
    return None


def redis_problem(url: str) -> str | None:
    import redis

    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except redis.exceptions.RedisError as exc:
        return (
            f"Redis is not reachable at {where} ({exc}). Start it with `{REDIS_START}` "
            "or point REDIS_URL at a running server."
        )
    return None


def service_problems() -> list[str]:
    problems = []
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        problems.append(postgres_problem(database_url))
    redis_url = os.environ.get("REDIS_URL", "")
    if redis_url:
        problems.append(redis_problem(redis_url))
    return [problem for problem in problems if problem]
