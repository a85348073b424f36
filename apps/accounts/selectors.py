"""Reads of people and their access that other apps need (docs/architecture.md: through
selectors, not models)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, OuterRef, Q

from apps.accounts.models import (
    IssuedRefreshToken,
    RecoveryCode,
    RecoveryCodeDevice,
    TokenFamily,
    TotpDevice,
    User,
)
from apps.core.timestamps import iso


def privileged_users_without_mfa(roles: Iterable[str]) -> tuple[int, int]:
    """(active users holding one of `roles` or superuser status, how many of them have no
    confirmed TOTP device)."""
    privileged = (
        User.objects.filter(is_active=True)
        .filter(Q(roles__name__in=list(roles)) | Q(is_superuser=True))
        .distinct()
    )
    confirmed = TotpDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
    return privileged.count(), privileged.exclude(Exists(confirmed)).count()


def user_find(username: str) -> User | None:
    """The user with exactly this username, if any (for commands that set things up)."""
    return User.objects.filter(username=username).first()


def subject_account(user: User) -> dict[str, Any]:
    return {
        "id": str(user.pk),
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": iso(user.date_joined),
        "last_login": iso(user.last_login),
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "roles": sorted(user.roles.values_list("name", flat=True)),
        "groups": sorted(user.groups.values_list("name", flat=True)),
    }


def subject_mfa_devices(user: User) -> list[dict[str, Any]]:
    # Names, states and dates only: never a seed, a recovery code, a code hash or a sealed key.
    devices: list[dict[str, Any]] = [
        {
            "type": "totp",
            "name": name,
            "confirmed": confirmed,
            "created_at": iso(created),
            "last_used_at": iso(used),
        }
        for name, confirmed, created, used in TotpDevice.objects.filter(user=user)
        .order_by("pk")
        .values_list("name", "confirmed", "created_at", "last_used_at")
    ]
    for pk, name, confirmed, created, used in (
        RecoveryCodeDevice.objects.filter(user=user)
        .order_by("pk")
        .values_list("pk", "name", "confirmed", "created_at", "last_used_at")
    ):
        devices.append(
            {
                "type": "recovery_codes",
                "name": name,
                "confirmed": confirmed,
                "created_at": iso(created),
                "last_used_at": iso(used),
                "codes_remaining": RecoveryCode.objects.filter(device_id=pk).count(),
            }
        )
    return devices


def subject_token_families(user: User) -> list[dict[str, Any]]:
    families = list(
        TokenFamily.objects.filter(user=user)
        .order_by("created_at")
        .values_list("id", "created_at", "revoked_at", "revoked_reason")
    )
    refresh: dict[Any, list[dict[str, Any]]] = {}
    # Dates only: the jti is part of the token, so it is not shown (as no token value is).
    for family_id, created, expires, used in (
        IssuedRefreshToken.objects.filter(family__user=user)
        .order_by("created_at")
        .values_list("family_id", "created_at", "expires_at", "used_at")
    ):
        refresh.setdefault(family_id, []).append(
            {"issued_at": iso(created), "expires_at": iso(expires), "used_at": iso(used)}
        )
    return [
        {
            "id": str(family_id),
            "created_at": iso(created),
            "revoked": revoked is not None,
            "revoked_at": iso(revoked),
            "revoked_reason": reason,
            "refresh_tokens": refresh.get(family_id, []),
        }
        for family_id, created, revoked, reason in families
    ]


def user_for_update(pk: Any) -> User | None:
    """The user's row, locked until the caller's transaction ends (None if gone)."""
    return User.objects.select_for_update().filter(pk=pk).first()


def token_family_ids(user: User) -> list[str]:
    """Every sign-in family of the user, open or not."""
    return [str(pk) for (pk,) in TokenFamily.objects.filter(user=user).values_list("pk")]


def mfa_device_count(user: User) -> int:
    """The user's authenticator apps and recovery-code sets, confirmed or not."""
    totp = TotpDevice.objects.filter(user=user).count()
    codes = RecoveryCodeDevice.objects.filter(user=user).count()
    return int(totp) + int(codes)
