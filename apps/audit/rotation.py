"""Audit HMAC key rotation: a new current key, the old one kept only to verify.

Events are append-only, so none is ever chained again: each names the key that chained it
(apps/audit/keys.py) and verification uses that key. Rotating is therefore a change of
configuration, which Bulwark cannot make on its own (keys live in the environment, `.env` or
Key Vault): `audit_hmac_key_rotation_prepare` makes the new values, the command hands them to
the operator (or, in development, writes them into `.env`), and the processes pick them up when
restarted (or, from Key Vault, within SECRETS_CACHE_TTL). New events are then chained under
the new key; the old one, now in AUDIT_HMAC_KEYS_RETIRED, never chains again (the chainer and
the verifier both refuse it). A retired key is needed as long as the events it chained are
kept: never remove one from AUDIT_HMAC_KEYS_RETIRED.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from apps.audit.keys import AuditHmacKeysInvalid, audit_hmac_keys, legacy_key_id
from apps.audit.models import LEGACY_KEY_ID, AuditEvent
from apps.audit.services import audit_event_record
from apps.core.masking import Public
from apps.core.secrets import SecretMissing, SecretsBackendUnavailable
from apps.core.secrets.required import (
    AUDIT_HMAC_KEYS_RETIRED,
    REQUIRED_SECRETS,
    audit_hmac_key_id,
    audit_hmac_keys_retired_entry,
    parse_audit_hmac_keys_retired,
)

ROTATED = "audit.hmac_key.rotated"


class AuditHmacKeyRotationRefused(Exception):
    """The rotation cannot be made; the message says why and what to do, naming no key."""


@dataclass(frozen=True)
class AuditHmacKeyRotation:
    from_id: str
    to_id: str
    retired_ids: tuple[str, ...]
    # AUDIT_HMAC_KEY and AUDIT_HMAC_KEYS_RETIRED as they must be installed: secret values,
    # for the operator's stdout or the development .env only, never a log or an event.
    values: dict[str, str]


def _ids_in_chain() -> set[str]:
    # One pass over the (hmac_key_id, seq) index; a rotation is rare and operator-run.
    return set(
        AuditEvent.objects.exclude(hmac_key_id=LEGACY_KEY_ID)
        .order_by()
        .values_list("hmac_key_id", flat=True)
        .distinct()
    )


def audit_hmac_key_rotation_prepare() -> AuditHmacKeyRotation:
    """A new random key and the settings that make it current, the current key joining the
    retired ones. Reads the keys afresh from the secrets backend; changes nothing. Raises
    AuditHmacKeyRotationRefused when there is no current key, AUDIT_HMAC_KEYS_RETIRED is
    malformed, or an event is chained under a key that is not configured (the new settings
    would leave it unverifiable)."""
    try:
        keys = audit_hmac_keys(fresh=True)
    except SecretMissing:
        raise AuditHmacKeyRotationRefused(
            "AUDIT_HMAC_KEY is not set: there is no current audit HMAC key to rotate from. "
            "Set the key that chained the existing events (or, on a new deployment, any "
            "random key of at least 32 characters) and run the command again."
        ) from None
    except (AuditHmacKeysInvalid, SecretsBackendUnavailable) as exc:
        raise AuditHmacKeyRotationRefused(f"{exc} Nothing was changed.") from None
    missing = sorted(_ids_in_chain() - set(keys.by_id))
    if missing:
        raise AuditHmacKeyRotationRefused(
            f"Events are chained under HMAC key id(s) {', '.join(missing)}, which neither "
            f"AUDIT_HMAC_KEY nor {AUDIT_HMAC_KEYS_RETIRED} holds: put them back in "
            f"{AUDIT_HMAC_KEYS_RETIRED} and run the command again; nothing was changed."
        )
    if AuditEvent.objects.filter(seq=1, hmac_key_id=LEGACY_KEY_ID).exists() and (
        legacy_key_id(keys) is None
    ):
        raise AuditHmacKeyRotationRefused(
            "The events chained before key ids existed verify under no configured key: put "
            f"the key that chained them in AUDIT_HMAC_KEY or {AUDIT_HMAC_KEYS_RETIRED} and run "
            "the command again; nothing was changed."
        )
    generate = next(spec.generate for spec in REQUIRED_SECRETS if spec.name == "AUDIT_HMAC_KEY")
    new_key = generate()
    new_id = audit_hmac_key_id(new_key.encode())
    if new_id in keys.by_id:  # 2^-64; a new key must have an id of its own
        raise AuditHmacKeyRotationRefused("The new key's id is taken; run the command again.")
    retired = {keys.current_id: audit_hmac_keys_retired_entry(keys.current)}
    for key_id, key in keys.by_id.items():
        retired.setdefault(key_id, audit_hmac_keys_retired_entry(key))
    retired_value = ",".join(retired.values())
    parse_audit_hmac_keys_retired(retired_value)  # what startup will read: it must parse
    return AuditHmacKeyRotation(
        from_id=keys.current_id,
        to_id=new_id,
        retired_ids=tuple(retired),
        values={"AUDIT_HMAC_KEY": new_key, AUDIT_HMAC_KEYS_RETIRED: retired_value},
    )


def audit_hmac_key_rotate(
    *,
    actor: Any,
    delivery: str,
    deliver: Callable[[AuditHmacKeyRotation], None],
) -> AuditHmacKeyRotation:
    """Prepare a rotation, record `audit.hmac_key.rotated` (key ids and `delivery`, never a
    key), and hand the new values to `deliver` in the same transaction: if delivering fails,
    no event says the key was rotated. The event itself is chained under the key being
    retired. Raises AuditHmacKeyRotationRefused (see `audit_hmac_key_rotation_prepare`)."""
    rotation = audit_hmac_key_rotation_prepare()
    with transaction.atomic():
        audit_event_record(
            ROTATED,
            actor=actor,
            details={
                # Public: key ids are no secret, and a 16-digit id could pass for a card number.
                "from": Public(rotation.from_id),
                "to": Public(rotation.to_id),
                "retired": Public(list(rotation.retired_ids)),
                "delivery": delivery,
            },
        )
        deliver(rotation)
    return rotation
