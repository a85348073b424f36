"""Reads of the registry. Every holder of `models.read` sees every model (no per-model scoping
yet: grants arrive with predict), so the actor only gates access, checked by the views."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.registry.models import ModelVersion, RegisteredModel


def registered_model_list(*, actor: Any) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.select_related("owner")


def registered_model_get(*, actor: Any, name: str) -> RegisteredModel:
    model = registered_model_list(actor=actor).filter(name=name).first()
    if model is None:
        raise NotFound("No model with this name.")
    return model


def model_version_list(*, actor: Any, model: RegisteredModel) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(model=model).select_related("model")


def model_version_get(*, actor: Any, model: RegisteredModel, number: int) -> ModelVersion:
    version = model_version_list(actor=actor, model=model).filter(number=number).first()
    if version is None:
        raise NotFound("No version with this number.")
    return version
