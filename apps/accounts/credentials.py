"""Credentials die with access. When a user is deactivated, changes or is given a new
password, loses a role (or staff or superuser status, or a group), or has their MFA reset,
everything that lets them in now stops at once, and nothing comes back with a reactivation:

- the user's access epoch moves on (apps.accounts.models.User.access_epoch): every session
  (its auth hash includes the epoch) and every access token (its `ep` claim) made before is
  refused by the next request;
- every token family still open is revoked (its refresh token is then 401 `token_invalid`);
- every API key that still authenticates is revoked (401 `api_key_revoked`, each audited
  `apikey.revoked`): a reactivated user must be issued new keys.

One `user.credentials_revoked` event, in the same transaction as the change that caused it,
records the cause and what ended. Erasure ends the same things its own way (the user row is
deleted; apps.gdpr.services.subject_erase).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.contrib.auth import update_session_auth_hash
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts.models import TokenFamily, User
from apps.accounts.user_cache import refresh_user
from apps.apikeys.services import api_key_revoke_owner
from apps.audit.services import audit_event_record


class Cause(StrEnum):
    DEACTIVATED = "deactivated"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105  # a cause, not a password
    ROLE_LOST = "role_lost"
    MFA_RESET = "mfa_reset"


@dataclass(frozen=True)
class Revoked:
    token_families: int
    api_keys: int


def credentials_revoke(
    *, user: User, cause: Cause, actor: Any, request: HttpRequest | None = None
) -> Revoked:
    """End every session, token family, access token and API key of `user` (see above).
    Call it inside the transaction of the change that takes the access away, after the user
    row is saved: the epoch is written by its own UPDATE and put on `user` too, so a later
    save of the same instance keeps it. When the actor is the user (a new password of their
    own), the session making the change is carried over to the new epoch, as Django does."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("credentials_revoke must run inside the change's transaction")
    locked = User.objects.select_for_update().only("access_epoch").get(pk=user.pk)
    user.access_epoch = locked.access_epoch + 1
    User.objects.filter(pk=user.pk).update(access_epoch=user.access_epoch)
    families = TokenFamily.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=cause.value
    )
    keys = api_key_revoke_owner(actor=actor, owner=user, reason=cause.value)
    refresh_user(user.pk)  # the cached record carries the epoch access tokens are checked by
    audit_event_record(
        "user.credentials_revoked",
        actor=actor,
        target=user,
        details={
            "cause": cause.value,
            # Names masking passes (a key named after tokens or keys would be masked).
            "sign_in_families": families,
            "keys_revoked": keys,
            "sessions": "ended",
        },
    )
    if request is not None and getattr(actor, "pk", None) == user.pk:
        update_session_auth_hash(request, user)
    return Revoked(token_families=families, api_keys=keys)
