"""`X-API-Key` authentication, for the endpoints that accept keys (predict only, docs/api.md).

It is deliberately not in DEFAULT_AUTHENTICATION_CLASSES: anywhere else the header
authenticates nobody. A view opts in with `authentication_classes = [ApiKeyAuthentication]`
and gets `(owner, api_key)`; keys that require signing are checked here too, so no view can
forget to. The cost per request is one Redis round trip (see apps.apikeys.records).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from functools import lru_cache
from typing import Any

from django.db import DatabaseError
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps.apikeys import records
from apps.apikeys.errors import (
    ApiKeyExpired,
    ApiKeyInvalid,
    ApiKeyRevoked,
    AuthFailuresLocked,
    IpNotAllowed,
)
from apps.apikeys.failures import failure_bucket, failure_limit, refuse
from apps.apikeys.keys import parse_key, secret_matches
from apps.apikeys.models import ApiKey, ApiKeyStatus
from apps.apikeys.signatures import verify_signature

logger = logging.getLogger("bulwark.apikeys")

HEADER = "HTTP_X_API_KEY"
LAST_USED_INTERVAL = 60  # seconds: last_used_at is written at most this often per key
# When this process last claimed each key's last_used_at write. Saves the cache round trip
# on most requests; the claim in Redis is what guarantees "at most once a minute" across
# processes.
_last_used_claims: dict[str, float] = {}
_MAX_CLAIMS = 10_000


@lru_cache(maxsize=1024)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


def ip_allowed(address: str, cidrs: list[str]) -> bool:
    """Whether `address` is in one of `cidrs` (an empty list allows every address)."""
    if not cidrs:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # no usable address: fail closed
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(tuple(cidrs)))


def mark_used(api_key: ApiKey) -> None:
    """Write last_used_at at most once a minute per key, without a write per request."""
    now = time.monotonic()
    if _last_used_claims.get(api_key.public_id, 0.0) > now:
        return
    if len(_last_used_claims) >= _MAX_CLAIMS:
        _last_used_claims.clear()
    _last_used_claims[api_key.public_id] = now + LAST_USED_INTERVAL
    if not records.claim_once(f"used:{api_key.public_id}", LAST_USED_INTERVAL):
        return  # another process wrote it within the minute
    try:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
    except DatabaseError:
        # Bookkeeping only: losing one update must not refuse a valid request.
        logger.warning("last_used_at not updated", extra={"prefix": api_key.prefix})


class ApiKeyAuthentication(BaseAuthentication):
    """Returns `(owner, api_key)` or raises, with docs/api.md's codes:
    api_key_invalid (malformed, unknown, wrong secret, owner deactivated), api_key_expired,
    api_key_revoked (401), ip_not_allowed (403), signature_* (401), and 429 rate_limited when
    the client's address has used up its failed attempts (then even a valid key is refused,
    or guesses could still be told apart). Redis or the database down: 503 (fail closed)."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        raw = request.META.get(HEADER)
        if raw is None:
            return None
        parsed = parse_key(raw)
        public_id = parsed[0] if parsed else None
        limit, window = failure_limit()
        failures, cached = records.lookup(
            public_id, failure_bucket(request), limit=limit, window=window
        )
        if failures.count >= limit:
            raise AuthFailuresLocked(retry_after=failures.reset_in or window)
        if parsed is None:
            refuse(request, ApiKeyInvalid(), reason="malformed")
        api_key = records.fetch(parsed[0]) if cached is records.MISSING else cached
        if not isinstance(api_key, ApiKey):
            refuse(request, ApiKeyInvalid(), reason="unknown")
        if not secret_matches(parsed[1], api_key.secret_hash):
            refuse(request, ApiKeyInvalid(), reason="wrong_secret", api_key=api_key)
        now = timezone.now()
        status = api_key.status_at(now)
        # Revoked first: taking a user's access away revokes their keys, and a revoked key
        # says so whatever its owner's state (docs/api.md: reactivation revives none of them).
        if status == ApiKeyStatus.REVOKED:
            refuse(request, ApiKeyRevoked(), reason="revoked", api_key=api_key, key_proven=True)
        owner = api_key.owner
        if not owner.is_active:
            refuse(
                request, ApiKeyInvalid(), reason="owner_inactive", api_key=api_key, key_proven=True
            )
        if status == ApiKeyStatus.EXPIRED:
            grace_over = api_key.grace_ends_at is not None and now >= api_key.grace_ends_at
            reason = "grace_over" if grace_over else "expired"
            refuse(request, ApiKeyExpired(), reason=reason, api_key=api_key, key_proven=True)
        if not ip_allowed(request.META.get("REMOTE_ADDR", ""), api_key.allowed_ips):
            refuse(request, IpNotAllowed(), reason="ip", api_key=api_key, key_proven=True)
        verify_signature(request, api_key)
        mark_used(api_key)
        return owner, api_key

    def authenticate_header(self, request: Request) -> str:
        # Non-empty, so that DRF answers 401 (not 403) for this view's refusals.
        return 'ApiKey realm="bulwark"'
