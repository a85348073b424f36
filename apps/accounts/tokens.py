"""JWT pairs with families: rotation that lets each refresh token be used once, reuse
detection that revokes the whole family, and revocation that reaches the access tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from apps.accounts.errors import BAD_TIME, TokenInvalid, times_are_valid
from apps.accounts.models import IssuedRefreshToken, TokenFamily, User
from apps.accounts.user_cache import mark_family_revoked
from apps.audit.services import audit_event_record
from apps.audit.subjects import Subject


def family_ends_at(family: TokenFamily) -> datetime:
    """The absolute end of a family: JWT_FAMILY_MAX_AGE after its sign-in, however often it
    is refreshed. Read at each use, so shortening the setting shortens live families too."""
    return family.created_at + settings.JWT_FAMILY_MAX_AGE


def family_end_reason(family: TokenFamily, user: User, now: datetime) -> str | None:
    """Why the family may not be refreshed any more at `now`, or None if it may."""
    if not user.is_active:
        return "user_inactive"
    if family.access_epoch != user.access_epoch:
        return "access_changed"  # its user's access was taken away since (credentials.py)
    if now >= family_ends_at(family):
        return "max_age"
    if now >= (family.last_used_at or family.created_at) + settings.JWT_FAMILY_IDLE_TIMEOUT:
        return "idle_timeout"
    return None


def _pair(user: User, family: TokenFamily, now: datetime) -> dict[str, Any]:
    """A refresh and an access token of `family`. Neither outlives the family: the refresh
    token ends at the idle timeout (or its own lifetime, if shorter), both at the family's
    absolute end. Both carry the family (`fam`) and the user's access epoch (`ep`)."""
    lifetimes = settings.SIMPLE_JWT
    family_end = family_ends_at(family)
    refresh = RefreshToken.for_user(user)
    refresh["fam"] = str(family.id)
    refresh["ep"] = family.access_epoch
    refresh.set_exp(
        from_time=now,
        lifetime=min(
            lifetimes["REFRESH_TOKEN_LIFETIME"], settings.JWT_FAMILY_IDLE_TIMEOUT, family_end - now
        ),
    )
    access = refresh.access_token  # copies `fam` and `ep`; gets its own jti and a shorter exp
    access_lifetime = min(lifetimes["ACCESS_TOKEN_LIFETIME"], family_end - now)
    access.set_exp(from_time=now, lifetime=access_lifetime)
    IssuedRefreshToken.objects.create(
        jti=refresh["jti"],
        family=family,
        expires_at=datetime.fromtimestamp(refresh["exp"], tz=UTC),
    )
    return {
        "access": str(access),
        "refresh": str(refresh),
        "access_expires_in": int(access_lifetime.total_seconds()),
    }


@transaction.atomic
def token_pair_issue(*, user: User, method: str = "password") -> dict[str, Any]:
    """A new family and its first pair; audited as auth.token.issued."""
    now = timezone.now()
    family = TokenFamily.objects.create(user=user, last_used_at=now, access_epoch=user.access_epoch)
    pair = _pair(user, family, now)
    audit_event_record(
        "auth.token.issued",
        actor=user,
        target=Subject("token_family", str(family.id)),
        details={"method": method},
    )
    return pair


def _decode_refresh(raw: str) -> RefreshToken:
    try:
        # Signature (HS256 only), exp, iss, aud and type checked.
        token = RefreshToken(raw)  # type: ignore[arg-type]  # simplejwt: the encoded token
    except (TokenError, *BAD_TIME):
        raise TokenInvalid() from None
    if not times_are_valid(token.payload):
        raise TokenInvalid()
    return token


def _revoke_family(family: TokenFamily, *, reason: str, actor: Any) -> None:
    """Mark the family revoked and deny its access tokens until the longest could expire."""
    if family.revoked_at is None:
        family.revoked_at = timezone.now()
        family.revoked_reason = reason
        family.save(update_fields=["revoked_at", "revoked_reason"])
    audit_event_record(
        "auth.token.revoked",
        actor=actor,
        target=Subject("token_family", str(family.id)),
        outcome="success" if reason == "revoked" else "denied",
        details={"reason": reason},
    )
    family_id = str(family.id)
    # Before commit too: if Redis cannot take the mark, the revocation fails (503) rather
    # than returning success while access tokens of the family still work.
    mark_family_revoked(family_id)
    transaction.on_commit(lambda: mark_family_revoked(family_id))


def token_refresh(*, raw: str) -> dict[str, Any]:
    """Rotate: the presented refresh token is used up and a new pair issued in its family.
    A refresh token presented a second time is a theft signal: its whole family is revoked
    (access tokens included) and the event audited; the caller gets 401 token_invalid. So is
    one whose family has ended (its user deactivated or their access taken away, its absolute
    lifetime or idle timeout over): the family is revoked, with that reason."""
    token = _decode_refresh(raw)
    jti, family_id = token["jti"], token.get("fam")
    now = timezone.now()
    with transaction.atomic():
        # The one place a token is spent: a plain UPDATE on its own row, which PostgreSQL
        # re-checks after waiting for the row lock, so of many parallel refreshes with one
        # token exactly one updates a row. (No join in this WHERE: a subquery would be read
        # from the old snapshot and let several through.)
        spent = IssuedRefreshToken.objects.filter(
            jti=jti, family_id=family_id, used_at__isnull=True
        ).update(used_at=now)
        if spent:
            family = TokenFamily.objects.select_related("user").get(pk=family_id)
            if family.revoked_at is None and family_end_reason(family, family.user, now) is None:
                family.last_used_at = now
                family.save(update_fields=["last_used_at"])
                pair = _pair(family.user, family, now)
                audit_event_record(
                    "auth.token.issued",
                    actor=family.user,
                    target=Subject("token_family", str(family.id)),
                    details={"method": "refresh"},
                )
                return pair
    record = IssuedRefreshToken.objects.select_related("family__user").filter(jti=jti).first()
    if record is None:
        raise TokenInvalid()
    with transaction.atomic():
        family = TokenFamily.objects.select_for_update().get(pk=record.family_id)
        user = record.family.user
        if not user.is_active:
            _revoke_family(family, reason="user_inactive", actor=user)
        elif family.revoked_at is None:
            reason = "refresh_reused" if not spent else family_end_reason(family, user, now)
            _revoke_family(family, reason=reason or "revoked", actor=user)
    raise TokenInvalid()


def token_revoke(*, raw: str) -> None:
    """Logout: the refresh token, its family and every access token issued from it end now."""
    token = _decode_refresh(raw)
    record = (
        IssuedRefreshToken.objects.select_related("family__user").filter(jti=token["jti"]).first()
    )
    if record is None:
        raise TokenInvalid()
    with transaction.atomic():
        family = TokenFamily.objects.select_for_update().get(pk=record.family_id)
        IssuedRefreshToken.objects.filter(jti=record.jti, used_at__isnull=True).update(
            used_at=timezone.now()
        )
        _revoke_family(family, reason="revoked", actor=record.family.user)
