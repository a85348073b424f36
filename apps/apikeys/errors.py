"""This app's refusals, each carrying its docs/api.md code.

Authentication refusals are DRF exceptions (DRF handles them inside authenticators and the
exception handler keeps their codes); the rest are ApplicationErrors.
"""

from __future__ import annotations

from rest_framework import exceptions as drf

from apps.core.errors import ApplicationError, Conflict, RateLimited


class ApiKeyInvalid(drf.AuthenticationFailed):
    default_code = "api_key_invalid"
    default_detail = "The API key is malformed, unknown or wrong."


class ApiKeyExpired(drf.AuthenticationFailed):
    default_code = "api_key_expired"
    default_detail = "The API key has expired."


class ApiKeyRevoked(drf.AuthenticationFailed):
    default_code = "api_key_revoked"
    default_detail = "The API key has been revoked."


class IpNotAllowed(drf.PermissionDenied):
    default_code = "ip_not_allowed"
    default_detail = "This API key may not be used from this address."


class SignatureRequired(drf.AuthenticationFailed):
    default_code = "signature_required"
    default_detail = "This API key requires signed requests: send an X-Signature header."


class SignatureInvalid(drf.AuthenticationFailed):
    default_code = "signature_invalid"
    default_detail = "The request signature is malformed or does not match."


class SignatureExpired(drf.AuthenticationFailed):
    default_code = "signature_expired"
    default_detail = "The request signature's timestamp is too far from the server's clock."


class SignatureReplayed(drf.AuthenticationFailed):
    default_code = "signature_replayed"
    default_detail = "This signature was already used; sign each request anew."


class AuthFailuresLocked(RateLimited):
    default_message = "Too many failed authentication attempts from this address; retry later."


class ScopeMissing(ApplicationError):
    status_code = 403
    code = "scope_missing"
    default_message = "A requested scope is beyond your own grants."


class KeyAlreadyRevoked(Conflict):
    default_message = "This API key is already revoked."


class KeyNotRotatable(Conflict):
    default_message = "Only an active API key can be rotated."


class NotKeyOwner(ApplicationError):
    """Rotation hands out a new secret: only the key's owner may receive it. Security
    officers and admins contain a key by revoking it instead."""

    status_code = 403
    code = "permission_denied"
    default_message = "Only the key's owner may rotate it; revoke it instead."
