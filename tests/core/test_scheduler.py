"""The in-process scheduler of the embedded default (apps.core.scheduler): CELERY_BEAT_SCHEDULE's
jobs run on time in a thread (the detectors open an incident from real refusals), once per
database (a second scheduler waits or refuses), never beside a broker, and stop cleanly on
Ctrl-C, both as `manage.py run_scheduler` and inside `make run`'s gunicorn worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from apps.core.scheduler import BackgroundScheduler, ScheduleLock, Scheduler, jobs_from
from apps.incidents.models import Incident
from tests.incidents.test_detectors import fail_logins
from tests.services import database_url_of, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DETECT = {"incidents-detect-audit": {"task": "incidents.detect_audit", "schedule": 0.3}}


def wait_until(condition: Callable[[], Any], *, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true after {timeout}s")


@pytest.fixture
def lock_free() -> Iterator[None]:
    """No scheduler of this test's database is left running by a test."""
    yield
    lock = ScheduleLock()
    assert lock.acquire(), f"a scheduler still holds {lock.path}"
    lock.release()


# --- in a thread --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_detectors_open_an_incident_from_real_refusals(client, lock_free):
    fail_logins(client, django_settings.INCIDENT_AUTH_FAILURE_BURST)
    assert not Incident.objects.exists()  # nothing runs the detectors but the scheduler
    scheduler = BackgroundScheduler(DETECT)
    scheduler.start()
    try:
        incident = wait_until(
            lambda: Incident.objects.filter(detector="auth_failures_network").first()
        )
    finally:
        scheduler.stop()
    assert not scheduler.thread.is_alive()
    assert incident.title == "Burst of failed authentication from 203.0.113.0/24"
    assert incident.status == "detected"


@pytest.mark.django_db(transaction=True)
def test_a_job_first_runs_one_interval_after_start_as_with_beat(lock_free):
    jobs = jobs_from(
        {
            "soon": {"task": "core.ping", "schedule": 0.2, "args": ["a"]},
            "hourly": {"task": "core.ping", "schedule": 3600.0, "args": ["b"]},
        }
    )
    scheduler = Scheduler(jobs)
    runner = BackgroundThread(scheduler.run)
    wait_until(lambda: jobs[0].runs >= 2)
    scheduler.stop.set()
    runner.join()
    assert jobs[1].runs == 0 and jobs[1].last_run_at is None


@pytest.mark.django_db(transaction=True)
def test_a_failing_job_is_logged_and_the_others_keep_running(log_output, lock_free):
    jobs = jobs_from(
        {
            "broken": {"task": "core.ping", "schedule": 0.2},  # no payload: TypeError
            "fine": {"task": "core.ping", "schedule": 0.2, "args": ["ok"]},
        }
    )
    scheduler = Scheduler(jobs)
    runner = BackgroundThread(scheduler.run)
    wait_until(lambda: jobs[1].runs >= 2)
    scheduler.stop.set()
    runner.join()
    assert jobs[0].runs == 0
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    failures = [line for line in lines if line["message"] == "scheduled job failed"]
    assert failures and {line["job"] for line in failures} == {"broken"}
    assert all("missing 1 required positional argument" in line["exception"] for line in failures)


def test_a_schedule_naming_an_unknown_task_does_not_start(settings):
    settings.CELERY_BEAT_SCHEDULE = {"typo": {"task": "incidents.detect_autid", "schedule": 60}}
    with pytest.raises(CommandError, match=r"names an unknown task 'incidents\.detect_autid'"):
        call_command("run_scheduler")


def test_with_a_broker_beat_runs_the_jobs_and_this_refuses(settings, log_output):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with pytest.raises(CommandError, match="celery -A controlplane beat"):
        call_command("run_scheduler")
    scheduler = BackgroundScheduler(DETECT)
    scheduler.start()
    assert not scheduler.thread.is_alive()
    assert "in-process scheduler not started" in log_output.getvalue()


def test_a_second_scheduler_for_the_same_database_refuses(lock_free):
    held = ScheduleLock()
    assert held.acquire()
    try:
        with pytest.raises(CommandError, match=f"already runs .*process {os.getpid()}"):
            call_command("run_scheduler")
    finally:
        held.release()


@pytest.mark.django_db(transaction=True)
def test_a_standby_takes_over_when_the_running_scheduler_stops(monkeypatch, lock_free):
    monkeypatch.setattr("apps.core.scheduler.STANDBY_RETRY", 0.1)
    first, second = BackgroundScheduler(DETECT), BackgroundScheduler(DETECT)
    first.start()
    wait_until(lambda: first.lock._file is not None)
    second.start()
    time.sleep(0.5)
    assert second.lock._file is None  # waiting
    first.stop()
    wait_until(lambda: second.lock._file is not None)
    second.stop()
    assert not first.thread.is_alive() and not second.thread.is_alive()


