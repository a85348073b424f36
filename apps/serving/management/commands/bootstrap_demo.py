from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand

from apps.accounts.models import User
from apps.accounts.roles import RoleName
from apps.accounts.services import user_create

DEMO_ADMIN = "admin"


class Command(BaseCommand):
    help = "Create the demo data of the README's first command (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        if User.objects.filter(username=DEMO_ADMIN).exists():
            self.stdout.write(
                f"Demo admin '{DEMO_ADMIN}' already exists; its password was printed when it was "
                f"created (reset it with: python manage.py changepassword {DEMO_ADMIN})."
            )
            return
        password = secrets.token_urlsafe(18)
        user_create(
            username=DEMO_ADMIN,
            password=password,
            roles=[RoleName.ADMIN],
            is_staff=True,
            is_superuser=True,
        )
        # Printed once, to the operator's terminal; never logged.
        self.stdout.write(
            self.style.SUCCESS("Demo admin created. This password is shown once; keep it now.")
        )
        self.stdout.write(f"  username: {DEMO_ADMIN}\n  password: {password}")
