"""Celery entry points of the registry's watermark jobs (names are those of
CELERY_BEAT_SCHEDULE); each takes ids and calls one service."""

from __future__ import annotations

from celery import shared_task

from apps.registry.watermarks import (
    SUSPECT_TASK,
    VERIFY_TASK,
    suspect_endpoint_check,
    watermark_verify,
    watermark_verify_scheduled,
)


@shared_task(name=VERIFY_TASK)
def watermark_verify_task(result_id: str) -> str:
    return watermark_verify(result_id=result_id).status


@shared_task(name="registry.verify_watermarks")
def watermark_verify_scheduled_task() -> int:
    return watermark_verify_scheduled()


@shared_task(name=SUSPECT_TASK)
def check_suspect_endpoint_task(result_id: str) -> str:
    return suspect_endpoint_check(result_id=result_id).status
