"""Celery entry point for master-key rotation (kept apart from tasks.py; imported by
RegistryConfig.ready() so the worker registers it)."""

from __future__ import annotations

from celery import shared_task

from apps.registry.rotation import rotate_master_key


@shared_task(name="registry.rotate_master_key")
def master_key_rotate_task(batch: int = 100) -> dict[str, object]:
    """Rotate and return the report; safe to retry (the rotation is idempotent)."""
    return rotate_master_key(batch=batch, actor="celery").as_dict()
