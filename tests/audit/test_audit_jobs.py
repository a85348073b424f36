from __future__ import annotations

import pytest
from django.db import connection

from apps.audit.models import Checkpoint, PendingEvent, VerifiedHead
from apps.audit.services import audit_event_record
from apps.audit.tasks import (
    audit_chain_pending_task,
    audit_checkpoint_task,
    audit_verify_all_task,
    audit_verify_new_task,
)

pytestmark = pytest.mark.django_db

BREAKS: list = []


def remember_break(result) -> None:  # type: ignore[no-untyped-def]
    BREAKS.append(result)


def test_deferred_events_are_chained_by_the_job(settings):
    settings.AUDIT_CHAIN_INLINE = False
    for _ in range(3):
        audit_event_record("x.deferred", actor=None)
    assert PendingEvent.objects.count() == 3  # durable, not yet chained
    assert audit_chain_pending_task() == 3
    assert PendingEvent.objects.count() == 0


def test_checkpoint_job_signs_the_head_once():
    audit_event_record("x.one", actor=None)
    assert audit_checkpoint_task() == 1
    assert audit_checkpoint_task() == 1
    assert Checkpoint.objects.count() == 1


def test_incremental_verification_resumes_where_it_stopped(settings):
    for _ in range(3):
        audit_event_record("x.a", actor=None)
    assert audit_verify_new_task() | {"head": None} == {"ok": True, "checked": 3, "head": None}
    assert VerifiedHead.objects.get().seq == 3
    audit_event_record("x.b", actor=None)
    assert audit_verify_new_task()["checked"] == 1


def test_a_break_found_by_the_scheduled_job_calls_the_hooks(settings):
    settings.AUDIT_CHAIN_BREAK_HANDLERS = ["tests.audit.test_audit_jobs.remember_break"]
    BREAKS.clear()
    for _ in range(3):
        audit_event_record("x.a", actor=None)
    audit_chain_pending_task()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute("UPDATE audit_auditevent SET hash = repeat('a', 64) WHERE seq = 2")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
    result = audit_verify_all_task()
    assert result["ok"] is False and result["first_bad_seq"] == 2
    assert [hit.first_bad_seq for hit in BREAKS] == [2]


def test_the_audit_jobs_are_on_the_beat_schedule(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {
        "audit.chain_pending",
        "audit.checkpoint",
        "audit.verify_new",
        "audit.verify_all",
    } <= tasks


def test_chaining_after_a_commit_takes_one_batch_not_the_whole_backlog(settings):
    from apps.audit.services import audit_chain_pending

    settings.AUDIT_CHAIN_INLINE = False
    for _ in range(5):
        audit_event_record("x.backlog", actor=None)
    assert audit_chain_pending(wait=False, batch=2, max_batches=1) == 2
    assert PendingEvent.objects.count() == 3
    assert audit_chain_pending(batch=2) == 3
