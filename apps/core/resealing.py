"""Master-key rotation for values sealed with apps.core.sealing and kept in a model field.

An app whose model stores a sealed value registers the field at startup (its
`AppConfig.ready`: `sealed_field_register(Model, "field", purpose=...)`); the master-key
rotation (apps.registry.rotation, the `rotate_master_key` command) then re-seals every
registered value that names another master key than the current one, and counts what still
does. Core knows no app: the apps tell it what to walk.

Each value is re-sealed in Python and written by one UPDATE that re-checks the value it read
(compare-and-set), its own transaction when called outside an atomic block: killed at any
point, every row holds either its old sealed text or its new one, each naming the key that
sealed it, so all of them open as long as both keys are configured; a rerun finishes the rest.
A concurrent writer that changed the value in between wins (the row is left for a rerun).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from apps.core.sealing import VERSION, SealError, reseal, sealed_key_id


@dataclass(frozen=True)
class SealedField:
    model: type[models.Model]
    field: str
    purpose: str
    # Called with the primary keys of the rows just re-sealed, after their UPDATEs: for an
    # app that keeps copies of the value elsewhere (a cache) and must refresh them.
    on_resealed: Callable[[list[Any]], None] | None = None

    @property
    def label(self) -> str:
        return f"{self.model._meta.label_lower}.{self.field}"


@dataclass
class ResealReport:
    rotated: int = 0
    from_ids: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)  # "<model> <pk>: why", never a value


_REGISTERED: dict[str, SealedField] = {}


def sealed_field_register(
    model: type[models.Model],
    field_name: str,
    *,
    purpose: str,
    on_resealed: Callable[[list[Any]], None] | None = None,
) -> None:
    """Make master-key rotation re-seal `model.field_name` (sealed for `purpose`)."""
    spec = SealedField(model=model, field=field_name, purpose=purpose, on_resealed=on_resealed)
    _REGISTERED[spec.label] = spec


def sealed_fields() -> list[SealedField]:
    return [_REGISTERED[label] for label in sorted(_REGISTERED)]


def _stale(spec: SealedField, current_id: str) -> models.QuerySet[models.Model]:
    """Rows whose value is set and does not name the current master key."""
    manager = spec.model._default_manager
    return manager.exclude(**{f"{spec.field}__startswith": f"{VERSION}:{current_id}:"}).exclude(
        **{spec.field: ""}
    )


def sealed_in_use(current_id: str) -> dict[str, int]:
    """Sealed values per master-key id other than `current_id`, over every registered field.
    A value that is not sealed text at all names no key and is not counted (the re-seal lists
    it as failed)."""
    counts: Counter[str] = Counter()
    for spec in sealed_fields():
        values = _stale(spec, current_id).values_list(spec.field, flat=True)
        for value in values.iterator():
            try:
                counts[sealed_key_id(value)] += 1
            except SealError:
                continue
    return dict(counts)


def sealed_fields_reseal(
    *, master_keys: list[tuple[str, bytes]], batch: int = 100, pause: float = 0.0
) -> ResealReport:
    """Re-seal, under the first of `master_keys`, every registered value sealed under another;
    `batch` rows read at a time, one compare-and-set UPDATE per row. Call outside a
    transaction, or the rows commit together. A value that does not open under the key it
    names is left as it is and listed in `failed`."""
    current_id = master_keys[0][0]
    report = ResealReport()
    for spec in sealed_fields():
        manager = spec.model._default_manager
        last_pk: object = None
        while True:
            pending = _stale(spec, current_id).order_by("pk")
            if last_pk is not None:
                pending = pending.filter(pk__gt=last_pk)
            rows = list(pending.values_list("pk", spec.field)[:batch])
            if not rows:
                break
            resealed: list[Any] = []
            for pk, old in rows:
                last_pk = pk
                try:
                    new = reseal(old, purpose=spec.purpose, master_keys=master_keys)
                except SealError:
                    report.failed.append(
                        f"{spec.model._meta.label_lower} {pk}: the sealed {spec.field} does "
                        "not open under the master key it names"
                    )
                    continue
                if manager.filter(pk=pk, **{spec.field: old}).update(**{spec.field: new}):
                    report.rotated += 1
                    report.from_ids.add(sealed_key_id(old))
                    resealed.append(pk)
                if pause:
                    time.sleep(pause)
            if resealed and spec.on_resealed is not None:
                spec.on_resealed(resealed)
    return report
