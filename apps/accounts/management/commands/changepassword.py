"""Django's `changepassword`, with what a new password means here: every session, token
family, access token and API key of the user ends, in the same transaction as the new
password, and `user.credentials_revoked` records it (apps.accounts.credentials)."""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth.management.commands import changepassword
from django.db import transaction

from apps.accounts.credentials import Cause, credentials_revoke
from apps.accounts.models import User

ACTOR = "manage.py changepassword"  # who holds the shell is not ours to name


class Command(changepassword.Command):
    help = (
        changepassword.Command.help + " Ends every session, token and API key of the user, audited."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # The prompts run inside the transaction; it holds no lock until the password is set.
        with transaction.atomic(using=options["database"]):
            super().handle(*args, **options)
            username = options["username"] or getpass.getuser()  # as Django's command
            user = User.objects.using(options["database"]).get(username=username)
            revoked = credentials_revoke(user=user, cause=Cause.PASSWORD_CHANGED, actor=ACTOR)
        self.stdout.write(
            f"Ended {revoked.token_families} sign-in(s) and {revoked.api_keys} API key(s) "
            "of the user, and every session."
        )
