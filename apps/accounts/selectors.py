"""Reads of people and their access that other apps need (docs/architecture.md: through
selectors, not models)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Exists, OuterRef, Q

from apps.accounts.models import TotpDevice, User


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
