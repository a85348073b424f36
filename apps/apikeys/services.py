"""State changes of API keys. Each runs in one transaction with its audit event; the key
secret and signing secret exist only in the returned IssuedKey, never in a row, log or event."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.apikeys import records
from apps.apikeys.errors import KeyAlreadyRevoked, KeyNotRotatable, NotKeyOwner, ScopeMissing
from apps.apikeys.keys import format_key, hash_secret, new_public_id, new_secret
from apps.apikeys.models import ApiKey, ApiKeyStatus
from apps.apikeys.signatures import SIGNING_PURPOSE
from apps.apikeys.validation import (
    canonical_cidrs,
    owner_refusal,
    rotation_refusal,
    scopes_beyond_grants,
)
from apps.audit.services import audit_event_record
from apps.audit.subjects import pseudonym_for
from apps.core.errors import InvalidInput, PermissionDenied
from apps.core.permissions import may
from apps.core.sealing import seal

MAX_LIFETIME = timedelta(days=365)
EXPIRE_ACTOR = "apikeys.expire"
WARN_ACTOR = "apikeys.warn_expiring"


@dataclass(frozen=True)
class IssuedKey:
    """A new key and the secrets shown once: to the caller who made it, and to nobody after."""

    api_key: ApiKey
    key: str
    signing_secret: str | None

    def __repr__(self) -> str:  # never print the secrets by accident
        return f"IssuedKey({self.api_key.prefix})"


def _full_clean(api_key: ApiKey) -> None:
    try:
        api_key.full_clean()
    except ValidationError as exc:
        details = [
            {"path": field if field != "__all__" else "", "message": message}
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
        raise InvalidInput(
            f"{details[0]['path']}: {details[0]['message']}", details=details
        ) from None


def _publish(api_key: ApiKey) -> None:
    """Put the key's new state in the record cache now (inside the transaction: if Redis
    cannot take it, the change rolls back and the caller gets 503, never a 200 that the cache
    contradicts) and again after commit (a request that read the old row meanwhile may have
    filled the cache; its fill never overwrites, ours does)."""
    records.store(api_key)
    transaction.on_commit(lambda: records.store(api_key), robust=True)


def _audit_key_fields(api_key: ApiKey) -> dict[str, Any]:
    # Named so that masking keeps them ("signature" would be masked as a secret's name).
    return {
        "name": api_key.name,
        "scopes": api_key.scopes,
        "expires_at": api_key.expires_at.isoformat(),
        "rate_limit": api_key.rate_limit,
        "signed_requests": api_key.require_signature,
        "allowed_ips": api_key.allowed_ips,
        "owner": pseudonym_for(api_key.owner),
    }


def _create(
    *,
    owner: Any,
    name: str,
    scopes: list[str],
    expires_at: datetime,
    rate_limit: str,
    require_signature: bool,
    allowed_ips: list[str],
) -> IssuedKey:
    secret = new_secret()
    signing_secret = new_secret() if require_signature else None
    api_key = ApiKey(
        owner=owner,
        name=name,
        public_id=new_public_id(),
        secret_hash=hash_secret(secret),
        scopes=scopes,
        expires_at=expires_at,
        rate_limit=rate_limit,
        require_signature=require_signature,
        signing_secret_sealed=(
            seal(signing_secret, purpose=SIGNING_PURPOSE) if signing_secret else ""
        ),
        allowed_ips=allowed_ips,
    )
    _full_clean(api_key)
    api_key.save()
    return IssuedKey(api_key, format_key(api_key.public_id, secret), signing_secret)


@transaction.atomic
def api_key_issue(
    *,
    actor: Any,
    owner: Any,
    name: str,
    scopes: Iterable[str],
    expires_in_days: int | None = None,
    rate_limit: str | None = None,
    require_signature: bool = False,
    allowed_ips: Iterable[str] = (),
) -> IssuedKey:
    """Create a key for `owner` (audited as apikey.created). Defaults: 90 days, "60/m".

    Raises ScopeMissing (403) for a scope beyond the owner's grants and InvalidInput (400)
    for anything the model refuses (scopes, rate, networks, a lifetime outside 1..365 days).
    """
    # The owner's row, locked until this commits: a deactivation (or any change that ends
    # the owner's credentials) either finishes first and is seen here, or waits for this key
    # and then revokes it too (apps.accounts.credentials). No key slips in between.
    current = get_user_model().objects.select_for_update().get(pk=owner.pk)
    if not current.is_active or current.access_epoch != getattr(
        owner, "access_epoch", current.access_epoch
    ):
        raise PermissionDenied(
            "The key's owner lost their access while this request ran; sign in again."
        )
    scopes = list(dict.fromkeys(scopes))
    beyond = scopes_beyond_grants(owner, scopes)
    if beyond:
        raise ScopeMissing(
            f"The scope {beyond[0]} is beyond the grants of the key's owner.",
            details=[
                {"path": f"scopes/{scopes.index(scope)}", "message": "beyond your grants"}
                for scope in beyond
            ],
        )
    days = settings.API_KEY_DEFAULT_EXPIRES_DAYS if expires_in_days is None else expires_in_days
    if not 1 <= days <= MAX_LIFETIME.days:
        raise InvalidInput(
            "expires_in_days: must be from 1 to 365",
            details=[{"path": "expires_in_days", "message": "must be from 1 to 365"}],
        )
    try:
        networks = canonical_cidrs(allowed_ips)
    except ValueError:
        networks = list(allowed_ips)  # full_clean names the bad one
    issued = _create(
        owner=owner,
        name=name,
        scopes=scopes,
        expires_at=timezone.now() + timedelta(days=days),
        rate_limit=rate_limit or settings.API_KEY_DEFAULT_RATE_LIMIT,
        require_signature=require_signature,
        allowed_ips=networks,
    )
    audit_event_record(
        "apikey.created",
        actor=actor,
        target=issued.api_key,
        details=_audit_key_fields(issued.api_key),
    )
    return issued


@transaction.atomic
def api_key_issue_for(
    *,
    actor: Any,
    owner: Any,
    name: str,
    scopes: Iterable[str],
    expires_in_days: int | None = None,
    rate_limit: str | None = None,
    require_signature: bool = False,
    allowed_ips: Iterable[str] = (),
) -> IssuedKey:
    """api_key_issue with an owner chosen on a page (the admin's, the console's). Whoever
    issues a key sees its secret and could act as its owner, so no one issues a key for a
    person with more rights than a service account: a holder of `apikeys.manage_all` (admins,
    security officers) may issue for someone else only when the owner is an active service
    account (the API client role and no other; validation.owner_refusal: InvalidInput 400 on
    `owner`, e.g. for an admin or ML engineer, who issue their own keys), and receives the
    secrets to hand over; the scopes must be within the owner's grants (ScopeMissing 403).
    Anyone else issues for themselves only (PermissionDenied 403). Audited as api_key_issue
    (apikey.created, the owner by pseudonym, the actor as actor)."""
    if getattr(owner, "pk", None) != getattr(actor, "pk", None):
        if not may(actor, "apikeys.manage_all"):
            raise PermissionDenied("Only admins and security officers issue keys for others.")
        refusal = owner_refusal(owner)
        if refusal:
            raise InvalidInput(f"owner: {refusal}", details=[{"path": "owner", "message": refusal}])
    return api_key_issue(
        actor=actor,
        owner=owner,
        name=name,
        scopes=scopes,
        expires_in_days=expires_in_days,
        rate_limit=rate_limit,
        require_signature=require_signature,
        allowed_ips=allowed_ips,
    )


def _locked(api_key: ApiKey) -> ApiKey:
    # The row lock serialises concurrent rotations and revocations of one key.
    return ApiKey.objects.select_for_update().select_related("owner").get(pk=api_key.pk)


@transaction.atomic
def api_key_rotate(
    *,
    actor: Any,
    api_key: ApiKey,
    grace_seconds: int | None = None,
) -> IssuedKey:
    """Replace an active key by a new one with the same owner, name, scopes, rate, signing
    requirement and networks, and a fresh lifetime as long as the old key's. The old key keeps
    working for `grace_seconds` (default 86400; 0 ends it now), then is expired.

    Raises NotKeyOwner (403) for anyone but the owner (the new secret is theirs alone),
    KeyNotRotatable (409) unless the key is active (revoked, expired, or already rotated keys
    are not), and ScopeMissing (403) when the owner no longer holds the key's scopes.
    Audited as apikey.rotated (the old key) and apikey.created (the new).
    """
    return _rotate(actor=actor, api_key=api_key, grace_seconds=grace_seconds, owner_only=True)


@transaction.atomic
def api_key_rotate_for_owner(
    *,
    actor: Any,
    api_key: ApiKey,
    grace_seconds: int | None = None,
) -> IssuedKey:
    """api_key_rotate for the pages of those who manage every key (the admin, the console):
    a holder of `apikeys.manage_all` (admins, security officers) may also rotate a service
    account's key and receives its new secret to hand over, as when they issue one
    (api_key_issue_for). A person's key (any role besides API client) is rotated only by its
    owner, since the new secret would let whoever sees it act as them (NotKeyOwner, 403,
    saying why; revoking it stays open to them); anyone else rotates only their own keys
    (NotKeyOwner, 403). Everything else as api_key_rotate, audited the same, the actor named
    in the events."""
    return _rotate(actor=actor, api_key=api_key, grace_seconds=grace_seconds, owner_only=False)


def _rotate(
    *, actor: Any, api_key: ApiKey, grace_seconds: int | None, owner_only: bool
) -> IssuedKey:
    old = _locked(api_key)
    if owner_only and getattr(actor, "pk", None) != old.owner_id:
        raise NotKeyOwner()
    refusal = rotation_refusal(actor, old.owner)
    if refusal:
        raise NotKeyOwner(refusal)
    now = timezone.now()
    status = old.status_at(now)
    if status != ApiKeyStatus.ACTIVE:
        raise KeyNotRotatable(f"{old.prefix} is {status}; only an active key can be rotated.")
    # The owner's grants may have shrunk since the key was made: a new key gets no more.
    beyond = scopes_beyond_grants(old.owner, old.scopes)
    if beyond:
        raise ScopeMissing(
            f"The scope {beyond[0]} is no longer within the owner's grants; issue a new key."
        )
    grace = settings.API_KEY_DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds
    lifetime = min(max(old.expires_at - old.created_at, timedelta(days=1)), MAX_LIFETIME)
    issued = _create(
        owner=old.owner,
        name=old.name,
        scopes=old.scopes,
        expires_at=now + lifetime,
        rate_limit=old.rate_limit,
        require_signature=old.require_signature,
        allowed_ips=old.allowed_ips,
    )
    old.rotated_to = issued.api_key
    old.grace_ends_at = now + timedelta(seconds=grace)
    _full_clean(old)
    old.save(update_fields=["rotated_to", "grace_ends_at", "updated_at"])
    audit_event_record(
        "apikey.rotated",
        actor=actor,
        target=old,
        details={
            "successor": issued.api_key.prefix,
            "grace_seconds": grace,
            "grace_ends_at": old.grace_ends_at.isoformat(),
        },
    )
    audit_event_record(
        "apikey.created",
        actor=actor,
        target=issued.api_key,
        details={**_audit_key_fields(issued.api_key), "rotated_from": old.prefix},
    )
    _publish(old)
    return issued


@transaction.atomic
def api_key_revoke(*, actor: Any, api_key: ApiKey, reason: str = "") -> ApiKey:
    """Revoke now: the next request with the key gets 401 api_key_revoked (the record cache
    already says so when this returns). Requests already authenticated may finish.

    Raises KeyAlreadyRevoked (409). Audited as apikey.revoked."""
    locked = _locked(api_key)
    if locked.revoked_at is not None:
        raise KeyAlreadyRevoked(f"{locked.prefix} is already revoked.")
    status_before = locked.status_at(timezone.now())
    locked.revoked_at = timezone.now()
    _full_clean(locked)
    locked.save(update_fields=["revoked_at", "updated_at"])
    audit_event_record(
        "apikey.revoked",
        actor=actor,
        target=locked,
        details={"reason": reason, "status_before": status_before},
    )
    _publish(locked)
    return locked


@transaction.atomic
def api_key_revoke_owner(*, actor: Any, owner: Any, reason: str) -> int:
    """Revoke every key of `owner` that still authenticates (their access was taken away:
    apps.accounts.credentials), each audited `apikey.revoked` with `reason`. Revoked keys stay
    revoked: a reactivated owner is issued new ones. Returns how many were revoked."""
    now = timezone.now()
    revoked = 0
    for api_key in ApiKey.objects.select_for_update().live_at(now).filter(owner=owner):
        status_before = api_key.status_at(now)
        api_key.revoked_at = now
        api_key.save(update_fields=["revoked_at", "updated_at"])
        audit_event_record(
            "apikey.revoked",
            actor=actor,
            target=api_key,
            details={"reason": reason, "status_before": status_before},
        )
        _publish(api_key)
        revoked += 1
    return revoked


@transaction.atomic
def api_key_erase_owner(*, actor: Any, owner: Any) -> int:
    """GDPR erasure, key side (the owner FK is PROTECT, so the privacy app calls this before
    deleting the user): revoke every live key of `owner` (audited, reason "erasure"), then
    delete all their key rows. Returns how many rows were deleted."""
    keys = list(ApiKey.objects.select_for_update().select_related("owner").filter(owner=owner))
    now = timezone.now()
    for api_key in keys:
        if api_key.revoked_at is None:
            api_key.revoked_at = now
            api_key.save(update_fields=["revoked_at", "updated_at"])
            audit_event_record(
                "apikey.revoked",
                actor=actor,
                target=api_key,
                details={"reason": "erasure"},
            )
    public_ids = [api_key.public_id for api_key in keys]
    # Unlink successors first: SET_NULL on delete would break the grace_iff_rotated check.
    ApiKey.objects.filter(owner=owner).update(rotated_to=None, grace_ends_at=None)
    deleted, _ = ApiKey.objects.filter(owner=owner).delete()
    records.store_deleted(public_ids)
    transaction.on_commit(lambda: records.store_deleted(public_ids), robust=True)
    return deleted


def api_key_expire_due(*, now: datetime | None = None, batch: int = 500) -> int:
    """Record the expiry of every key whose time is up (past expires_at, or its rotation grace
    period over): `expired_at` set and an apikey.expired event, once per key, one transaction
    per key. Authentication does not wait for this: status is derived from the timestamps.
    Safe to run concurrently (locked rows are skipped). Returns how many were recorded."""
    now = now or timezone.now()
    due = (
        ApiKey.objects.filter(revoked_at__isnull=True, expired_at__isnull=True)
        .filter(Q(expires_at__lte=now) | Q(grace_ends_at__lte=now))
        .values_list("pk", flat=True)
    )
    recorded = 0
    for pk in list(due[:batch]):
        with transaction.atomic():
            api_key = (
                ApiKey.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, revoked_at__isnull=True, expired_at__isnull=True)
                .first()
            )
            if api_key is None or api_key.status_at(now) != ApiKeyStatus.EXPIRED:
                continue
            grace_over = api_key.grace_ends_at is not None and api_key.grace_ends_at <= now
            api_key.expired_at = now
            api_key.save(update_fields=["expired_at"])
            audit_event_record(
                "apikey.expired",
                actor=EXPIRE_ACTOR,
                target=api_key,
                details={
                    "reason": "grace_over" if grace_over else "expires_at",
                    "expires_at": api_key.expires_at.isoformat(),
                },
            )
            recorded += 1
    return recorded


def api_key_warn_expiring(*, now: datetime | None = None, batch: int = 500) -> int:
    """An apikey.expiring event, once per key, for live keys (not revoked, not rotated away)
    whose expires_at falls within API_KEY_EXPIRY_WARNING_DAYS. Returns how many."""
    now = now or timezone.now()
    horizon = now + timedelta(days=settings.API_KEY_EXPIRY_WARNING_DAYS)
    due = (
        ApiKey.objects.live_at(now)
        .filter(rotated_to__isnull=True, expiry_warned_at__isnull=True, expires_at__lte=horizon)
        .values_list("pk", flat=True)
    )
    warned = 0
    for pk in list(due[:batch]):
        with transaction.atomic():
            api_key = (
                ApiKey.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, expiry_warned_at__isnull=True)
                .first()
            )
            if api_key is None:
                continue
            api_key.expiry_warned_at = now
            api_key.save(update_fields=["expiry_warned_at"])
            audit_event_record(
                "apikey.expiring",
                actor=WARN_ACTOR,
                target=api_key,
                details={
                    "expires_at": api_key.expires_at.isoformat(),
                    "days_left": (api_key.expires_at - now).days,
                    "owner": pseudonym_for(api_key.owner),
                },
            )
            warned += 1
    return warned
