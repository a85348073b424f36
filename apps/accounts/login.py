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
from apps.core.auth_failures import failure_bucket


def _username_key(username: str) -> str:
    # Keyed by a digest: the cache never holds usernames.
    return "login:user:" + hashlib.sha256(username.strip().lower().encode()).hexdigest()


def _address_key(request: HttpRequest) -> str:
    return "login:" + failure_bucket(request)  # IPv6 per /64, like every failure count


def _counters(request: HttpRequest, username: str) -> tuple[tuple[str, int], ...]:
    return (
        (_username_key(username), settings.LOGIN_FAILURES_PER_USERNAME),
        (_address_key(request), settings.LOGIN_FAILURES_PER_IP),
    )


def begin_attempt(request: HttpRequest, username: str) -> None:
    """Count the attempt *before* checking anything, and refuse it (LoginLocked, 429) beyond
    the limits. Counting first is what makes the limit exact: parallel attempts each take a
    number, and only the first five per username ever reach the password check. A
    successful attempt gives its count back (`attempt_succeeded`)."""
    window = settings.LOGIN_FAILURE_WINDOW
    for key, limit in _counters(request, username):
        state = ratelimit.hit(key, limit=limit, window=window)
        if not state.allowed:
            raise LoginLocked(retry_after=min(state.reset_in or window, window))


def attempt_succeeded(request: HttpRequest, username: str) -> None:
    """A success clears the username's count and returns the address's one unit."""
    ratelimit.reset(_username_key(username))
    address_key, limit = _counters(request, username)[1]
    ratelimit.hit(address_key, limit=limit, window=settings.LOGIN_FAILURE_WINDOW, cost=-1)


def attempt_not_counted(request: HttpRequest, username: str) -> None:
    """Give back an attempt that was no failure (the first step of an MFA sign-in)."""
    for key, limit in _counters(request, username):
        ratelimit.hit(key, limit=limit, window=settings.LOGIN_FAILURE_WINDOW, cost=-1)


def record_failure(
    request: HttpRequest,
    username: str,
    user: User | None,
    reason: str,
    *,
    action: str = "auth.token.failed",
) -> None:
    """Audit a failed sign-in (it was counted when it began): `auth.token.failed` for the
    token endpoint, `auth.session.failed` for the sign-in pages and the admin's."""
    audit_event_record(
        action,
        actor=user,  # None (the system) when nobody has that username: we never store it
        outcome="failure",
        details={"reason": reason},
    )


def login_with_password(
    *, request: HttpRequest, username: str, password: str, otp: str | None
) -> dict[str, Any]:
    """A token pair for the right username, password and (for users with a confirmed device)
    TOTP or recovery code. Raises LoginLocked (429), InvalidCredentials or MfaRequired (401).
    Every attempt is an audit event; the password never is."""
    begin_attempt(request, username)
    user = authenticate(request, username=username, password=password)
    if user is None:
        known = User.objects.filter(username=username).first()
        record_failure(request, username, known, "bad_credentials")
        raise InvalidCredentials()
    method = "password"
    if user_has_device(user, confirmed=True):
        if not otp:
            attempt_not_counted(request, username)
            audit_event_record(
                "auth.token.failed",
                actor=user,
                outcome="denied",
                details={"reason": "mfa_required"},
            )
            raise MfaRequired()
        try:
            # A TOTP code (once per window) or a recovery code (spent, and audited).
            mfa_code_verify(user=user, code=otp)
        except MfaCodeRejected:
            record_failure(request, username, user, "bad_otp")
            raise MfaRequired("The one-time code is wrong or was already used.") from None
        method = "password+otp"
    attempt_succeeded(request, username)
    return token_pair_issue(user=user, method=method)
