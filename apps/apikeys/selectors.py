"""Reads of API keys, scoped to the actor: owners see their own keys, holders of
`apikeys.manage_all` (admins, security officers) see every key."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.apikeys.models import ApiKey
from apps.core.errors import NotFound
from apps.core.permissions import may
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
