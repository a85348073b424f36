from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.roles import RoleName
from apps.accounts.services import user_create
from apps.core.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Create a user with one or more roles. The password is read from the first line of "
        "stdin when stdin is not a terminal, else prompted for (twice)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--role", action="append", required=True, choices=RoleName.values, dest="roles"
        )
        parser.add_argument("--email", default="")

    def _password(self) -> str:
        if not sys.stdin.isatty():
            # First line only, newline stripped: `echo "$PW" | manage.py create_user ...`.
            return sys.stdin.readline().rstrip("\r\n")
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != first:
            raise CommandError("The passwords do not match.")
        return first

    def handle(self, *args: Any, **options: Any) -> None:
        password = self._password()
        if not password:
            raise CommandError("No password given.")
        roles = sorted(set(options["roles"]))
        try:
            user = user_create(
                username=options["username"],
                password=password,
                roles=roles,
                email=options["email"],
                is_staff=bool({"admin", "security_officer"} & set(roles)),
                is_superuser="admin" in roles,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Created {user.username} with roles {', '.join(roles)}.")
