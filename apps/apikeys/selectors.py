"""Reads of API keys, scoped to the actor: owners see their own keys, holders of
`apikeys.manage_all` (admins, security officers) see every key."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import QuerySet

from apps.apikeys.models import ApiKey
from apps.core.errors import NotFound
from apps.core.permissions import may


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
