"""Authentication refusals. They are DRF AuthenticationFailed errors (so DRF handles them
inside authenticators too) carrying API.md's codes, which the exception handler keeps."""

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
