"""`python manage.py run_scheduler`: the periodic jobs of CELERY_BEAT_SCHEDULE in the
foreground, for the embedded default (no broker). `make run` does not need it: its gunicorn
worker runs the same scheduler (SCHEDULER=inprocess). Stops cleanly on Ctrl-C or SIGTERM,
after the job in progress. Refuses to start when a broker is configured (then `celery beat`
runs the jobs) or when a scheduler already runs for this database."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.core.scheduler import (
    ScheduleLock,
    Scheduler,
    SchedulerRefused,
    describe,
    jobs_from,
    refusal,
)


class Command(BaseCommand):
    help = "Run the periodic jobs (CELERY_BEAT_SCHEDULE) in this process: embedded default only."

    def handle(self, *args: Any, **options: Any) -> None:
        reason = refusal()
        if reason is not None:
            raise CommandError(reason)
        lock = ScheduleLock()
        if not lock.acquire():
            raise CommandError(
                f"A scheduler already runs for this database (process {lock.holder()}, "
                "perhaps `make run`'s): one is enough, two would run every job twice."
            )
        stop = threading.Event()

        def request_stop(signum: int, _frame: Any) -> None:
            stop.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            try:
                jobs = jobs_from(settings.CELERY_BEAT_SCHEDULE)
            except SchedulerRefused as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                f"Scheduler running in process {os.getpid()}: {describe(jobs)}. Ctrl-C stops it."
            )
            self.stdout.flush()
            Scheduler(jobs, stop=stop).run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            lock.release()
        runs = sum(job.runs for job in jobs)
        self.stdout.write(f"Scheduler stopped after {runs} job runs.")
