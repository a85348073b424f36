import uuid
from typing import Any, TypeVar

from django.db import models

M = TypeVar("M", bound=models.Model)


def instance_from_values(model: type[M], values: dict[str, Any]) -> M:
    """An instance as if loaded with `.only(*values)` (e.g. from a cached record): the other
    fields stay deferred, load on first access, and are not written back by save()."""
    # from_db takes the values in the model's field order.
    names = [field.attname for field in model._meta.concrete_fields if field.attname in values]
    return model.from_db("default", names, [values[name] for name in names])


class BaseModel(models.Model):
    """Random ids (no counts leak through URLs) and creation/update times on every table."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
