"""Authentication refusals. They are DRF AuthenticationFailed errors (so DRF handles them
inside authenticators too) carrying docs/api.md's codes, which the exception handler keeps."""

from typing import Any

from rest_framework.exceptions import AuthenticationFailed

from apps.core.errors import RateLimited


class InvalidCredentials(AuthenticationFailed):
    default_code = "invalid_credentials"
    default_detail = "The username or password is wrong."


class MfaRequired(AuthenticationFailed):
    default_code = "mfa_required"
    default_detail = "This account uses two-factor authentication: send a valid `otp` code."


class TokenInvalid(AuthenticationFailed):
    default_code = "token_invalid"
    default_detail = "The token is invalid, expired or revoked."


class LoginLocked(RateLimited):
    default_message = "Too many failed sign-ins for this account or address; try again later."


# A signed token whose exp, iat or nbf is no valid time (1e20, a string) makes the datetime
# conversions raise these: it is an invalid token (401), not a server error.
BAD_TIME = (OverflowError, ValueError, TypeError, OSError)
# Seconds since the epoch a datetime can hold (years 1 to 9999).
_EARLIEST, _LATEST = -62_135_596_800, 253_402_300_799


def times_are_valid(claims: Any) -> bool:
    """Whether each of exp, iat and nbf the token carries is a number a datetime can hold."""
    for claim in ("exp", "iat", "nbf"):
        value = claims.get(claim)
        if value is None and claim not in claims:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not (_EARLIEST <= value <= _LATEST):  # NaN fails this too
            return False
    return True
