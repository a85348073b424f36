"""Reads of API keys, scoped to the actor: owners see their own keys, holders of
`apikeys.manage_all` (admins, security officers) see every key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.apikeys.keys import KEY_PREFIX, PUBLIC_ID_LENGTH
from apps.apikeys.models import ApiKey, ApiKeyStatus
from apps.apikeys.validation import KEY_HOLDER_ROLES, PERSON_ROLE_LABELS, rotation_refusal
from apps.core.errors import InvalidInput, NotFound
from apps.core.permissions import API_CLIENT, may
from apps.core.timestamps import iso


def api_key_list(*, actor: Any) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.select_related("owner")
    return keys if may(actor, "apikeys.manage_all") else keys.filter(owner=actor)


def api_key_get(*, actor: Any, key_id: UUID) -> ApiKey:
    """The key, if the actor may see it. Absent and not-yours are the same 404, so ids of
    other people's keys cannot be probed."""
    api_key = api_key_list(actor=actor).filter(pk=key_id).first()
    if api_key is None:
        raise NotFound("No API key with this id.")
    return api_key


def api_keys_expiring(*, now: datetime, horizon: datetime) -> QuerySet[ApiKey]:
    """Live keys (not revoked, not rotated away) that expire by `horizon`, soonest first,
    with their owners."""
    return (
        ApiKey.objects.live_at(now)
        .filter(rotated_to__isnull=True, expires_at__lte=horizon)
        .select_related("owner")
        .order_by("expires_at")
    )


def api_key_find(key_id: str) -> ApiKey | None:
    """Any key by id, whoever owns it: for a containment, whose caller's right to act on
    every key its own app checked (incidents.write)."""
    return ApiKey.objects.filter(pk=key_id).first()


def api_keys_unused_since(*, now: datetime, cutoff: datetime) -> list[str]:
    """Prefixes of live keys not used (or, never used, not issued) since `cutoff`, oldest
    first."""
    stale = (
        ApiKey.objects.live_at(now)
        .filter(Q(last_used_at__lt=cutoff) | Q(last_used_at__isnull=True, created_at__lt=cutoff))
        .order_by("created_at")
    )
    return [key.prefix for key in stale.only("public_id")]


def api_keys_outliving(*, now: datetime, lifetime: timedelta) -> list[str]:
    """Prefixes of live keys that expire more than `lifetime` after they were issued."""
    unbounded = (
        ApiKey.objects.live_at(now)
        .filter(expires_at__gt=F("created_at") + lifetime)
        .order_by("created_at")
    )
    return [key.prefix for key in unbounded.only("public_id")]


def api_keys_live_count(*, now: datetime) -> int:
    return ApiKey.objects.live_at(now).count()


def subject_api_keys(user: Any) -> list[dict[str, Any]]:
    # Never secret_hash nor signing_secret_sealed: `.only()` keeps them out of the query.
    keys = (
        ApiKey.objects.filter(owner=user)
        .select_related("rotated_to")
        .only(
            "id",
            "public_id",
            "name",
            "scopes",
            "expires_at",
            "rate_limit",
            "require_signature",
            "allowed_ips",
            "revoked_at",
            "grace_ends_at",
            "last_used_at",
            "created_at",
            "updated_at",
            "expired_at",
            "rotated_to__public_id",
        )
        .order_by("created_at")
    )
    now = timezone.now()
    return [
        {
            "id": str(key.pk),
            "prefix": key.prefix,
            "name": key.name,
            "scopes": key.scopes,
            "status": key.status_at(now),
            "created_at": iso(key.created_at),
            "expires_at": iso(key.expires_at),
            "last_used_at": iso(key.last_used_at),
            "revoked_at": iso(key.revoked_at),
            "rotated_to": key.rotated_to.prefix if key.rotated_to is not None else None,
            "grace_ends_at": iso(key.grace_ends_at),
            "rate_limit": key.rate_limit,
            "require_signature": key.require_signature,
            "allowed_ips": key.allowed_ips,
        }
        for key in keys
    ]


# What the key pages (the admin's, the console's) filter by: a key's status, or "expiring"
# (active, expiring within the given number of days).
KEY_STATES = ("active", "expiring", "rotating", "revoked", "expired")


