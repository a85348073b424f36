from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.export import verify_export
from apps.audit.keys import describe_key_runs
from apps.audit.signing import load_public_key, public_key_pem


class Command(BaseCommand):
    help = (
        "Verify a JSONL audit export offline: every line, its order, the order of the HMAC keys "
        "that chained it, and the signed manifest. Needs only the public key "
        "(GET /api/v1/audit/public-key), whichever HMAC keys chained the events."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--public-key", type=Path, metavar="PEM", help="Default: this deployment's own key."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            pem = options["public_key"].read_text() if options["public_key"] else public_key_pem()
            public_key = load_public_key(pem)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot use the public key: {exc}") from None
        try:
            with options["file"].open("rb") as lines:
                result = verify_export(lines, public_key)
        except OSError as exc:
            raise CommandError(f"cannot read {options['file']}: {exc.strerror}") from None
        if not result.ok:
            where = f" (line {result.line})" if result.line else ""
            raise CommandError(f"FAILED{where}: {result.reason}")
        self.stdout.write(f"OK: {result.count} events, manifest signature valid")
        if result.key_runs:
            # The HMACs need the keys; what an export shows is which key chained what.
            self.stdout.write(f"HMAC keys: {describe_key_runs(result.key_runs)}")
