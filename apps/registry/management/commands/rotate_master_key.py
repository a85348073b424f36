from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.registry.rotation import PAUSE_ENV, MasterKeyMissing, rotate_master_key


class Command(BaseCommand):
    help = (
        "Re-wrap every model version's data key, and re-seal every sealed secret (TOTP seeds, "
        "recovery-code keys), under the current master key. First create "
        "the new master-key version: put a new id:base64-32-bytes entry FIRST in "
        "BULWARK_MASTER_KEYS (env or Key Vault), keeping the old entries after it, and deploy. "
        "Artifacts are not re-encrypted; each row is its own transaction, so the command "
        "is safe to kill and rerun. It prints, per old key id, how many versions and sealed "
        "secrets still use it: remove an old entry only when that is 0. "
        f"{PAUSE_ENV} throttles (seconds per row)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=100, help="Versions fetched at a time.")
        parser.add_argument(
            "--actor",
            default="rotate_master_key",
            help="Name of the system component recorded as the audit actor.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1.")
        try:
            report = rotate_master_key(batch=options["batch"], actor=options["actor"])
        except MasterKeyMissing as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Current master key {report.current_id}: re-wrapped {report.rotated} version(s) "
            f"and {report.sealed_rotated} sealed secret(s)"
            + (f" from {', '.join(report.from_ids)}" if report.from_ids else "")
            + "."
        )
        if not report.still_in_use:
            self.stdout.write("No old master key is configured or in use.")
        for key_id, count in report.still_in_use.items():
            verdict = "can be removed from BULWARK_MASTER_KEYS" if count == 0 else "keep it"
            self.stdout.write(
                f"  {key_id}: {count} version(s) or sealed secret(s) still use it ({verdict})"
            )
        if report.failed:
            raise CommandError(
                f"{len(report.failed)} version(s) or sealed secret(s) do not open under "
                "their recorded master key and were left as they are: " + "; ".join(report.failed)
            )
