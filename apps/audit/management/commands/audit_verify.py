from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.keys import describe_key_runs
from apps.audit.verification import audit_chain_verify, verify_since_checkpoint


class Command(BaseCommand):
    help = (
        "Verify the audit hash chain, each event under the HMAC key it names (AUDIT_HMAC_KEY or "
        "AUDIT_HMAC_KEYS_RETIRED); exit non-zero with the first bad seq on any break."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since-checkpoint",
            type=Path,
            metavar="FILE",
            help="A checkpoint {seq, head, ts, signature} kept earlier, as JSON: prove the "
            "chain still extends it (catches truncation and rewrites).",
        )
        parser.add_argument(
            "--public-key", type=Path, metavar="PEM", help="Verify the checkpoint with this key."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint_file = options["since_checkpoint"]
        if checkpoint_file is None:
            result = audit_chain_verify()
        else:
            try:
                checkpoint = json.loads(checkpoint_file.read_text(encoding="utf-8"))
                public_key = options["public_key"].read_text() if options["public_key"] else None
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read the checkpoint or key: {exc}") from None
            result = verify_since_checkpoint(checkpoint, public_key_text=public_key)
        if result.ok:
            self.stdout.write(f"OK: {result.checked} events verified; head {result.head}")
            if result.key_runs:
                self.stdout.write(f"HMAC keys: {describe_key_runs(result.key_runs)}")
            return
        raise CommandError(f"FAILED at seq {result.first_bad_seq}: {result.reason}")
