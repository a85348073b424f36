"""`X-API-Key` authentication (docs/api.md "API keys", "Request signing"), as one explicit call.

`api_key_authenticate` takes what it needs as data (the key as presented, the client's
address, what a signature covers, and what the predict gate already read for this request)
and returns `KeyAccepted` or `KeyRefused`; it raises only when it cannot decide (Redis or the
database down, a signing secret that cannot be opened: 503, fail closed). Each refusal has
been counted against the client's address; recording it is the caller's: the predict view
records one predict.rejected event, `ApiKeyAuthentication` an apikey.rejected event.

`ApiKeyAuthentication` is that call as a DRF authenticator. It is deliberately not in
DEFAULT_AUTHENTICATION_CLASSES: anywhere else the header authenticates nobody. Keys that
require signing are checked here too, so no caller can forget to. The cost per request is one
Redis round trip, or none after the predict gate's (see apps.apikeys.records).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.request import Request

from apps.apikeys import records
from apps.apikeys.errors import (
    ApiKeyExpired,
    ApiKeyInvalid,
    ApiKeyRevoked,
    AuthFailuresLocked,
    IpNotAllowed,
)
from apps.apikeys.keys import parse_key, secret_matches
from apps.apikeys.models import ApiKey, ApiKeyStatus
from apps.apikeys.records import GateReading
from apps.apikeys.signatures import SignedRequest, signature_refusal
from apps.audit.services import audit_event_record
from apps.audit.subjects import Subject
from apps.core import ratelimit
from apps.core.auth_failures import failure_bucket_of, failure_limit
from apps.core.errors import ApplicationError

logger = logging.getLogger("bulwark.apikeys")

HEADER = "HTTP_X_API_KEY"
CHALLENGE = 'ApiKey realm="bulwark"'
ANONYMOUS = Subject("user", "anonymous")
LAST_USED_INTERVAL = 60  # seconds: last_used_at is written at most this often per key
# When this process last claimed each key's last_used_at write. Saves the cache round trip
# on most requests; the claim in Redis is what guarantees "at most once a minute" across
# processes.
_last_used_claims: dict[str, float] = {}
_MAX_CLAIMS = 10_000
# Refusals where the credential itself was wrong ("failure"); the others are a right
# credential refused by policy ("denied").
_WRONG_CREDENTIAL = frozenset({"api_key_invalid", "signature_invalid", "signature_required"})


@dataclass(frozen=True)
class PresentedKey:
    """The X-API-Key header, parsed once: its public id names the gate's window and the cached
    record before the key is authenticated. `public_id` is None for a malformed key."""

    public_id: str | None
    secret: str = field(default="", repr=False)

    @classmethod
    def parse(cls, header: str) -> PresentedKey:
        parsed = parse_key(header)
        return cls(*parsed) if parsed is not None else cls(None)


@dataclass(frozen=True)
class KeyAccepted:
    api_key: ApiKey  # built from the cached record when there was one (apps.apikeys.records)
    owner: Any  # the key's owner, active, carrying their roles (apps.core.permissions.roles_of)


@dataclass(frozen=True)
class KeyRefused:
    """A refusal, already counted against the client's address (unless it is the lock-out
    itself). The call was not the key's: the predict gate's count goes back."""

    error: APIException | ApplicationError  # to raise, with docs/api.md's status and code
    reason: str | None  # for the audit event; None: the address is locked out, not the key
    actor: ApiKey | Subject  # the key once its secret was shown, else anonymous
    api_key: ApiKey | None = None  # the key named by the public id, when it exists


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


def api_key_authenticate(
    *,
    key: PresentedKey,
    client_address: str,
    signed: SignedRequest,
    gate: GateReading | None = None,
) -> KeyAccepted | KeyRefused:
    """Authenticate a presented key, with docs/api.md's refusals: api_key_invalid (malformed,
    unknown, wrong secret, owner deactivated), api_key_expired, api_key_revoked (401),
    ip_not_allowed (403), signature_* (401), and 429 rate_limited when the client's address
    has used up its failed attempts (then even a valid key is refused, or guesses could still
    be told apart). `gate`: the failure count and record the caller already read (none: read
    here). Raises when Redis or the database is down (503, fail closed); marks the key used
    when it is accepted."""
    bucket = failure_bucket_of(client_address)
    limit, window = failure_limit()
    failures, cached = records.lookup(
        key.public_id, bucket, limit=limit, window=window, reading=gate
    )
    if failures.count >= limit:
        locked = AuthFailuresLocked(retry_after=failures.reset_in or window)
        return KeyRefused(locked, reason=None, actor=ANONYMOUS)  # not counted again
    outcome = _checked(key, cached, client_address, signed)
    if isinstance(outcome, KeyRefused):
        ratelimit.hit(bucket, limit=limit, window=window)
    else:
        mark_used(outcome.api_key)
    return outcome


def _checked(
    key: PresentedKey,
    cached: ApiKey | records._Missing | None,
    client_address: str,
    signed: SignedRequest,
) -> KeyAccepted | KeyRefused:
    """The checks in their order: the secret before anything about the key's state, so that
    without it nobody learns whether a key is revoked or expired."""
    if key.public_id is None:
        return KeyRefused(ApiKeyInvalid(), reason="malformed", actor=ANONYMOUS)
    api_key = records.fetch(key.public_id) if cached is records.MISSING else cached
    if not isinstance(api_key, ApiKey):
        return KeyRefused(ApiKeyInvalid(), reason="unknown", actor=ANONYMOUS)
    if not secret_matches(key.secret, api_key.secret_hash):
        return KeyRefused(ApiKeyInvalid(), reason="wrong_secret", actor=ANONYMOUS, api_key=api_key)
    # From here on the caller has shown the key's secret: the key itself is the actor.
    now = timezone.now()
    status = api_key.status_at(now)
    # Revoked first: taking a user's access away revokes their keys, and a revoked key says
    # so whatever its owner's state (docs/api.md: reactivation revives none of them).
    if status == ApiKeyStatus.REVOKED:
        return KeyRefused(ApiKeyRevoked(), reason="revoked", actor=api_key, api_key=api_key)
    owner = api_key.owner
    if not owner.is_active:
        return KeyRefused(ApiKeyInvalid(), reason="owner_inactive", actor=api_key, api_key=api_key)
    if status == ApiKeyStatus.EXPIRED:
        grace_over = api_key.grace_ends_at is not None and now >= api_key.grace_ends_at
        reason = "grace_over" if grace_over else "expired"
        return KeyRefused(ApiKeyExpired(), reason=reason, actor=api_key, api_key=api_key)
    if not ip_allowed(client_address, api_key.allowed_ips):
        return KeyRefused(IpNotAllowed(), reason="ip", actor=api_key, api_key=api_key)
    refusal = signature_refusal(signed, api_key)
    if refusal is not None:
        error, reason = refusal
        return KeyRefused(error, reason=reason, actor=api_key, api_key=api_key)
    return KeyAccepted(api_key=api_key, owner=owner)


def rejection_record(refused: KeyRefused) -> None:
    """Record a refusal as an `apikey.rejected` event, in a transaction of its own: a refusal
    changes nothing, and a failure to record it is logged but never turns the refusal into an
    acceptance."""
    code = getattr(refused.error, "default_code", "api_key_invalid")
    try:
        with transaction.atomic():
            audit_event_record(
                "apikey.rejected",
                actor=refused.actor,
                target=refused.api_key,
                outcome="failure" if code in _WRONG_CREDENTIAL else "denied",
                details={"code": code, "reason": refused.reason},
            )
    except Exception:
        # Fail closed: the refusal stands even when it cannot be recorded.
        logger.exception("API key refusal could not be audited", extra={"code": code})


class ApiKeyAuthentication(BaseAuthentication):
    """`api_key_invalid` and the other refusals of `api_key_authenticate`, for a DRF view:
    returns `(owner, api_key)`, or records the refusal as apikey.rejected and raises it. A view
    opts in with `authentication_classes = [ApiKeyAuthentication]`; predict calls
    `api_key_authenticate` itself (apps.serving.views), with the gate's reading."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = request.META.get(HEADER)
        if header is None:
            return None
        http_request = request._request
        outcome = api_key_authenticate(
            key=PresentedKey.parse(header),
            client_address=http_request.META.get("REMOTE_ADDR", ""),
            signed=SignedRequest.of(http_request),
        )
        if isinstance(outcome, KeyRefused):
            if outcome.reason is not None:  # a lock-out refuses the address, not this key
                rejection_record(outcome)
            raise outcome.error
        return outcome.owner, outcome.api_key

    def authenticate_header(self, request: Request) -> str:
        # Non-empty, so that DRF answers 401 (not 403) for this view's refusals.
        return CHALLENGE
