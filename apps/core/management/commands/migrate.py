"""`migrate`, as the owner of the tables when DATABASE_OWNER_URL is set (PostgreSQL): Django's
migrate runs over a connection with the owner's credentials, then the owner creates the
application role if it is missing (and may) and grants it what it needs and no more
(apps.core.database_roles). Without DATABASE_OWNER_URL it is Django's migrate, unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import DEFAULT_DB_ALIAS, connections

from apps.core.database_roles import app_role_ensure, app_role_grant

# What the owner's URL replaces; the database's name stays the connection's (a test database
# keeps its own name).
_CREDENTIALS = ("USER", "PASSWORD", "HOST", "PORT", "OPTIONS")


@contextmanager
def _connected_as(owner: dict[str, Any]) -> Iterator[None]:
    connection = connections[DEFAULT_DB_ALIAS]
    saved = {key: connection.settings_dict.get(key) for key in _CREDENTIALS}
    connection.close()
    connection.settings_dict.update({key: owner.get(key) for key in _CREDENTIALS})
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


def _ensure_role(cursor: Any, role: str, password: str) -> bool:
    cursor.execute("SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user")
    (may_create,) = cursor.fetchone()
    if may_create:
        return app_role_ensure(cursor, role, password)
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    if cursor.fetchone() is None:
        raise CommandError(
            f"The application role {role} does not exist and {cursor.connection.info.user} may "
            "not create roles: create it (README, Database roles), then run migrate again."
        )
    return False


class Command(DjangoMigrate):
    help = (
        DjangoMigrate.help
        + " With DATABASE_OWNER_URL set (PostgreSQL), it runs as that role and then grants the"
        " role of DATABASE_URL what the application needs and no more."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        owner = getattr(settings, "DATABASE_OWNER", None)
        connection = connections[options["database"]]
        if owner is None or options["database"] != DEFAULT_DB_ALIAS:
            super().handle(*args, **options)
            return
        if connection.vendor != "postgresql":
            raise CommandError("DATABASE_OWNER_URL is for PostgreSQL; DATABASE_URL is not.")
        app_role = connection.settings_dict["USER"]
        if not app_role or app_role == owner["USER"]:
            raise CommandError(
                "DATABASE_URL and DATABASE_OWNER_URL name the same role: the application would "
                "own its tables. Give DATABASE_URL a role of its own."
            )
        app_password = connection.settings_dict.get("PASSWORD") or ""
        with _connected_as(owner):
            super().handle(*args, **options)
            with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                created = _ensure_role(cursor, app_role, app_password)
                app_role_grant(cursor, app_role)
        if options["verbosity"] >= 1:
            made = "created and " if created else ""
            self.stdout.write(
                f"Application role {app_role}: {made}granted rows only (it owns no table, and "
                "append-only tables take only inserts from it)."
            )
