"""JWT pairs with families: rotation that lets each refresh token be used once, reuse
detection that revokes the whole family, and revocation that reaches the access tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from apps.accounts.errors import BAD_TIME, TokenInvalid, times_are_valid
from apps.accounts.models import IssuedRefreshToken, TokenFamily, User
from apps.accounts.user_cache import mark_family_revoked
from apps.audit.services import audit_event_record
from apps.audit.subjects import Subject


def _pair(user: User, family: TokenFamily) -> dict[str, Any]:
    refresh = RefreshToken.for_user(user)
    refresh["fam"] = str(family.id)
    access = refresh.access_token  # copies `fam`; gets its own jti and a shorter exp
    IssuedRefreshToken.objects.create(
        jti=refresh["jti"],
        family=family,
        expires_at=datetime.fromtimestamp(refresh["exp"], tz=UTC),
    )
    return {
        "access": str(access),
        "refresh": str(refresh),
        "access_expires_in": int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()),
    }


@transaction.atomic
def token_pair_issue(
    *, user: User, request: HttpRequest | None = None, method: str = "password"
) -> dict[str, Any]:
    """A new family and its first pair; audited as auth.token.issued."""
    family = TokenFamily.objects.create(user=user)
    pair = _pair(user, family)
    audit_event_record(
        "auth.token.issued",
        actor=user,
        target=Subject("token_family", str(family.id)),
        details={"method": method},
        request=request,
    )
    return pair


def _decode_refresh(raw: str) -> RefreshToken:
    try:
        token = RefreshToken(raw)  # signature (HS256 only), exp, iss, aud and type checked
    except (TokenError, *BAD_TIME):
        raise TokenInvalid() from None
    if not times_are_valid(token.payload):
        raise TokenInvalid()
    return token


def _revoke_family(
    family: TokenFamily, *, reason: str, actor: Any, request: HttpRequest | None
) -> None:
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
        request=request,
    )
    family_id = str(family.id)
    # Before commit too: if Redis cannot take the mark, the revocation fails (503) rather
    # than returning success while access tokens of the family still work.
    mark_family_revoked(family_id)
    transaction.on_commit(lambda: mark_family_revoked(family_id))


def token_refresh(*, raw: str, request: HttpRequest | None = None) -> dict[str, Any]:
    """Rotate: the presented refresh token is used up and a new pair issued in its family.
    A refresh token presented a second time is a theft signal: its whole family is revoked
    (access tokens included) and the event audited; the caller gets 401 token_invalid."""
    token = _decode_refresh(raw)
    jti, family_id = token["jti"], token.get("fam")
    with transaction.atomic():
        # The one place a token is spent: a plain UPDATE on its own row, which PostgreSQL
        # re-checks after waiting for the row lock, so of many parallel refreshes with one
        # token exactly one updates a row. (No join in this WHERE: a subquery would be read
        # from the old snapshot and let several through.)
        spent = IssuedRefreshToken.objects.filter(
            jti=jti, family_id=family_id, used_at__isnull=True
        ).update(used_at=timezone.now())
        if spent:
            family = TokenFamily.objects.select_related("user").get(pk=family_id)
            if family.revoked_at is None and family.user.is_active:
                pair = _pair(family.user, family)
                audit_event_record(
                    "auth.token.issued",
                    actor=family.user,
                    target=Subject("token_family", str(family.id)),
                    details={"method": "refresh"},
                    request=request,
                )
                return pair
    record = IssuedRefreshToken.objects.select_related("family__user").filter(jti=jti).first()
    if record is None:
        raise TokenInvalid()
    with transaction.atomic():
        family = TokenFamily.objects.select_for_update().get(pk=record.family_id)
        if not record.family.user.is_active:
            _revoke_family(
                family, reason="user_inactive", actor=record.family.user, request=request
            )
        elif family.revoked_at is None:
            _revoke_family(
                family, reason="refresh_reused", actor=record.family.user, request=request
            )
    raise TokenInvalid()


def token_revoke(*, raw: str, request: HttpRequest | None = None) -> None:
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
        _revoke_family(family, reason="revoked", actor=record.family.user, request=request)
