from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.audit.writer import bind, serve


class Command(BaseCommand):
    help = (
        "Run the host's audit writer (apps.audit.writer): web workers with AUDIT_WRITER_SOCKET "
        "set hand it predict's events, and it commits them together. Stops on SIGTERM/SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--socket",
            type=Path,
            required=True,
            help="The Unix socket to listen on; its directory is made 0700 if missing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        listener = bind(options["socket"])
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"audit writer listening on {options['socket']}")
        self.stdout.flush()
        try:
            serve(listener, stop=stop)
        finally:
            listener.close()
            options["socket"].unlink(missing_ok=True)
