from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.registry.scanning import artifacts_scan


class Command(BaseCommand):
    help = (
        "Run the upload's analysis over every stored model version that is not quarantined: "
        "decrypt it (authenticated), walk its pickle without running it, and check what it "
        "imports against the allow-lists (skops: its types). Without --quarantine it only "
        "reports; with it, each refused version is quarantined (never served, audited) and "
        "each accepted one gets its imported globals recorded if it had none."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quarantine", action="store_true", help="Quarantine what is refused.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = artifacts_scan(quarantine=options["quarantine"])
        self.stdout.write(
            f"Scanned {report.scanned} version(s): {len(report.refused)} refused, "
            f"{report.quarantined} quarantined, {report.recorded} with globals recorded now."
        )
        for model, number, why in report.refused:
            self.stdout.write(f"  {model} v{number}: {why}")
        if report.refused and not options["quarantine"]:
            raise CommandError(
                f"{len(report.refused)} version(s) would be quarantined: "
                "run again with --quarantine."
            )
