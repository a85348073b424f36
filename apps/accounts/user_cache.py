"""Who a token's subject is, without a database query per request.

A user's record (active flag and roles included) is cached for USER_CACHE_SECONDS and
deleted the moment it changes (signals below, after commit), so a deactivated, demoted or
erased user is refused by the very next request; a cache miss reads the database.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db import transaction

from apps.accounts.models import User

USER_CACHE_SECONDS = 300


def user_key(user_id: Any) -> str:
    return f"auth:user:{user_id}"


def family_key(family_id: Any) -> str:
    return f"auth:family-revoked:{family_id}"


def load_user(user_id: Any) -> User | None:
    user = User.objects.filter(pk=user_id).prefetch_related("roles").first()
    if user is not None:
        user._bulwark_roles = {role.name for role in user.roles.all()}
    return user


def cached_user_and_family_revoked(user_id: Any, family_id: Any) -> tuple[User | None, bool]:
    """One cache round trip for both checks; the database only on a miss."""
    keys = [user_key(user_id), family_key(family_id)]
    found = cache.get_many(keys)
    revoked = bool(found.get(keys[1]))
    user = found.get(keys[0])
    if user is None:
        user = load_user(user_id)
        if user is not None:
            cache.set(keys[0], user, timeout=USER_CACHE_SECONDS)
    return user, revoked


def forget_user(user_id: Any) -> None:
    transaction.on_commit(lambda: cache.delete(user_key(user_id)))
