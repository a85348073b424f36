"""The periodic jobs of CELERY_BEAT_SCHEDULE, run in process, for the embedded default only.

Production runs `celery beat`, which sends each job to the workers through the broker. The
embedded default (`make run`: no REDIS_URL, tasks eager) has no broker and no beat, so without
this nothing would chain the audit trail on schedule, expire keys or run the detectors. Here a
thread runs the same schedule, each job in turn in this process, with Celery's own idea of
"due" (`celery.schedules`: intervals and crontabs alike) and beat's start: a job first runs one
interval after start.

Who runs it: the gunicorn worker of `make run` (SCHEDULER=inprocess, see
controlplane/gunicorn.conf.py), so jobs share the worker's in-process cache, or
`manage.py run_scheduler` in the foreground. One scheduler per database and host: an exclusive
lock on a file named after the database. A second one waits as a standby (in gunicorn, where a
worker may be replaced) or refuses to start (the command). It refuses when a broker is
configured: then beat's job it is, and running both would run every job twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from celery import current_app
from celery.schedules import BaseSchedule, maybe_schedule
from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger("bulwark.scheduler")

STANDBY_RETRY = 10.0  # seconds between a standby's attempts to take the lock
MAX_SLEEP = 1.0  # seconds: how late a stop (or a dead parent) is noticed at most
QUIET_BELOW = 60.0  # jobs more frequent than this log their runs at DEBUG, the rest at INFO


class SchedulerRefused(Exception):
    """This process may not run the schedule; the message says why and what to do."""


@dataclass
class Job:
    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    interval: float | None = None  # seconds, for an interval (not a crontab)
    last_run_at: datetime | None = None
    runs: int = 0

    @property
    def frequent(self) -> bool:
        return self.interval is not None and self.interval < QUIET_BELOW

    def __str__(self) -> str:
        if self.interval is not None:
            return f"{self.name} every {self.interval:g}s"
        return f"{self.name} ({self.schedule})"


def jobs_from(schedule: dict[str, dict[str, Any]]) -> list[Job]:
    """CELERY_BEAT_SCHEDULE's entries as jobs; an entry whose task does not exist stops it
    (a typo would otherwise be a job that silently never runs)."""
    app = current_app
    # The apps' tasks.py now (autodiscovery is otherwise lazy; the loader's way of triggering
    # it would also run django.setup() again, which re-configures logging).
    app.autodiscover_tasks(force=True)
    jobs = []
    for name, entry in schedule.items():
        task = str(entry["task"])
        raw = entry["schedule"]
        when = maybe_schedule(raw, app=app)
        if not isinstance(when, BaseSchedule):
            raise SchedulerRefused(f"CELERY_BEAT_SCHEDULE[{name!r}]: not a schedule: {raw!r}.")
        interval = raw.total_seconds() if isinstance(raw, timedelta) else None
        if isinstance(raw, int | float):
            interval = float(raw)
        if task not in app.tasks:
            raise SchedulerRefused(
                f"CELERY_BEAT_SCHEDULE[{name!r}] names an unknown task {task!r}."
            )
        jobs.append(
            Job(
                name=name,
                task=task,
                schedule=when,
                interval=interval,
                args=tuple(entry.get("args", ())),
                kwargs=dict(entry.get("kwargs", {})),
            )
        )
    return jobs


def _host(name: str) -> str:
    """A server's address as one spelling (localhost and 127.0.0.1 are one server)."""
    if not name or name.startswith("/"):
        return name  # a Unix socket's folder, or the default
    try:
        return socket.gethostbyname(name)
    except OSError:
        return name


def lock_path(database: dict[str, Any] | None = None) -> Path:
    """One lock per database: two checkouts (or test databases) on one host do not collide,
    and two spellings of one database (a relative SQLite path, localhost for 127.0.0.1) are
    one lock. The lock is this host's: on several hosts, run `celery beat` (README)."""
    database = database if database is not None else settings.DATABASES["default"]
    name = str(database.get("NAME", ""))
    if "sqlite" in str(database.get("ENGINE", "")) and name not in ("", ":memory:"):
        name = str(Path(name).resolve())
    parts = (
        str(database.get("ENGINE", "")),
        _host(str(database.get("HOST", ""))),
        str(database.get("PORT", "")),
        name,
    )
    identity = "|".join(parts)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(settings.BASE_DIR) / "var" / f"scheduler-{digest}.lock"


