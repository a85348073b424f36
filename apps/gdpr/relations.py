"""The generic part of subject access: rows of any model that points at a user.

Used for models no section of apps.gdpr.selectors reads, so a relation to the user added
by any app is exported without a change here. Fields whose name says secret (is_secret_key:
password, token, key, secret, signature, ...) or ends like one (_hash, _sealed, ...), and
binary fields, are never exported; a relation to the user is left out (it is the person).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import models

from apps.core.masking import is_secret_key

_NEVER_EXPORTED_SUFFIXES = ("_hash", "_sealed", "_ciphertext", "_wrapped", "_key", "_seed")


def _exportable(field: models.Field[Any, Any]) -> bool:
    if isinstance(field, models.BinaryField) or field.name.endswith(_NEVER_EXPORTED_SUFFIXES):
        return False
    # A slug is an identifier by definition (a checklist item's `key`), never a secret.
    return isinstance(field, models.SlugField) or not is_secret_key(field.name)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, models.fields.files.FieldFile):
        return value.name or None
    if isinstance(value, bytes | memoryview):
        return None
    return value


def user_relations() -> Iterator[tuple[type[models.Model], models.Field[Any, Any]]]:
    """Every (model, field) by which a row points at a user: foreign keys, one-to-ones and
    many-to-manys to AUTH_USER_MODEL, in every installed app."""
    user_model = get_user_model()
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if (
                getattr(field, "concrete", False)
                and field.is_relation
                and field.related_model is user_model
                and model is not user_model
            ):
                yield model, field  # type: ignore[misc]  # concrete: a Field, not a ForeignObjectRel


def rows_elsewhere(user: Any, *, covered: frozenset[str]) -> dict[str, list[dict[str, Any]]]:
    """Rows of models (other than `covered`) that point at the user, by app label: each as
    {"model", "relation", "fields"} with every concrete field fit to export."""
    user_model = get_user_model()
    found: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, Any]] = set()
    for model, relation in user_relations():
        label = model._meta.label_lower
        if label in covered:
            continue
        fields = [
            field
            for field in model._meta.concrete_fields
            if _exportable(field) and not (field.is_relation and field.related_model is user_model)
        ]
        for row in model._default_manager.filter(**{relation.name: user}).order_by("pk"):
            if (label, row.pk) in seen:
                continue
            seen.add((label, row.pk))
            found.setdefault(model._meta.app_label, []).append(
                {
                    "model": label,
                    "relation": relation.name,
                    "fields": {field.name: _plain(getattr(row, field.attname)) for field in fields},
                }
            )
    return found
