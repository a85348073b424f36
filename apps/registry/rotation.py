"""Master-key rotation: re-wrap every version's data key, and re-seal every registered sealed
secret (TOTP seeds, recovery-code hash keys: apps.core.resealing), under the current master key.

A deployment creates a new master-key version by putting a new `id:base64-32-bytes` entry
*first* in BULWARK_MASTER_KEYS (environment or Key Vault), keeping the old entries after it.
New uploads are wrapped under the first entry at once; `rotate_master_key` then re-wraps the
data keys of existing versions. Only the 60-byte wrapped key changes: artifacts are never read
or re-encrypted, so the cost per version does not depend on the artifact's size.

Safety at every moment: rows are read a batch at a time; each is re-wrapped in Python and
written by one statement, its own transaction (autocommit), that locks the row (`FOR UPDATE
SKIP LOCKED`: a row held by a concurrent run is left to it), re-checks that it still holds the
wrapped key and id that were read, and sets the new wrapped key and the new id together. So a
row is either old-wrapped under the old id or new-wrapped under the new id, never a mix (the
wrap binds the id as associated data; a mix could not decrypt). Killed at any point, at most
the one statement in flight rolls back; a rerun picks up every row not yet under the current id
(idempotent and resumable). One round trip per version: 10,000 versions take about 6 s
(bench/master_key_rotation.py). Call it outside a transaction, or the rows commit together.

Sealed secrets kept in model fields (each app registers its fields with
`apps.core.resealing.sealed_field_register`) are re-sealed after the versions, the same way:
one compare-and-set UPDATE per row, resumable, idempotent. Their counts join the versions' in
`still_in_use`, so an old key is retirable only when neither a version nor a secret uses it.

Retiring: an old entry may leave BULWARK_MASTER_KEYS only when the report says no version uses
it any more (`still_in_use[id] == 0`); removing it earlier makes those versions (and secrets)
undecryptable.

BULWARK_ROTATION_PAUSE_SECONDS (default 0) sleeps that long after each row: an operations
throttle for a busy database, and how the tests make a run slow enough to kill mid-way.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import cast

from django.db import connection, transaction
from django.db.models import Count

from apps.audit.services import audit_event_record
from apps.core.resealing import sealed_fields_reseal, sealed_in_use
from apps.registry.envelope import ArtifactRejected, master_keys_from_secrets, rewrap_data_key
from apps.registry.models import ModelVersion

logger = logging.getLogger("bulwark.registry")

PAUSE_ENV = "BULWARK_ROTATION_PAUSE_SECONDS"


class MasterKeyMissing(Exception):
    """Versions or sealed secrets are under master-key ids that BULWARK_MASTER_KEYS no longer
    holds."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            "Versions or sealed secrets are still wrapped under master key id(s) "
            f"{', '.join(missing)}, which "
            "BULWARK_MASTER_KEYS no longer holds: put them back (after the current key) and "
            "run the rotation again; nothing was changed."
        )


@dataclass
class RotationReport:
    current_id: str
    rotated: int = 0  # model versions re-wrapped
    sealed_rotated: int = 0  # sealed secrets (TOTP seeds, recovery-code keys) re-sealed
    from_ids: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # versions or secrets that did not open
    # old id -> versions and sealed secrets still using it
    still_in_use: dict[str, int] = field(default_factory=dict)

    @property
    def retirable(self) -> list[str]:
        """Old ids configured in BULWARK_MASTER_KEYS that nothing uses any more."""
        return [key_id for key_id, count in self.still_in_use.items() if count == 0]

    def as_dict(self) -> dict[str, object]:
        return {
            "current_id": self.current_id,
            "rotated": self.rotated,
            "sealed_rotated": self.sealed_rotated,
            "from_ids": self.from_ids,
            "failed": self.failed,
            "still_in_use": self.still_in_use,
        }


def _pause() -> float:
    raw = os.environ.get(PAUSE_ENV, "0")
    try:
        pause = float(raw)
    except ValueError:
        raise ValueError(f"{PAUSE_ENV} must be a number of seconds, got {raw!r}") from None
    return max(pause, 0.0)


def _in_use(current_id: str) -> dict[str, int]:
    """Versions and sealed secrets per master-key id other than the current one."""
    rows = (
        ModelVersion.objects.exclude(master_key_id=current_id)
        .order_by()  # the model's default ordering would split the groups
        .values_list("master_key_id")
        .annotate(versions=Count("pk"))
    )
    counts = dict(rows)
    for key_id, count in sealed_in_use(current_id).items():
        counts[key_id] = counts.get(key_id, 0) + count
    return counts


Row = tuple[uuid.UUID, bytes, str, int, str]  # pk, wrapped key, master-key id, number, model


