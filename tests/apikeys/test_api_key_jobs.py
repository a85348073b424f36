from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from apps.apikeys.tasks import api_key_expire_due_task, api_key_warn_expiring_task
from controlplane import celery_app
from tests.apikeys.conftest import audit_events, update_key
from tests.apikeys.factories import ApiKeyFactory
from tests.services import celery_worker, database_url_of, redis_for_worker

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_the_jobs_are_registered_under_the_beat_schedules_names(settings):
    scheduled = {
        entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }
    assert scheduled["apikeys.expire"] == 60.0
    assert scheduled["apikeys.warn_expiring"] == 24 * 3600.0
    assert api_key_expire_due_task.name == "apikeys.expire" in celery_app.tasks
    assert api_key_warn_expiring_task.name == "apikeys.warn_expiring" in celery_app.tasks


def test_the_expiry_job_records_each_expired_key_once():
    now = timezone.now()
    expired = ApiKeyFactory()
    update_key(expired, expires_at=now - timedelta(seconds=5))
    live = ApiKeyFactory()
    revoked = ApiKeyFactory(revoked_at=now)
    update_key(revoked, expires_at=now - timedelta(seconds=5))
    assert api_key_expire_due_task.delay().get() == 1
    assert api_key_expire_due_task() == 0  # idempotent
    expired.refresh_from_db()
    assert expired.expired_at is not None and expired.status == "expired"
    [event] = audit_events("apikey.expired")
    assert event["target"] == {"type": "api_key", "id": expired.prefix}
    assert event["actor"] == {"type": "system", "ref": "apikeys.expire"}
    assert event["details"]["reason"] == "expires_at"
    live.refresh_from_db()
    assert live.expired_at is None and live.status == "active"


def test_the_expiry_job_ends_grace_periods():
    now = timezone.now()
    successor = ApiKeyFactory()
    over = ApiKeyFactory(owner=successor.owner)
    update_key(over, rotated_to=successor, grace_ends_at=now - timedelta(seconds=1))
    in_grace = ApiKeyFactory(owner=successor.owner)
    update_key(in_grace, rotated_to=successor, grace_ends_at=now + timedelta(hours=1))
    assert api_key_expire_due_task() == 1
    [event] = audit_events("apikey.expired")
    assert event["target"]["id"] == over.prefix and event["details"]["reason"] == "grace_over"
    in_grace.refresh_from_db()
    assert in_grace.status == "rotating" and in_grace.expired_at is None


def test_the_warning_job_warns_once_per_key_within_seven_days():
    now = timezone.now()
    soon = ApiKeyFactory(expires_at=now + timedelta(days=6, hours=23))
    later = ApiKeyFactory(expires_at=now + timedelta(days=8))
    revoked = ApiKeyFactory(expires_at=now + timedelta(days=2), revoked_at=now)
    already_expired = ApiKeyFactory()
    update_key(already_expired, expires_at=now - timedelta(days=1))
    assert api_key_warn_expiring_task() == 1
    assert api_key_warn_expiring_task() == 0  # once per key
    [event] = audit_events("apikey.expiring")
    assert event["target"]["id"] == soon.prefix
    assert event["actor"] == {"type": "system", "ref": "apikeys.warn_expiring"}
    assert event["details"]["days_left"] == 6
    assert event["details"]["owner"].startswith("p_")  # the owner, as a pseudonym
    for api_key in (later, revoked, already_expired):
        api_key.refresh_from_db()
        assert api_key.expiry_warned_at is None


def test_a_rotated_away_key_is_not_warned_about():
    now = timezone.now()
    successor = ApiKeyFactory()
    old = ApiKeyFactory(owner=successor.owner, expires_at=now + timedelta(days=1))
    update_key(old, rotated_to=successor, grace_ends_at=now + timedelta(hours=1))
    assert api_key_warn_expiring_task() == 0


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_expiry_job(tmp_path):
    api_key = ApiKeyFactory()
    update_key(api_key, expires_at=timezone.now() - timedelta(seconds=1))
    log = tmp_path / "worker.log"
    env = {
        "DJANGO_SETTINGS_MODULE": "controlplane.test_settings",
        "DATABASE_URL": database_url_of(connection.settings_dict),
    }
    with redis_for_worker() as redis_url, celery_worker(redis_url, log, env=env) as queue:
        result = api_key_expire_due_task.apply_async(queue=queue)
        assert result.get(timeout=60) == 1
    assert f"Task apikeys.expire[{result.id}] succeeded" in log.read_text()
    api_key.refresh_from_db()
    assert api_key.expired_at is not None
    [event] = audit_events("apikey.expired")
    assert event["target"]["id"] == api_key.prefix
