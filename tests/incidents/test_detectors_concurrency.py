"""Detectors under concurrency and as scheduled jobs: racing hits make one incident, racing
runs count a burst once, and the beat's tasks run in a real Celery worker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from apps.incidents.detectors import audit_detectors_run
from apps.incidents.models import DetectorCursor, Incident
from apps.incidents.services import incident_detector_hit
from apps.incidents.tasks import audit_detectors_run_task, expiring_keys_detect_task
from controlplane import celery_app
from tests.incidents.conftest import audit_events
from tests.incidents.test_detectors import fail_logins
from tests.services import celery_worker, database_url_of, redis_for_worker

THREADS = 8


def race(work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in THREADS threads released at the same moment; their results (or the
    exceptions they raised)."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # reported to the test below
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_hits_for_one_subject_make_one_incident():
    def hit(index: int) -> tuple[Any, bool]:
        return incident_detector_hit(
            detector="auth_failures_network",
            subject="192.0.2.0/24",
            severity="sev3",
            title="Burst of failed authentication from 192.0.2.0/24",
            evidence={"count": 20 + index},
            links=[("ip", "192.0.2.0/24", "client network")],
        )

    results = race(hit)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(created for _incident, created in results) == 1
    [incident] = Incident.objects.all()
    assert {r[0].pk for r in results} == {incident.pk}
    assert incident.timeline.filter(kind="detector_hit").count() == THREADS
    assert incident.timeline.filter(kind="created").count() == 1
    assert incident.resources.count() == 1
    assert len(audit_events("incident.created")) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_count_a_burst_once(client, settings):
    settings.INCIDENT_AUTH_FAILURE_BURST = 10
    fail_logins(client, 10)

    results = race(lambda _index: audit_detectors_run())

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(results) == 1
    [incident] = Incident.objects.all()
    assert incident.timeline.filter(kind="detector_hit").count() == 1
    assert DetectorCursor.objects.get(name="audit").last_seq >= 10


# --- As scheduled jobs ----------------------------------------------------------------------------


def test_the_jobs_are_registered_under_the_beat_schedules_names(settings):
    scheduled = {
        entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }
    assert scheduled["incidents.detect_audit"] == 60.0
    assert scheduled["incidents.detect_expiring_keys"] == 3600.0
    assert audit_detectors_run_task.name == "incidents.detect_audit" in celery_app.tasks
    assert expiring_keys_detect_task.name == "incidents.detect_expiring_keys" in celery_app.tasks


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_detectors(client, settings, tmp_path):
    fail_logins(client, 20)
    log = tmp_path / "worker.log"
    env = {
        "DJANGO_SETTINGS_MODULE": "controlplane.test_settings",
        "DATABASE_URL": database_url_of(connection.settings_dict),
    }
    with redis_for_worker() as redis_url, celery_worker(redis_url, log, env=env) as queue:
        first = audit_detectors_run_task.apply_async(queue=queue)
        assert first.get(timeout=60) == 1, log.read_text()
        second = audit_detectors_run_task.apply_async(queue=queue)
        assert second.get(timeout=60) == 0
        assert expiring_keys_detect_task.apply_async(queue=queue).get(timeout=60) == 0
    assert f"Task incidents.detect_audit[{first.id}] succeeded" in log.read_text()
    [incident] = Incident.objects.all()
    assert incident.detector == "auth_failures_network"