class ScheduleLock:
    """An exclusive, non-blocking flock on lock_path(); released when the holder exits, however
    it exits (the kernel drops it with the file descriptor)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or lock_path()
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def refusal() -> str | None:
    """Why this configuration must not run the in-process scheduler, or None."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        return (
            "A broker is configured (REDIS_URL): `celery -A controlplane beat` runs the "
            "periodic jobs there; the in-process scheduler is for the embedded default only."
        )
    return None


class Scheduler:
    """Runs `jobs` on time, one after the other, until `stop` is set; a stop is noticed within
    MAX_SLEEP seconds, or when the job in progress ends."""

    def __init__(self, jobs: list[Job], *, stop: threading.Event | None = None) -> None:
        self.jobs = jobs
        self.stop = stop or threading.Event()

    def run(self) -> None:
        app = current_app
        started = app.now()
        # Beat's start: a job first runs one interval from now.
        last_runs = {job.name: job.last_run_at or started for job in self.jobs}
        try:
            self._loop(last_runs)
        finally:
            connections.close_all()  # this thread's connections: none left to the database

    def _loop(self, last_runs: dict[str, datetime]) -> None:
        app = current_app
        while not self.stop.is_set():
            wait = MAX_SLEEP
            for job in self.jobs:
                if self.stop.is_set():
                    break
                due, next_check = job.schedule.is_due(last_runs[job.name])
                if due:
                    last_runs[job.name] = job.last_run_at = app.now()
                    self._run(job)
                    due, next_check = job.schedule.is_due(last_runs[job.name])
                wait = min(wait, max(float(next_check), 0.0))
            self.stop.wait(wait)

    def _run(self, job: Job) -> None:
        started = time.monotonic()
        close_old_connections()
        try:
            # Called as a function, as eager tasks are: no broker, and no trace line per run.
            value = current_app.tasks[job.task](*job.args, **job.kwargs)
        except Exception:
            logger.exception("scheduled job failed", extra={"job": job.name, "task": job.task})
            return
        finally:
            close_old_connections()
        job.runs += 1
        level = logging.DEBUG if job.frequent else logging.INFO
        logger.log(
            level,
            "scheduled job ran",
            extra={
                "job": job.name,
                "task": job.task,
                "result": value if isinstance(value, int | str | None) else str(value)[:200],
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )


def describe(jobs: list[Job]) -> str:
    return ", ".join(str(job) for job in jobs)


class BackgroundScheduler:
    """The schedule in a daemon thread of this process, for a gunicorn worker: the thread
    first takes the lock (a standby retries every STANDBY_RETRY seconds, so a replaced worker's
    successor takes over); `stop()` lets the job in progress finish, within `timeout`."""

    def __init__(self, schedule: dict[str, dict[str, Any]] | None = None) -> None:
        self.schedule = settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule
        self.stop_event = threading.Event()
        self.lock = ScheduleLock()
        self.thread = threading.Thread(target=self._main, name="bulwark-scheduler", daemon=True)

    def start(self) -> None:
        reason = refusal()
        if reason is not None:
            logger.warning("in-process scheduler not started: %s", reason)
            return
        self.thread.start()

    def _main(self) -> None:
        standby_logged = False
        while not self.stop_event.is_set():
            try:
                if self.lock.acquire():
                    break
            except OSError:
                # A var/ that cannot be written: said, and tried again (not a silent death).
                logger.exception("scheduler could not take its lock; trying again")
            if not standby_logged:
                logger.info(
                    "scheduler on standby: another process runs it",
                    extra={"holder_pid": self.lock.holder()},
                )
                standby_logged = True
            self.stop_event.wait(STANDBY_RETRY)
        else:
            return
        try:
            jobs = jobs_from(self.schedule)
            logger.info("scheduler started in process %s: %s", os.getpid(), describe(jobs))
            Scheduler(jobs, stop=self.stop_event).run()
        except Exception:
            logger.exception("scheduler stopped by an error")
        finally:
            self.lock.release()
            logger.info("scheduler stopped", extra={"pid": os.getpid()})

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
