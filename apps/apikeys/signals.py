"""Record-cache glue: a change to a user (activity, roles) rewrites the cached records of
their keys after commit, so a deactivated owner's keys are refused by the next request."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save
from django.dispatch import receiver
from django.utils import timezone

from apps.apikeys import records
from apps.apikeys.models import ApiKey
from apps.core.permissions import roles_of

User = get_user_model()


def _refresh_owner_keys(user_ids: set[Any]) -> None:
    live = ApiKey.objects.select_related("owner").filter(
        owner_id__in=user_ids, revoked_at__isnull=True, expires_at__gt=timezone.now()
    )
    for api_key in live:
        roles_of(api_key.owner)  # read now, after the commit: the record carries them
        records.store(api_key)


def _after_commit(user_ids: set[Any]) -> None:
    if user_ids:
        transaction.on_commit(lambda: _refresh_owner_keys(user_ids), robust=True)


@receiver(post_save, sender=User)
def _user_saved(sender: type, instance: Any, **kwargs: Any) -> None:
    if not kwargs.get("created"):
        _after_commit({instance.pk})


@receiver(m2m_changed, sender=User.roles.through)
def _roles_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    if not kwargs.get("action", "").startswith("post_"):
        return
    if isinstance(instance, User):
        _after_commit({instance.pk})
    else:  # a role's users changed
        _after_commit(set(kwargs.get("pk_set") or ()))
