"""Application errors and the one error envelope of docs/api.md.

Every refusal is an `ApplicationError` (or a DRF/Django exception mapped onto one by
`apps.core.exception_handler`), rendered as
`{"error": {"code", "message", "details", "request_id"}}` and nothing else.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from apps.core import metrics


class ApplicationError(Exception):
    status_code: int = 400
    code: str = "invalid_input"
    default_message: str = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or []
        self.headers = headers or {}
        super().__init__(self.message)


class InvalidInput(ApplicationError):
    status_code = 400
    code = "invalid_input"


class MalformedJson(ApplicationError):
    status_code = 400
    code = "malformed_json"
    default_message = "The request body is not valid JSON."


class AuthenticationRequired(ApplicationError):
    status_code = 401
    code = "authentication_required"
    default_message = "Authentication credentials were not provided."


class PermissionDenied(ApplicationError):
    status_code = 403
    code = "permission_denied"
    default_message = "You do not have permission to perform this action."


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class MethodNotAllowed(ApplicationError):
    status_code = 405
    code = "method_not_allowed"


class Conflict(ApplicationError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ApplicationError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApplicationError):
    status_code = 415
    code = "unsupported_media_type"


class RateLimited(ApplicationError):
    status_code = 429
    code = "rate_limited"
    default_message = "Too many requests; retry later."

    def __init__(self, message: str | None = None, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(ApplicationError):
    status_code = 503
    code = "service_unavailable"
    default_message = "A service Bulwark depends on is unavailable; retry later."

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class InternalError(ApplicationError):
    """Not in docs/api.md's table: an unexpected failure, answered without any internals."""

    status_code = 500
    code = "internal_error"
    default_message = "An unexpected error occurred; it has been logged with this request's id."


def request_id_of(request: HttpRequest | None) -> str:
    return getattr(request, "request_id", "") if request is not None else ""


def error_body(
    code: str, message: str, details: list[dict[str, str]] | None, request_id: str
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or [],
            "request_id": request_id,
        }
    }


def error_response(error: ApplicationError, request: HttpRequest | None) -> JsonResponse:
    """The envelope as a plain Django response, for refusals made outside DRF views."""
    metrics.refusal_count(error.code)
    response = JsonResponse(
        error_body(error.code, error.message, error.details, request_id_of(request)),
        status=error.status_code,
    )
    for name, value in error.headers.items():
        response[name] = value
    return response
