"""The key-record cache: what authentication needs about a key (and its owner), so that a
request costs one Redis round trip and no database query.

- One MGET reads the caller's failed-authentication count and the key's record, or none when
  the predict gate read both in its own round trip and hands them over (`GateReading`).
- Records are JSON, not pickles (a pickle from Redis would be code from whoever can write to
  it), and carry an HMAC under a key derived from API_KEY_PEPPER: a record that does not
  verify is ignored and read again from the database.
- Freshness: a state change writes the new record *before* its transaction commits (a 200 for
  a revocation means the cache already refuses the key; Redis down means no 200) and again
  after commit. Misses fill with SET NX, so a request that read the old row from the database
  cannot overwrite the newer record. The owner's activity and roles are refreshed by
  `apps.apikeys.signals` when the user changes. Expiry needs no invalidation: status is
  derived from the timestamps in the record.
- Without Redis (the embedded default) the Django cache stands in, with the same semantics.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache

from apps.apikeys.keys import pepper
from apps.apikeys.models import ApiKey
from apps.core import ratelimit
from apps.core.models import instance_from_values
from apps.core.permissions import roles_of, roles_remember
from apps.core.redis import shared_client
from apps.core.signed_json import derive_key, dumps_signed, loads_signed
from apps.core.timestamps import iso

logger = logging.getLogger("bulwark.apikeys")

RECORD_TTL = 300
_REDIS_PREFIX = "bulwark:apikey:"
_CLAIM_PREFIX = "bulwark:apikey-claim:"
_TOMBSTONE = "-"  # a deleted key: refused without asking the database
_VERSION = 1

# Snapshot fields; the others (last_used_at, updated_at, job bookkeeping) stay deferred and
# load from the database only if something reads them.
_DATETIMES = ("created_at", "expires_at", "revoked_at", "grace_ends_at")
_PLAIN = (
    "name",
    "public_id",
    "secret_hash",
    "scopes",
    "rate_limit",
    "require_signature",
    "signing_secret_sealed",
    "allowed_ips",
)


class _Missing:
    """Not in the cache (as opposed to cached as absent)."""


MISSING = _Missing()


def _fallback_key(public_id: str) -> str:
    return f"apikey:{public_id}"


def _mac_key() -> bytes:
    return derive_key(pepper(), "apikey-record-cache")


def encode(api_key: ApiKey) -> str:
    owner = api_key.owner
    roles = roles_of(owner, remember=False)
    payload = {
        "v": _VERSION,
        "id": str(api_key.pk),
        "owner": {"id": str(owner.pk), "is_active": owner.is_active, "roles": sorted(roles)},
        "rotated_to_id": str(api_key.rotated_to_id) if api_key.rotated_to_id else None,
        **{name: iso(getattr(api_key, name)) for name in _DATETIMES},
        **{name: getattr(api_key, name) for name in _PLAIN},
    }
    return dumps_signed(payload, _mac_key())


def _verify(text: str) -> tuple[dict[str, Any], dict[str, Any], frozenset[str]] | None:
    """(owner values, key values, owner roles) of a record whose MAC verifies, else None."""
    data = loads_signed(text, _mac_key())
    if data is None:
        logger.warning("API key cache record failed its integrity check; ignored")
        return None
    if data.get("v") != _VERSION:
        return None
    owner = {"id": uuid.UUID(data["owner"]["id"]), "is_active": data["owner"]["is_active"]}
    values: dict[str, Any] = {name: data[name] for name in _PLAIN}
    for name in _DATETIMES:
        values[name] = datetime.fromisoformat(data[name]) if data[name] else None
    values["id"] = uuid.UUID(data["id"])
    values["owner_id"] = owner["id"]
    values["rotated_to_id"] = uuid.UUID(data["rotated_to_id"]) if data["rotated_to_id"] else None
    return owner, values, frozenset(data["owner"]["roles"])


# Records already verified, by their exact text: the same bytes need neither their MAC nor
# their JSON checked again (this saves ~20 µs of the ~100 µs a request costs here).
_verified: dict[str, tuple[dict[str, Any], dict[str, Any], frozenset[str]]] = {}
_MAX_VERIFIED = 4096


def decode(raw: str | bytes) -> ApiKey | _Missing | None:
    """The key of a cached record (None for a tombstone); MISSING when it does not verify.
    Fresh instances every time: callers may not share mutable state through the memo."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text == _TOMBSTONE:
        return None
    parsed = _verified.get(text)
    if parsed is None:
        parsed = _verify(text)
        if parsed is None:
            return MISSING
        if len(_verified) >= _MAX_VERIFIED:
            _verified.clear()
        _verified[text] = parsed
    owner_values, key_values, roles = parsed
    owner = instance_from_values(get_user_model(), owner_values)
    roles_remember(owner, roles)
    api_key = instance_from_values(
        ApiKey,
        {
            **key_values,
            "scopes": list(key_values["scopes"]),
            "allowed_ips": list(key_values["allowed_ips"]),
        },
    )
    api_key.owner = owner
    return api_key


