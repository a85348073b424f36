"""Celery entry points (names are those of CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from apps.apikeys.services import api_key_expire_due, api_key_warn_expiring


@shared_task(name="apikeys.expire")
def api_key_expire_due_task() -> int:
    return api_key_expire_due()


@shared_task(name="apikeys.warn_expiring")
def api_key_warn_expiring_task() -> int:
    return api_key_warn_expiring()