def _pending(current_id: str, after: object, batch: int) -> list[Row]:
    """The next `batch` versions, by pk after `after`, not wrapped under `current_id`."""
    pending = ModelVersion.objects.exclude(master_key_id=current_id).order_by("pk")
    if after is not None:
        pending = pending.filter(pk__gt=after)
    return [
        (pk, bytes(wrapped), key_id, number, model)
        for pk, wrapped, key_id, number, model in pending.values_list(
            "pk", "wrapped_data_key", "master_key_id", "number", "model__name"
        )[:batch]
    ]


def _rewrap_sql() -> str:
    table = connection.ops.quote_name(ModelVersion._meta.db_table)
    pk = connection.ops.quote_name(cast(str, ModelVersion._meta.pk.column))  # the id column
    # One statement, so one transaction of its own (autocommit), one round trip: lock the row
    # (skipping it if a concurrent run holds it), re-check that it still holds exactly the
    # wrapped key we re-wrapped, and write the new wrapped key with its id together.
    return f"""
        WITH locked AS (
            SELECT {pk} FROM {table}
            WHERE {pk} = %s AND master_key_id = %s AND wrapped_data_key = %s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {table} AS version
        SET wrapped_data_key = %s, master_key_id = %s, updated_at = now()
        FROM locked WHERE version.{pk} = locked.{pk}
    """  # noqa: S608  # the table name is ours; every value is a parameter


def _rewrap_row(row: Row, *, current_id: str, master_keys: list[tuple[str, bytes]]) -> bool:
    """Re-wrap one version in its own transaction; False if a concurrent run has it or has
    changed it since it was read (it is then that run's). ArtifactRejected if its key does
    not unwrap under its recorded master key."""
    pk, wrapped, old_id, number, model = row
    rewrapped = rewrap_data_key(
        wrapped,
        from_id=old_id,
        to_id=current_id,
        master_keys=master_keys,
        model=model,
        version=number,
    )
    # Outside any atomic block (the command, the task) the statement commits on its own.
    with connection.cursor() as cursor:
        cursor.execute(_rewrap_sql(), [pk, old_id, wrapped, rewrapped, current_id])
        return cursor.rowcount == 1


def rotate_master_key(*, batch: int = 100, actor: object = "rotate_master_key") -> RotationReport:
    """Re-wrap, under the first key of BULWARK_MASTER_KEYS, every data key wrapped under
    another, then re-seal every registered sealed secret sealed under another; one
    transaction per row, `batch` rows fetched at a time. Records one `masterkey.rotated`
    audit event (ids and counts, never key material).

    Raises MasterKeyMissing, before changing anything, when a version's or a secret's
    master-key id is not configured. A version or secret that does not open under its
    recorded key is left as it is and listed in `failed` (it was already undecryptable; its
    old id stays in use)."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    master_keys = master_keys_from_secrets()
    current_id = master_keys[0][0]
    configured = {key_id for key_id, _ in master_keys}
    missing = sorted(set(_in_use(current_id)) - configured)
    if missing:
        raise MasterKeyMissing(missing)

    pause = _pause()
    report = RotationReport(current_id=current_id)
    from_ids: set[str] = set()
    last_pk = None
    while rows := _pending(current_id, last_pk, batch):
        for row in rows:
            last_pk = row[0]
            try:
                done = _rewrap_row(row, current_id=current_id, master_keys=master_keys)
            except ArtifactRejected as exc:
                logger.error(
                    "master-key rotation: data key did not unwrap", extra={"pk": str(last_pk)}
                )
                report.failed.append(f"{last_pk}: {exc.reason.value}")
                continue
            if done:
                report.rotated += 1
                from_ids.add(row[2])
            if pause:
                time.sleep(pause)

    resealed = sealed_fields_reseal(master_keys=master_keys, batch=batch, pause=pause)
    report.sealed_rotated = resealed.rotated
    from_ids |= resealed.from_ids
    for failure in resealed.failed:
        logger.error("master-key rotation: a sealed secret did not open", extra={"row": failure})
    report.failed.extend(resealed.failed)

    report.from_ids = sorted(from_ids)
    in_use = _in_use(current_id)
    report.still_in_use = {key_id: in_use.get(key_id, 0) for key_id, _ in master_keys[1:]} | in_use
    with transaction.atomic():
        audit_event_record(
            "masterkey.rotated",
            actor=actor,
            outcome="failure" if report.failed else "success",
            details={
                "to": current_id,
                "from": report.from_ids,
                "rotated": report.rotated,
                "sealed_rotated": report.sealed_rotated,
                "failed": len(report.failed),
                "still_in_use": report.still_in_use,
            },
        )
    logger.info("master-key rotation finished", extra=report.as_dict())
    return report