class BackgroundThread:
    def __init__(self, target: Callable[[], None]) -> None:
        import threading

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()


# --- as processes: the command and make run's gunicorn --------------------------------------


def subprocess_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.test_settings",
        "DATABASE_URL": database_url_of(connection.settings_dict),
        **extra,
    }


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.django_db(transaction=True)
def test_run_scheduler_stops_cleanly_on_ctrl_c(tmp_path, lock_free):
    log = tmp_path / "scheduler.log"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_scheduler"],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: "Ctrl-C stops it" in read(log))
        assert "incidents-detect-audit every 60s" in read(log)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, read(log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Scheduler stopped after" in read(log)
    assert "Traceback" not in read(log)


@contextmanager
def gunicorn(log: Path, *, workers: int, **env: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """gunicorn as `make run` starts it (controlplane/gunicorn.conf.py, SCHEDULER=...)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "-c", str(ROOT / "controlplane" / "gunicorn.conf.py"),
            "controlplane.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--threads", "2",
        ],
        cwd=ROOT,
        env=subprocess_env(**env),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_make_runs_gunicorn_runs_the_schedule_once_and_stops_with_ctrl_c(tmp_path, lock_free):
    log = tmp_path / "gunicorn.log"
    with gunicorn(log, workers=2, SCHEDULER="inprocess", LOG_LEVEL="debug") as (process, port):
        wait_for_port(port, timeout=60)
        # A job of the real schedule runs (the audit chain's, every 5 s), in one worker only:
        # the other waits as a standby.
        wait_until(lambda: '"job": "audit-chain"' in read(log), timeout=60)
        assert read(log).count("scheduler started in process") == 1
        wait_until(lambda: "scheduler on standby" in read(log), timeout=30)
        # Nor may anyone start a second one beside it.
        second = subprocess.run(
            [sys.executable, "manage.py", "run_scheduler"],
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "A scheduler already runs for this database" in second.stderr
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0, read(log)
    assert "scheduler stopped" in read(log)
    assert "Traceback" not in read(log)


def test_gunicorn_refuses_an_unknown_scheduler_mode(tmp_path):
    log = tmp_path / "gunicorn.log"
    with gunicorn(log, workers=1, SCHEDULER="cron") as (process, _port):
        assert process.wait(timeout=60) != 0
    assert "SCHEDULER must be 'beat' or 'inprocess', not 'cron'" in read(log)


@pytest.mark.django_db(transaction=True)
def test_without_scheduler_gunicorn_runs_no_jobs(tmp_path, lock_free):
    log = tmp_path / "gunicorn.log"
    with gunicorn(log, workers=1, LOG_LEVEL="debug") as (_process, port):
        wait_for_port(port, timeout=60)
        lock = ScheduleLock()
        assert lock.acquire()  # nobody holds it: production's gunicorn leaves it to beat
        lock.release()
    assert "bulwark.scheduler" not in read(log)


def test_two_spellings_of_one_database_are_one_lock(tmp_path, monkeypatch):
    from apps.core.scheduler import lock_path

    monkeypatch.chdir(tmp_path)
    sqlite = {"ENGINE": "django.db.backends.sqlite3"}
    relative = lock_path({**sqlite, "NAME": "db.sqlite3"})
    assert lock_path({**sqlite, "NAME": str(tmp_path / "db.sqlite3")}) == relative
    server = {"ENGINE": "django.db.backends.postgresql", "PORT": "5432", "NAME": "bulwark"}
    by_name = lock_path({**server, "HOST": "localhost"})
    assert lock_path({**server, "HOST": "127.0.0.1"}) == by_name
    assert lock_path({**server, "HOST": "127.0.0.1", "NAME": "other"}) != by_name


def test_a_lock_that_cannot_be_written_is_said_and_tried_again(tmp_path, log_output, monkeypatch):
    monkeypatch.setattr("apps.core.scheduler.STANDBY_RETRY", 0.1)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the lock's folder should be")
    scheduler = BackgroundScheduler({})
    scheduler.lock = ScheduleLock(blocked / "scheduler.lock")
    scheduler.start()
    try:
        wait_until(lambda: "could not take its lock" in log_output.getvalue())
        assert scheduler.thread.is_alive()  # still trying, not dead
    finally:
        scheduler.stop()
    assert not scheduler.thread.is_alive()
