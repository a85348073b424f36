"""Two PostgreSQL roles, so that the application cannot destroy its own evidence.

- The *owner* role (DATABASE_OWNER_URL) owns the tables; only `manage.py migrate` connects as
  it (apps/core/management/commands/migrate.py).
- The *application* role (DATABASE_URL) is what the web processes, workers and commands
  connect as. It owns nothing, so it cannot DROP, ALTER or TRUNCATE a table (each needs
  ownership or a privilege never granted), nor disable the audit trail's triggers. It may
  read and write rows, except that append-only tables (registered by their app with
  `append_only`) take no UPDATE or DELETE from it, tables registered with `never_updated`
  no UPDATE, and the migration record is read-only.

What this protects is what is already recorded. The application process holds the audit
HMAC and signing keys (it chains and signs), so a process taken over can still keep new
events from being recorded or chained, as it could skip recording them; it cannot rewrite
or remove the chain that exists, which checkpoints kept outside it anchor.

After each migration the owner grants the application role exactly that (`app_role_grant`);
`migrate` also creates the application role when it is missing and the owner may create roles.
`check --deploy` warns when the application connects as the owner of its tables
(apps/core/checks.py). README "Database roles" has the operator's commands.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

from psycopg import sql

_APPEND_ONLY: set[str] = set()
_NEVER_UPDATED: set[str] = set()
# The migration record: the application may see which migrations ran, never change it.
READ_ONLY_TABLES = frozenset({"django_migrations"})
SCRAM_ITERATIONS = 4096


def append_only(table: str) -> None:
    """Declare a table whose rows the application role may insert and read but never update
    or delete (called from an app's AppConfig.ready)."""
    _APPEND_ONLY.add(table)


def never_updated(table: str) -> None:
    """Declare a table whose rows the application role may insert, read and delete, never
    change in place (events waiting to be chained, pseudonyms)."""
    _NEVER_UPDATED.add(table)


def _privileges(table: str) -> str | None:
    """What the application role keeps on `table`, if less than rows in full."""
    if table in READ_ONLY_TABLES:
        return "SELECT"
    if table in _APPEND_ONLY:
        return "INSERT, SELECT"
    if table in _NEVER_UPDATED:
        return "INSERT, SELECT, DELETE"
    return None


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of `password` (RFC 5802, as `CREATE ROLE ...
    PASSWORD` stores it), so that the password itself never travels in a statement that
    the server might log. Passwords are used as UTF-8 without SASLprep: keep them ASCII."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def app_role_ensure(cursor: Any, role: str, password: str) -> bool:
    """Create the application role (LOGIN, nothing else) if it does not exist. Returns
    whether it was created. An existing role is left as it is: its password is the
    operator's."""
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    if cursor.fetchone() is not None:
        return False
    statement = sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
        sql.Identifier(role)
    )
    if password:
        statement = sql.SQL("{} PASSWORD {}").format(
            statement, sql.Literal(scram_verifier(password))
        )
    cursor.execute(statement)
    return True


def app_role_grant(cursor: Any, role: str) -> None:
    """What the application role may do in the current database and schema (run as the
    owner, after every migration: new tables get their grants too)."""
    who = sql.Identifier(role)
    cursor.execute("SELECT current_database(), current_schema()")
    database, schema = cursor.fetchone()
    where = sql.Identifier(schema)
    statements = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), who),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(where, who),
        sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(where, who),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
            where, who
        ),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(where, who),
    ]
    cursor.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        " AND tablename = ANY(%s)",
        [sorted(_APPEND_ONLY | _NEVER_UPDATED | READ_ONLY_TABLES)],
    )
    for (table,) in cursor.fetchall():
        kept = _privileges(table)
        if kept is None:  # not reached: the query selects only the restricted tables
            raise RuntimeError(f"no restriction recorded for {table}")
        statements.append(
            sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(table), who)
        )
        statements.append(
            sql.SQL("GRANT " + kept + " ON TABLE {} TO {}").format(sql.Identifier(table), who)
        )
    for statement in statements:
        cursor.execute(statement)


def tables_owned_by_current_user(cursor: Any) -> list[str]:
    """The tables of the current schema the connected role owns (it should own none)."""
    cursor.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        " AND tableowner = current_user ORDER BY tablename"
    )
    return [table for (table,) in cursor.fetchall()]
