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
def _roles_changed(sender: type, instance: Any, action: str, **kwargs: Any) -> None:
    if not action.startswith("post_") and action != "pre_clear":
        return
    if isinstance(instance, User):
        refresh_user(instance.pk)
        return
    # A role's members changed. clear() names nobody afterwards: remember them before.
    if action == "pre_clear":
        instance._bulwark_cleared = list(instance.users.values_list("pk", flat=True))
        return
    user_ids = kwargs.get("pk_set", ()) or getattr(instance, "_bulwark_cleared", ())
    for user_id in user_ids:
        refresh_user(user_id)