def api_key_search(
    *,
    actor: Any,
    now: datetime,
    owner: str = "",
    state: str = "",
    key: str = "",
    expiring_days: int = 14,
) -> QuerySet[ApiKey]:
    """The keys the actor may see (api_key_list), newest first, optionally only those of the
    owner with this username, in one of KEY_STATES, and whose prefix starts with `key`. Never
    loads a hash or sealed secret. Raises InvalidInput for an unknown state."""
    keys = api_key_list(actor=actor).defer("secret_hash", "signing_secret_sealed")
    if owner:
        keys = keys.filter(owner__username=owner)
    if key:
        public_id = key.removeprefix(KEY_PREFIX)[:PUBLIC_ID_LENGTH]
        keys = keys.filter(public_id__startswith=public_id)
    live = Q(revoked_at__isnull=True, expires_at__gt=now) & (
        Q(grace_ends_at__isnull=True) | Q(grace_ends_at__gt=now)
    )
    if state == "active":
        keys = keys.filter(live, rotated_to__isnull=True)
    elif state == "expiring":
        horizon = now + timedelta(days=expiring_days)
        keys = keys.filter(live, rotated_to__isnull=True, expires_at__lte=horizon)
    elif state == "rotating":
        keys = keys.filter(live, rotated_to__isnull=False)
    elif state == "revoked":
        keys = keys.filter(revoked_at__isnull=False)
    elif state == "expired":
        keys = keys.filter(revoked_at__isnull=True).filter(
            Q(expires_at__lte=now) | Q(grace_ends_at__lte=now)
        )
    elif state:
        raise InvalidInput(
            f"state: must be one of {', '.join(KEY_STATES)}",
            details=[{"path": "state", "message": f"must be one of {', '.join(KEY_STATES)}"}],
        )
    return keys.order_by("-created_at", "-pk")


def api_key_owner_find(username: str) -> Any | None:
    """The user with exactly this username (active or not: the caller says why one may not
    hold a key, apps.apikeys.validation.owner_refusal), or None."""
    if not username:
        return None
    return get_user_model().objects.filter(username=username).first()


def api_key_owner_choices(*, actor: Any = None, limit: int = 200) -> list[str]:
    """Suggestions for the owner of a key being issued: the actor's own username first, then
    the usernames of active service accounts (the API client role and no other: the only
    accounts a key is issued for by someone else, apps.apikeys.validation.owner_refusal),
    alphabetically, at most `limit` in all (any other username may still be typed, and is
    refused with the reason)."""
    names = list(
        get_user_model()
        .objects.filter(is_active=True, roles__name=API_CLIENT)
        .exclude(roles__name__in=sorted(PERSON_ROLE_LABELS))
        .distinct()
        .order_by("username")
        .values_list("username", flat=True)[:limit]
    )
    own = actor.get_username() if getattr(actor, "is_authenticated", False) else ""
    if own:
        names = [own, *(name for name in names if name != own)]
    return names[:limit]


def api_key_rotation_refusal(*, actor: Any, api_key: ApiKey) -> str | None:
    """Why the rotation services would refuse `actor` the new secret of `api_key` (a person's
    key rotated by someone else, validation.rotation_refusal), or None: for a page to say it
    before anyone tries."""
    return rotation_refusal(actor, api_key.owner)


def api_key_holder_choices(*, limit: int = 200) -> list[str]:
    """Usernames of active accounts that can hold a key (people and service accounts holding
    one of KEY_HOLDER_ROLES), alphabetically, at most `limit`: suggestions for a filter by
    owner (any other username may still be typed)."""
    names = (
        get_user_model()
        .objects.filter(is_active=True, roles__name__in=sorted(KEY_HOLDER_ROLES))
        .distinct()
        .order_by("username")
        .values_list("username", flat=True)
    )
    return list(names[:limit])


# A key's status (ApiKey.status_at) as the pages say it.
KEY_STATUS_LABELS: dict[str, str] = dict(ApiKeyStatus.choices)


def api_key_rotation_links(api_key: ApiKey) -> tuple[ApiKey | None, ApiKey | None]:
    """(the key this one replaced, the key that replaced it), by rotation; id and prefix only
    (never a hash or a sealed secret)."""
    linked = ApiKey.objects.only("id", "public_id")
    before = linked.filter(rotated_to=api_key).first()
    after = linked.filter(pk=api_key.rotated_to_id).first() if api_key.rotated_to_id else None
    return before, after
