"""Reads of the registry. Every holder of `models.read` sees every model (no per-model scoping
yet: grants arrive with predict), so the actor only gates access, checked by the views."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from apps.core.errors import NotFound
from apps.core.permissions import may
from apps.registry.models import ModelVersion, PredictGrant, RegisteredModel


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


def user_may_predict(user: Any, model_name: str) -> bool:
    """Whether `user` holds `predict` on the model named `model_name`: through a role with
    `predict.all_models`, or a grant to the user or to one of their groups. A model that does
    not exist is granted to nobody but those roles."""
    if may(user, "predict.all_models"):
        return True
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return PredictGrant.objects.filter(
        Q(user=user) | Q(group__in=user.groups.all()), model__name=model_name
    ).exists()
