"""`check --deploy`: the database roles (apps.core.database_roles). Warnings, not errors: a
deployment that has not split its roles yet still runs, but is told what it risks."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Warning, register
from django.db import DatabaseError, connection

from apps.core.database_roles import tables_owned_by_current_user

HINT = "README, Database roles: connect as a role that owns nothing; migrate as the owner."


@register("database_roles", deploy=True)
def database_roles_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if connection.vendor != "postgresql":
        return []
    # Whether DATABASE_OWNER_URL is set says nothing here: the processes that serve do not
    # hold it (only migrate does). Who owns the tables is the fact to check.
    problems: list[CheckMessage] = []
    try:
        with connection.cursor() as cursor:
            owned = tables_owned_by_current_user(cursor)
    except DatabaseError:
        return problems  # unreachable: /readyz reports that; ownership cannot be judged
    if owned:
        shown = ", ".join(owned[:3]) + (f" and {len(owned) - 3} more" if len(owned) > 3 else "")
        problems.append(
            Warning(
                f"The application's database role owns its tables ({shown}): it could "
                "TRUNCATE, ALTER or DROP them, the audit trail included.",
                hint=HINT,
                id="bulwark.W101",
            )
        )
    return problems