def load(public_id: str) -> ApiKey | None:
    """The key from the database (two queries: the key with its owner, the owner's roles)."""
    api_key = ApiKey.objects.select_related("owner").filter(public_id=public_id).first()
    if api_key is not None:
        roles_of(api_key.owner)  # read now: the record written from this instance carries them
    return api_key


def _write(public_id: str, value: str, *, overwrite: bool) -> None:
    client = shared_client()
    if client is None:
        setter = cache.set if overwrite else cache.add
        setter(_fallback_key(public_id), value, RECORD_TTL)
    else:
        client.set(_REDIS_PREFIX + public_id, value, ex=RECORD_TTL, nx=not overwrite)


def store(api_key: ApiKey, *, overwrite: bool = True) -> None:
    _write(api_key.public_id, encode(api_key), overwrite=overwrite)


def store_many(pks: Iterable[Any]) -> None:
    """Rewrite the cached records of these keys from the database (after a change made by
    UPDATE, such as master-key rotation re-sealing their signing secrets)."""
    for api_key in ApiKey.objects.select_related("owner").filter(pk__in=list(pks)):
        roles_of(api_key.owner)  # one query per key, as `load` makes
        store(api_key)


def store_deleted(public_ids: Iterable[str]) -> None:
    for public_id in public_ids:
        _write(public_id, _TOMBSTONE, overwrite=True)


def claim_once(name: str, ttl: int) -> bool:
    """True the first time `name` is claimed within `ttl` seconds, across all processes (SET NX
    on the kept client: Django's `cache.add` would build a client per call)."""
    client = shared_client()
    if client is None:
        return bool(cache.add(f"apikeys:{name}", 1, ttl))
    return bool(client.set(f"{_CLAIM_PREFIX}{name}", 1, ex=ttl, nx=True))


def forget(public_id: str) -> None:
    """Drop a record (tests that edit rows behind the services' back use this)."""
    client = shared_client()
    if client is None:
        cache.delete(_fallback_key(public_id))
    else:
        client.delete(_REDIS_PREFIX + public_id)


def record_key(public_id: str) -> str:
    """The Redis key of a key's cached record (a caller may read it in its own round trip and
    hand the value to `lookup` as a `GateReading`)."""
    return _REDIS_PREFIX + public_id


@dataclass(frozen=True)
class GateReading:
    """What the predict gate (apps/serving/limits.py) read for this request in its one round
    trip, as Redis returned it: the failure counter of `failure_bucket` and the record of
    `public_id` (None where Redis had none). `lookup` uses it instead of its own MGET."""

    public_id: str
    failure_bucket: str
    failures: bytes | str | None
    record: bytes | str | None


def lookup(
    public_id: str | None,
    bucket: str,
    *,
    limit: int,
    window: int,
    reading: GateReading | None = None,
) -> tuple[ratelimit.Window, ApiKey | _Missing | None]:
    """The failure window of `bucket` and the cached key (MISSING when not cached), in one
    round trip: an MGET of the failure counter and the record, or none when `reading` holds
    both for this key and bucket. (A redis-py pipeline costs twice an MGET in Python; the
    window's remaining time is only read for a locked-out caller, which is rare.)"""
    client = shared_client()
    if client is None:
        state = ratelimit.peek(bucket, limit=limit, window=window)
        raw = cache.get(_fallback_key(public_id)) if public_id else None
    else:
        full = ratelimit.KEY_PREFIX + bucket
        if (
            public_id
            and reading is not None
            and (reading.public_id, reading.failure_bucket) == (public_id, bucket)
        ):
            counted, raw = reading.failures, reading.record
        elif public_id:
            counted, raw = client.mget([full, _REDIS_PREFIX + public_id])
        else:
            counted, raw = client.get(full), None
        count = int(counted or 0)
        reset_in = max(int(client.ttl(full)), 0) if count >= limit else 0
        state = ratelimit.Window(count, limit, reset_in)
    if raw is None:
        return state, MISSING
    api_key = decode(raw)
    if api_key is MISSING and public_id:
        forget(public_id)  # so that the fill after the database read (NX) can replace it
    return state, api_key


def fetch(public_id: str) -> ApiKey | None:
    """On a miss: read the database and fill the cache (NX: never over a newer record)."""
    api_key = load(public_id)
    if api_key is not None:
        store(api_key, overwrite=False)
    return api_key
