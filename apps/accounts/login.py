"""Password (and TOTP) sign-in for the token endpoint, with throttling shared by every web
worker: 5 failures per username per 15 minutes lock that username for the rest of the window
(even for the right password), and failures per client IP are limited too."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.http import HttpRequest
from django_otp import user_has_device

from apps.accounts.errors import InvalidCredentials, LoginLocked, MfaRequired
from apps.accounts.mfa import MfaCodeRejected, mfa_code_verify
from apps.accounts.models import User
from apps.accounts.tokens import token_pair_issue
from apps.audit.services import audit_event_record
from apps.core import ratelimit


def _username_key(username: str) -> str:
    # Keyed by a digest: the cache never holds usernames.
    return "login:user:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()


def _ip_key(request: HttpRequest) -> str:
    return "login:ip:" + request.META.get("REMOTE_ADDR", "")


def refuse_if_locked(request: HttpRequest, username: str) -> None:
    """Raise LoginLocked (429) when the username or the client address is locked out."""
    _refuse_if_locked(request, username)


def _refuse_if_locked(request: HttpRequest, username: str) -> None:
    window = settings.LOGIN_FAILURE_WINDOW
    for key, limit in (
        (_username_key(username), settings.LOGIN_FAILURES_PER_USERNAME),
        (_ip_key(request), settings.LOGIN_FAILURES_PER_IP),
    ):
        state = ratelimit.peek(key, limit=limit, window=window)
        if state.count >= limit:
            raise LoginLocked(retry_after=min(state.reset_in or window, window))


def record_failure(request: HttpRequest, username: str, user: User | None, reason: str) -> None:
    """Count a failed sign-in against the username and the address, and audit it."""
    _fail(request, username, user, reason)


def _fail(request: HttpRequest, username: str, user: User | None, reason: str) -> None:
    window = settings.LOGIN_FAILURE_WINDOW
    ratelimit.hit(
        _username_key(username), limit=settings.LOGIN_FAILURES_PER_USERNAME, window=window
    )
    ratelimit.hit(_ip_key(request), limit=settings.LOGIN_FAILURES_PER_IP, window=window)
    audit_event_record(
        "auth.token.failed",
        actor=user,  # None (the system) when nobody has that username: we never store it
        outcome="failure",
        details={"reason": reason},
        request=request,
    )


def login_with_password(
    *, request: HttpRequest, username: str, password: str, otp: str | None
) -> dict[str, Any]:
    """A token pair for the right username, password and (for users with a confirmed device)
    TOTP or recovery code. Raises LoginLocked (429), InvalidCredentials or MfaRequired (401).
    Every attempt is an audit event; the password never is."""
    _refuse_if_locked(request, username)
    user = authenticate(request, username=username, password=password)
    if user is None:
        known = User.objects.filter(username=username).first()
        _fail(request, username, known, "bad_credentials")
        raise InvalidCredentials()
    method = "password"
    if user_has_device(user, confirmed=True):
        if not otp:
            audit_event_record(
                "auth.token.failed",
                actor=user,
                outcome="denied",
                details={"reason": "mfa_required"},
                request=request,
            )
            raise MfaRequired()
        try:
            # A TOTP code (once per window) or a recovery code (spent, and audited).
            mfa_code_verify(user=user, code=otp, request=request)
        except MfaCodeRejected:
            _fail(request, username, user, "bad_otp")
            raise MfaRequired("The one-time code is wrong or was already used.") from None
        method = "password+otp"
    ratelimit.reset(_username_key(username))
    return token_pair_issue(user=user, request=request, method=method)
