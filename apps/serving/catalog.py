"""What this process knows about servable versions and grants, for one serving generation.

Resolving `(model, ?version)` and checking a grant read the database once per generation and
process; a compiled schema validator comes with the resolved version. When the generation
moves (apps.serving.generation) everything here is dropped, and loaded models of versions
that can no longer serve (archived or gone) are evicted from the model cache at once. A
bounded age (SERVING_STATE_TTL) is the backstop should a change's bump ever be lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.conf import settings
from jsonschema import Draft202012Validator

from apps.audit.subjects import Subject
from apps.core.errors import ApplicationError, NotFound
from apps.core.permissions import may
from apps.registry.selectors import (
    registered_model_exists,
    user_may_predict,
    version_in_production,
    version_numbered,
    versions_not_archived,
)
from apps.serving.errors import NoProductionVersion
from apps.serving.model_cache import models
from apps.serving.row_check import RowCheck, compile_row_check
from apps.serving.validation import compile_validator

if TYPE_CHECKING:  # a type hint only: versions are read through the registry's selectors
    from apps.registry.models import ModelVersion

MAX_ENTRIES = 10_000  # names come from URLs: unknown ones must not grow memory without end


@dataclass(frozen=True)
class ServedVersion:
    pk: UUID
    model: str
    number: int
    stage: str
    size: int
    feature_order: tuple[str, ...]
    max_batch: int
    dp_epsilon: float | None
    dp_sensitivity: float | None
    validator: Draft202012Validator
    row_check: RowCheck | None  # the compiled check of the common schema shape, if it fits

    def audit_subject(self) -> Subject:
        return Subject("model_version", f"{self.model}:{self.number}")


def _served(version: ModelVersion) -> ServedVersion:
    return ServedVersion(
        pk=version.pk,
        model=version.model.name,
        number=version.number,
        stage=version.stage,
        size=version.size,
        feature_order=tuple(version.feature_order),
        max_batch=version.max_batch,
        dp_epsilon=version.dp_epsilon,
        dp_sensitivity=version.dp_sensitivity,
        validator=compile_validator(version.input_schema),
        row_check=compile_row_check(version.input_schema, version.feature_order),
    )


def _lookup(name: str, number: int | None) -> ServedVersion | Callable[[], ApplicationError]:
    if number is None:
        version = version_in_production(name)  # never a quarantined one
        if version is None:
            if registered_model_exists(name):
                return NoProductionVersion
            return lambda: NotFound("No model with this name.")
        return _served(version)
    version = version_numbered(name, number)
    if version is None:
        return lambda: NotFound("This model has no version with this number.")
    if version.is_archived:
        return lambda: NotFound("This version is archived and serves no predictions.")
    if version.is_quarantined:
        return lambda: NotFound("This version is quarantined and serves no predictions.")
    return _served(version)


class Catalog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: object = object()  # equal to no real generation
        self._since = 0.0
        self._versions: dict[tuple[str, int | None], Any] = {}
        self._grants: dict[tuple[Any, str], bool] = {}

    def sync(self, generation: object) -> None:
        """Drop everything if the generation moved (or the state is older than its TTL)."""
        now = time.monotonic()
        if generation == self._generation and now - self._since < settings.SERVING_STATE_TTL:
            return
        with self._lock:
            if generation == self._generation and now - self._since < settings.SERVING_STATE_TTL:
                return
            self._versions = {}
            self._grants = {}
            self._generation = generation
            self._since = now
        cached = models.keys()
        if cached:
            servable = versions_not_archived(cached)
            models.evict(key for key in cached if key not in servable)

    def resolve(self, name: str, number: int | None) -> ServedVersion:
        """The version to serve, or NotFound / NoProductionVersion."""
        key = (name, number)
        # The dict of the generation this read belongs to: if the generation moves while the
        # database is read, the (possibly stale) result goes into the dropped dict, not the new.
        versions = self._versions
        found = versions.get(key)
        if found is None:
            found = _lookup(name, number)
            self._remember(versions, key, found)
        if isinstance(found, ServedVersion):
            return found
        raise found()

    def may_predict(self, user: Any, name: str) -> bool:
        """Whether `user` holds predict on the model (role or grant), cached per generation."""
        if may(user, "predict.all_models"):
            return True  # roles come with the cached user record: nothing to remember here
        key = (user.pk, name)
        grants = self._grants  # as in resolve: a stale answer lands in the dropped dict
        allowed = grants.get(key)
        if allowed is None:
            allowed = user_may_predict(user, name)
            self._remember(grants, key, allowed)
        return allowed

    @staticmethod
    def _remember(store: dict[Any, Any], key: Any, value: Any) -> None:
        if len(store) >= MAX_ENTRIES:
            store.clear()
        store[key] = value


catalog = Catalog()
