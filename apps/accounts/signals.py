"""Cache freshness only (framework glue): any change to a user rewrites its cached record."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from apps.accounts.models import User
from apps.accounts.user_cache import refresh_user


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def _user_changed(sender: type, instance: User, **kwargs: Any) -> None:
    refresh_user(instance.pk)


@receiver(m2m_changed, sender=User.roles.through)
def _roles_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    if isinstance(instance, User):
        refresh_user(instance.pk)
    else:  # a role's users changed: drop each of them
        for user_id in kwargs.get("pk_set") or ():
            refresh_user(user_id)
