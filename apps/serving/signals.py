"""Framework glue: changes that alter what predict may serve move the serving generation, so
every web process drops what it cached (see apps.serving.generation)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from apps.registry.models import ModelVersion, PredictGrant, RegisteredModel
from apps.serving import generation


@receiver(post_save, sender=ModelVersion, dispatch_uid="serving.version_saved")
@receiver(post_delete, sender=ModelVersion, dispatch_uid="serving.version_deleted")
@receiver(post_delete, sender=RegisteredModel, dispatch_uid="serving.model_deleted")
@receiver(post_save, sender=PredictGrant, dispatch_uid="serving.grant_saved")
@receiver(post_delete, sender=PredictGrant, dispatch_uid="serving.grant_deleted")
def _registry_changed(sender: Any, **kwargs: Any) -> None:
    generation.bump()


@receiver(m2m_changed, sender=get_user_model().groups.through, dispatch_uid="serving.groups")
def _groups_changed(sender: Any, action: str, **kwargs: Any) -> None:
    # Grants may be held through a group: joining or leaving one changes who may predict.
    if action in {"post_add", "post_remove", "post_clear"}:
        generation.bump()
