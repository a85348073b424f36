from __future__ import annotations

import hmac
import ipaddress
import logging
import sys

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponsePermanentRedirect,
)
from django.templatetags.static import static
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import errors
from apps.core.dependencies import as_service_unavailable, failed_dependency
from apps.core.error_pages import error_answer
from apps.core.health import readiness
from apps.core.metrics import CONTENT_TYPE_LATEST, exposition
from apps.core.secrets import get_optional_secret

logger = logging.getLogger("bulwark.errors")


class ProbeApi(APIView):
    """Probes touch no authentication, session or database unless they mean to."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes: list[type] = []


class HealthzApi(ProbeApi):
    @extend_schema(
        summary="Liveness: the process answers; nothing else is touched",
        responses=inline_serializer("Healthz", {"status": serializers.CharField()}),
        tags=["health"],
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyzApi(ProbeApi):
    @extend_schema(
        summary="Readiness: database, cache and broker reachable; 503 names the failed one",
        responses={
            200: inline_serializer(
                "Readyz",
                {
                    "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
                    "checks": serializers.DictField(child=serializers.CharField()),
                },
            ),
            503: inline_serializer(
                "ReadyzUnavailable",
                {
                    "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
                    "checks": serializers.DictField(child=serializers.CharField()),
                },
            ),
        },
        tags=["health"],
    )
    def get(self, request: Request) -> Response:
        checks = readiness()
        if all(result == "ok" for result in checks.values()):
            return Response({"status": "ok", "checks": checks})
        return Response(
            {"status": "unavailable", "checks": checks}, status=503, headers={"Retry-After": "5"}
        )


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return error_answer(
            request, errors.PayloadTooLarge("The request body is larger than allowed.")
        )
    return error_answer(request, errors.InvalidInput("The request could not be understood."))


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_answer(request, errors.PermissionDenied())


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_answer(request, errors.NotFound(f"Nothing is at {request.path}."))


def server_error(request: HttpRequest) -> HttpResponse:
    """Django calls this inside its `except` block, so the exception is in sys.exc_info():
    a dependency that is down is a 503 with Retry-After, anything else a bare 500."""
    exc = sys.exc_info()[1]
    if exc is not None:
        dependency = failed_dependency(exc)
        if dependency is not None:
            return error_answer(request, as_service_unavailable(exc, dependency))
    return error_answer(request, errors.InternalError())


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever a page links: send them to the icon itself."""
    return HttpResponsePermanentRedirect(static("img/favicon.svg"))


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _may_scrape(request: HttpRequest) -> bool:
    """From METRICS_ALLOWED_NETWORKS (the client address as TrustedProxyMiddleware resolved
    it), or with `Authorization: Bearer <METRICS_TOKEN>`, compared in constant time."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        address = None
    if address is not None and any(address in net for net in settings.METRICS_ALLOWED_NETWORKS):
        return True
    presented = _bearer(request)
    if presented is None:
        return False
    try:
        expected = get_optional_secret("METRICS_TOKEN")
    except Exception:
        logger.warning("metrics token could not be read from the secrets backend")
        return False
    if not expected:
        return False  # no token configured: bearer scraping is off
    return hmac.compare_digest(presented.encode(), expected.encode())


def metrics(request: HttpRequest) -> HttpResponse:
    """`GET /metrics`: the Prometheus text exposition (docs/metrics.md). To anyone not allowed
    (and when METRICS_ENABLED is false) the project's plain 404, as for a path that does not
    exist: a probe learns nothing, not even that there is something to authenticate to."""
    if not settings.METRICS_ENABLED or not _may_scrape(request):
        raise Http404()
    if request.method not in {"GET", "HEAD"}:
        return HttpResponseNotAllowed(["GET", "HEAD"])
    response = HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
