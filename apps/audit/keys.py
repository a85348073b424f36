"""The audit HMAC keys: the current one, which chains new events, and retired ones, which only
verify the events they chained.

`AUDIT_HMAC_KEY` is the current key, one plain secret as before. Its id is derived from it
(`audit_hmac_key_id`: 16 hex digits of an HMAC under the key), so there is nothing to configure
beside it and an id can never name the wrong key. `AUDIT_HMAC_KEYS_RETIRED` lists earlier keys
as `id:base64-of-the-key` entries (`rotate_audit_hmac_key` prints the value to install).

Each chained event carries the id of the key that chained it, inside its hashed body
(`hmac_key_id`), so the id cannot be swapped without breaking the hash. Events chained before
key ids existed carry none (the column holds "", the body no field): rather than rewrite them,
which the append-only trigger exists to prevent, verification finds their key by trying each
configured key on the first of them, then holds every other one to that same key. They can
only come first: an event without an id after one with an id is refused.

Keys follow each other: once another key has chained, an earlier key never chains again. So a
retired key that leaks cannot add events after the rotation, nor rewrite those before it (the
first event of the next key links to the last one it chained, under a key it does not hold).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from apps.audit.canonical import chain_hash
from apps.audit.models import LEGACY_KEY_ID, AuditEvent
from apps.core.secrets import get_optional_secret, get_secret
from apps.core.secrets.required import (
    AUDIT_HMAC_KEYS_RETIRED,
    audit_hmac_key_id,
    parse_audit_hmac_keys_retired,
)


@dataclass(frozen=True)
class KeyRun:
    """Consecutive events chained under one HMAC key. `legacy`: chained before key ids
    existed; their key is found by trying each configured one, and is "" where no key is at
    hand (an export checked offline)."""

    key_id: str
    first_seq: int
    last_seq: int
    legacy: bool = False


def describe_key_runs(runs: tuple[KeyRun, ...]) -> str:
    """`seq 1-40 under 3f2a… (chained before key ids); seq 41-60 under 9b1c…`."""
    parts = []
    for run in runs:
        seqs = f"seq {run.first_seq}" + (f"-{run.last_seq}" if run.last_seq > run.first_seq else "")
        under = f" under {run.key_id}" if run.key_id else ""
        parts.append(f"{seqs}{under}" + (" (chained before key ids)" if run.legacy else ""))
    return "; ".join(parts)


class AuditHmacKeysInvalid(ValueError):
    """AUDIT_HMAC_KEYS_RETIRED cannot be read; the message names no key material."""


@dataclass(frozen=True)
class AuditHmacKeys:
    current_id: str
    current: bytes
    by_id: dict[str, bytes]  # the current key and every retired one

    def known(self, key_id: str) -> bool:
        return key_id in self.by_id


@lru_cache(maxsize=8)
def _parse(current_text: str, retired_text: str | None) -> AuditHmacKeys:
    current = current_text.encode()
    current_id = audit_hmac_key_id(current)
    try:
        retired = parse_audit_hmac_keys_retired(retired_text) if retired_text else []
    except ValueError as exc:
        raise AuditHmacKeysInvalid(f"{AUDIT_HMAC_KEYS_RETIRED} {exc}.") from None
    # The current key may be listed as retired too: operators install the new retired list
    # before the new current key, so for a while every process has both.
    by_id = dict(retired)
    by_id[current_id] = current
    return AuditHmacKeys(current_id=current_id, current=current, by_id=by_id)


def audit_hmac_keys(*, fresh: bool = False) -> AuditHmacKeys:
    """The configured keys. `fresh` asks the secrets backend again instead of its cache, for
    an id not seen yet (a rotation other processes already picked up). Raises SecretMissing,
    SecretsBackendUnavailable or AuditHmacKeysInvalid."""
    return _parse(
        get_secret("AUDIT_HMAC_KEY", fresh=fresh),
        get_optional_secret("AUDIT_HMAC_KEYS_RETIRED", fresh=fresh),
    )


def key_that_chained(keys: AuditHmacKeys, prev_hash: str, body: str, digest: str) -> str | None:
    """The id of the configured key under which `digest` is the event's hash, or None: how
    the key of an event chained before key ids existed is found."""
    for key_id, key in keys.by_id.items():
        if hmac.compare_digest(chain_hash(key, prev_hash, body), digest):
            return key_id
    return None


def legacy_key_id(keys: AuditHmacKeys) -> str | None:
    """The key that chained the events without a key id (they are the chain's first events),
    found on the first of them; None if there are none or it verifies under no configured key."""
    first = (
        AuditEvent.objects.filter(seq=1, hmac_key_id=LEGACY_KEY_ID)
        .values_list("prev_hash", "body", "hash")
        .first()
    )
    return key_that_chained(keys, *first) if first is not None else None


def key_chained_before(key_id: str, *, seq: int, keys: AuditHmacKeys) -> bool:
    """Whether `key_id` chained any event before `seq` (an index lookup, plus the legacy
    events' key): a key that did, and was followed by another, may not chain again."""
    if AuditEvent.objects.filter(hmac_key_id=key_id, seq__lt=seq).exists():
        return True
    return seq > 1 and legacy_key_id(keys) == key_id


def keyed_hmac(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 object keyed once, to be `.copy()`-ed per event (canonical.chain_hash)."""
    return hmac.new(key, digestmod=hashlib.sha256)
