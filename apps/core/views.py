from __future__ import annotations

import logging
import sys

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
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
