"""One exception class per error code of Bulwark's HTTP API (docs/api.md, "Everywhere").

Every refusal the server sends has the body
`{"error": {"code", "message", "details", "request_id"}}`; `error_from_response` turns it
into the class registered for its code, or `BulwarkError` itself for a code this client does
not know (a newer server), so `except BulwarkError` always catches it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar


class BulwarkError(Exception):
    """A refusal by the server (or, for `ConnectionFailed`, no answer at all).

    `code` is the envelope's code (e.g. "rate_limited"), `status` the HTTP status, `message`
    the server's human-readable sentence, `details` its list of `{"path", "message"}`
    objects, and `request_id` the request's X-Request-ID: quote it when asking an operator."""

    code_name: ClassVar[str | None] = None  # the code this class stands for

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int,
        details: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details or []
        self.request_id = request_id
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}

    def __str__(self) -> str:
        where = f", request {self.request_id}" if self.request_id else ""
        return f"{self.code} ({self.status}{where}): {self.message}"

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait (its Retry-After), if it sent one."""
        return parse_retry_after(self.headers.get("retry-after"))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as delay-seconds (what Bulwark sends); None when absent or unreadable. An
    HTTP date is read too, for proxies that send one."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ConnectionFailed(BulwarkError):
    """No HTTP answer (refused connection, DNS failure, timeout). Never retried: the server may
    have acted on the request."""

    code_name = "connection_failed"


# 400
class InvalidInput(BulwarkError):
    code_name = "invalid_input"


class MalformedJson(BulwarkError):
    code_name = "malformed_json"


# 401: people
class AuthenticationRequired(BulwarkError):
    code_name = "authentication_required"


class InvalidCredentials(BulwarkError):
    code_name = "invalid_credentials"


class MfaRequired(BulwarkError):
    code_name = "mfa_required"


class TokenInvalid(BulwarkError):
    code_name = "token_invalid"


# 401: API keys
class ApiKeyInvalid(BulwarkError):
    code_name = "api_key_invalid"


class ApiKeyExpired(BulwarkError):
    code_name = "api_key_expired"


class ApiKeyRevoked(BulwarkError):
    code_name = "api_key_revoked"


# 401: request signing
class SignatureRequired(BulwarkError):
    code_name = "signature_required"


class SignatureInvalid(BulwarkError):
    code_name = "signature_invalid"


class SignatureExpired(BulwarkError):
    code_name = "signature_expired"


class SignatureReplayed(BulwarkError):
    code_name = "signature_replayed"


# 403
class PermissionDenied(BulwarkError):
    code_name = "permission_denied"


class ScopeMissing(BulwarkError):
    code_name = "scope_missing"


class IpNotAllowed(BulwarkError):
    code_name = "ip_not_allowed"


# 404
class NotFound(BulwarkError):
    code_name = "not_found"


class NoProductionVersion(BulwarkError):
    code_name = "no_production_version"


# 405, 406
class MethodNotAllowed(BulwarkError):
    code_name = "method_not_allowed"


class NotAcceptable(BulwarkError):
    code_name = "not_acceptable"


# 409
class InvalidTransition(BulwarkError):
    code_name = "invalid_transition"


class Conflict(BulwarkError):
    code_name = "conflict"


# 411, 413, 415
class LengthRequired(BulwarkError):
    code_name = "length_required"


class PayloadTooLarge(BulwarkError):
    code_name = "payload_too_large"


class UnsupportedMediaType(BulwarkError):
    code_name = "unsupported_media_type"


# 429
class RateLimited(BulwarkError):
    """429 `rate_limited`; `retry_after` is the server's Retry-After in seconds."""

    code_name = "rate_limited"


class PrivacyBudgetExhausted(BulwarkError):
    code_name = "privacy_budget_exhausted"


# 500, 503
class InternalError(BulwarkError):
    code_name = "internal_error"


class ServiceUnavailable(BulwarkError):
    """503 `service_unavailable`; `retry_after` is the server's Retry-After in seconds."""

    code_name = "service_unavailable"


# Every code of docs/api.md's table, to its class (ConnectionFailed is the client's own).
ERRORS: dict[str, type[BulwarkError]] = {
    cls.code_name: cls
    for cls in BulwarkError.__subclasses__()
    if cls.code_name is not None and cls is not ConnectionFailed
}


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> BulwarkError:
    """The exception for an error answer: the class of the envelope's code, or `BulwarkError`
    for an unknown code or a body that is not Bulwark's envelope (a proxy's page)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    request_id = lowered.get("x-request-id")
    try:
        envelope = json.loads(body)
        error = envelope["error"]
        code = str(error["code"])
        message = str(error.get("message", ""))
        details = error.get("details") or []
        request_id = str(error.get("request_id") or request_id or "") or None
        if not isinstance(details, list):
            details = []
    except (ValueError, KeyError, TypeError):
        return BulwarkError(
            f"HTTP {status} without Bulwark's error body",
            code=f"http_{status}",
            status=status,
            request_id=request_id,
            headers=lowered,
        )
    cls = ERRORS.get(code, BulwarkError)
    return cls(
        message, code=code, status=status, details=details, request_id=request_id, headers=lowered
    )
