"""Celery entry points (names are those of CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from apps.incidents.detectors import audit_detectors_run, expiring_keys_detect


@shared_task(name="incidents.detect_audit")
def audit_detectors_run_task() -> int:
    return audit_detectors_run()


@shared_task(name="incidents.detect_expiring_keys")
def expiring_keys_detect_task() -> int:
    return expiring_keys_detect()
