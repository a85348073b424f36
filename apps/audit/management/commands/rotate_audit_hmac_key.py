from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.rotation import (
    AuditHmacKeyRotation,
    AuditHmacKeyRotationRefused,
    audit_hmac_key_rotate,
)
from apps.core.env import parse_dotenv
from apps.core.secrets import dotenv_replace, get_optional_secret, get_secret
from apps.core.secrets.required import AUDIT_HMAC_KEYS_RETIRED


def _dotenv_problem(dotenv: Path) -> str | None:
    """Why the new values cannot go into `dotenv`, or None. They must replace the values the
    processes actually read: the environment and NAME_FILE win over .env."""
    if settings.PRODUCTION:
        return (
            "--write-dotenv is for development; in production install the values from --print "
            "in the secrets backend"
        )
    if settings.SECRETS_BACKEND != "env":
        return (
            f"--write-dotenv needs SECRETS_BACKEND=env, not {settings.SECRETS_BACKEND}: install "
            "the values from --print in the vault"
        )
    if not dotenv.is_file():
        return f"{dotenv} is not a regular file (BULWARK_DOTENV): use --print"
    in_file = parse_dotenv(dotenv.read_text(encoding="utf-8"))
    if in_file.get("AUDIT_HMAC_KEY") != get_secret("AUDIT_HMAC_KEY", fresh=True):
        return (
            f"the current AUDIT_HMAC_KEY does not come from {dotenv} (the environment or "
            "AUDIT_HMAC_KEY_FILE sets it, and would still win): use --print and install the "
            "values where it comes from"
        )
    if (in_file.get(AUDIT_HMAC_KEYS_RETIRED) or None) != get_optional_secret(
        AUDIT_HMAC_KEYS_RETIRED, fresh=True
    ):
        return (
            f"the current {AUDIT_HMAC_KEYS_RETIRED} does not come from {dotenv}: use --print and "
            "install the values where it comes from"
        )
    return None


class Command(BaseCommand):
    help = (
        "Introduce a new audit HMAC key. Makes a random key and the settings that make it "
        "current: AUDIT_HMAC_KEY (the new key) and AUDIT_HMAC_KEYS_RETIRED (the keys before "
        "it, id:base64 entries, kept to verify the events they chained). --print writes them "
        "to stdout for you to install (environment, NAME_FILE or Key Vault: the retired list "
        "first), --write-dotenv writes them into the development .env; restart web, worker and "
        "beat afterwards. Records audit.hmac_key.rotated (key ids, never a key). Nothing is "
        "re-chained: every event keeps the key that chained it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        where = parser.add_mutually_exclusive_group()
        where.add_argument(
            "--print",
            action="store_true",
            help="Write AUDIT_HMAC_KEY=... and AUDIT_HMAC_KEYS_RETIRED=... lines to stdout (the "
            "only place the new key appears; messages go to stderr).",
        )
        where.add_argument(
            "--write-dotenv",
            action="store_true",
            help="Development: replace both settings in .env (BULWARK_DOTENV).",
        )
        parser.add_argument(
            "--actor",
            default="rotate_audit_hmac_key",
            help="Name of the system component recorded as the audit actor.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not (options["print"] or options["write_dotenv"]):
            raise CommandError(
                "Say where the new key goes: --print writes the new settings to stdout for you "
                "to install (production, Key Vault), --write-dotenv writes them into .env "
                "(development). Nothing was changed."
            )
        dotenv = Path(settings.DOTENV_PATH)
        if options["write_dotenv"] and (problem := _dotenv_problem(dotenv)):
            raise CommandError(f"{problem}. Nothing was changed.")

        def deliver(rotation: AuditHmacKeyRotation) -> None:
            if options["print"]:
                # Unquoted: the values hold only [A-Za-z0-9_+/=:,-], so the lines read the
                # same in .env, a Docker env file and a POSIX shell.
                for name, value in rotation.values.items():
                    self.stdout.write(f"{name}={value}")
                return
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                dotenv_replace(
                    dotenv,
                    rotation.values,
                    comment=f"Audit HMAC keys, rotated by rotate_audit_hmac_key at {stamp}: the "
                    f"current key ({rotation.to_id}), then the keys before it (id:base64),\n"
                    "kept to verify the events they chained. Never remove a retired key.",
                )
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot write {dotenv}: {exc}. Nothing was changed.") from None

        try:
            rotation = audit_hmac_key_rotate(
                actor=options["actor"],
                delivery="stdout" if options["print"] else "dotenv",
                deliver=deliver,
            )
        except AuditHmacKeyRotationRefused as exc:
            raise CommandError(str(exc)) from None
        # With --print, stdout carries the values only, so that it can be redirected to a file.
        report = self.stderr if options["print"] else self.stdout
        report.write(
            f"New audit HMAC key {rotation.to_id}; {rotation.from_id} joins the retired keys "
            f"({', '.join(rotation.retired_ids)})."
        )
        if options["print"]:
            report.write(
                "Install AUDIT_HMAC_KEYS_RETIRED first, then AUDIT_HMAC_KEY, for every process "
                "(web, worker, beat), and restart them (Key Vault: within SECRETS_CACHE_TTL). "
                "Until then events are chained under the old key, as before."
            )
        else:
            report.write(
                f"Wrote both to {dotenv}; restart Bulwark's processes (web, worker, beat) so "
                f"that new events are chained under {rotation.to_id}."
            )
