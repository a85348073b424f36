from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from apps.accounts.credentials import Cause, credentials_revoke
from apps.accounts.models import Role, User
from apps.accounts.roles import RoleName
from apps.accounts.safety import Change, access_change_refusal
from apps.audit.services import audit_event_record
from apps.core.errors import Conflict, InvalidInput, PermissionDenied


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str,
    roles: Iterable[str],
    email: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
    actor: Any = None,
) -> User:
    """Create a user with roles (audited as user.created; `actor` None means the system, e.g.
    a management command). Raises Conflict for a taken username, InvalidInput for an unknown
    role or a password the validators refuse (NIST SP 800-63B: length and a common-password
    list, no composition rules)."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    role_names = set(roles)
    unknown = role_names - set(RoleName.values)
    if unknown:
        raise InvalidInput(f"Unknown role(s): {', '.join(sorted(unknown))}.")
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(f"A user named {username!r} already exists.")
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_superuser)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages)) from None
    user.set_password(password)
    user.full_clean()
    user.save()
    user.roles.set(Role.objects.filter(name__in=role_names))
    audit_event_record(
        "user.created",
        actor=actor,
        target=user,
        details={"roles": sorted(role_names), "staff": is_staff, "superuser": is_superuser},
    )
    return user


@transaction.atomic
def user_deactivate(*, actor: Any, user: User, reason: str = "") -> User:
    """Deactivate now (a containment action): the next request with any of the user's tokens,
    sessions or keys is refused, because the cached user record is rewritten as this commits.
    Every session, token and API key of theirs ends with it and stays dead if they are
    reactivated (apps.accounts.credentials).
    Conflict if already inactive; PermissionDenied for oneself, the last active administrator
    or (unless the actor is one) a superuser (apps.accounts.safety: entry points audit that
    refusal before their transaction). Audited as user.deactivated."""
    locked = User.objects.select_for_update().get(pk=user.pk)
    if not locked.is_active:
        raise Conflict("This user is already deactivated.")
    refusal = access_change_refusal(actor=actor, user=locked, change=Change.DEACTIVATE)
    if refusal is not None:
        raise PermissionDenied(refusal[1])
    locked.is_active = False
    locked.save(update_fields=["is_active"])
    audit_event_record("user.deactivated", actor=actor, target=locked, details={"reason": reason})
    credentials_revoke(user=locked, cause=Cause.DEACTIVATED, actor=actor)
    return locked
