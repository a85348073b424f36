"""Maps every exception a DRF view can raise onto docs/api.md's codes and envelope."""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions as drf
from rest_framework.response import Response

from apps.core import errors, metrics
from apps.core.dependencies import as_service_unavailable, failed_dependency

UNAUTHENTICATED_CODES = frozenset(
    {
        "authentication_required",
        "invalid_credentials",
        "mfa_required",
        "token_invalid",
        "api_key_invalid",
        "api_key_expired",
        "api_key_revoked",
        "signature_required",
        "signature_invalid",
        "signature_expired",
        "signature_replayed",
    }
)
FORBIDDEN_CODES = frozenset({"permission_denied", "scope_missing", "ip_not_allowed"})


def flatten_details(detail: Any, path: str = "") -> list[dict[str, str]]:
    """DRF's nested validation detail → `[{"path": "inputs/0/price", "message": ...}]`."""
    if isinstance(detail, dict):
        flat: list[dict[str, str]] = []
        for key, value in detail.items():
            key_path = path if key == "non_field_errors" else f"{path}/{key}".lstrip("/")
            flat.extend(flatten_details(value, key_path))
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return [{"path": path, "message": str(item)} for item in detail]
        flat = []
        for index, item in enumerate(detail):
            flat.extend(flatten_details(item, f"{path}/{index}".lstrip("/")))
        return flat
    return [{"path": path, "message": str(detail)}]


def _first_code(exc: drf.APIException, allowed: frozenset[str], fallback: str) -> str:
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else None
    return code if code in allowed else fallback


def _message(exc: drf.APIException) -> str:
    detail = exc.detail
    return str(detail) if isinstance(detail, str) else str(exc.default_detail)


def to_application_error(exc: BaseException) -> errors.ApplicationError | None:
    """The ApplicationError an exception stands for, or None for a genuine bug (→ 500)."""
    if isinstance(exc, errors.ApplicationError):
        return exc
    dependency = failed_dependency(exc)
    if dependency is not None:
        return as_service_unavailable(exc, dependency)
    if isinstance(exc, RequestDataTooBig):
        return errors.PayloadTooLarge("The request body is larger than this endpoint accepts.")
    if isinstance(exc, Ratelimited):
        return errors.RateLimited(retry_after=60)
    if isinstance(exc, Http404 | drf.NotFound):
        return errors.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return errors.PermissionDenied()
    if isinstance(exc, drf.ValidationError):
        details = flatten_details(exc.detail)
        first = details[0] if details else {"path": "", "message": "Invalid input."}
        message = f"{first['path']}: {first['message']}" if first["path"] else first["message"]
        return errors.InvalidInput(message, details=details)
    if isinstance(exc, drf.ParseError):
        return errors.MalformedJson(_message(exc))
    if isinstance(exc, drf.NotAuthenticated):
        return errors.AuthenticationRequired()
    if isinstance(exc, drf.AuthenticationFailed):
        error = errors.ApplicationError(_message(exc))
        error.status_code, error.code = (
            401,
            _first_code(exc, UNAUTHENTICATED_CODES, "token_invalid"),
        )
        return error
    if isinstance(exc, drf.PermissionDenied):
        error = errors.PermissionDenied(_message(exc))
        error.code = _first_code(exc, FORBIDDEN_CODES, "permission_denied")
        return error
    if isinstance(exc, drf.MethodNotAllowed):
        return errors.MethodNotAllowed(_message(exc))
    if isinstance(exc, drf.UnsupportedMediaType):
        return errors.UnsupportedMediaType(_message(exc))
    if isinstance(exc, drf.NotAcceptable):
        error = errors.ApplicationError(_message(exc))
        error.status_code, error.code = 406, "not_acceptable"
        return error
    if isinstance(exc, drf.Throttled):
        return errors.RateLimited(retry_after=math.ceil(exc.wait or 1))  # type: ignore[attr-defined]  # set in Throttled.__init__; not in the stubs
    if isinstance(exc, drf.APIException):
        error = errors.ApplicationError(_message(exc))
        error.status_code, error.code = (
            exc.status_code,
            _first_code(exc, frozenset(), "invalid_input"),
        )
        return error
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    error = to_application_error(exc)
    if error is None:
        return None  # a bug: Django's handler500 answers with the envelope and logs it
    request = context.get("request")
    headers = dict(error.headers)
    if error.status_code == 401:
        # DRF sets auth_header from the view's authenticator; Allow on 405 it adds by itself.
        headers["WWW-Authenticate"] = getattr(exc, "auth_header", None) or 'Bearer realm="bulwark"'
    metrics.refusal_count(error.code)

    body = errors.error_body(
        error.code, error.message, error.details, errors.request_id_of(request)
    )
    return Response(body, status=error.status_code, headers=headers)
