"""Safety rails on taking access away: no one deactivates, demotes or erases themself or the
last active administrator, and only a superuser may do any of it to a superuser. One stolen
officer token must not be able to lock every administrator out.

`access_change_refusal` is the rule (pure: the services call it as a guard);
`access_change_check` is what an entry point (an API view, a page, the admin) calls before
its transaction: a refusal is audited `user.change_refused` and raised as 403
`permission_denied` with a sentence that says why.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.db import connection, transaction
from django.db.models import Q

from apps.accounts.models import User
from apps.accounts.roles import RoleName
from apps.audit.services import audit_event_record
from apps.core.errors import PermissionDenied


class Change(StrEnum):
    DEACTIVATE = "deactivate"
    DEMOTE = "demote"  # lose the admin role, superuser or staff status
    ERASE = "erase"
    SET_PASSWORD = "set_password"  # noqa: S105  # a change's name, not a password
    RESET_MFA = "reset_mfa"
    PROMOTE = "promote"  # be given the admin role
    MAKE_SUPERUSER = "make_superuser"


_VERBS = {
    Change.DEACTIVATE: "deactivate",
    Change.DEMOTE: "demote",
    Change.ERASE: "erase",
    Change.SET_PASSWORD: "set the password of",
    Change.RESET_MFA: "reset two-factor authentication of",
    Change.PROMOTE: "make an administrator of",
    Change.MAKE_SUPERUSER: "make a superuser of",
}
# Changes that take access away: refused for oneself and for the last administrator too.
_TAKING_AWAY = frozenset({Change.DEACTIVATE, Change.DEMOTE, Change.ERASE})
# pg_advisory_xact_lock key ("BWACCESS"): access changes one at a time, so that two of them
# cannot each see the other's target as the administrator that remains.
ACCESS_CHANGE_LOCK = 0x4257_4143_4345_5353


def _administrators() -> Any:
    return User.objects.filter(
        Q(is_superuser=True) | Q(roles__name=RoleName.ADMIN), is_active=True
    ).distinct()


def is_administrator(user: Any) -> bool:
    return bool(
        user.is_active and (user.is_superuser or user.roles.filter(name=RoleName.ADMIN).exists())
    )


def _serialise() -> None:
    """Inside a transaction on PostgreSQL, wait for any other access change to commit: the
    count of administrators below then sees it (READ COMMITTED reads anew per statement)."""
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ACCESS_CHANGE_LOCK])


def access_change_refusal(
    *, actor: Any, user: User, change: Change, still_administrator: bool = False
) -> tuple[str, str] | None:
    """(reason code, sentence) if `actor` may not make `change` to `user`, else None.
    `still_administrator`: the user stays an active administrator after the change (a
    superuser losing only the admin role, say). Called inside the change's transaction, it
    serialises with every other access change first."""
    _serialise()
    verb = _VERBS[change]
    if change is Change.PROMOTE:
        if not is_administrator(actor):
            return "not_administrator", "Only an administrator may make an administrator."
        return None
    if change is Change.MAKE_SUPERUSER:
        if not getattr(actor, "is_superuser", False):
            return "superuser", "Only a superuser may give superuser status."
        return None
    if change in _TAKING_AWAY and getattr(actor, "pk", None) == user.pk:
        return "self", (f"You cannot {verb} your own account; ask another administrator to do it.")
    if user.is_superuser and not getattr(actor, "is_superuser", False):
        return "superuser", f"Only a superuser may {verb} a superuser."
    if (
        change in _TAKING_AWAY
        and not still_administrator
        and is_administrator(user)
        and not _administrators().exclude(pk=user.pk).exists()
    ):
        return "last_administrator", (
            f"{user.username} is the last active administrator; make another administrator "
            f"before you {verb} this one."
        )
    return None


def access_change_check(
    *,
    actor: Any,
    user: User,
    change: Change,
    still_administrator: bool = False,
) -> None:
    """Raise PermissionDenied (403) for a change the rails refuse, after recording
    `user.change_refused` (outcome denied) in a transaction of its own: call it before the
    change's own transaction, or the event would roll back with it."""
    refusal = access_change_refusal(
        actor=actor, user=user, change=change, still_administrator=still_administrator
    )
    if refusal is None:
        return
    code, sentence = refusal
    with transaction.atomic():
        audit_event_record(
            "user.change_refused",
            actor=actor,
            target=user,
            outcome="denied",
            details={"change": change.value, "reason": code},
        )
    raise PermissionDenied(sentence)
