"""Who a token's subject is, without a database query per request.

One Redis round trip (MGET) reads the user's record, the token family's state (cached as
"ok" or "revoked", so a lost key means a database read, never "not revoked"), and the
client address's failed-authentication count. Records are JSON with an HMAC (a pickle
from Redis would be code from whoever can write to it); a record that does not verify is
ignored and read again from the database. When a user changes, the new record is written
after commit, and a "read the database" marker inside the change's transaction
(overwriting, so a request that read the old row cannot leave a stale record behind: misses
fill with SET NX, which the marker also holds off); a deleted user becomes a tombstone. So a
deactivated, demoted or erased user is refused by the very next request after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from apps.accounts.models import TokenFamily, User
from apps.core import ratelimit
from apps.core.models import instance_from_values
from apps.core.permissions import roles_of, roles_remember
from apps.core.redis import shared_client
from apps.core.signed_json import derive_key, dumps_signed, loads_signed

RECORD_TTL = 300
_PREFIX = "bulwark:auth:"
_TOMBSTONE = "-"
_RELOAD = "?"  # a change is being committed: read the database, and do not cache what it says
_FIELDS = ("id", "username", "is_active", "is_staff", "is_superuser", "access_epoch")


def _user_key(user_id: Any) -> str:
    return f"{_PREFIX}user:{user_id}"


def _family_key(family_id: Any) -> str:
    return f"{_PREFIX}family-revoked:{family_id}"


def _mac_key() -> bytes:
    return derive_key(settings.SIMPLE_JWT["SIGNING_KEY"], "user-record-cache")


def encode(user: User | None) -> str:
    if user is None:
        return _TOMBSTONE
    roles = roles_of(user, remember=False)
    payload = {name: getattr(user, name) for name in _FIELDS}
    payload["id"] = str(user.pk)
    payload["roles"] = sorted(roles)
    return dumps_signed(payload, _mac_key())


def decode(raw: str | bytes) -> User | Literal[False] | None:
    """The user (None for a tombstone); False when the record does not verify."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text == _TOMBSTONE:
        return None
    if text == _RELOAD:
        return False
    payload = loads_signed(text, _mac_key())
    if payload is None or not all(name in payload for name in _FIELDS):
        return False  # forged, or written by an older release: read again from the database
    payload["id"] = User._meta.pk.to_python(payload["id"])
    user = instance_from_values(User, {name: payload[name] for name in _FIELDS})
    roles_remember(user, payload["roles"])
    return user


def load_user(user_id: Any) -> User | None:
    user = User.objects.filter(pk=user_id).prefetch_related("roles").first()
    if user is not None:
        roles_remember(user, (role.name for role in user.roles.all()))  # the prefetched ones
    return user


def _family_state(raw: Any, family_id: Any) -> bool:
    """Whether the family is revoked. Its state is cached positively ("ok"/"revoked"), so a
    record lost from Redis (eviction, restart, flush) is read again from the database rather
    than taken as "not revoked"."""
    if raw is not None:
        return (raw.decode() if isinstance(raw, bytes) else raw) != "ok"
    revoked_at = TokenFamily.objects.filter(pk=family_id).values_list("revoked_at", flat=True)
    state = list(revoked_at[:1])
    revoked = not state or state[0] is not None  # an unknown family (its user erased) too
    _store(
        _family_key(family_id),
        "revoked" if revoked else "ok",
        only_if_absent=True,
        ttl=_refresh_ttl() if revoked else _access_ttl(),
    )
    return revoked


RecordsRead = Callable[[list[str]], Sequence[Any]]


def lookup(
    user_id: Any, family_id: Any, bucket: str, *, read: RecordsRead | None = None
) -> tuple[User | None, bool, int]:
    """(user or None, family revoked?, failures counted for `bucket`) in one round trip: an
    MGET of the three keys, or `read` of them, which may do more in the same trip (predict
    counts the call: apps.serving.limits.gate_for_user)."""
    key = _user_key(user_id)
    client = shared_client()
    if client is not None:
        keys = [key, _family_key(family_id), ratelimit.KEY_PREFIX + bucket]
        raw_user, raw_family, failures = (read or client.mget)(keys)
        count = int(failures or 0)
    else:
        found = cache.get_many([key, _family_key(family_id)])
        raw_user, raw_family = found.get(key), found.get(_family_key(family_id))
        count = ratelimit.peek(bucket, limit=1, window=60).count
    user = decode(raw_user) if raw_user is not None else False
    if user is False:
        user = load_user(user_id)
        _store(key, encode(user), only_if_absent=True)
    return user, _family_state(raw_family, family_id), count


def _store(key: str, value: str, *, only_if_absent: bool, ttl: int = RECORD_TTL) -> None:
    client = shared_client()
    if client is not None:
        client.set(key, value, ex=ttl, nx=only_if_absent)
    elif only_if_absent:
        cache.add(key, value, timeout=ttl)
    else:
        cache.set(key, value, timeout=ttl)


def _access_ttl() -> int:
    return int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds())


def _refresh_ttl() -> int:
    return int(settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].total_seconds())


def refresh_user(user_id: Any) -> None:
    """Inside the change's transaction, replace the user's record with a "read the database"
    marker (if Redis cannot take it, the change fails with a 503 instead of leaving a stale
    record that still says "active"); after commit, write the record the database now holds.
    Until then every request reads the committed row, and a change that rolls back leaves
    only the marker: never state that was not committed (a role given, then rolled back)."""

    def write() -> None:
        _store(_user_key(user_id), encode(load_user(user_id)), only_if_absent=False)

    _store(_user_key(user_id), _RELOAD, only_if_absent=False)
    # Robust: the change has committed; if Redis fails now the marker stays, which is safe.
    transaction.on_commit(write, robust=True)


def mark_family_revoked(family_id: Any) -> None:
    """Called inside the revoking transaction and again after its commit. Unlike a user's
    record this may run ahead of the commit: a revocation that rolls back only signs the
    family's holder out early (it fails closed), never in."""
    _store(_family_key(family_id), "revoked", only_if_absent=False, ttl=_refresh_ttl())
